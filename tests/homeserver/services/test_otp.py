"""PhoneVerificationService with a fake clock, a recording SMS sender and real stores."""

from __future__ import annotations

import dataclasses

import pytest

from homeserver.clock import FakeClock
from homeserver.config import OtpConfig, RateLimit
from homeserver.errors import LimitExceeded, MatrixError, NotFound
from homeserver.services.otp import (
    PhoneVerificationService,
    RequestTokenAnswer,
    ThreepidAuthFailed,
)
from homeserver.services.ratelimit import RateLimiter
from homeserver.services.sms import SmsDeliveryFailed
from homeserver.storage import Stores

NUMBER = "+4915123456789"


class RecordingSender:
    """A fake SmsSender: remembers what it sent; can be told to fail."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.fail = False

    async def send_code(self, number: str, code: str) -> None:
        if self.fail:
            raise SmsDeliveryFailed()
        self.sent.append((number, code))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sender() -> RecordingSender:
    return RecordingSender()


def make(stores, sender, clock, **cfg) -> PhoneVerificationService:
    limits = {
        "sms_per_number": RateLimit(per_second=1 / 30, burst_count=6),
        "sms_per_ip": RateLimit(per_second=0.1, burst_count=20),
    }
    limiter = RateLimiter(limits, clock)
    config = dataclasses.replace(OtpConfig(enabled=True), **cfg)
    return PhoneVerificationService(stores.threepids, stores.users, sender, limiter, clock, config)


@pytest.fixture
def otp(stores: Stores, sender, clock) -> PhoneVerificationService:
    return make(stores, sender, clock)


async def request(
    otp: PhoneVerificationService,
    attempt: int = 1,
    secret: str = "sec",
    ip: str = "1.2.3.4",
    number: str = "0151 23456789",
) -> RequestTokenAnswer:
    return await otp.request_token(
        client_secret=secret,
        country="DE",
        phone_number=number,
        send_attempt=attempt,
        client_ip=ip,
    )


async def test_code_is_six_digits_and_stored_only_as_hash(otp, sender, stores):
    answer = await request(otp)
    assert answer.phone == NUMBER
    [(number, code)] = sender.sent
    assert number == NUMBER and len(code) == 6 and code.isdigit()
    row = await stores.threepids.get(answer.sid)
    assert row.code_hash and code not in row.code_hash
    assert await otp.submit_code(sid=answer.sid, client_secret="sec", code=code) == NUMBER
    assert await otp.validated_number(sid=answer.sid, client_secret="sec") == NUMBER


async def test_same_attempt_same_sid_no_sms(otp, sender):
    a = await request(otp)
    b = await request(otp)
    assert a.sid == b.sid and len(sender.sent) == 1
    other = await request(otp, secret="another")
    assert other.sid != a.sid and len(sender.sent) == 2


async def test_resend_interval(otp, sender, clock):
    a = await request(otp)
    clock.advance(30)
    with pytest.raises(LimitExceeded) as info:
        await request(otp, attempt=2)
    assert info.value.extra["retry_after_ms"] == 30_000
    clock.advance(30)
    b = await request(otp, attempt=2)
    assert b.sid == a.sid and len(sender.sent) == 2
    # the old code no longer works, the new one does
    old, new = sender.sent[0][1], sender.sent[1][1]
    if old != new:
        with pytest.raises(ThreepidAuthFailed):
            await otp.submit_code(sid=a.sid, client_secret="sec", code=old)
    assert await otp.submit_code(sid=a.sid, client_secret="sec", code=new) == NUMBER


async def test_expiry_and_attempt_limit(otp, sender, clock):
    a = await request(otp)
    code = sender.sent[-1][1]
    clock.advance(601)
    with pytest.raises(ThreepidAuthFailed, match="expired"):
        await otp.submit_code(sid=a.sid, client_secret="sec", code=code)
    b = await request(otp, attempt=2)
    code = sender.sent[-1][1]
    wrong = "999999" if code != "999999" else "000000"
    for left in (2, 1):
        with pytest.raises(ThreepidAuthFailed, match=f"{left} attempts left"):
            await otp.submit_code(sid=b.sid, client_secret="sec", code=wrong)
    with pytest.raises(ThreepidAuthFailed, match="Too many"):
        await otp.submit_code(sid=b.sid, client_secret="sec", code=wrong)
    with pytest.raises(ThreepidAuthFailed, match="Too many"):
        await otp.submit_code(sid=b.sid, client_secret="sec", code=code)
    with pytest.raises(ThreepidAuthFailed):
        await otp.validated_number(sid=b.sid, client_secret="sec")
    with pytest.raises(NotFound):
        await otp.submit_code(sid=b.sid, client_secret="wrong", code=code)


async def test_per_number_and_per_ip_buckets(stores, sender, clock):
    otp = make(stores, sender, clock, resend_interval_s=0)
    for i in range(6):
        await request(otp, attempt=i + 1, ip=f"10.0.0.{i}")
    with pytest.raises(LimitExceeded):
        await request(otp, attempt=7, ip="10.0.0.99")
    assert len(sender.sent) == 6
    # another number from one IP: the per-IP bucket (20) applies
    otp = make(stores, sender, clock, resend_interval_s=0)
    for i in range(20):
        await request(otp, secret=f"s{i}", number=f"0151 234567{i:02d}")
    with pytest.raises(LimitExceeded):
        await request(otp, secret="s99", number="0151 23456799")


async def test_region_lists_and_bound_numbers(stores, sender, clock):
    with pytest.raises(MatrixError) as info:
        await request(make(stores, sender, clock, blocked_countries=("DE",)))
    assert info.value.errcode == "M_THREEPID_DENIED"
    with pytest.raises(MatrixError) as info:
        await request(make(stores, sender, clock, allowed_countries=("AT", "CH")))
    assert info.value.errcode == "M_THREEPID_DENIED"
    await stores.users.create_user("@p:x", password_hash=None, created_ts=1, phone=NUMBER)
    with pytest.raises(MatrixError) as info:
        await request(make(stores, sender, clock))
    assert info.value.errcode == "M_THREEPID_IN_USE"
    assert sender.sent == []


async def test_failed_delivery_can_be_retried_at_once(otp, sender):
    sender.fail = True
    with pytest.raises(SmsDeliveryFailed):
        await request(otp)
    sender.fail = False
    a = await request(otp)  # same attempt number, not treated as a duplicate
    assert len(sender.sent) == 1
    assert await otp.submit_code(sid=a.sid, client_secret="sec", code=sender.sent[0][1]) == NUMBER


async def test_sessions_expire(otp, clock, stores):
    a = await request(otp)
    clock.advance(86_401)
    assert await otp.expire_sessions() == 1
    assert await stores.threepids.get(a.sid) is None

"""Registration lock: PIN rules, wrong-PIN window, inactivity lapse, and phone logins through
AuthService (password with m.id.phone, SMS code), with a fake clock and real stores."""

from __future__ import annotations

import pytest

from homeserver.clock import FakeClock
from homeserver.config import AuthConfig, OtpConfig, RateLimit, RegistrationLockConfig
from homeserver.errors import InvalidParam, MatrixError
from homeserver.services.auth import AuthService
from homeserver.services.identifiers import PhoneIdentifier, UserIdIdentifier
from homeserver.services.otp import PhoneVerificationService
from homeserver.services.passwords import PasswordHasher
from homeserver.services.ratelimit import RateLimiter
from homeserver.services.registration_lock import (
    PIN_INCORRECT,
    PIN_REQUIRED,
    TOO_MANY_ATTEMPTS,
    RegistrationLocked,
    RegistrationLockService,
)
from homeserver.storage import Stores

USER = "@u:x"
NUMBER = "+4915123456789"
DAY = 86400


class RecordingSender:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send_code(self, number: str, code: str) -> None:
        self.sent.append((number, code))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def hasher() -> PasswordHasher:
    return PasswordHasher(time_cost=1, memory_cost=1024)


@pytest.fixture
async def locks(stores: Stores, clock: FakeClock, hasher: PasswordHasher):
    await stores.users.create_user(
        USER, password_hash=await hasher.hash("pw"), created_ts=1, phone=NUMBER
    )
    return RegistrationLockService(
        stores.registration_locks, hasher, clock, RegistrationLockConfig()
    )


@pytest.fixture
def sender() -> RecordingSender:
    return RecordingSender()


@pytest.fixture
def auth(stores, clock, hasher, locks, sender) -> AuthService:
    limiter = RateLimiter(
        {
            "login": RateLimit(per_second=1, burst_count=1000),
            "sms_per_number": RateLimit(per_second=1, burst_count=1000),
            "sms_per_ip": RateLimit(per_second=1, burst_count=1000),
        },
        clock,
    )
    phones = PhoneVerificationService(
        stores.threepids, stores.users, sender, limiter, clock, OtpConfig(enabled=True)
    )
    return AuthService(
        stores.users,
        stores.tokens,
        stores.devices,
        hasher,
        limiter,
        clock,
        server_name="x",
        config=AuthConfig(),
        spent=stores.spent_credentials,
        phones=phones,
        registration_lock=locks,
    )


async def locked(coro) -> RegistrationLocked:
    with pytest.raises(RegistrationLocked) as info:
        await coro
    assert info.value.status == 423
    return info.value


async def test_no_pin_no_lock_and_status(locks, stores):
    await locks.check_login(USER, None)
    assert (await locks.status(USER)).enabled is False
    await locks.set_pin(USER, "2468")
    status = await locks.status(USER)
    assert status.enabled and status.lapses_ts == status.set_ts + 7 * DAY * 1000
    row = await stores.registration_locks.get(USER)
    assert row.pin_hash.startswith("$argon2id$") and "2468" not in row.pin_hash
    assert await locks.remove_pin(USER) is True
    assert await locks.remove_pin(USER) is False
    await locks.check_login(USER, None)


@pytest.mark.parametrize("pin", ["123", "x" * 65, "12\n34"])
async def test_bad_pins_are_refused(locks, pin):
    with pytest.raises(InvalidParam):
        await locks.set_pin(USER, pin)


async def test_pin_required_wrong_and_right(locks, clock):
    await locks.set_pin(USER, "2468")
    clock.advance(3600)
    err = await locked(locks.check_login(USER, None))
    assert err.errcode == PIN_REQUIRED
    body = err.to_json()
    assert body["time_remaining_ms"] == 7 * DAY * 1000 - 3600 * 1000
    assert body["attempts_remaining"] == 10
    err = await locked(locks.check_login(USER, "1111"))
    assert (err.errcode, err.to_json()["attempts_remaining"]) == (PIN_INCORRECT, 9)
    await locks.check_login(USER, "2468")
    # a right PIN forgets the wrong ones
    err = await locked(locks.check_login(USER, None))
    assert err.to_json()["attempts_remaining"] == 10


async def test_ten_wrong_pins_a_day_then_423_even_for_the_right_one(locks, clock):
    await locks.set_pin(USER, "2468")
    for n in range(9):
        err = await locked(locks.check_login(USER, f"00{n:02d}"))
        assert err.errcode == PIN_INCORRECT
        clock.advance(60)
    err = await locked(locks.check_login(USER, "0099"))
    assert err.errcode == TOO_MANY_ATTEMPTS
    body = err.to_json()
    assert body["attempts_remaining"] == 0
    assert body["retry_after_ms"] == DAY * 1000 - 9 * 60 * 1000
    err = await locked(locks.check_login(USER, "2468"))
    assert err.errcode == TOO_MANY_ATTEMPTS
    clock.advance(body["retry_after_ms"] / 1000)
    await locks.check_login(USER, "2468")


async def test_window_restarts_after_a_day(locks, clock):
    await locks.set_pin(USER, "2468")
    for _ in range(9):
        await locked(locks.check_login(USER, "0000"))
    clock.advance(DAY)
    err = await locked(locks.check_login(USER, "0000"))
    assert (err.errcode, err.to_json()["attempts_remaining"]) == (PIN_INCORRECT, 9)


async def test_lock_lapses_after_seven_days_without_activity(locks, clock):
    await locks.set_pin(USER, "2468")
    clock.advance(6 * DAY)
    await locks.record_activity({USER: clock.time_ms()})
    clock.advance(6 * DAY)
    err = await locked(locks.check_login(USER, None))
    assert err.to_json()["time_remaining_ms"] == DAY * 1000
    # activity the server has not written yet counts too
    clock.advance(DAY - 1)
    await locked(locks.check_login(USER, None, recently_seen_ms=None))
    clock.advance(1)
    await locks.check_login(USER, None)
    await locked(locks.check_login(USER, None, recently_seen_ms=clock.time_ms() - 1000))


async def test_disabled_lock_is_not_enforced(stores, clock, hasher, locks):
    await locks.set_pin(USER, "2468")
    off = RegistrationLockService(
        stores.registration_locks, hasher, clock, RegistrationLockConfig(enabled=False)
    )
    await off.check_login(USER, None)


async def test_password_login_by_phone_needs_the_pin_by_user_id_not(auth, locks):
    await locks.set_pin(USER, "2468")
    login = dict(device_id=None, display_name=None, want_refresh=False)
    session = await auth.login_with_password(UserIdIdentifier("u"), "pw", **login)
    assert session.user_id == USER
    err = await locked(auth.login_with_password(PhoneIdentifier(NUMBER), "pw", **login))
    assert err.errcode == PIN_REQUIRED
    # the password is checked first: a wrong one never reaches (or counts against) the PIN
    with pytest.raises(MatrixError) as info:
        await auth.login_with_password(PhoneIdentifier(NUMBER), "bad", pin="0000", **login)
    assert info.value.errcode == "M_FORBIDDEN"
    err = await locked(auth.login_with_password(PhoneIdentifier(NUMBER), "pw", **login))
    assert err.to_json()["attempts_remaining"] == 10
    # a known device ID does not skip the PIN (device IDs are public)
    err = await locked(
        auth.login_with_password(
            PhoneIdentifier(NUMBER), "pw", **{**login, "device_id": session.device_id}
        )
    )
    session = await auth.login_with_password(PhoneIdentifier(NUMBER), "pw", pin="2468", **login)
    assert session.user_id == USER


async def sms_session(auth_phones: PhoneVerificationService, sender, secret="sec") -> str:
    answer = await auth_phones.request_token(
        client_secret=secret,
        country=None,
        phone_number=NUMBER,
        send_attempt=1,
        client_ip="1.2.3.4",
        for_login=True,
    )
    await auth_phones.submit_code(sid=answer.sid, client_secret=secret, code=sender.sent[-1][1])
    return answer.sid


async def test_sms_login_is_single_use_and_locked(auth, locks, stores, clock, sender):
    phones = auth._phones
    login = dict(device_id=None, display_name=None, want_refresh=False)
    sid = await sms_session(phones, sender)
    session = await auth.login_with_msisdn(sid=sid, client_secret="sec", **login)
    assert session.user_id == USER
    with pytest.raises(MatrixError) as info:
        await auth.login_with_msisdn(sid=sid, client_secret="sec", **login)
    assert info.value.errcode == "M_THREEPID_AUTH_FAILED"

    await locks.set_pin(USER, "2468")
    sid = await sms_session(phones, sender, secret="sec2")
    err = await locked(auth.login_with_msisdn(sid=sid, client_secret="sec2", **login))
    assert err.errcode == PIN_REQUIRED
    # the session survives the PIN step: the client retries with the PIN
    err = await locked(auth.login_with_msisdn(sid=sid, client_secret="sec2", pin="1", **login))
    assert err.errcode == PIN_INCORRECT
    session = await auth.login_with_msisdn(sid=sid, client_secret="sec2", pin="2468", **login)
    assert session.user_id == USER
    # a login moves the account's activity forward
    assert (await stores.registration_locks.get(USER)).last_active_ts == clock.time_ms()


async def test_sms_login_refusals(auth, stores, sender, clock):
    phones = auth._phones
    login = dict(device_id=None, display_name=None, want_refresh=False)
    with pytest.raises(MatrixError) as info:
        await phones.request_token(
            client_secret="s",
            country="DE",
            phone_number="0151 99999999",
            send_attempt=1,
            client_ip="1.2.3.4",
            for_login=True,
        )
    assert info.value.errcode == "M_THREEPID_NOT_FOUND" and not sender.sent
    # not validated yet
    answer = await phones.request_token(
        client_secret="s",
        country=None,
        phone_number=NUMBER,
        send_attempt=1,
        client_ip="i",
        for_login=True,
    )
    with pytest.raises(MatrixError) as info:
        await auth.login_with_msisdn(sid=answer.sid, client_secret="s", **login)
    assert info.value.errcode == "M_THREEPID_AUTH_FAILED"
    with pytest.raises(MatrixError) as info:
        await auth.login_with_msisdn(sid=answer.sid, client_secret="wrong", **login)
    assert info.value.errcode == "M_NOT_FOUND"
    # the number was unbound after the code was validated
    await phones.submit_code(sid=answer.sid, client_secret="s", code=sender.sent[-1][1])
    await stores.users.deactivate_user(USER)
    with pytest.raises(MatrixError) as info:
        await auth.login_with_msisdn(sid=answer.sid, client_secret="s", **login)
    assert (info.value.status, info.value.errcode) == (403, "M_FORBIDDEN")


async def test_sms_login_off_without_phones(stores, clock, hasher):
    auth = AuthService(
        stores.users,
        stores.tokens,
        stores.devices,
        hasher,
        RateLimiter({}, clock, enabled=False),
        clock,
        server_name="x",
        config=AuthConfig(),
    )
    assert auth.msisdn_login_enabled is False
    with pytest.raises(MatrixError) as info:
        await auth.login_with_msisdn(
            sid="s", client_secret="c", device_id=None, display_name=None, want_refresh=False
        )
    assert (info.value.status, info.value.errcode) == (400, "M_UNKNOWN")


async def test_flushing_last_seen_moves_lock_activity(auth, locks, stores, clock):
    await locks.set_pin(USER, "2468")
    session = await auth.create_session(USER, device_id="A", display_name=None, want_refresh=False)
    clock.advance(6 * DAY)
    await auth.authenticate(session.access_token, client_ip="1.2.3.4")
    # not flushed yet: the in-memory last-seen time keeps the lock alive
    clock.advance(2 * DAY)
    await locked(
        auth.login_with_password(
            PhoneIdentifier(NUMBER), "pw", device_id=None, display_name=None, want_refresh=False
        )
    )
    await auth.flush_last_seen()
    row = await stores.registration_locks.get(USER)
    assert row.last_active_ts == clock.time_ms() - 2 * DAY * 1000


async def test_reused_rotated_refresh_token_revokes_the_device(auth, stores, clock):
    first = await auth.create_session(USER, device_id="D", display_name=None, want_refresh=True)
    second = await auth.refresh(first.refresh_token)
    await auth.authenticate(second.access_token, client_ip="ip")  # retires the first
    third = await auth.refresh(second.refresh_token)
    await auth.authenticate(third.access_token, client_ip="ip")
    # the first (retired) refresh token comes back: the whole family is revoked
    with pytest.raises(MatrixError) as info:
        await auth.refresh(first.refresh_token)
    assert (info.value.status, info.value.errcode) == (401, "M_UNKNOWN_TOKEN")
    with pytest.raises(MatrixError):
        await auth.authenticate(third.access_token, client_ip="ip")
    with pytest.raises(MatrixError):
        await auth.refresh(third.refresh_token)
    assert await stores.devices.get_device(USER, "D") is None
    # spent credentials are pruned after the retention period
    assert await auth.prune_spent() == 0
    clock.advance(31 * DAY)
    assert await auth.prune_spent() == 2


async def test_unknown_refresh_token_revokes_nothing(auth, stores):
    s = await auth.create_session(USER, device_id="D", display_name=None, want_refresh=True)
    with pytest.raises(MatrixError):
        await auth.refresh("mar_unknown")
    assert (await auth.authenticate(s.access_token, client_ip="ip")).device_id == "D"

"""AuthService: token hashing, expiry (soft logout), refresh, last-seen batching."""

from __future__ import annotations

import hashlib

import pytest
import trio
import trio.testing

from homeserver.clock import FakeClock
from homeserver.config import AuthConfig, RateLimit
from homeserver.errors import LimitExceeded, MatrixError, UnknownToken
from homeserver.services.auth import AuthService, UserDeactivated, hash_token
from homeserver.services.identifiers import UserIdIdentifier
from homeserver.services.passwords import PasswordHasher
from homeserver.services.ratelimit import RateLimiter
from homeserver.storage import Stores


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def hasher() -> PasswordHasher:
    return PasswordHasher(time_cost=1, memory_cost=1024)


@pytest.fixture
async def auth(stores: Stores, clock: FakeClock, hasher: PasswordHasher) -> AuthService:
    await stores.users.create_user("@u:x", password_hash=await hasher.hash("pw"), created_ts=1)
    limiter = RateLimiter({"login": RateLimit(per_second=0.1, burst_count=3)}, clock)
    return AuthService(
        stores.users,
        stores.tokens,
        stores.devices,
        hasher,
        limiter,
        clock,
        server_name="x",
        config=AuthConfig(access_token_lifetime_s=3600, refreshable_access_token_lifetime_s=60),
    )


def test_hash_token_is_sha256_hex():
    assert hash_token("abc") == hashlib.sha256(b"abc").hexdigest()
    assert hash_token("abc") != hash_token("abd")


async def test_only_hashes_are_stored(auth, stores):
    session = await auth.create_session(
        "@u:x", device_id=None, display_name=None, want_refresh=True
    )
    assert session.access_token.startswith("mat_") and session.refresh_token.startswith("mar_")
    assert await stores.tokens.lookup_access(session.access_token) is None
    assert await stores.tokens.lookup_access(hash_token(session.access_token)) is not None


async def test_expired_token_is_soft_logout(auth, clock):
    plain = await auth.create_session("@u:x", device_id="A", display_name=None, want_refresh=False)
    refreshable = await auth.create_session(
        "@u:x", device_id="B", display_name=None, want_refresh=True
    )
    assert (plain.expires_in_ms, refreshable.expires_in_ms) == (3_600_000, 60_000)
    clock.advance(61)
    with pytest.raises(UnknownToken) as info:
        await auth.authenticate(refreshable.access_token, client_ip="ip")
    assert info.value.to_json()["soft_logout"] is True
    assert (await auth.authenticate(plain.access_token, client_ip="ip")).device_id == "A"
    # refreshing gives a working token for the same device
    fresh = await auth.refresh(refreshable.refresh_token)
    requester = await auth.authenticate(fresh.access_token, client_ip="ip")
    assert requester.device_id == "B"
    # its first use retired the old refresh token
    with pytest.raises(UnknownToken):
        await auth.refresh(refreshable.refresh_token)


async def test_unknown_and_revoked_tokens(auth):
    with pytest.raises(UnknownToken) as info:
        await auth.authenticate("mat_nope", client_ip="ip")
    assert "soft_logout" not in info.value.to_json()
    s = await auth.create_session("@u:x", device_id="A", display_name=None, want_refresh=True)
    requester = await auth.authenticate(s.access_token, client_ip="ip")
    await auth.logout(requester)
    with pytest.raises(UnknownToken):
        await auth.authenticate(s.access_token, client_ip="ip")
    with pytest.raises(UnknownToken):
        await auth.refresh(s.refresh_token)


async def test_login_errors_and_per_user_limit(auth, stores):
    ident = UserIdIdentifier("u")
    for _ in range(3):
        with pytest.raises(MatrixError) as info:
            await auth.login_with_password(
                ident, "wrong", device_id=None, display_name=None, want_refresh=False
            )
        assert (info.value.status, info.value.errcode) == (403, "M_FORBIDDEN")
    with pytest.raises(LimitExceeded):
        await auth.login_with_password(
            ident, "pw", device_id=None, display_name=None, want_refresh=False
        )
    await stores.users.create_user("@d:x", password_hash=None, created_ts=1)
    await stores.users.deactivate_user("@d:x")
    with pytest.raises(UserDeactivated):
        await auth.login_with_password(
            UserIdIdentifier("d"), "pw", device_id=None, display_name=None, want_refresh=False
        )


async def test_last_seen_is_written_in_batches(auth, stores, clock, autojump_clock):
    s = await auth.create_session("@u:x", device_id="A", display_name=None, want_refresh=False)
    for _ in range(50):
        await auth.authenticate(s.access_token, client_ip="10.0.0.1")
    assert (await stores.devices.get_device("@u:x", "A")).last_seen_ts is None
    async with trio.open_nursery() as nursery:
        await nursery.start(auth.run_last_seen_flusher)
        await trio.sleep(61)
        # On PostgreSQL the write runs on another thread, which the autojump clock cannot see
        # waiting: poll (each poll is a real database round trip).
        for _ in range(200):
            device = await stores.devices.get_device("@u:x", "A")
            if device.last_seen_ts is not None:
                break
            await trio.sleep(1)
        assert (device.last_seen_ts, device.last_seen_ip) == (clock.time_ms(), "10.0.0.1")
        clock.advance(5)
        await auth.authenticate(s.access_token, client_ip="10.0.0.2")
        nursery.cancel_scope.cancel()
    # flushed once more on the way out; on PostgreSQL the autojump clock may run out the
    # shutdown flush's 5 s bound while the write is on the database thread, so flush what is left
    await auth.flush_last_seen()
    assert (await stores.devices.get_device("@u:x", "A")).last_seen_ip == "10.0.0.2"


class CountingHasher(PasswordHasher):
    """Counts verifications, and which of them ran against no stored hash."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024)
        self.calls: list[bool] = []

    async def verify(self, password_hash: str | None, password: str) -> bool:
        self.calls.append(password_hash is None)
        return await super().verify(password_hash, password)


async def test_unknown_user_costs_the_same_password_check(stores, clock):
    hasher = CountingHasher()
    await stores.users.create_user("@u:x", password_hash=await hasher.hash("pw"), created_ts=1)
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
    for ident in (UserIdIdentifier("u"), UserIdIdentifier("nobody")):
        with pytest.raises(MatrixError) as info:
            await auth.login_with_password(
                ident, "wrong", device_id=None, display_name=None, want_refresh=False
            )
        assert (info.value.status, info.value.errcode) == (403, "M_FORBIDDEN")
    # one argon2 verification each: against the user's hash, then against the dummy hash
    assert hasher.calls == [False, True]
    assert await hasher.verify(None, "dummy password for timing") is False


async def test_token_cache_saves_reads_and_forgets_revoked_tokens(auth, stores, clock):
    lookups = 0
    real = stores.tokens.lookup_access

    async def counting(token_hash: str):  # type: ignore[no-untyped-def]
        nonlocal lookups
        lookups += 1
        return await real(token_hash)

    stores.tokens.lookup_access = counting  # type: ignore[method-assign]
    one = await auth.create_session("@u:x", device_id="ONE", display_name=None, want_refresh=False)
    two = await auth.create_session("@u:x", device_id="TWO", display_name=None, want_refresh=False)
    for _ in range(3):
        await auth.authenticate(one.access_token, client_ip="1.2.3.4")
    assert lookups == 1  # read once, then from memory

    # after the TTL the token is read again (a revocation by another process shows up)
    clock.advance(61.0)
    await auth.authenticate(one.access_token, client_ip="1.2.3.4")
    assert lookups == 2

    # logging a device out stops its cached token at once; other devices keep working
    await auth.authenticate(two.access_token, client_ip="1.2.3.4")
    requester = await auth.authenticate(one.access_token, client_ip="1.2.3.4")
    await auth.logout(requester)
    with pytest.raises(UnknownToken):
        await auth.authenticate(one.access_token, client_ip="1.2.3.4")
    assert (await auth.authenticate(two.access_token, client_ip="1.2.3.4")).device_id == "TWO"

    # a device deleted elsewhere in the process (the device store's deletion listeners)
    auth.devices_deleted("@u:x", ["TWO"])
    await stores.devices.delete_devices("@u:x", ["TWO"])
    with pytest.raises(UnknownToken):
        await auth.authenticate(two.access_token, client_ip="1.2.3.4")


async def test_refreshed_pair_retires_cached_predecessor(auth, clock):
    first = await auth.create_session("@u:x", device_id="D", display_name=None, want_refresh=True)
    await auth.authenticate(first.access_token, client_ip="1.2.3.4")  # now cached
    second = await auth.refresh(first.refresh_token)
    await auth.authenticate(second.access_token, client_ip="1.2.3.4")  # first use of new pair
    with pytest.raises(UnknownToken):
        await auth.authenticate(first.access_token, client_ip="1.2.3.4")

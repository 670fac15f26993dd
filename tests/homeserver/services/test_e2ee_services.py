"""The E2EE services over real stores: what /sync reads through E2eeSyncSource, and the
notifications each write sends."""

from __future__ import annotations

from collections.abc import Collection

import pytest

from homeserver.clock import FakeClock
from homeserver.config import RateLimit
from homeserver.errors import LimitExceeded
from homeserver.services.e2ee_sync import E2eeSyncSource
from homeserver.services.keys import KeyService
from homeserver.services.ratelimit import RateLimiter
from homeserver.services.requester import Requester
from homeserver.services.to_device import ToDeviceService
from homeserver.storage import Stores
from homeserver.streams import StreamName, StreamToken
from tests.e2ee._keys import ClientDevice, CrossSigning

ALICE, BOB = "@alice:test", "@bob:test"


class RecordingNotifier:
    def __init__(self) -> None:
        self.calls: list[tuple[StreamName, int, frozenset[str]]] = []

    def on_new_event(self, room_id: str, stream_ordering: int, user_ids: Collection[str]) -> None:
        raise AssertionError("not expected")

    def notify(self, stream, position, *, room_ids=(), user_ids=()) -> None:
        self.calls.append((stream, position, frozenset(user_ids)))


@pytest.fixture
async def world(stores: Stores):
    for user, devices in ((ALICE, ("A1", "A2")), (BOB, ("B1",))):
        await stores.users.create_user(user, password_hash=None, created_ts=1)
        for device in devices:
            await stores.devices.create_device(user, device)
    notifier = RecordingNotifier()
    clock = FakeClock()
    limiter = RateLimiter({"to_device": RateLimit(per_second=1.0, burst_count=3)}, clock)
    keys = KeyService(
        stores.e2ee_keys, stores.devices, stores.streams, notifier, server_name="test"
    )
    to_device = ToDeviceService(
        stores.to_device, notifier, limiter, clock, server_name="test", queue_limit=100
    )
    return E2eeSyncSource(keys, to_device), keys, to_device, notifier, clock


async def test_to_device_through_the_sync_source(world, stores: Stores):
    source, _, to_device, notifier, clock = world
    bob = Requester(BOB, "B1")
    for n in range(3):
        await to_device.send(bob, "m.test", f"t{n}", {ALICE: {"A1": {"n": n}}})
    positions = [pos for stream, pos, users in notifier.calls if stream is StreamName.TO_DEVICE]
    assert len(positions) == 3 and all(users == {ALICE} for _, _, users in notifier.calls)
    now = await stores.streams.current_position(StreamName.TO_DEVICE)
    messages, reached = await source.to_device_messages(ALICE, "A1", 0, now, limit=2)
    assert [m["content"]["n"] for m in messages] == [0, 1] and reached == positions[1]
    messages, reached = await source.to_device_messages(ALICE, "A1", reached, now)
    assert [m["content"]["n"] for m in messages] == [2] and reached == now
    # not acknowledged yet: a sync from the same since token gets them again
    again, _ = await source.to_device_messages(ALICE, "A1", 0, now)
    assert len(again) == 3
    await source.ack_to_device(ALICE, "A1", positions[1])
    left, _ = await source.to_device_messages(ALICE, "A1", 0, now)
    assert [m["content"]["n"] for m in left] == [2]
    # the sender's rate limit (burst 3, then one per second)
    with pytest.raises(LimitExceeded):
        await to_device.send(bob, "m.test", "t9", {ALICE: {"A1": {}}})
    clock.advance(1.0)
    await to_device.send(bob, "m.test", "t9", {ALICE: {"A1": {}}})


async def test_counts_and_device_list_notifications(world, stores: Stores):
    source, keys, _, notifier, _ = world
    device = ClientDevice(ALICE, "A1")
    counts = await keys.upload(
        Requester(ALICE, "A1"),
        {
            "device_keys": device.device_keys(),
            "one_time_keys": device.one_time_keys(2),
            "fallback_keys": device.fallback_key(),
        },
    )
    assert counts == {"signed_curve25519": 2}
    assert await source.one_time_key_counts(ALICE, "A1") == {"signed_curve25519": 2}
    assert await source.one_time_key_counts(ALICE, "A2") == {"signed_curve25519": 0}
    assert await source.unused_fallback_key_types(ALICE, "A1") == ["signed_curve25519"]
    (call,) = notifier.calls
    assert call[0] is StreamName.DEVICE_LISTS and ALICE in call[2]
    # a cross-signing upload notifies too, and shows up as the user's own change
    start = StreamToken().advance(StreamName.DEVICE_LISTS, call[1])
    await keys.upload_cross_signing_keys(Requester(ALICE, "A1"), CrossSigning(ALICE).upload_body())
    assert notifier.calls[-1][0] is StreamName.DEVICE_LISTS
    end = await stores.streams.current_token()
    changed, left = await source.device_list_changes(ALICE, start, end)
    assert changed == {ALICE} and left == set()

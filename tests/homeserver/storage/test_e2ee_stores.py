"""E2EE stores on every backend: keys and the atomic claim, to-device queues, key backup."""

from __future__ import annotations

import pytest
import trio

from e2ee.errors import KeyConflict
from e2ee.models import KeyBackupData
from homeserver.storage import Stores
from homeserver.storage.e2ee_keys import KeyUpload
from homeserver.storage.key_backup import BackupVersionNotFound, WrongBackupVersion
from homeserver.streams import StreamName

ALICE, BOB = "@alice:test", "@bob:test"


async def _device(stores: Stores, user_id: str, *device_ids: str) -> None:
    if await stores.users.get_user(user_id) is None:
        await stores.users.create_user(user_id, password_hash=None, created_ts=1)
    for device_id in device_ids:
        await stores.devices.create_device(user_id, device_id)


def _otks(n: int, prefix: str = "K") -> list[KeyUpload]:
    return [
        KeyUpload("signed_curve25519", f"{prefix}{i:03d}", f'{{"key":"{prefix}{i}"}}')
        for i in range(n)
    ]


async def test_upload_counts_and_device_list_change(stores: Stores):
    await _device(stores, ALICE, "D1")
    before = await stores.streams.current_position(StreamName.DEVICE_LISTS)
    out = await stores.e2ee_keys.upload(
        ALICE, "D1", device_keys_json='{"a":1}', one_time_keys=_otks(3), fallback_keys=[]
    )
    assert out.one_time_key_counts == {"signed_curve25519": 3}
    assert out.device_list_position is not None and out.device_list_position > before
    # the same upload again changes nothing: no new device-list position, no duplicate keys
    again = await stores.e2ee_keys.upload(
        ALICE, "D1", device_keys_json='{"a":1}', one_time_keys=_otks(3), fallback_keys=[]
    )
    assert again == type(again)({"signed_curve25519": 3}, None)
    stored = await stores.e2ee_keys.device_keys({ALICE: None})
    assert stored[ALICE]["D1"].keys == {"a": 1}


async def test_one_time_key_id_reused_with_other_content_is_refused(stores: Stores):
    await _device(stores, ALICE, "D1")
    await stores.e2ee_keys.upload(
        ALICE, "D1", device_keys_json=None, one_time_keys=_otks(1), fallback_keys=[]
    )
    with pytest.raises(KeyConflict):
        await stores.e2ee_keys.upload(
            ALICE,
            "D1",
            device_keys_json='{"a":1}',
            one_time_keys=[
                *_otks(1, "NEW"),
                KeyUpload("signed_curve25519", "K000", '{"key":"other"}'),
            ],
            fallback_keys=[],
        )
    # nothing of the refused upload was stored
    assert await stores.e2ee_keys.one_time_key_counts(ALICE, "D1") == {"signed_curve25519": 1}
    assert (await stores.e2ee_keys.device_keys({ALICE: None}))[ALICE] == {}


async def test_concurrent_claims_never_hand_out_a_key_twice(stores: Stores):
    await _device(stores, ALICE, "D1")
    await stores.e2ee_keys.upload(
        ALICE,
        "D1",
        device_keys_json=None,
        one_time_keys=_otks(20),
        fallback_keys=[KeyUpload("signed_curve25519", "FB", '{"key":"fallback"}')],
    )
    claimed = []

    async def claim() -> None:
        claimed.extend(await stores.e2ee_keys.claim([(ALICE, "D1", "signed_curve25519")]))

    async with trio.open_nursery() as nursery:
        for _ in range(30):
            nursery.start_soon(claim)
    one_time = [c.full_key_id for c in claimed if not c.fallback]
    assert len(claimed) == 30
    assert sorted(one_time) == sorted(f"signed_curve25519:K{i:03d}" for i in range(20))
    assert [c.full_key_id for c in claimed if c.fallback] == ["signed_curve25519:FB"] * 10
    assert await stores.e2ee_keys.one_time_key_counts(ALICE, "D1") == {}
    assert await stores.e2ee_keys.unused_fallback_key_types(ALICE, "D1") == []


async def test_fallback_keys_used_flag(stores: Stores):
    await _device(stores, ALICE, "D1")
    fb = [KeyUpload("signed_curve25519", "FB1", '{"key":"1"}')]
    await stores.e2ee_keys.upload(
        ALICE, "D1", device_keys_json=None, one_time_keys=[], fallback_keys=fb
    )
    assert await stores.e2ee_keys.unused_fallback_key_types(ALICE, "D1") == ["signed_curve25519"]
    (key,) = await stores.e2ee_keys.claim([(ALICE, "D1", "signed_curve25519")])
    assert key.fallback and key.value == {"key": "1"}
    assert await stores.e2ee_keys.unused_fallback_key_types(ALICE, "D1") == []
    # the same key again stays used; a new one is unused
    await stores.e2ee_keys.upload(
        ALICE, "D1", device_keys_json=None, one_time_keys=[], fallback_keys=fb
    )
    assert await stores.e2ee_keys.unused_fallback_key_types(ALICE, "D1") == []
    await stores.e2ee_keys.upload(
        ALICE,
        "D1",
        device_keys_json=None,
        one_time_keys=[],
        fallback_keys=[KeyUpload("signed_curve25519", "FB2", '{"key":"2"}')],
    )
    assert await stores.e2ee_keys.unused_fallback_key_types(ALICE, "D1") == ["signed_curve25519"]
    assert await stores.e2ee_keys.claim([(ALICE, "NOPE", "signed_curve25519")]) == []


async def test_deleting_a_device_drops_its_keys_and_queue(stores: Stores):
    await _device(stores, ALICE, "D1", "D2")
    await _device(stores, BOB, "B1")
    await stores.e2ee_keys.upload(
        ALICE, "D1", device_keys_json='{"a":1}', one_time_keys=_otks(2), fallback_keys=[]
    )
    await stores.to_device.send(
        BOB,
        "B1",
        "t1",
        "m.test",
        {ALICE: {"*": {"n": 1}}},
        now_ms=1,
        txn_lifetime_ms=10,
        max_pending=10,
    )
    await stores.devices.delete_devices(ALICE, ["D1"])
    assert (await stores.e2ee_keys.device_keys({ALICE: ["D1"]}))[ALICE] == {}
    assert await stores.e2ee_keys.one_time_key_counts(ALICE, "D1") == {}
    assert await stores.to_device.pending_count(ALICE, "D1", 10) == 0
    assert await stores.to_device.pending_count(ALICE, "D2", 10) == 1


async def test_to_device_order_limit_ack_idempotency_and_bound(stores: Stores):
    await _device(stores, ALICE, "D1", "D2")
    await _device(stores, BOB, "B1")

    async def send(txn: str, messages, max_pending=3):
        return await stores.to_device.send(
            BOB,
            "B1",
            txn,
            "m.test",
            messages,
            now_ms=1000,
            txn_lifetime_ms=100,
            max_pending=max_pending,
        )

    first = await send("t1", {ALICE: {"D1": {"n": 1}, "*": {"n": 0}, "GONE": {"n": 9}}})
    assert first.position is not None and first.recipients == {ALICE}
    assert (await send("t1", {ALICE: {"D1": {"n": 99}}})).duplicate
    second = await send("t2", {ALICE: {"D1": {"n": 2}}})
    third = await send("t3", {ALICE: {"D1": {"n": 3}}})
    full = await send("t4", {ALICE: {"D1": {"n": 4}, "D2": {"n": 4}}})
    assert full.dropped == ((ALICE, "D1"),) and full.position is not None
    up_to = await stores.streams.current_position(StreamName.TO_DEVICE)

    msgs, reached = await stores.to_device.messages(ALICE, "D1", 0, up_to, limit=100)
    assert [m["content"]["n"] for m in msgs] == [1, 2, 3]
    assert msgs[0] == {"type": "m.test", "sender": BOB, "content": {"n": 1}}
    assert reached == up_to
    msgs, reached = await stores.to_device.messages(ALICE, "D1", 0, up_to, limit=2)
    assert [m["content"]["n"] for m in msgs] == [1, 2] and reached == second.position
    d2, _ = await stores.to_device.messages(ALICE, "D2", 0, up_to, limit=10)
    assert [m["content"]["n"] for m in d2] == [0, 4]
    # acknowledged messages are deleted; later ones stay
    await stores.to_device.delete_up_to(ALICE, "D1", second.position)
    msgs, _ = await stores.to_device.messages(ALICE, "D1", 0, up_to, limit=100)
    assert [m["content"]["n"] for m in msgs] == [3]
    assert third.position is not None
    # an expired transaction ID may be used again
    again = await stores.to_device.send(
        BOB,
        "B1",
        "t1",
        "m.test",
        {ALICE: {"D2": {"n": 5}}},
        now_ms=5000,
        txn_lifetime_ms=100,
        max_pending=3,
    )
    assert not again.duplicate and again.position is not None


async def test_key_backup_versions_and_keys(stores: Stores):
    await _device(stores, ALICE)
    kb = stores.key_backup
    assert await kb.get_version(ALICE, None) is None
    with pytest.raises(BackupVersionNotFound):
        await kb.put_keys(ALICE, 1, [])
    v1 = await kb.create_version(ALICE, "alg", {"public_key": "a"})
    v2 = await kb.create_version(ALICE, "alg", {"public_key": "b"})
    assert (v1, v2) == (1, 2)
    with pytest.raises(WrongBackupVersion) as wrong:
        await kb.put_keys(ALICE, v1, [])
    assert wrong.value.current_version == 2
    etag, count = await kb.put_keys(ALICE, v2, [("!r", "s1", KeyBackupData(5, 0, False, {"d": 1}))])
    assert count == 1
    # a worse key is not taken and does not change the etag; a better one is and does
    assert await kb.put_keys(ALICE, v2, [("!r", "s1", KeyBackupData(9, 0, False, {"d": 2}))]) == (
        etag,
        1,
    )
    etag2, _ = await kb.put_keys(ALICE, v2, [("!r", "s1", KeyBackupData(1, 0, False, {"d": 3}))])
    assert etag2 != etag
    (row,) = await kb.get_keys(ALICE, v2, "!r", "s1")
    assert row.data.session_data == {"d": 3}
    current = await kb.get_version(ALICE, None)
    assert current is not None and current.count == 1
    assert await kb.get_version(BOB, None) is None
    assert await kb.delete_version(ALICE, v2)
    assert not await kb.delete_version(ALICE, v2)
    current = await kb.get_version(ALICE, None)
    assert current is not None and current.version == 1
    with pytest.raises(BackupVersionNotFound):
        await kb.get_keys(ALICE, v2)
    assert await kb.create_version(ALICE, "alg", {}) == 3  # numbers are never reused

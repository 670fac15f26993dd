"""E2EE keys: device keys, one-time and fallback keys, cross-signing keys and signatures, and
the queries behind device-list tracking.

Design notes (docs/discussion/e2ee.md has the long form):

- Keys are stored as the canonical JSON of what was uploaded. Signatures are made over the
  canonical form, so this is byte-for-byte what every signature covers, and comparing two
  uploads ("is this the same one-time key?") is comparing bytes.
- **Claiming a one-time key is one statement**: ``DELETE ... WHERE key_id = (SELECT ... LIMIT 1)
  RETURNING``. A key is handed out only by the transaction whose ``DELETE`` removed its row, so
  no key goes out twice. Under PostgreSQL's READ COMMITTED two claims can pick the same row; the
  one that waited finds it gone and deletes nothing, and then tries again with a fresh snapshot
  while unclaimed keys remain. SQLite runs write transactions one at a time.
- Every change other users must re-fetch keys for (new or changed device keys, cross-signing
  keys, signatures) writes a row to ``device_list_changes`` at a new ``DEVICE_LISTS`` position in
  the same transaction, allocated last (``stream_ids.py``). Cross-signing changes use the public
  key, and signatures the signed key ID, in the ``device_id`` column; a user-signing key's
  change is marked for its owner only (:data:`OWN_ONLY_CHANGE_PREFIX`).
- Device-list tracking reads the room tables (``current_state``, ``events``) with its own
  queries: who shares a joined room with a user, and the membership events of a range.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    and_,
    bindparam,
    delete,
    false,
    func,
    insert,
    or_,
    select,
    text,
    update,
)

from e2ee.errors import KeyConflict
from homeserver.storage.db import Conn, Database
from homeserver.storage.schema import (
    current_state,
    device_list_changes,
    devices,
    e2e_cross_signing_keys,
    e2e_cross_signing_signatures,
    e2e_device_keys,
    e2e_fallback_keys,
    e2e_one_time_keys,
    events,
)
from homeserver.storage.stream_ids import next_positions
from homeserver.streams import StreamName

__all__ = [
    "ClaimedKey",
    "DeviceListInputs",
    "E2eeKeyStore",
    "KeyUpload",
    "SignatureRow",
    "StoredDeviceKeys",
    "UploadOutcome",
]

#: How often a claim retries after a concurrent claim took the key it picked (bounded so a
#: broken database cannot loop forever; each retry means another claim made progress).
_MAX_CLAIM_ATTEMPTS = 1000

_MEMBER = "m.room.member"


@dataclass(frozen=True, slots=True)
class KeyUpload:
    """A one-time or fallback key to store: ``algorithm:key_id`` → canonical JSON value."""

    algorithm: str
    key_id: str
    key_json: str


@dataclass(frozen=True, slots=True)
class UploadOutcome:
    """What ``/keys/upload`` stored."""

    #: unclaimed one-time keys per algorithm after the upload
    one_time_key_counts: dict[str, int]
    #: the DEVICE_LISTS position if the device keys are new or changed, else None
    device_list_position: int | None


@dataclass(frozen=True, slots=True)
class StoredDeviceKeys:
    """A device's keys as stored, with the display name others see (``unsigned``)."""

    user_id: str
    device_id: str
    keys: dict[str, Any]
    display_name: str | None


@dataclass(frozen=True, slots=True)
class ClaimedKey:
    """A claimed one-time key, or a fallback key (``fallback``)."""

    user_id: str
    device_id: str
    full_key_id: str
    value: Any
    fallback: bool


@dataclass(frozen=True, slots=True)
class SignatureRow:
    """A stored cross-signing signature on ``target_key_id`` of its target user."""

    target_key_id: str
    signer_user_id: str
    signer_key_id: str
    signature: str


@dataclass(frozen=True, slots=True)
class DeviceListInputs:
    """What :func:`e2ee.device_lists.device_list_delta` needs, read in one snapshot."""

    devices_changed: set[str]
    #: ``(room_id, user_id, membership)`` in stream order
    membership_changes: list[tuple[str, str, str]]
    rooms_now: set[str]
    members_now: dict[str, set[str]]
    sharing_now: set[str]


# --- statements ----------------------------------------------------------------------------------


def _is_device(table: Any) -> Any:
    return and_(
        table.c.user_id == bindparam("user_id"), table.c.device_id == bindparam("device_id")
    )


_GET_DEVICE_KEYS_JSON = select(e2e_device_keys.c.key_json).where(_is_device(e2e_device_keys))
_UPSERT_DEVICE_KEYS = text(
    "INSERT INTO e2e_device_keys (user_id, device_id, key_json) "
    "VALUES (:user_id, :device_id, :key_json) "
    "ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = excluded.key_json"
)
_USER_DEVICE_KEYS = (
    select(e2e_device_keys.c.device_id, e2e_device_keys.c.key_json, devices.c.display_name)
    .select_from(
        e2e_device_keys.outerjoin(
            devices,
            and_(
                devices.c.user_id == e2e_device_keys.c.user_id,
                devices.c.device_id == e2e_device_keys.c.device_id,
            ),
        )
    )
    .where(e2e_device_keys.c.user_id == bindparam("user_id"))
    .order_by(e2e_device_keys.c.device_id)
)
_ONE_DEVICE_KEYS = (
    select(e2e_device_keys.c.key_json, devices.c.display_name)
    .select_from(
        e2e_device_keys.outerjoin(
            devices,
            and_(
                devices.c.user_id == e2e_device_keys.c.user_id,
                devices.c.device_id == e2e_device_keys.c.device_id,
            ),
        )
    )
    .where(_is_device(e2e_device_keys))
)

_GET_OTK = select(e2e_one_time_keys.c.key_json).where(
    and_(
        _is_device(e2e_one_time_keys),
        e2e_one_time_keys.c.algorithm == bindparam("algorithm"),
        e2e_one_time_keys.c.key_id == bindparam("key_id"),
    )
)
_INSERT_OTK = insert(e2e_one_time_keys).values(
    user_id=bindparam("user_id"),
    device_id=bindparam("device_id"),
    algorithm=bindparam("algorithm"),
    key_id=bindparam("key_id"),
    key_json=bindparam("key_json"),
)
_OTK_COUNTS = (
    select(e2e_one_time_keys.c.algorithm, func.count())
    .where(_is_device(e2e_one_time_keys))
    .group_by(e2e_one_time_keys.c.algorithm)
)
# The atomic claim (see the module docstring). The same SQL runs on both databases.
_CLAIM_OTK = text(
    "DELETE FROM e2e_one_time_keys "
    "WHERE user_id = :user_id AND device_id = :device_id AND algorithm = :algorithm "
    "AND key_id = (SELECT key_id FROM e2e_one_time_keys "
    "WHERE user_id = :user_id AND device_id = :device_id AND algorithm = :algorithm "
    "ORDER BY key_id LIMIT 1) "
    "RETURNING key_id, key_json"
)
_ANY_OTK = (
    select(e2e_one_time_keys.c.key_id)
    .where(
        and_(_is_device(e2e_one_time_keys), e2e_one_time_keys.c.algorithm == bindparam("algorithm"))
    )
    .limit(1)
)

_GET_FALLBACK = select(
    e2e_fallback_keys.c.key_id, e2e_fallback_keys.c.key_json, e2e_fallback_keys.c.used
).where(
    and_(_is_device(e2e_fallback_keys), e2e_fallback_keys.c.algorithm == bindparam("algorithm"))
)
_UPSERT_FALLBACK = text(
    "INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id, key_json, used) "
    "VALUES (:user_id, :device_id, :algorithm, :key_id, :key_json, :used) "
    "ON CONFLICT (user_id, device_id, algorithm) DO UPDATE SET "
    "key_id = excluded.key_id, key_json = excluded.key_json, used = excluded.used"
)
_MARK_FALLBACK_USED = (
    update(e2e_fallback_keys)
    .where(
        and_(_is_device(e2e_fallback_keys), e2e_fallback_keys.c.algorithm == bindparam("algorithm"))
    )
    .values(used=bindparam("used"))
)
_UNUSED_FALLBACK = (
    select(e2e_fallback_keys.c.algorithm)
    .where(and_(_is_device(e2e_fallback_keys), e2e_fallback_keys.c.used == false()))
    .order_by(e2e_fallback_keys.c.algorithm)
)

_CSK_OF_USER = select(
    e2e_cross_signing_keys.c.usage,
    e2e_cross_signing_keys.c.public_key,
    e2e_cross_signing_keys.c.key_json,
).where(e2e_cross_signing_keys.c.user_id == bindparam("user_id"))
_UPSERT_CSK = text(
    "INSERT INTO e2e_cross_signing_keys (user_id, usage, public_key, key_json) "
    "VALUES (:user_id, :usage, :public_key, :key_json) "
    "ON CONFLICT (user_id, usage) DO UPDATE SET "
    "public_key = excluded.public_key, key_json = excluded.key_json"
)
_DELETE_SIGS_BY = delete(e2e_cross_signing_signatures).where(
    and_(
        e2e_cross_signing_signatures.c.signer_user_id == bindparam("user_id"),
        e2e_cross_signing_signatures.c.signer_key_id == bindparam("key_id"),
    )
)
_DELETE_SIGS_ON = delete(e2e_cross_signing_signatures).where(
    and_(
        e2e_cross_signing_signatures.c.target_user_id == bindparam("user_id"),
        e2e_cross_signing_signatures.c.target_key_id == bindparam("key_id"),
    )
)
_SIGS_ON_USER = select(
    e2e_cross_signing_signatures.c.target_key_id,
    e2e_cross_signing_signatures.c.signer_user_id,
    e2e_cross_signing_signatures.c.signer_key_id,
    e2e_cross_signing_signatures.c.signature,
).where(e2e_cross_signing_signatures.c.target_user_id == bindparam("user_id"))
_UPSERT_SIG = text(
    "INSERT INTO e2e_cross_signing_signatures "
    "(target_user_id, target_key_id, signer_user_id, signer_key_id, signature) "
    "VALUES (:target_user_id, :target_key_id, :signer_user_id, :signer_key_id, :signature) "
    "ON CONFLICT (target_user_id, target_key_id, signer_user_id, signer_key_id) "
    "DO UPDATE SET signature = excluded.signature"
)

#: The ``device_id`` of a change only the user's own devices are told of: a new user-signing
#: key (it signs other users' keys and is shown to no one else, so others have nothing to
#: re-fetch; Synapse likewise tells only the owner). Never a device ID or a public key in
#: practice: no client makes a device ID with this prefix, and base64 has no ``:``.
OWN_ONLY_CHANGE_PREFIX = "m.user_signing_key:"

_RECORD_CHANGE = insert(device_list_changes).values(
    stream_id=bindparam("stream_id"), user_id=bindparam("user_id"), device_id=bindparam("device_id")
)

# --- device-list tracking: rooms and memberships

_a = current_state.alias("a")
_b = current_state.alias("b")
_ROOMS_OF = select(current_state.c.room_id).where(
    and_(
        current_state.c.type == _MEMBER,
        current_state.c.state_key == bindparam("user_id"),
        current_state.c.membership == "join",
    )
)
_SHARING = (
    select(_b.c.state_key)
    .distinct()
    .select_from(_a.join(_b, _a.c.room_id == _b.c.room_id))
    .where(
        and_(
            _a.c.type == _MEMBER,
            _a.c.state_key == bindparam("user_id"),
            _a.c.membership == "join",
            _b.c.type == _MEMBER,
            _b.c.membership == "join",
        )
    )
)
_JOINED_MEMBERS = select(current_state.c.state_key).where(
    and_(
        current_state.c.room_id == bindparam("room_id"),
        current_state.c.type == _MEMBER,
        current_state.c.membership == "join",
    )
)
_DEVICES_CHANGED = (
    select(device_list_changes.c.user_id)
    .distinct()
    .where(
        and_(
            device_list_changes.c.stream_id > bindparam("from_pos", type_=BigInteger),
            device_list_changes.c.stream_id <= bindparam("to_pos", type_=BigInteger),
            or_(
                device_list_changes.c.user_id == bindparam("user_id"),
                and_(
                    device_list_changes.c.user_id.in_(_SHARING),
                    ~device_list_changes.c.device_id.startswith(
                        OWN_ONLY_CHANGE_PREFIX, autoescape=True
                    ),
                ),
            ),
        )
    )
)
_mine = current_state.alias("mine")
# Membership events of the range in rooms the user is or was in (current_state keeps a row for
# every room the user ever had a membership in: join, leave, ban, invite).
_MEMBERSHIP_EVENTS = (
    select(events.c.room_id, events.c.state_key, events.c.json)
    .select_from(
        events.join(
            _mine,
            and_(
                _mine.c.room_id == events.c.room_id,
                _mine.c.type == _MEMBER,
                _mine.c.state_key == bindparam("user_id"),
            ),
        )
    )
    .where(
        and_(
            events.c.type == _MEMBER,
            events.c.stream_ordering > bindparam("from_pos", type_=BigInteger),
            events.c.stream_ordering <= bindparam("to_pos", type_=BigInteger),
            events.c.outlier == false(),
            events.c.rejected_reason.is_(None),
        )
    )
    .order_by(events.c.stream_ordering)
)


def _loads(value: str) -> Any:
    return orjson.loads(value)


async def _record_changes(conn: Conn, changes: Sequence[tuple[str, str]]) -> int:
    """One DEVICE_LISTS position per ``(user_id, device_id)`` change; return the newest."""
    positions = await next_positions(conn, StreamName.DEVICE_LISTS, len(changes))
    await conn.execute_many(
        _RECORD_CHANGE,
        [
            {"stream_id": pos, "user_id": user_id, "device_id": device_id}
            for pos, (user_id, device_id) in zip(positions, changes, strict=True)
        ],
    )
    return positions[-1]


async def _otk_counts(conn: Conn, user_id: str, device_id: str) -> dict[str, int]:
    rows = await conn.fetch_all(_OTK_COUNTS, {"user_id": user_id, "device_id": device_id})
    return {str(algorithm): int(count) for algorithm, count in rows}


async def _sharing(conn: Conn, user_id: str) -> set[str]:
    return {str(u) for (u,) in await conn.fetch_all(_SHARING, {"user_id": user_id})}


class E2eeKeyStore:
    """Device, one-time, fallback and cross-signing keys, and device-list queries."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # --- upload ---------------------------------------------------------------------------------

    async def upload(
        self,
        user_id: str,
        device_id: str,
        *,
        device_keys_json: str | None,
        one_time_keys: Sequence[KeyUpload],
        fallback_keys: Sequence[KeyUpload],
    ) -> UploadOutcome:
        """Store a ``/keys/upload`` in one transaction.

        One-time keys already stored with the same content are skipped (clients retry uploads);
        a fallback key replaces the algorithm's previous one and is unused, unless it is the
        same key again (then its ``used`` flag stays).

        Raises:
            KeyConflict: a one-time key ID is stored with different content (nothing is stored).
        """
        base = {"user_id": user_id, "device_id": device_id}

        async def work(conn: Conn) -> UploadOutcome:
            for key in one_time_keys:
                params = {**base, "algorithm": key.algorithm, "key_id": key.key_id}
                stored = await conn.fetch_val(_GET_OTK, params)
                if stored is None:
                    await conn.execute(_INSERT_OTK, {**params, "key_json": key.key_json})
                elif stored != key.key_json:
                    raise KeyConflict(
                        f"one-time key {key.algorithm}:{key.key_id} already exists "
                        "with different content"
                    )
            for key in fallback_keys:
                params = {**base, "algorithm": key.algorithm}
                row = await conn.fetch_one(_GET_FALLBACK, params)
                same = row is not None and row[0] == key.key_id and row[1] == key.key_json
                if not same:
                    await conn.execute(
                        _UPSERT_FALLBACK,
                        {**params, "key_id": key.key_id, "key_json": key.key_json, "used": False},
                    )
            position = None
            if device_keys_json is not None:
                stored = await conn.fetch_val(_GET_DEVICE_KEYS_JSON, base)
                if stored != device_keys_json:
                    await conn.execute(_UPSERT_DEVICE_KEYS, {**base, "key_json": device_keys_json})
                    position = await _record_changes(conn, [(user_id, device_id)])
            return UploadOutcome(await _otk_counts(conn, user_id, device_id), position)

        return await self._db.run(work, name="upload_e2e_keys")

    async def one_time_key_counts(self, user_id: str, device_id: str) -> dict[str, int]:
        """Unclaimed one-time keys of the device per algorithm."""

        async def work(conn: Conn) -> dict[str, int]:
            return await _otk_counts(conn, user_id, device_id)

        return await self._db.read(work, name="one_time_key_counts")

    async def unused_fallback_key_types(self, user_id: str, device_id: str) -> list[str]:
        """Algorithms for which the device has a fallback key that was not handed out yet."""

        async def work(conn: Conn) -> list[str]:
            rows = await conn.fetch_all(
                _UNUSED_FALLBACK, {"user_id": user_id, "device_id": device_id}
            )
            return [str(a) for (a,) in rows]

        return await self._db.read(work, name="unused_fallback_key_types")

    # --- query ----------------------------------------------------------------------------------

    async def device_keys(
        self, wanted: Mapping[str, Sequence[str] | None]
    ) -> dict[str, dict[str, StoredDeviceKeys]]:
        """Uploaded device keys: for each user, the listed devices (None: all of them).

        Devices without uploaded keys are left out.
        """

        async def work(conn: Conn) -> dict[str, dict[str, StoredDeviceKeys]]:
            out: dict[str, dict[str, StoredDeviceKeys]] = {}
            for user_id, device_ids in wanted.items():
                found: dict[str, StoredDeviceKeys] = {}
                if device_ids is None:
                    for device_id, key_json, name in await conn.fetch_all(
                        _USER_DEVICE_KEYS, {"user_id": user_id}
                    ):
                        found[device_id] = StoredDeviceKeys(
                            user_id, device_id, _loads(key_json), name
                        )
                else:
                    for device_id in dict.fromkeys(device_ids):
                        row = await conn.fetch_one(
                            _ONE_DEVICE_KEYS, {"user_id": user_id, "device_id": device_id}
                        )
                        if row is not None:
                            found[device_id] = StoredDeviceKeys(
                                user_id, device_id, _loads(row[0]), row[1]
                            )
                out[user_id] = found
            return out

        return await self._db.read(work, name="get_device_keys")

    async def cross_signing_keys(self, user_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """``{user_id: {usage: key JSON}}`` for users with cross-signing keys."""
        users = list(dict.fromkeys(user_ids))

        async def work(conn: Conn) -> dict[str, dict[str, Any]]:
            out: dict[str, dict[str, Any]] = {}
            for user_id in users:
                rows = await conn.fetch_all(_CSK_OF_USER, {"user_id": user_id})
                if rows:
                    out[user_id] = {str(usage): _loads(key_json) for usage, _, key_json in rows}
            return out

        return await self._db.read(work, name="get_cross_signing_keys")

    async def signatures_on(self, user_ids: Iterable[str]) -> dict[str, list[SignatureRow]]:
        """The uploaded signatures on each user's devices and master key."""
        users = list(dict.fromkeys(user_ids))

        async def work(conn: Conn) -> dict[str, list[SignatureRow]]:
            out: dict[str, list[SignatureRow]] = {}
            for user_id in users:
                rows = await conn.fetch_all(_SIGS_ON_USER, {"user_id": user_id})
                if rows:
                    out[user_id] = [SignatureRow(*r) for r in rows]
            return out

        return await self._db.read(work, name="get_cross_signing_signatures")

    # --- claim ----------------------------------------------------------------------------------

    async def claim(self, wanted: Sequence[tuple[str, str, str]]) -> list[ClaimedKey]:
        """Claim one key per ``(user_id, device_id, algorithm)``: a one-time key if one is
        left (deleting it), else the fallback key (marking it used). Devices with neither are
        left out.
        """

        async def work(conn: Conn) -> list[ClaimedKey]:
            out: list[ClaimedKey] = []
            for user_id, device_id, algorithm in dict.fromkeys(wanted):
                params = {"user_id": user_id, "device_id": device_id, "algorithm": algorithm}
                claimed = await _claim_one_time_key(conn, params)
                if claimed is not None:
                    key_id, key_json = claimed
                    out.append(
                        ClaimedKey(
                            user_id, device_id, f"{algorithm}:{key_id}", _loads(key_json), False
                        )
                    )
                    continue
                row = await conn.fetch_one(_GET_FALLBACK, params)
                if row is not None:
                    if not row[2]:
                        await conn.execute(_MARK_FALLBACK_USED, {**params, "used": True})
                    out.append(
                        ClaimedKey(
                            user_id, device_id, f"{algorithm}:{row[0]}", _loads(row[1]), True
                        )
                    )
            return out

        return await self._db.run(work, name="claim_e2e_keys")

    # --- cross-signing --------------------------------------------------------------------------

    async def set_cross_signing_keys(
        self, user_id: str, keys: Sequence[tuple[str, str, str]]
    ) -> int | None:
        """Store ``(usage, public_key, key_json)`` keys of ``user_id``.

        A replaced key's signatures (made by it, and on it) are deleted. Every changed key
        records a device-list change; a user-signing key's is for the owner only
        (:data:`OWN_ONLY_CHANGE_PREFIX`).

        Returns:
            The DEVICE_LISTS position of the last change, or None if nothing changed.
        """

        async def work(conn: Conn) -> int | None:
            current = {
                str(usage): (str(pub), str(kj))
                for usage, pub, kj in await conn.fetch_all(_CSK_OF_USER, {"user_id": user_id})
            }
            changes: list[tuple[str, str]] = []
            for usage, public_key, key_json in keys:
                old = current.get(usage)
                if old == (public_key, key_json):
                    continue
                if old is not None and old[0] != public_key:
                    await conn.execute(
                        _DELETE_SIGS_BY, {"user_id": user_id, "key_id": f"ed25519:{old[0]}"}
                    )
                    await conn.execute(_DELETE_SIGS_ON, {"user_id": user_id, "key_id": old[0]})
                await conn.execute(
                    _UPSERT_CSK,
                    {
                        "user_id": user_id,
                        "usage": usage,
                        "public_key": public_key,
                        "key_json": key_json,
                    },
                )
                if usage == "user_signing":
                    changes.append((user_id, OWN_ONLY_CHANGE_PREFIX + public_key))
                else:
                    changes.append((user_id, public_key))
            if not changes:
                return None
            return await _record_changes(conn, changes)

        return await self._db.run(work, name="set_cross_signing_keys")

    async def add_signatures(
        self,
        signatures: Sequence[tuple[str, str, str, str, str]],
        changes: Sequence[tuple[str, str]],
    ) -> int | None:
        """Store ``(target_user_id, target_key_id, signer_user_id, signer_key_id, signature)``
        and record the device-list ``changes`` ``(user_id, key_id)`` they cause.

        Returns:
            The DEVICE_LISTS position of the last change, or None if there was nothing to store.
        """
        if not signatures:
            return None

        async def work(conn: Conn) -> int | None:
            await conn.execute_many(
                _UPSERT_SIG,
                [
                    {
                        "target_user_id": t_user,
                        "target_key_id": t_key,
                        "signer_user_id": s_user,
                        "signer_key_id": s_key,
                        "signature": sig,
                    }
                    for t_user, t_key, s_user, s_key, sig in signatures
                ],
            )
            unique = list(dict.fromkeys(changes))
            return await _record_changes(conn, unique) if unique else None

        return await self._db.run(work, name="add_cross_signing_signatures")

    # --- device-list tracking -------------------------------------------------------------------

    async def users_sharing_room(self, user_id: str) -> set[str]:
        """Users in a joined room with ``user_id`` now (``user_id`` too, if in any room)."""

        async def work(conn: Conn) -> set[str]:
            return await _sharing(conn, user_id)

        return await self._db.read(work, name="users_sharing_room")

    async def device_list_inputs(
        self, user_id: str, *, device_lists: tuple[int, int], events_range: tuple[int, int]
    ) -> DeviceListInputs:
        """What changed for ``user_id`` in ``(from, to]`` of DEVICE_LISTS and EVENTS."""

        async def work(conn: Conn) -> DeviceListInputs:
            sharing = await _sharing(conn, user_id)
            devices_changed: set[str] = set()
            if device_lists[1] > device_lists[0]:
                rows = await conn.fetch_all(
                    _DEVICES_CHANGED,
                    {"user_id": user_id, "from_pos": device_lists[0], "to_pos": device_lists[1]},
                )
                devices_changed = {str(u) for (u,) in rows}
            changes: list[tuple[str, str, str]] = []
            if events_range[1] > events_range[0]:
                for room_id, state_key, event_json in await conn.fetch_all(
                    _MEMBERSHIP_EVENTS,
                    {"user_id": user_id, "from_pos": events_range[0], "to_pos": events_range[1]},
                ):
                    membership = _membership_of(event_json)
                    if membership is not None and state_key is not None:
                        changes.append((str(room_id), str(state_key), membership))
            rooms_now = {str(r) for (r,) in await conn.fetch_all(_ROOMS_OF, {"user_id": user_id})}
            members_now: dict[str, set[str]] = {}
            for room_id in dict.fromkeys(c[0] for c in changes):
                rows = await conn.fetch_all(_JOINED_MEMBERS, {"room_id": room_id})
                members_now[room_id] = {str(u) for (u,) in rows}
            return DeviceListInputs(devices_changed, changes, rooms_now, members_now, sharing)

        return await self._db.read(work, name="device_list_inputs")


def _membership_of(event_json: str) -> str | None:
    content = orjson.loads(event_json).get("content")
    membership = content.get("membership") if isinstance(content, dict) else None
    return membership if isinstance(membership, str) else None


async def _claim_one_time_key(conn: Conn, params: Mapping[str, str]) -> tuple[str, str] | None:
    for _ in range(_MAX_CLAIM_ATTEMPTS):
        row = await conn.fetch_one(_CLAIM_OTK, params)
        if row is not None:
            return str(row[0]), str(row[1])
        if await conn.fetch_val(_ANY_OTK, params) is None:
            return None
        # a concurrent claim took the key this one picked; others remain: try again
    return None

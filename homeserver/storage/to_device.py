"""To-device messages: a queue per recipient device on the TO_DEVICE stream.

Lifecycle (docs/discussion/e2ee.md):

1. :meth:`ToDeviceStore.send` stores one row per recipient device in one transaction, with
   the sender's transaction ID (``to_device_txns``: a repeated ``txnId`` stores nothing) and
   one TO_DEVICE position for the whole send, allocated last (``stream_ids.py``). ``*``
   expands to the recipient's devices at that moment; unknown devices are skipped.
2. A device's queue is bounded: a device with ``max_pending`` messages waiting gets no more
   until it catches up (the earliest messages, such as Olm session set-up, are kept).
3. ``/sync`` reads a device's messages in ``(since, up_to]`` in stream order
   (:meth:`ToDeviceStore.messages`) and deletes them once the device syncs again with a
   ``since`` at or after their position (:meth:`ToDeviceStore.delete_up_to`): the device has
   then acknowledged them.
4. Deleting a device deletes its queue in the same transaction
   (:mod:`homeserver.storage.e2ee_cleanup`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import BigInteger, and_, bindparam, delete, func, insert, select, text

from homeserver.storage.db import Conn, Database
from homeserver.storage.schema import devices, to_device_messages, to_device_txns
from homeserver.storage.stream_ids import next_position
from homeserver.streams import StreamName

__all__ = ["SendOutcome", "ToDeviceStore"]

_M = to_device_messages

_CLAIM_TXN = text(
    "INSERT INTO to_device_txns (user_id, device_id, txn_id, created_ts) "
    "VALUES (:user_id, :device_id, :txn_id, :created_ts) ON CONFLICT DO NOTHING"
).bindparams(bindparam("created_ts", type_=BigInteger))
_EXPIRE_TXNS = delete(to_device_txns).where(
    and_(
        to_device_txns.c.user_id == bindparam("user_id"),
        to_device_txns.c.device_id == bindparam("device_id"),
        to_device_txns.c.created_ts < bindparam("before", type_=BigInteger),
    )
)
_DEVICES_OF = select(devices.c.device_id).where(devices.c.user_id == bindparam("user_id"))
_DEVICE_EXISTS = select(devices.c.device_id).where(
    and_(devices.c.user_id == bindparam("user_id"), devices.c.device_id == bindparam("device_id"))
)
_IS_DEVICE = and_(_M.c.user_id == bindparam("user_id"), _M.c.device_id == bindparam("device_id"))
# Counting stops at the bound, so a full queue costs no more to check than the bound.
_PENDING = select(func.count()).select_from(
    select(_M.c.stream_id).where(_IS_DEVICE).limit(bindparam("bound")).subquery()
)
_INSERT = insert(_M).values(
    user_id=bindparam("user_id"),
    device_id=bindparam("device_id"),
    stream_id=bindparam("stream_id"),
    message_json=bindparam("message_json"),
)
_RANGE = (
    select(_M.c.stream_id, _M.c.message_json)
    .where(
        and_(
            _IS_DEVICE,
            _M.c.stream_id > bindparam("since", type_=BigInteger),
            _M.c.stream_id <= bindparam("up_to", type_=BigInteger),
        )
    )
    .order_by(_M.c.stream_id)
    .limit(bindparam("limit"))
)
_DELETE_UP_TO = delete(_M).where(
    and_(_IS_DEVICE, _M.c.stream_id <= bindparam("up_to", type_=BigInteger))
)


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """What a send stored."""

    #: the TO_DEVICE position of the messages; None if nothing was stored
    position: int | None
    #: users with a new message
    recipients: frozenset[str]
    #: devices skipped because their queue was full
    dropped: tuple[tuple[str, str], ...]
    #: the transaction ID was seen before: nothing was stored
    duplicate: bool = False


class ToDeviceStore:
    """Queues of to-device messages per device."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def send(
        self,
        sender: str,
        sender_device: str,
        txn_id: str,
        event_type: str,
        messages: Mapping[str, Mapping[str, Mapping[str, Any]]],
        *,
        now_ms: int,
        txn_lifetime_ms: int,
        max_pending: int,
    ) -> SendOutcome:
        """Queue ``messages`` (``{user_id: {device_id or "*": content}}``, local users only).

        A device named both by ID and through ``*`` gets the content given for its ID.
        """

        async def work(conn: Conn) -> SendOutcome:
            sender_params = {"user_id": sender, "device_id": sender_device}
            await conn.execute(_EXPIRE_TXNS, {**sender_params, "before": now_ms - txn_lifetime_ms})
            claimed = await conn.execute(
                _CLAIM_TXN, {**sender_params, "txn_id": txn_id, "created_ts": now_ms}
            )
            if not claimed:
                return SendOutcome(None, frozenset(), (), duplicate=True)
            rows: list[dict[str, Any]] = []
            dropped: list[tuple[str, str]] = []
            for user_id, by_device in messages.items():
                targets: dict[str, Mapping[str, Any]] = {}
                if "*" in by_device:
                    for (device_id,) in await conn.fetch_all(_DEVICES_OF, {"user_id": user_id}):
                        targets[str(device_id)] = by_device["*"]
                for device_id, content in by_device.items():
                    if device_id == "*":
                        continue
                    exists = await conn.fetch_val(
                        _DEVICE_EXISTS, {"user_id": user_id, "device_id": device_id}
                    )
                    if exists is not None:
                        targets[device_id] = content
                for device_id, content in targets.items():
                    pending = await conn.fetch_val(
                        _PENDING, {"user_id": user_id, "device_id": device_id, "bound": max_pending}
                    )
                    if int(pending) >= max_pending:
                        dropped.append((user_id, device_id))
                        continue
                    event = {"type": event_type, "sender": sender, "content": content}
                    rows.append(
                        {
                            "user_id": user_id,
                            "device_id": device_id,
                            "message_json": orjson.dumps(event).decode(),
                        }
                    )
            if not rows:
                return SendOutcome(None, frozenset(), tuple(dropped))
            position = await next_position(conn, StreamName.TO_DEVICE)
            await conn.execute_many(_INSERT, [{**r, "stream_id": position} for r in rows])
            return SendOutcome(position, frozenset(r["user_id"] for r in rows), tuple(dropped))

        return await self._db.run(work, name="send_to_device")

    async def messages(
        self, user_id: str, device_id: str, since: int, up_to: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]:
        """The device's messages in ``(since, up_to]``, oldest first, at most ``limit``.

        Returns:
            The messages and the position reached: ``up_to``, or the last message's position
            when ``limit`` cut the list short.
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if up_to <= since:
            return [], up_to

        async def work(conn: Conn) -> list[tuple[Any, ...]]:
            return await conn.fetch_all(
                _RANGE,
                {
                    "user_id": user_id,
                    "device_id": device_id,
                    "since": since,
                    "up_to": up_to,
                    "limit": limit,
                },
            )

        rows = await self._db.read(work, name="to_device_messages")
        reached = int(rows[-1][0]) if len(rows) >= limit else up_to
        return [orjson.loads(r[1]) for r in rows], reached

    async def delete_up_to(self, user_id: str, device_id: str, up_to: int) -> int:
        """Delete the device's messages at positions up to ``up_to``; return how many."""

        async def work(conn: Conn) -> int:
            return await conn.execute(
                _DELETE_UP_TO, {"user_id": user_id, "device_id": device_id, "up_to": up_to}
            )

        return await self._db.run(work, name="ack_to_device")

    async def pending_count(self, user_id: str, device_id: str, bound: int) -> int:
        """Messages waiting for the device, counted up to ``bound``."""

        async def work(conn: Conn) -> int:
            value = await conn.fetch_val(
                _PENDING, {"user_id": user_id, "device_id": device_id, "bound": bound}
            )
            return int(value)

        return await self._db.read(work, name="to_device_pending_count")

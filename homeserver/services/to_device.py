"""To-device messages: ``PUT /sendToDevice/{eventType}/{txnId}`` and their delivery.

Spec: client-server-api/modules/send_to_device.md; OpenAPI ``to_device.yaml``.

- Messages go to specific devices or to ``*`` (every device of the user at the time of
  sending). Each recipient device gets one copy, in the order they were sent, in ``/sync``
  ``to_device.events``; a device ID named explicitly wins over ``*`` for that device.
- The transaction ID makes the request idempotent per sending device: a retry with the same
  ``txnId`` stores nothing and answers ``{}`` again (txn IDs are kept for a day).
- A sender is rate limited (``e2ee.to_device_rate_limit``) and each device's queue is bounded
  (``e2ee.to_device_queue_limit``): a device that never syncs cannot grow the database
  without bound, and nobody can flood another user's devices.
- Messages stay until the device acknowledges them by syncing with a later ``since`` token
  (:meth:`ToDeviceService.ack`), then they are deleted. A deleted device's queue is dropped
  with the device (``storage/e2ee_cleanup.py``).
- Users of other servers get theirs through federation: :meth:`ToDeviceService.use_remote`
  is given the ``m.direct_to_device`` sender (``services/federation_edus.py``), called after the
  transaction ID is claimed, so a retried request sends nothing twice; without federation their
  messages are dropped and logged. Messages from other servers come in through
  :meth:`ToDeviceService.receive_remote`, de-duplicated by ``(sender, message_id)``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from federation.core.errors import InvalidIdentifier
from federation.core.ids import parse_user_id
from homeserver.clock import Clock
from homeserver.errors import InvalidParam
from homeserver.services.notifier import Notifier
from homeserver.services.ratelimit import RateLimiter
from homeserver.services.requester import Requester
from homeserver.storage.to_device import SendOutcome, ToDeviceStore
from homeserver.streams import StreamName

__all__ = ["RATE_LIMIT", "TXN_LIFETIME_MS", "ToDeviceService"]

logger = logging.getLogger(__name__)

#: The rate limiter action of sends (keyed by the sending user).
RATE_LIMIT = "to_device"
#: How long a transaction ID is remembered for idempotency.
TXN_LIFETIME_MS = 24 * 3600 * 1000
#: The longest event type accepted, in bytes (as for room events).
MAX_TYPE_BYTES = 255

#: ``(sender, event_type, {user_id: {device_id or "*": content}})`` for other servers' users.
RemoteSender = Callable[[str, str, Mapping[str, Mapping[str, Mapping[str, Any]]]], None]


class ToDeviceService:
    """Send, read and acknowledge to-device messages.

    Args:
        store: the queues.
        notifier: woken with the TO_DEVICE position of each send, for its recipients.
        limiter: holds the ``to_device`` limit.
        clock: transaction ID timestamps.
        server_name: this server (which recipients are local).
        queue_limit: the most messages waiting for one device.
    """

    def __init__(
        self,
        store: ToDeviceStore,
        notifier: Notifier,
        limiter: RateLimiter,
        clock: Clock,
        *,
        server_name: str,
        queue_limit: int,
    ) -> None:
        self._store = store
        self._notifier = notifier
        self._limiter = limiter
        self._clock = clock
        self._server_name = server_name
        self._queue_limit = max(1, queue_limit)
        self._remote: RemoteSender | None = None

    def use_remote(self, remote: RemoteSender) -> None:
        """Route messages for other servers' users to ``remote(sender, event_type, messages)``."""
        self._remote = remote

    async def send(
        self,
        requester: Requester,
        event_type: str,
        txn_id: str,
        messages: Mapping[str, Mapping[str, Mapping[str, Any]]],
    ) -> None:
        """Queue ``messages`` (``{user_id: {device_id or "*": content}}``).

        Raises:
            LimitExceeded: the sender is over its rate limit.
            InvalidParam: a bad event type or user ID.
        """
        if not event_type or len(event_type.encode()) > MAX_TYPE_BYTES:
            raise InvalidParam(f"Event types are 1 to {MAX_TYPE_BYTES} bytes")
        local: dict[str, Mapping[str, Mapping[str, Any]]] = {}
        remote: dict[str, Mapping[str, Mapping[str, Any]]] = {}
        for user_id, by_device in messages.items():
            try:
                server = parse_user_id(user_id).server_name
            except InvalidIdentifier:
                raise InvalidParam(f"{user_id!r} is not a valid user ID") from None
            if server == self._server_name:
                local[user_id] = by_device
            elif self._remote is not None:
                remote[user_id] = by_device
            else:
                logger.info("dropping to-device %s for %s: no federation", event_type, user_id)
        self._limiter.check(RATE_LIMIT, requester.user_id)
        outcome = await self._store.send(
            requester.user_id,
            requester.device_id or "",
            txn_id,
            event_type,
            local,
            now_ms=self._clock.time_ms(),
            txn_lifetime_ms=TXN_LIFETIME_MS,
            max_pending=self._queue_limit,
        )
        if remote and not outcome.duplicate and self._remote is not None:
            self._remote(requester.user_id, event_type, remote)
        self._after_send(outcome, event_type, requester.user_id)

    async def receive_remote(
        self,
        sender: str,
        event_type: str,
        message_id: str,
        messages: Mapping[str, Mapping[str, Mapping[str, Any]]],
    ) -> None:
        """Queue messages from another server's ``sender`` for local users; a ``message_id``
        already seen from that sender stores nothing."""
        outcome = await self._store.send(
            sender,
            "",
            message_id,
            event_type,
            messages,
            now_ms=self._clock.time_ms(),
            txn_lifetime_ms=TXN_LIFETIME_MS,
            max_pending=self._queue_limit,
        )
        self._after_send(outcome, event_type, sender)

    def _after_send(self, outcome: SendOutcome, event_type: str, sender: str) -> None:
        for user_id, device_id in outcome.dropped:
            logger.warning(
                "to-device queue of %s %s is full (%d): dropped a %s from %s",
                user_id,
                device_id,
                self._queue_limit,
                event_type,
                sender,
            )
        if outcome.position is not None:
            self._notifier.notify(
                StreamName.TO_DEVICE, outcome.position, user_ids=sorted(outcome.recipients)
            )

    async def messages(
        self, user_id: str, device_id: str, since: int, up_to: int, limit: int = 100
    ) -> tuple[list[dict[str, Any]], int]:
        """The device's messages in ``(since, up_to]`` and the position reached."""
        return await self._store.messages(user_id, device_id, since, up_to, limit)

    async def ack(self, user_id: str, device_id: str, up_to: int) -> None:
        """The device has received everything up to ``up_to``: delete it."""
        await self._store.delete_up_to(user_id, device_id, up_to)

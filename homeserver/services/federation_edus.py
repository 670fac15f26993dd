"""Typing, receipts, presence and to-device messages across servers: EDUs out and in.

Spec: server-server-api.md › EDUs, › Typing Notifications (``m.typing``), › Receipts
(``m.receipt``), › Presence (``m.presence``), › Send-to-device messaging
(``m.direct_to_device``).

Out::

    TypingService / ReceiptsService change (local user) ──listener──► queue (no I/O)
    run():  the room's joined servers (current state), minus us ──► FederationSender.send_edu
    ToDeviceService.send (remote recipients) ──► one m.direct_to_device per server at once

- Typing: every start (or refresh) and every stop of a local user, timeouts included, as
  ``{room_id, user_id, typing}`` (the spec's EDU has no timeout: the receiving server picks one).
- Receipts: public ``m.read`` receipts of local users, with their ``thread_id``. ``m.read.private``
  is never sent to another server ("Servers MUST NOT send the m.read.private receipt to any
  other user").
- To-device: a message ID per server and send; the sending server's ``*`` stays ``*``.
- Presence: each published change of a local user, to the servers sharing a room with them,
  as :meth:`PresenceService.for_other_servers` allows: the last-seen privacy setting applies to
  other servers as to local users, so a ``nobody`` user's presence never leaves the server
  (only the one ``offline`` when they become hidden), and ``contacts`` only reaches servers of
  users sharing a room (the only ones presence is ever sent to). Users who are not offline are
  announced again every :data:`PRESENCE_PING_INTERVAL_S` (Synapse takes another server's user
  as offline after 30 minutes without news, and pings its own every 25).

In: each handler checks that the user (or sender) belongs to the origin server, the spec's
"the server MUST verify the sending server is the same as the user's server" (SyTest "Inbound
federation rejects typing notifications from wrong remote"); anything else is dropped and
logged. The services then apply their own checks as for a local user (joined to the room, the
receipt's event in the room) so the remote user shows in local ``/sync`` like a local one.
Presence is only taken for users who share a room with one of ours.
Typing from another server lasts :data:`REMOTE_TYPING_TIMEOUT_MS` unless the server says it
stopped (as Synapse). To-device messages are de-duplicated by ``(sender, message_id)`` through
the to-device store's transaction IDs (a retried transaction delivers each message once).

State: the outbound queue is in memory, owned by the process that runs the federation sender
(:meth:`FederationEdus.run` runs there); lost changes are only lost typing or receipt updates
(typing is re-sent every few seconds by clients, the next receipt supersedes the last).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import trio

from federation.core.errors import InvalidIdentifier
from federation.core.ids import parse_user_id
from homeserver.errors import MatrixError
from homeserver.services.presence import PresenceService
from homeserver.services.receipts import READ, ReceiptsService
from homeserver.services.to_device import ToDeviceService
from homeserver.services.typing import TypingService

__all__ = ["PRESENCE_PING_INTERVAL_S", "REMOTE_TYPING_TIMEOUT_MS", "EduSender", "FederationEdus"]

logger = logging.getLogger(__name__)

#: How long a remote user counts as typing after their server said so.
REMOTE_TYPING_TIMEOUT_MS = 30_000
#: How often the presence of local users who are not offline is sent again.
PRESENCE_PING_INTERVAL_S = 25 * 60
#: Pending outbound changes; beyond this the oldest change is lost (logged).
_QUEUE_SIZE = 10_000


class EduSender(Protocol):
    """Queues an EDU for a destination (``FederationSender`` implements it)."""

    def send_edu(self, destination: str, edu_type: str, content: Mapping[str, Any]) -> None: ...


def _server_of(user_id: object) -> str | None:
    if not isinstance(user_id, str):
        return None
    try:
        return parse_user_id(user_id).server_name
    except InvalidIdentifier:
        return None


class FederationEdus:
    """Typing, receipt and to-device EDUs to and from other servers.

    Args:
        typing: the typing service (listened to; remote typing applied to it).
        receipts: the receipts service (listened to; remote receipts applied to it).
        to_device: the to-device service (remote recipients routed here; remote messages in).
        sender: queues outbound EDUs.
        joined_servers: the servers with joined members in a room (current state).
        presence: the presence service (listened to; remote presence applied to it).
        users_sharing_room: the users in a room with a user (presence destinations).
        server_name: ours.
        presence_ping_interval_s: how often presence that is not offline is sent again.
    """

    def __init__(
        self,
        typing: TypingService,
        receipts: ReceiptsService,
        to_device: ToDeviceService,
        sender: EduSender,
        joined_servers: Callable[[str], Awaitable[set[str]]],
        presence: PresenceService,
        users_sharing_room: Callable[[str], Awaitable[set[str]]],
        *,
        server_name: str,
        presence_ping_interval_s: float = PRESENCE_PING_INTERVAL_S,
    ) -> None:
        self._typing = typing
        self._ping_interval = presence_ping_interval_s
        self._receipts = receipts
        self._to_device = to_device
        self._sender = sender
        self._joined_servers = joined_servers
        self._presence = presence
        self._sharing = users_sharing_room
        self._server_name = server_name
        # (room ID, edu_type, content)
        self._send, self._receive = trio.open_memory_channel[tuple[str, str, dict[str, Any]]](
            _QUEUE_SIZE
        )
        typing.add_listener(self._on_typing)
        receipts.add_receipt_listener(self._on_receipt)
        to_device.use_remote(self._on_to_device)
        presence.add_publish_listener(self._on_presence)

    def register(self, registry: Any) -> None:
        """Register the inbound handlers with the EDU registry (``EduRegistry``)."""
        registry.register("m.typing", self.on_typing_edu)
        registry.register("m.receipt", self.on_receipt_edu)
        registry.register("m.direct_to_device", self.on_to_device_edu)
        registry.register("m.presence", self.on_presence_edu)

    def _is_local(self, user_id: str) -> bool:
        return _server_of(user_id) == self._server_name

    # --- out -------------------------------------------------------------------------------------

    def _queue(self, room_id: str, edu_type: str, content: dict[str, Any]) -> None:
        try:
            self._send.send_nowait((room_id, edu_type, content))
        except trio.WouldBlock:
            logger.warning("EDU queue full: dropped %s in %s", edu_type, room_id)

    def _on_typing(self, room_id: str, user_id: str, typing: bool) -> None:
        if self._is_local(user_id):
            self._queue(
                room_id, "m.typing", {"room_id": room_id, "user_id": user_id, "typing": typing}
            )

    def _on_receipt(
        self,
        user_id: str,
        room_id: str,
        receipt_type: str,
        event_id: str,
        thread_id: str | None,
        ts: int,
    ) -> None:
        if receipt_type != READ or not self._is_local(user_id):
            return  # m.read.private never leaves the server
        data: dict[str, Any] = {"ts": ts}
        if thread_id is not None:
            data["thread_id"] = thread_id
        content = {room_id: {READ: {user_id: {"event_ids": [event_id], "data": data}}}}
        self._queue(room_id, "m.receipt", content)

    def _on_presence(self, user_id: str, privacy_changed: bool) -> None:
        if self._is_local(user_id):
            # the room ID slot carries the user: destinations and content are read in run()
            self._queue(user_id, "m.presence", {"privacy_changed": privacy_changed})

    def _on_to_device(
        self,
        sender: str,
        event_type: str,
        messages: Mapping[str, Mapping[str, Mapping[str, Any]]],
    ) -> None:
        by_server: dict[str, dict[str, Mapping[str, Mapping[str, Any]]]] = {}
        for user_id, by_device in messages.items():
            server = _server_of(user_id)
            if server is not None and server != self._server_name:
                by_server.setdefault(server, {})[user_id] = by_device
        for server, server_messages in by_server.items():
            self._sender.send_edu(
                server,
                "m.direct_to_device",
                {
                    "sender": sender,
                    "type": event_type,
                    "message_id": secrets.token_urlsafe(16),
                    "messages": server_messages,
                },
            )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Send queued changes to the servers concerned, and presence pings, forever."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._ping_presence)
            task_status.started()
            await self._send_queued()

    async def _ping_presence(self) -> None:
        while True:
            await trio.sleep(self._ping_interval)
            for user_id in self._presence.online_local_users():
                self._on_presence(user_id, False)

    async def _send_queued(self) -> None:
        async for room_id, edu_type, content in self._receive:
            try:
                if edu_type == "m.presence":
                    user_id = room_id
                    found = await self._presence.for_other_servers(
                        user_id, content["privacy_changed"]
                    )
                    if found is None:
                        continue
                    content = {"push": [{"user_id": user_id, **found}]}
                    servers = {s for s in map(_server_of, await self._sharing(user_id)) if s}
                else:
                    servers = await self._joined_servers(room_id)
            except Exception:
                logger.exception("cannot read the servers of %s: %s not sent", room_id, edu_type)
                continue
            for server in sorted(servers - {self._server_name}):
                self._sender.send_edu(server, edu_type, content)

    # --- in --------------------------------------------------------------------------------------

    async def on_typing_edu(self, origin: str, content: Mapping[str, Any]) -> None:
        """``m.typing`` from ``origin``."""
        room_id, user_id, typing = (
            content.get("room_id"),
            content.get("user_id"),
            content.get("typing"),
        )
        if not isinstance(room_id, str) or not isinstance(typing, bool):
            logger.info("malformed m.typing from %s dropped", origin)
            return
        if _server_of(user_id) != origin:
            logger.info("m.typing from %s for %r dropped: not its user", origin, user_id)
            return
        assert isinstance(user_id, str)
        try:
            await self._typing.set_typing(user_id, room_id, typing, REMOTE_TYPING_TIMEOUT_MS)
        except MatrixError as e:
            logger.info("m.typing from %s for %s in %s dropped: %s", origin, user_id, room_id, e)

    async def on_receipt_edu(self, origin: str, content: Mapping[str, Any]) -> None:
        """``m.receipt`` from ``origin``: ``{room_id: {"m.read": {user_id: receipt}}}``."""
        for room_id, by_type in content.items():
            if not isinstance(by_type, Mapping):
                continue
            users = by_type.get(READ)  # other types (m.read.private) are not for other servers
            if not isinstance(users, Mapping):
                continue
            for user_id, receipt in users.items():
                await self._apply_receipt(origin, room_id, user_id, receipt)

    async def _apply_receipt(self, origin: str, room_id: str, user_id: str, receipt: Any) -> None:
        if _server_of(user_id) != origin:
            logger.info("m.receipt from %s for %r dropped: not its user", origin, user_id)
            return
        if not isinstance(receipt, Mapping):
            return
        event_ids, data = receipt.get("event_ids"), receipt.get("data")
        if not isinstance(event_ids, list) or not event_ids or not isinstance(event_ids[0], str):
            return
        data = data if isinstance(data, Mapping) else {}
        ts = data.get("ts")
        thread_id = data.get("thread_id")
        try:
            await self._receipts.post_receipt(
                user_id,
                room_id,
                READ,
                event_ids[0],
                thread_id if isinstance(thread_id, str) and thread_id else None,
                ts if isinstance(ts, int) and not isinstance(ts, bool) else None,
            )
        except MatrixError as e:
            logger.info("m.receipt from %s for %s in %s dropped: %s", origin, user_id, room_id, e)

    async def on_presence_edu(self, origin: str, content: Mapping[str, Any]) -> None:
        """``m.presence`` from ``origin``: ``{"push": [{user_id, presence, ...}]}``."""
        push = content.get("push")
        if not isinstance(push, list):
            logger.info("malformed m.presence from %s dropped", origin)
            return
        for update in push:
            if not isinstance(update, Mapping):
                continue
            user_id = update.get("user_id")
            if _server_of(user_id) != origin:
                logger.info("m.presence from %s for %r dropped: not its user", origin, user_id)
                continue
            assert isinstance(user_id, str)
            state, status_msg = update.get("presence"), update.get("status_msg")
            ago, active = update.get("last_active_ago"), update.get("currently_active")
            if not isinstance(state, str):
                continue
            if not any(self._is_local(u) for u in await self._sharing(user_id)):
                continue  # nobody here shares a room with them
            try:
                await self._presence.apply_remote(
                    user_id,
                    state,
                    status_msg if isinstance(status_msg, str) else None,
                    ago if isinstance(ago, int) and not isinstance(ago, bool) else None,
                    active is True,
                )
            except MatrixError as e:
                logger.info("m.presence from %s for %s dropped: %s", origin, user_id, e)

    async def on_to_device_edu(self, origin: str, content: Mapping[str, Any]) -> None:
        """``m.direct_to_device`` from ``origin``: into the local recipients' queues."""
        sender, event_type = content.get("sender"), content.get("type")
        message_id, messages = content.get("message_id"), content.get("messages")
        if (
            not isinstance(event_type, str)
            or not isinstance(message_id, str)
            or not isinstance(messages, Mapping)
        ):
            logger.info("malformed m.direct_to_device from %s dropped", origin)
            return
        if _server_of(sender) != origin:
            logger.info("m.direct_to_device from %s for %r dropped: not its user", origin, sender)
            return
        assert isinstance(sender, str)
        local: dict[str, Mapping[str, Mapping[str, Any]]] = {}
        for user_id, by_device in messages.items():
            if not self._is_local(user_id) or not isinstance(by_device, Mapping):
                continue
            local[user_id] = {
                d: c for d, c in by_device.items() if isinstance(d, str) and isinstance(c, Mapping)
            }
        if local:
            await self._to_device.receive_remote(sender, event_type, message_id, local)

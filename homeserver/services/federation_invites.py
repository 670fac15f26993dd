"""Invites across servers, both ways.

Spec: server-server-api.md › Inviting to a room (``PUT /_matrix/federation/v2/invite``, and v1
for rooms of versions 1 and 2); client-server › Room membership › Inviting a user;
› Stripped state.

Outbound (:meth:`FederationInvites.send_invite`): our user invites a user of another server.
The event is built and authorised by the event creation path; before it is persisted (under
the room's lock) it is sent to the invitee's server with the room's stripped state. That
server must answer with the event, signed by it too; if it refuses or cannot be reached the
invite is not persisted and the client gets the error. Once it is persisted, the copy the
invitee's server signed replaces ours (the same event ID: signatures are not hashed), and the
federation sender sends it to the room's other servers like any local event.

Inbound (:meth:`FederationInvites.on_invite`): another server invites one of our users. The
event must be a well-formed invite of one of our users, signed by the sender's server (the
caller), in a room version we support (else ``400 M_INCOMPATIBLE_ROOM_VERSION``). We sign it
and answer it. For a room we are not in it is stored out of band (a member event with a stream
position, the invite room state in ``unsigned.invite_room_state``), so the user's ``/sync``
shows it under ``invite``; accepting is a remote join through the inviter's server, rejecting
goes through :meth:`~homeserver.services.federation_join_remote.RemoteMemberships.reject_invite`.
For a room we are in, nothing is stored here: the inviting server sends the event in a
transaction like any other.

In-memory state: the invitee's signed copy of each invite between its acceptance and its
storage (one request; at most :data:`MAX_PENDING`, the oldest dropped: a copy lost so keeps
only our signature, which is all the event needs).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from federation.client import FederationClient
from federation.client.errors import FederationError, RemoteServerError
from federation.core.builder import hash_and_sign_event
from federation.core.errors import (
    CanonicalJSONError,
    EventFormatError,
    InvalidIdentifier,
    ProtocolError,
    SignatureError,
    UnsupportedRoomVersion,
)
from federation.core.events import Event
from federation.core.hashing import compute_event_id
from federation.core.ids import parse_user_id
from federation.core.room_versions import EventIdFormat, RoomVersion, get_room_version
from federation.core.signing import SigningKey
from homeserver.errors import BadJson, Codes, Forbidden, MatrixError
from homeserver.services.federation_inbound import FederationInbound, KeyRing
from homeserver.services.federation_join_remote import checked_pdu
from homeserver.services.notifier import Notifier
from homeserver.storage.events import EventStore
from homeserver.storage.federation_events import FederationEventStore

__all__ = ["INVITE_STATE_TYPES", "FederationInvites", "IncompatibleInvite"]

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]

#: The stripped state sent with an invite (spec: Stripped state, the recommended types).
INVITE_STATE_TYPES = (
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.encryption",
    "m.room.topic",
)
#: Invites accepted by the invitee's server and not yet stored, at most.
MAX_PENDING = 1000
#: At most this many stripped state events are kept from an inbound invite.
MAX_INVITE_STATE = 50


class IncompatibleInvite(MatrixError):
    """400 ``M_INCOMPATIBLE_ROOM_VERSION`` for an invite to a room version we do not
    support."""

    def __init__(self, room_version: str) -> None:
        super().__init__(
            400,
            Codes.INCOMPATIBLE_ROOM_VERSION,
            f"This server does not support room version {room_version}",
            room_version=room_version,
        )


def _stripped(event: Event) -> JsonDict:
    return {
        "type": event.type,
        "state_key": event.state_key or "",
        "sender": event.sender,
        "content": dict(event.content),
    }


class FederationInvites:
    """Invites to and from other servers.

    Args:
        events: the event store.
        fed_events: stores out-of-band invites.
        inbound: the inbound pipeline (whether we are in a room; its ACL).
        client: the federation client.
        keys: other servers' signing keys.
        notifier: told about a stored invite.
        signing_key: ours.
        server_name: ours.
    """

    def __init__(
        self,
        events: EventStore,
        fed_events: FederationEventStore,
        inbound: FederationInbound,
        client: FederationClient,
        keys: KeyRing,
        notifier: Notifier,
        signing_key: SigningKey,
        *,
        server_name: str,
    ) -> None:
        self._events = events
        self._fed = fed_events
        self._inbound = inbound
        self._client = client
        self._keys = keys
        self._notifier = notifier
        self._key = signing_key
        self._server_name = server_name
        self._countersigned: dict[str, Mapping[str, Any]] = {}

    # --- outbound -----------------------------------------------------------------------------

    async def invite_room_state(self, room_id: str, sender: str) -> list[JsonDict]:
        """The stripped state of ``room_id`` an invitee is shown, with the inviter's member
        event."""
        state = await self._events.get_current_state_events(room_id)
        out = [_stripped(state[(t, "")].event) for t in INVITE_STATE_TYPES if (t, "") in state]
        own = state.get(("m.room.member", sender))
        if own is not None:
            out.append(_stripped(own.event))
        return out

    async def send_invite(self, event: Event) -> None:
        """Send our user's invite of a remote user to that user's server (before it is
        persisted: a refusal keeps it out of the room).

        Raises:
            MatrixError: ``400 M_INCOMPATIBLE_ROOM_VERSION`` or ``403`` (the invitee's server
                refused), ``502`` (it could not be reached or answered badly).
        """
        target = event.state_key or ""
        server = parse_user_id(target).server_name
        version = event.room_version
        stripped = await self.invite_room_state(event.room_id, event.sender)
        try:
            if version.event_id_format is EventIdFormat.V1_ORIGIN:
                signed = await self._client.invite_v1(
                    server, event.room_id, event.event_id, dict(event.pdu)
                )
            else:
                signed = await self._client.invite_v2(
                    server,
                    event.room_id,
                    event.event_id,
                    dict(event.pdu),
                    version.identifier,
                    stripped,
                )
        except RemoteServerError as e:
            if e.errcode == Codes.INCOMPATIBLE_ROOM_VERSION:
                raise MatrixError(
                    400,
                    Codes.INCOMPATIBLE_ROOM_VERSION,
                    f"{server} does not support this room's version",
                ) from None
            if e.status == 403:
                raise Forbidden(f"{server} refused the invite: {e.error}") from None
            raise MatrixError(
                502, Codes.UNKNOWN, f"{server} could not take the invite (HTTP {e.status})"
            ) from None
        except FederationError as e:
            raise MatrixError(
                502, Codes.UNKNOWN, f"Could not send the invite to {server}: {type(e).__name__}"
            ) from None
        try:
            countersigned = await checked_pdu(self._keys, version, signed)
        except (CanonicalJSONError, EventFormatError) as e:
            raise BadJson(f"{server} answered a malformed invite: {e}") from None
        except (ProtocolError, KeyError, TypeError, ValueError) as e:
            raise MatrixError(502, Codes.UNKNOWN, f"{server} answered a bad invite: {e}") from None
        if countersigned.event_id != event.event_id or server not in (
            countersigned.pdu.get("signatures") or {}
        ):
            raise MatrixError(502, Codes.UNKNOWN, f"{server} did not sign the invite")
        if len(self._countersigned) >= MAX_PENDING:
            self._countersigned.pop(next(iter(self._countersigned)))
        signatures = dict(event.pdu.get("signatures") or {})
        signatures[server] = countersigned.pdu["signatures"][server]
        self._countersigned[event.event_id] = {**event.pdu, "signatures": signatures}

    async def invite_persisted(self, event_id: str) -> None:
        """Keep the invitee's server's signature on our stored copy of the invite."""
        pdu = self._countersigned.pop(event_id, None)
        if pdu is not None:
            await self._fed.replace_event_json(event_id, pdu)

    # --- inbound ------------------------------------------------------------------------------

    async def on_invite(
        self,
        origin: str,
        room_id: str,
        event_id: str,
        room_version: str,
        pdu: Any,
        invite_room_state: Sequence[Any],
    ) -> JsonDict:
        """``PUT /invite/{roomId}/{eventId}``: check, sign and keep an invite of our user.

        Returns:
            The event signed by us.

        Raises:
            MatrixError: ``400 M_INCOMPATIBLE_ROOM_VERSION``; ``400 M_BAD_JSON`` for an event
                that is not a valid invite of one of our users into that room; ``403`` when
                its sender is not a user of ``origin``, a signature is missing or bad, or the
                room's server ACL denies ``origin``.
        """
        try:
            version = get_room_version(room_version)
        except UnsupportedRoomVersion:
            raise IncompatibleInvite(room_version) from None
        if not isinstance(pdu, Mapping):
            raise BadJson("The invite event must be an object")
        content = pdu.get("content")
        target = pdu.get("state_key")
        sender = pdu.get("sender")
        if (
            pdu.get("type") != "m.room.member"
            or not isinstance(content, Mapping)
            or content.get("membership") != "invite"
            or not isinstance(target, str)
            or not isinstance(sender, str)
        ):
            raise BadJson("The event is not an invite")
        if pdu.get("room_id") != room_id:
            raise BadJson("The event is not in the room of the path")
        try:
            target_server = parse_user_id(target).server_name
            sender_server = parse_user_id(sender).server_name
        except InvalidIdentifier:
            raise BadJson("Invalid user ID in the invite") from None
        if target_server != self._server_name:
            raise BadJson("The invite event must be for a user of this server")
        if sender_server != origin:
            raise Forbidden(f"{sender} is not a user of {origin}")
        try:
            event = await checked_pdu(self._keys, version, pdu, require_hash=True)
        except SignatureError as e:
            raise Forbidden(f"Invalid signature: {e}") from None
        except (ProtocolError, KeyError, TypeError, ValueError) as e:
            raise BadJson(f"Invalid event: {e}") from None
        if event.event_id != event_id:
            raise BadJson("The event ID does not match the path")
        in_room = await self._events.get_room(room_id) is not None and (
            await self._inbound.server_in_room(room_id, self._server_name)
        )
        if in_room and not await self._inbound.server_allowed(room_id, origin):
            raise Forbidden("Server is banned from this room by its server ACL")
        unsigned_out = {k: v for k, v in pdu.items() if k != "unsigned"}
        signed = hash_and_sign_event(version, unsigned_out, self._server_name, self._key)
        if "unsigned" in pdu:
            signed["unsigned"] = pdu["unsigned"]
        if not in_room:
            await self._store(version, signed, event_id, invite_room_state)
        return signed

    async def _store(
        self,
        version: RoomVersion,
        signed: Mapping[str, Any],
        event_id: str,
        invite_room_state: Sequence[Any],
    ) -> None:
        state = [s for s in invite_room_state if _is_stripped(s)][:MAX_INVITE_STATE]
        unsigned = signed.get("unsigned")
        stored_pdu = dict(signed)
        stored_pdu["unsigned"] = {
            **(unsigned if isinstance(unsigned, Mapping) else {}),
            "invite_room_state": state,
        }
        if version.event_id_format is not EventIdFormat.V1_ORIGIN:
            assert compute_event_id(version, stored_pdu) == event_id
        event = Event(version, stored_pdu, event_id)
        stream = await self._fed.persist_out_of_band_membership(event)
        if stream is not None:
            self._notifier.on_new_event(event.room_id, stream, [event.state_key or ""])


def _is_stripped(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and isinstance(value.get("type"), str)
        and isinstance(value.get("state_key"), str)
        and isinstance(value.get("sender"), str)
        and isinstance(value.get("content"), Mapping)
    )

"""Our users joining rooms hosted elsewhere, and rejecting invites to them: the joining
server's side of the membership handshakes.

Spec: server-server-api.md › Joining Rooms (``make_join``, ``send_join`` v2), › Leaving Rooms
(Rejecting Invites) (``make_leave``, ``send_leave`` v2), › Restricted rooms; client-server ›
Room membership (``via``/``server_name``).

A remote join (:meth:`RemoteMemberships.join`)::

    resident candidates: via/server_name, the alias's servers, the inviter's server,
                         the room ID's server (v1-11)                (in that order, no dupes)
    for each candidate until one works:
        make_join (our supported versions as ``ver``) → template
            403 M_FORBIDDEN / 400 M_INCOMPATIBLE_ROOM_VERSION: passed on as our error
            anything else (unreachable, 404, bad answer): the next candidate
        fill in the template (our content, ``join_authorised_via_users_server`` kept), sign
        send_join v2 (full state: omit_members is never asked) → state + auth chain
        check each event (format, signatures, content hash: bad ones dropped) and the auth
            rules against its own auth events (failing ones stored rejected)
        the create event must be in the state and name the room version of make_join
        the join itself must pass the auth rules against that state
    persist: the checked events as outliers; the join in the timeline with that state as the
        state before it and as the room's current state; then the room row
    room_written_elsewhere, notifier → the user's /sync shows the room with its full state

Rejecting an invite to a room we are not in (:meth:`RemoteMemberships.reject_invite`) asks the
inviter's server (then the room ID's) with ``make_leave``/``send_leave``; when none answers,
the invite is still rejected here with a leave event of our own that follows the invite
(as Synapse does), so the user is no longer shown the invite.

In-memory state: one lock per room being joined (owned by this process, dropped when no join
waits on it), so two of our users joining the same room at once make one remote join: the
second finds the room joined and joins locally. Two processes joining the same room at once
could each persist a join; the later one's current state then lacks the earlier join until
the room's next event resolves them (a rule for one joining process per room would close it).
"""

from __future__ import annotations

import logging
import secrets
import string
from collections.abc import Mapping, Sequence
from typing import Any

import trio

from federation.client import FederationClient
from federation.client.api import SendJoinResponse
from federation.client.errors import FederationError, RemoteServerError
from federation.core.auth_rules import (
    auth_types_for_event,
    check_auth_rules,
    check_state_dependent_auth_rules,
    check_state_independent_auth_rules,
)
from federation.core.builder import (
    build_event,
    check_event_format,
    check_received_event,
    hash_and_sign_event,
    key_lookup,
    required_signature_servers,
)
from federation.core.errors import (
    AuthError,
    CanonicalJSONError,
    EventFormatError,
    InvalidIdentifier,
    ProtocolError,
    SignatureError,
    UnsupportedRoomVersion,
)
from federation.core.events import Event, StateKey
from federation.core.hashing import compute_event_id, room_id_from_create_event
from federation.core.ids import parse_room_id, parse_user_id
from federation.core.power_levels import CREATE_KEY
from federation.core.room_versions import (
    KNOWN_ROOM_VERSIONS,
    EventIdFormat,
    RoomIdFormat,
    RoomVersion,
    get_room_version,
)
from federation.core.signing import KnownKey, SigningKey
from homeserver.clock import Clock
from homeserver.errors import Codes, Forbidden, MatrixError, NotFound
from homeserver.services.events import CreatedEvent, EventCreationService, room_id_of
from homeserver.services.federation_inbound import KeyRing
from homeserver.services.notifier import Notifier
from homeserver.storage.events import EventStore, RoomRow
from homeserver.storage.federation_events import FederationEventStore, RemoteEvent

__all__ = [
    "SUPPORTED_ROOM_VERSIONS",
    "RemoteMemberships",
    "auth_ids_of",
    "check_against_own_auth",
    "checked_pdu",
]

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]

#: The ``ver`` list of our make_join requests: every room version we implement.
SUPPORTED_ROOM_VERSIONS: tuple[str, ...] = tuple(KNOWN_ROOM_VERSIONS)
#: Resident servers tried for one join before giving up.
MAX_CANDIDATES = 10


class _CandidateFailed(Exception):
    """This resident server could not get us in; try the next one."""


async def checked_pdu(
    keys: KeyRing, version: RoomVersion, pdu: Any, *, require_hash: bool = False
) -> Event:
    """Checks 1-3 on receipt (format, signatures through the key ring, content hash: the
    redacted copy when it does not match) of one PDU another server handed us.

    Raises:
        ProtocolError: the event must be dropped (malformed, a signature missing or bad; with
            ``require_hash``, a content hash that does not match).
    """
    check_event_format(version, pdu)
    servers = required_signature_servers(version, pdu)
    ts = int(pdu["origin_server_ts"])
    signatures = pdu.get("signatures")
    known: dict[str, dict[str, KnownKey]] = {}
    for server in sorted(servers):
        sigs = signatures.get(server) if isinstance(signatures, Mapping) else None
        key_ids = [k for k in sigs if isinstance(k, str)] if isinstance(sigs, Mapping) else []
        if not key_ids:
            raise SignatureError(f"no signature from {server}")
        try:
            known[server] = dict(await keys.known_keys(server, key_ids, at_ts=ts))
        except Exception as e:
            raise SignatureError(f"cannot get the keys of {server}: {e}") from None
    event, hash_ok = check_received_event(version, pdu, key_lookup(version, known))
    if require_hash and not hash_ok:
        raise EventFormatError("the content hash does not match")
    return event


def auth_ids_of(event: Event) -> list[str]:
    """The event's auth event IDs (v12: with the create event, which is implied)."""
    ids = list(dict.fromkeys(event.auth_event_ids))
    version = event.room_version
    if not version.create_event_in_auth_events and event.type != "m.room.create":
        create_id = "$" + event.room_id[1:]
        if create_id not in ids:
            ids.append(create_id)
    return ids


def check_against_own_auth(event: Event, auth_by_id: Mapping[str, Event]) -> None:
    """The auth rules with the event's own auth events as the state (check 4 on receipt).

    Raises:
        AuthError: they do not allow it.
    """
    version = event.room_version
    check_state_independent_auth_rules(version, event, auth_by_id)
    auth_state: dict[StateKey, Event] = {}
    for auth_event in auth_by_id.values():
        key = auth_event.state_tuple
        if key is not None:
            auth_state[key] = auth_event
    check_state_dependent_auth_rules(version, event, auth_state)


def _server_of(user_id: str) -> str | None:
    try:
        return parse_user_id(user_id).server_name
    except InvalidIdentifier:
        return None


class RemoteMemberships:
    """Joins of rooms this server is not in, and rejections of invites to them.

    Args:
        events: the event store (reads).
        fed_events: where received events and the new room are stored.
        client: the federation client.
        keys: other servers' signing keys.
        creator: the event creation path (its room locks; ``room_written_elsewhere``).
        notifier: told about the join or leave.
        signing_key: ours.
        clock: timestamps.
        server_name: ours.
    """

    def __init__(
        self,
        events: EventStore,
        fed_events: FederationEventStore,
        client: FederationClient,
        keys: KeyRing,
        creator: EventCreationService,
        notifier: Notifier,
        signing_key: SigningKey,
        clock: Clock,
        *,
        server_name: str,
    ) -> None:
        self._events = events
        self._fed = fed_events
        self._client = client
        self._keys = keys
        self._creator = creator
        self._notifier = notifier
        self._key = signing_key
        self._clock = clock
        self._server_name = server_name
        self._joining: dict[str, tuple[trio.Lock, int]] = {}

    # --- resident candidates --------------------------------------------------------------

    async def candidates(self, user_id: str, room_id: str, hints: Sequence[str]) -> list[str]:
        """Servers to ask, best first: the hints (via, the alias's servers), the server of
        whoever invited ``user_id``, then the room ID's server (v1-11 room IDs)."""
        out = list(hints)
        invite = await self._events.get_current_state_event(room_id, "m.room.member", user_id)
        if invite is not None and invite.event.membership in ("invite", "knock"):
            inviter = _server_of(invite.event.sender)
            if inviter is not None:
                out.append(inviter)
        try:
            server = parse_room_id(room_id).server_name
        except InvalidIdentifier:
            server = None
        if server:
            out.append(server)
        return [s for s in dict.fromkeys(out) if s and s != self._server_name][:MAX_CANDIDATES]

    # --- joining ----------------------------------------------------------------------------

    async def join(
        self, user_id: str, room_id: str, hints: Sequence[str], content: Mapping[str, Any]
    ) -> CreatedEvent:
        """Join ``user_id`` to ``room_id`` through a resident server.

        Raises:
            NotFound: no server to ask, or none knows the room.
            Forbidden: the resident server refused the join (its reason in the message).
            MatrixError: ``400 M_INCOMPATIBLE_ROOM_VERSION``; ``502`` when no resident server
                could be reached or gave a usable answer.
        """
        servers = await self.candidates(user_id, room_id, hints)
        if not servers:
            raise NotFound("No known servers for this room")
        lock, waiting = self._joining.get(room_id, (trio.Lock(), 0))
        self._joining[room_id] = (lock, waiting + 1)
        try:
            async with lock:
                if await self._host_joined(room_id):
                    # another of our users got in meanwhile: an ordinary local join now
                    return await self._creator.create_event(
                        room_id,
                        sender=user_id,
                        event_type="m.room.member",
                        content={**content, "membership": "join"},
                        state_key=user_id,
                    )
                return await self._join_through(servers, user_id, room_id, content)
        finally:
            lock, waiting = self._joining[room_id]
            if waiting <= 1:
                del self._joining[room_id]
            else:
                self._joining[room_id] = (lock, waiting - 1)

    async def _host_joined(self, room_id: str) -> bool:
        suffix = ":" + self._server_name
        return any(
            membership == "join" and member.endswith(suffix)
            for member, membership, _ in await self._events.get_members(room_id)
        )

    async def _join_through(
        self, servers: list[str], user_id: str, room_id: str, content: Mapping[str, Any]
    ) -> CreatedEvent:
        last: str = "no answer"
        all_not_found = True
        for server in servers:
            try:
                return await self._join_via(server, user_id, room_id, content)
            except _CandidateFailed as e:
                last = f"{server}: {e}"
                all_not_found = all_not_found and "404" in str(e)
                logger.info(
                    "remote join of %s to %s via %s failed: %s", user_id, room_id, server, e
                )
        if all_not_found:
            raise NotFound(f"No server could find the room ({last})")
        raise MatrixError(
            502, Codes.UNKNOWN, f"Failed to join the room through any server ({last})"
        )

    async def _join_via(
        self, server: str, user_id: str, room_id: str, content: Mapping[str, Any]
    ) -> CreatedEvent:
        try:
            made = await self._client.make_join(server, room_id, user_id, SUPPORTED_ROOM_VERSIONS)
        except RemoteServerError as e:
            _raise_refusal(server, e)
            if e.status in (400, 403) and e.errcode:
                # the resident's reason, as Synapse passes make_join failures on
                raise MatrixError(e.status, e.errcode, f"{server}: {e.error}") from None
            raise _CandidateFailed(f"make_join: HTTP {e.status} {e.errcode or ''}") from None
        except FederationError as e:
            raise _CandidateFailed(f"make_join: {type(e).__name__}") from None
        version = _template_version(made.room_version)
        event = self._fill_template(version, made.event, user_id, room_id, content)
        try:
            answer = await self._send_join(server, room_id, event)
        except RemoteServerError as e:
            _raise_refusal(server, e)
            raise _CandidateFailed(f"send_join: HTTP {e.status} {e.errcode or ''}") from None
        except FederationError as e:
            raise _CandidateFailed(f"send_join: {type(e).__name__}") from None
        try:
            check_event_format(version, event.pdu)
        except EventFormatError as e:
            raise _CandidateFailed(f"the join built from the template is invalid: {e}") from None
        if answer.event is not None:
            event = await self._resident_copy(version, event, answer.event)
        return await self._accept(version, event, [*answer.state], [*answer.auth_chain])

    async def _send_join(self, server: str, room_id: str, event: Event) -> SendJoinResponse:
        """send_join v2, or v1 when the server does not know v2 (404 or ``M_UNRECOGNIZED``)."""
        try:
            return await self._client.send_join_v2(server, room_id, event.event_id, event.pdu)
        except RemoteServerError as e:
            if e.status != 404 and e.errcode != Codes.UNRECOGNIZED:
                raise
        return await self._client.send_join_v1(server, room_id, event.event_id, dict(event.pdu))

    def _fill_template(
        self,
        version: RoomVersion,
        template: Mapping[str, Any],
        user_id: str,
        room_id: str,
        content: Mapping[str, Any],
    ) -> Event:
        """Our signed join from the resident's template (spec: "the joining server ... fills
        in the template": its own content, ``origin``, timestamps, hashes and signature)."""
        template_content = template.get("content")
        if (
            template.get("type") != "m.room.member"
            or template.get("room_id") != room_id
            or template.get("sender") != user_id
            or template.get("state_key") != user_id
            or not isinstance(template_content, Mapping)
            or template_content.get("membership") != "join"
        ):
            raise _CandidateFailed("make_join answered a template for another event")
        merged = dict(template_content)
        merged.update(
            {k: v for k, v in content.items() if k not in ("join_authorised_via_users_server",)}
        )
        merged["membership"] = "join"
        # the template as given (its prev and auth events untouched, as Synapse fills it in;
        # the resident judges them), with our content, origin, time, hashes and signature
        pdu = {
            k: v
            for k, v in template.items()
            if k not in ("signatures", "hashes", "unsigned", "event_id")
        }
        pdu.update(content=merged, origin=self._server_name, origin_server_ts=self._clock.time_ms())
        if version.event_id_format is EventIdFormat.V1_ORIGIN:
            local = "".join(secrets.choice(string.ascii_letters) for _ in range(18))
            pdu["event_id"] = f"${local}:{self._server_name}"
        try:
            signed = hash_and_sign_event(version, pdu, self._server_name, self._key)
            if version.event_id_format is EventIdFormat.V1_ORIGIN:
                return Event(version, signed, signed["event_id"])
            return Event(version, signed, compute_event_id(version, signed))
        except (ProtocolError, KeyError, TypeError, ValueError) as e:
            raise _CandidateFailed(f"cannot build the join from the template: {e}") from None

    async def _resident_copy(self, version: RoomVersion, ours: Event, theirs: Any) -> Event:
        """The join as the resident returned it (restricted joins: countersigned by the
        authorising server); ours when it is not the same event."""
        try:
            event = await checked_pdu(self._keys, version, theirs)
        except (ProtocolError, KeyError, TypeError, ValueError) as e:
            logger.info("send_join returned an unusable event: %s", e)
            return ours
        return event if event.event_id == ours.event_id else ours

    async def _accept(
        self, version: RoomVersion, join: Event, state_pdus: list[Any], chain_pdus: list[Any]
    ) -> CreatedEvent:
        """Check the send_join answer and persist the room (module docstring)."""
        room_id = join.room_id
        by_id: dict[str, Event] = {}
        state_ids: list[str] = []
        for position, pdu in enumerate([*state_pdus, *chain_pdus]):
            if not isinstance(pdu, Mapping) or pdu.get("room_id", room_id) != room_id:
                continue  # (a v12 create event has no room_id: its hash is the room ID)
            try:
                event = await checked_pdu(self._keys, version, pdu)
            except (ProtocolError, KeyError, TypeError, ValueError) as e:
                logger.info("send_join answer: an event of %s dropped: %s", room_id, e)
                continue
            if room_id_of(event) != room_id:
                continue
            by_id.setdefault(event.event_id, event)
            if position < len(state_pdus):
                state_ids.append(event.event_id)
        accepted: dict[str, Event] = {}
        rejected: dict[str, str] = {}
        for event in sorted(by_id.values(), key=lambda e: (e.depth, e.event_id)):
            auth_ids = [] if event.type == "m.room.create" else auth_ids_of(event)
            missing = [a for a in auth_ids if a not in accepted]
            if missing:
                rejected[event.event_id] = f"auth events not known or rejected: {missing[:3]}"
                continue
            try:
                check_against_own_auth(event, {a: accepted[a] for a in auth_ids})
            except AuthError as e:
                rejected[event.event_id] = f"auth events: {e}"
                continue
            accepted[event.event_id] = event
        state: dict[StateKey, str] = {}
        for event_id in state_ids:
            found = accepted.get(event_id)
            if found is not None and found.state_tuple is not None:
                state[found.state_tuple] = event_id
        create = accepted.get(state.get(CREATE_KEY, ""))
        if create is None:
            raise _CandidateFailed("send_join answered no valid create event")
        claimed = create.content.get("room_version", "1")
        if claimed != version.identifier:
            raise _CandidateFailed(
                f"the create event names room version {claimed!r}, make_join {version.identifier}"
            )
        if version.room_id_format is RoomIdFormat.CREATE_EVENT_HASH:
            if room_id_from_create_event(version, create.pdu) != room_id:
                raise _CandidateFailed("the create event is not the room's")
        keys = auth_types_for_event(version, join.type, join.state_key, join.sender, join.content)
        auth_state = {k: accepted[state[k]] for k in (*keys, CREATE_KEY) if k in state}
        try:
            check_auth_rules(version, join, auth_state)
        except AuthError as e:
            raise _CandidateFailed(f"the join is not allowed by the room's state: {e}") from None
        for event in sorted(by_id.values(), key=lambda e: (e.depth, e.event_id)):
            reason = rejected.get(event.event_id)
            await self._fed.persist(
                RemoteEvent(
                    event, "outlier" if reason is None else "rejected", rejected_reason=reason
                )
            )
        current = dict(state)
        current[("m.room.member", join.sender)] = join.event_id
        async with self._creator.locks.hold(room_id):
            stream = await self._fed.persist(
                RemoteEvent(join, "timeline", state_before=state, new_current_state=current)
            )
            await self._fed.insert_room(
                RoomRow(room_id, version.identifier, create.sender, False, self._clock.time_ms())
            )
            self._creator.room_written_elsewhere(room_id)
        if stream is None:
            stored = await self._events.get_event(join.event_id)
            stream = stored.stream_ordering if stored is not None else 0
        else:
            self._notifier.on_new_event(room_id, stream, [join.sender])
        logger.info("%s joined %s (%d state events)", join.sender, room_id, len(state))
        return CreatedEvent(join.event_id, room_id, stream)

    # --- rejecting invites --------------------------------------------------------------------

    async def reject_invite(
        self, user_id: str, room_id: str, reason: str | None = None
    ) -> CreatedEvent:
        """Reject ``user_id``'s invite to a room this server is not in.

        Raises:
            NotFound: the user has no pending invite (or knock) to the room.
        """
        current = await self._events.get_current_state_event(room_id, "m.room.member", user_id)
        if current is None or current.event.membership not in ("invite", "knock"):
            raise NotFound("You are not invited to this room")
        invite = current.event
        content: dict[str, Any] = {"membership": "leave"}
        if reason is not None:
            content["reason"] = reason
        leave: Event | None = None
        for server in await self.candidates(user_id, room_id, []):
            try:
                leave = await self._leave_via(server, user_id, room_id, content)
                break
            except _CandidateFailed as e:
                logger.info(
                    "remote leave of %s from %s via %s failed: %s", user_id, room_id, server, e
                )
        if leave is None:
            # nobody answered: reject here, after the invite (Synapse's out-of-band leave)
            leave = build_event(
                invite.room_version,
                room_id=room_id,
                sender=user_id,
                type="m.room.member",
                content=content,
                prev_event_ids=[invite.event_id],
                auth_event_ids=[invite.event_id],
                depth=invite.depth + 1,
                origin_server_ts=self._clock.time_ms(),
                origin=self._server_name,
                signing_key=self._key,
                state_key=user_id,
            )
        stream = await self._fed.persist_out_of_band_membership(leave)
        if stream is not None:
            self._notifier.on_new_event(room_id, stream, [user_id])
        return CreatedEvent(leave.event_id, room_id, stream or 0)

    async def _leave_via(
        self, server: str, user_id: str, room_id: str, content: Mapping[str, Any]
    ) -> Event:
        try:
            made = await self._client.make_leave(server, room_id, user_id)
            version = _template_version(made.room_version)
            template = made.event
            template_content = template.get("content")
            if (
                template.get("room_id") != room_id
                or template.get("state_key") != user_id
                or not isinstance(template_content, Mapping)
                or template_content.get("membership") != "leave"
            ):
                raise _CandidateFailed("make_leave answered a template for another event")
            prevs, prev_hashes = _refs(version, template.get("prev_events"))
            auths, auth_hashes = _refs(version, template.get("auth_events"))
            depth = template.get("depth")
            leave = build_event(
                version,
                room_id=room_id,
                sender=user_id,
                type="m.room.member",
                content={**template_content, **content},
                prev_event_ids=prevs,
                auth_event_ids=auths,
                depth=depth if isinstance(depth, int) and not isinstance(depth, bool) else 0,
                origin_server_ts=self._clock.time_ms(),
                origin=self._server_name,
                signing_key=self._key,
                state_key=user_id,
                event_hashes={**prev_hashes, **auth_hashes} if prev_hashes or auth_hashes else None,
            )
            await self._client.send_leave_v2(server, room_id, leave.event_id, dict(leave.pdu))
        except FederationError as e:
            raise _CandidateFailed(f"{type(e).__name__}: {e}") from None
        except (EventFormatError, CanonicalJSONError, ValueError) as e:
            raise _CandidateFailed(f"cannot build the leave: {e}") from None
        return leave


def _raise_refusal(server: str, e: RemoteServerError) -> None:
    """The resident's refusals the client must see: the room's version, or the auth rules."""
    if e.errcode == Codes.INCOMPATIBLE_ROOM_VERSION:
        extra: dict[str, Any] = {}
        if e.room_version is not None:
            extra["room_version"] = e.room_version
        raise MatrixError(
            400,
            Codes.INCOMPATIBLE_ROOM_VERSION,
            f"This server does not support the room's version ({server}: {e.error})",
            **extra,
        )
    if e.status == 403 and e.errcode == Codes.FORBIDDEN:
        raise Forbidden(f"{server} refused: {e.error}" if e.error else f"{server} refused")


def _template_version(identifier: str | None) -> RoomVersion:
    try:
        return get_room_version(identifier or "1")
    except UnsupportedRoomVersion:
        raise MatrixError(
            400,
            Codes.INCOMPATIBLE_ROOM_VERSION,
            f"This server does not support room version {identifier}",
        ) from None


def _refs(version: RoomVersion, value: Any) -> tuple[list[str], dict[str, Mapping[str, Any]]]:
    """The event IDs of a template's ``prev_events``/``auth_events`` (and the v1-2 hashes)."""
    if not isinstance(value, list):
        raise ValueError("prev_events/auth_events must be lists")
    ids: list[str] = []
    hashes: dict[str, Mapping[str, Any]] = {}
    for ref in value:
        # either form is read whatever the version (a template without ``room_version`` is
        # taken as v1); the event is then written in the version's own form
        if isinstance(ref, list) and ref and isinstance(ref[0], str):
            ids.append(ref[0])
            hashes[ref[0]] = ref[1] if len(ref) > 1 and isinstance(ref[1], Mapping) else {}
        elif isinstance(ref, str):
            ids.append(ref)
        else:
            raise ValueError("event references are event IDs or [event_id, hashes]")
    if version.event_id_format is not EventIdFormat.V1_ORIGIN:
        hashes = {}
    return ids, hashes

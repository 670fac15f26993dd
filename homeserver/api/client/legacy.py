"""What deployed clients and bots still call from the days of the ``r0`` API.

- :class:`LegacyPrefix`: every client endpoint under ``/_matrix/client/r0/`` (and the media
  repository's ``/_matrix/media/r0/``) is served as its ``v3`` twin. The ``v3`` prefix replaced
  ``r0`` in v1.1 with the same endpoints (spec: appendices › "API versioning"; client-server
  API › "Changelog" of v1.1), and Synapse still answers both. This is one path rewrite in front
  of the routes, so an ``r0`` request is the ``v3`` request in every respect (handlers that read
  their path see ``v3``). Endpoints that only ever existed under ``v1`` (``/relations``,
  ``/threads``, ...) are not given an ``r0`` alias, as in Synapse.
- :class:`EventStreamEndpoint`: ``GET /events``, the event stream that ``/sync`` replaced
  (deprecated, still in the spec: ``peeking_events.yaml``). It is an incremental ``/sync``
  flattened into one list: new timeline events of the user's rooms (with ``room_id``), their
  typing and receipt events, presence, and invites (the invite member event).
- :class:`InitialSyncEndpoint` and :class:`RoomInitialSyncEndpoint`: ``GET /initialSync`` (an
  initial ``/sync`` reshaped) and ``GET /rooms/{roomId}/initialSync`` (the room's state and
  newest messages), deprecated, still in the spec.
- :class:`LegacyEventApi`: ``GET /events/{eventId}`` (deprecated, still in the spec), one
  event by its ID alone.
- :class:`LegacySendApi`: ``POST /rooms/{roomId}/send/{eventType}`` and
  ``POST /rooms/{roomId}/redact/{eventId}``, the r0-era forms without a transaction ID
  (Synapse serves them; each call is a new event).
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson

from homeserver.api._http import JsonDict, route
from homeserver.api.client._body import optional_json_body, optional_string
from homeserver.api.raw import RawEndpoint, RawRequest
from homeserver.errors import InvalidParam
from homeserver.services.requester import Requester
from homeserver.services.rooms import RoomService, check_room_id
from homeserver.services.sync import parse_since
from homeserver.streams import StreamToken

__all__ = [
    "EventStreamEndpoint",
    "InitialSyncEndpoint",
    "LegacyEventApi",
    "LegacyPrefix",
    "LegacySendApi",
    "RoomInitialSyncEndpoint",
]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: ``r0`` prefix → the prefix that replaced it.
_ALIASES = (
    ("/_matrix/client/r0/", "/_matrix/client/v3/"),
    ("/_matrix/media/r0/", "/_matrix/media/v3/"),
)
_V3 = "/_matrix/client/v3"
_MAX_TIMEOUT_MS = 60_000
_MAX_FIELD_BYTES = 255

#: What the event stream reads of each sync: timelines only (no state), up to 100 per room.
_STREAM_FILTER = orjson.dumps(
    {"room": {"timeline": {"limit": 100}, "state": {"types": []}}}
).decode()


class LegacyPrefix:
    """ASGI: ``/_matrix/client/r0/...`` and ``/_matrix/media/r0/...`` as their ``v3`` twins.

    Args:
        app: the application that serves ``v3``.
    """

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            path: str = scope.get("path", "")
            for old, new in _ALIASES:
                if path.startswith(old):
                    scope = dict(scope)
                    scope["path"] = new + path[len(old) :]
                    raw = scope.get("raw_path")
                    if raw is not None:
                        raw_bytes = bytes(raw)
                        if raw_bytes.startswith(old.encode()):
                            scope["raw_path"] = new.encode() + raw_bytes[len(old) :]
                    break
        await self._app(scope, receive, send)


def _int_param(query: Mapping[str, str], name: str, default: int) -> int:
    value = query.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise InvalidParam(f"{name!r} must be an integer") from None
    if number < 0:
        raise InvalidParam(f"{name!r} must not be negative")
    return number


def _flatten(body: JsonDict, user_id: str, room_id: str | None) -> list[JsonDict]:
    """The events of a ``/sync`` answer as one event-stream chunk."""
    chunk: list[JsonDict] = []
    rooms = body.get("rooms", {})
    for section in ("join", "leave"):
        for rid, entry in rooms.get(section, {}).items():
            if room_id is not None and rid != room_id:
                continue
            for event in entry.get("timeline", {}).get("events", []):
                chunk.append({**event, "room_id": rid})
            for event in entry.get("ephemeral", {}).get("events", []):
                chunk.append({**event, "room_id": rid})
    for rid, entry in rooms.get("invite", {}).items():
        if room_id is not None and rid != room_id:
            continue
        for event in entry.get("invite_state", {}).get("events", []):
            if event.get("type") == "m.room.member" and event.get("state_key") == user_id:
                chunk.append({**event, "room_id": rid})
    for rid, entry in rooms.get("join", {}).items():
        if room_id is None or rid == room_id:
            for event in entry.get("account_data", {}).get("events", []):
                chunk.append({**event, "room_id": rid})
    if room_id is None:
        chunk.extend(body.get("presence", {}).get("events", []))
        chunk.extend(_global_account_data(body))
    return chunk


def _global_account_data(body: JsonDict) -> list[JsonDict]:
    """The global account data of a ``/sync`` answer, less the push rules (``/sync`` adds
    them; the r0 endpoints never had them, as in Synapse)."""
    events = body.get("account_data", {}).get("events", [])
    return [e for e in events if e.get("type") != "m.push_rules"]


class EventStreamEndpoint:
    """GET /_matrix/client/v3/events (served as a raw endpoint: it is a long-poll).

    Spec: #get_matrixclientv3events (deprecated). "This will listen for new events and return
    them to the caller. This will block until an event is received, or until the timeout is
    reached." ``from`` is a token from an earlier answer (or ``/sync``'s ``next_batch``);
    without it the stream starts now. ``timeout`` in milliseconds (default 0 here; at most a
    minute); ``room_id`` keeps one room's events.

    Args:
        sync: the ``/sync`` endpoint (the stream is an incremental sync through it).
        current_token: the token of "now" (for a request without ``from``).
    """

    method = "GET"
    path = f"{_V3}/events"
    rate_limit: str | None = None
    json_body_limit = 0

    def __init__(
        self, sync: RawEndpoint, current_token: Callable[[], Awaitable[StreamToken]]
    ) -> None:
        self._sync = sync
        self._current_token = current_token

    async def __call__(self, request: RawRequest) -> JsonDict:
        query = request.query
        timeout_ms = min(_int_param(query, "timeout", 0), _MAX_TIMEOUT_MS)
        _int_param(query, "limit", 0)  # accepted (and checked) for compatibility
        room_id = query.get("room_id")
        if room_id is not None:
            check_room_id(room_id)
        since = parse_since(query.get("from"))
        if since is None:
            since = await self._current_token()
        body = await self._sync(
            RawRequest(
                request.requester,
                {"since": since.to_string(), "timeout": str(timeout_ms), "filter": _STREAM_FILTER},
                {},
                until_disconnect=request.until_disconnect,
            )
        )
        return {
            "chunk": _flatten(body, request.requester.user_id, room_id),
            "start": since.to_string(),
            "end": body["next_batch"],
        }


def _bool_param(query: Mapping[str, str], name: str) -> bool:
    value = query.get(name)
    if value is None or value in ("", "false", "0"):
        return False
    if value in ("true", "1"):
        return True
    raise InvalidParam(f"{name!r} must be 'true' or 'false'")


def _current_state(entry: JsonDict, room_id: str) -> list[JsonDict]:
    """The room's state after a sync entry: its state section, then the timeline's state
    events (later ones replace earlier ones)."""
    state: dict[tuple[str, str], JsonDict] = {}
    events = [*entry.get("state", {}).get("events", []), *_timeline(entry)]
    for event in events:
        if "state_key" in event:
            state[(event["type"], event["state_key"])] = {**event, "room_id": room_id}
    return list(state.values())


def _timeline(entry: JsonDict) -> list[JsonDict]:
    events: list[JsonDict] = entry.get("timeline", {}).get("events", [])
    return events


class InitialSyncEndpoint:
    """GET /_matrix/client/v3/initialSync (served as a raw endpoint, through ``/sync``).

    Spec: #get_matrixclientv3initialsync (deprecated). "This returns the full state for this
    user, with an optional limit on the number of messages per room to return." ``limit``:
    messages per room (default 10, at most 100); ``archived``: include rooms the user left.
    Built from an initial ``/sync``: each room's state is its state section with the
    timeline's state events applied, its ``messages`` the timeline.

    Args:
        sync: the ``/sync`` endpoint.
    """

    method = "GET"
    path = f"{_V3}/initialSync"
    rate_limit: str | None = None
    json_body_limit = 0

    def __init__(self, sync: RawEndpoint) -> None:
        self._sync = sync

    async def __call__(self, request: RawRequest) -> JsonDict:
        limit = min(_int_param(request.query, "limit", 10), 100)
        archived = _bool_param(request.query, "archived")
        sync_filter = {
            "room": {"timeline": {"limit": max(limit, 1)}, "include_leave": archived},
        }
        body = await self._sync(
            RawRequest(request.requester, {"filter": orjson.dumps(sync_filter).decode()}, {})
        )
        user_id = request.requester.user_id
        rooms: list[JsonDict] = []
        sections = body.get("rooms", {})
        for section in ("join", "leave"):
            for room_id, entry in sections.get(section, {}).items():
                state = _current_state(entry, room_id)
                membership = section
                for event in state:
                    if event["type"] == "m.room.member" and event["state_key"] == user_id:
                        membership = event.get("content", {}).get("membership", section)
                chunk = [{**e, "room_id": room_id} for e in _timeline(entry)]
                rooms.append(
                    {
                        "room_id": room_id,
                        "membership": membership,
                        "state": state,
                        "messages": {
                            "chunk": chunk[-limit:] if limit else [],
                            "start": entry.get("timeline", {}).get(
                                "prev_batch", body["next_batch"]
                            ),
                            "end": body["next_batch"],
                        },
                        "account_data": entry.get("account_data", {}).get("events", []),
                    }
                )
        for room_id, entry in sections.get("invite", {}).items():
            invite_state = entry.get("invite_state", {}).get("events", [])
            stripped = [{**e, "room_id": room_id} for e in invite_state]
            invite = next(
                (
                    e
                    for e in stripped
                    if e.get("type") == "m.room.member" and e.get("state_key") == user_id
                ),
                None,
            )
            item: JsonDict = {"room_id": room_id, "membership": "invite", "state": stripped}
            if invite is not None:
                item["invite"] = invite
            rooms.append(item)
        return {
            "end": body["next_batch"],
            "rooms": rooms,
            "presence": body.get("presence", {}).get("events", []),
            "account_data": _global_account_data(body),
        }


class RoomInitialSyncEndpoint:
    """GET /_matrix/client/v3/rooms/{roomId}/initialSync (deprecated; a raw endpoint).

    Spec: #get_matrixclientv3roomsroomidinitialsync. "Get a copy of the current state and the
    most recent messages in a room." The state is the current state (the state when the user
    left, for a user who left) and the messages the newest (``limit``, default 10), both
    through the history-visibility rule (a user who may not read the room gets ``403``); a
    joined user also gets the room's account data, receipts and presence from an initial
    ``/sync`` of that room.

    Args:
        rooms: the room service (its history reads).
        sync: the ``/sync`` endpoint.
    """

    method = "GET"
    path = f"{_V3}/rooms/{{room_id}}/initialSync"
    rate_limit: str | None = None
    json_body_limit = 0

    def __init__(self, rooms: RoomService, sync: RawEndpoint) -> None:
        self._rooms = rooms
        self._sync = sync

    async def __call__(self, request: RawRequest) -> JsonDict:
        room_id = check_room_id(request.params["room_id"])
        limit = min(_int_param(request.query, "limit", 10), 100)
        requester = request.requester
        history = self._rooms.history
        state = await history.get_state(requester, room_id)
        page = await history.messages(
            requester, room_id, direction="b", from_token=None, to_token=None, limit=max(limit, 1)
        )
        chunk = list(reversed(page.chunk))[-limit:] if limit else []
        out: JsonDict = {
            "room_id": room_id,
            "state": state,
            "messages": {"chunk": chunk, "start": page.end or page.start, "end": page.start},
            "presence": [],
            "receipts": [],
            "account_data": [],
        }
        for event in state:
            if event["type"] == "m.room.member" and event.get("state_key") == requester.user_id:
                out["membership"] = event["content"].get("membership")
        if out.get("membership") == "join":
            room_filter = {"room": {"rooms": [room_id], "timeline": {"limit": 1}}}
            body = await self._sync(
                RawRequest(requester, {"filter": orjson.dumps(room_filter).decode()}, {})
            )
            entry = body.get("rooms", {}).get("join", {}).get(room_id, {})
            out["account_data"] = entry.get("account_data", {}).get("events", [])
            ephemeral = entry.get("ephemeral", {}).get("events", [])
            out["receipts"] = [e for e in ephemeral if e.get("type") == "m.receipt"]
            members = {e.get("state_key") for e in state if e["type"] == "m.room.member"}
            out["presence"] = [
                e for e in body.get("presence", {}).get("events", []) if e.get("sender") in members
            ]
        return out


class LegacyEventApi:
    """``GET /events/{eventId}``: one event by its ID alone (r0; deprecated).

    Args:
        rooms: the room service (its history reads).
    """

    def __init__(self, rooms: RoomService) -> None:
        self._rooms = rooms

    @route("GET", f"{_V3}/events/{{event_id}}", auth="user")
    async def get_event(self, requester: Requester, event_id: str) -> JsonDict:
        """GET /_matrix/client/v3/events/{eventId}.

        Spec: #get_matrixclientv3eventseventid (deprecated). "Get a single event based on
        ``event_id``. You must have permission to retrieve this event." An event the user may
        not see is ``404``, like an unknown one.
        """
        if not event_id.startswith("$") or len(event_id.encode()) > _MAX_FIELD_BYTES:
            raise InvalidParam(f"Invalid event ID {event_id!r}")
        return await self._rooms.history.get_event_anywhere(requester, event_id)


class LegacySendApi:
    """The r0-era sends without a transaction ID.

    Args:
        rooms: the room service.
        max_body_bytes: the request body limit.
    """

    def __init__(self, rooms: RoomService, max_body_bytes: int) -> None:
        self._rooms = rooms
        self._max_body = max_body_bytes

    @route(
        "POST", f"{_V3}/rooms/{{room_id}}/send/{{event_type}}", auth="user", rate_limit="message"
    )
    async def send(self, requester: Requester, room_id: str, event_type: str) -> JsonDict:
        """POST /_matrix/client/r0/rooms/{roomId}/send/{eventType} (r0 only, as Synapse has it).

        The r0 API's send without a transaction ID (client-server API r0.0.0, "Sending events
        to a room"); the spec's form is ``PUT .../send/{eventType}/{txnId}``. Each call sends a
        new event.
        """
        check_room_id(room_id)
        if not event_type or len(event_type.encode()) > _MAX_FIELD_BYTES:
            raise InvalidParam("Event types are 1 to 255 bytes")
        body = await optional_json_body(self._max_body)
        sent = await self._rooms.send(requester, room_id, event_type, body)
        return {"event_id": sent.event_id}

    @route(
        "POST", f"{_V3}/rooms/{{room_id}}/redact/{{event_id}}", auth="user", rate_limit="message"
    )
    async def redact(self, requester: Requester, room_id: str, event_id: str) -> JsonDict:
        """POST /_matrix/client/r0/rooms/{roomId}/redact/{eventId} (r0 only, as Synapse has it).

        The r0 API's redaction without a transaction ID; the spec's form is
        ``PUT .../redact/{eventId}/{txnId}``.
        """
        check_room_id(room_id)
        if not event_id.startswith("$") or len(event_id.encode()) > _MAX_FIELD_BYTES:
            raise InvalidParam(f"Invalid event ID {event_id!r}")
        body = await optional_json_body(self._max_body)
        txn = f"legacy-{secrets.token_urlsafe(12)}"
        sent = await self._rooms.redact(
            requester, room_id, event_id, txn, reason=optional_string(body, "reason")
        )
        return {"event_id": sent.event_id}

"""Other servers reading this server's view of a room's graph: events, state, auth chains,
backfill, missing events and timestamp lookups.

Spec: server-server-api.md › Retrieving events, › Backfilling and retrieving missing events,
› Timestamp to event (https://spec.matrix.org/v1.19/server-server-api/#retrieving-events).
Every route requires X-Matrix request authentication, a server in the room and one the room's
server ACL lets in (``403 M_FORBIDDEN``).
"""

from __future__ import annotations

from typing import Any

from quart import request

from homeserver.api._http import JsonDict, read_json_body, route
from homeserver.api.federation.transactions import Authenticate
from homeserver.clock import Clock
from homeserver.errors import BadJson, InvalidParam, MissingParam
from homeserver.services.federation_room_graph import RoomGraphService

__all__ = ["RoomGraphApi"]


def _int_param(name: str, *, default: int | None = None) -> int:
    raw = request.args.get(name)
    if raw is None:
        if default is None:
            raise MissingParam(f"Missing {name}")
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidParam(f"{name} must be an integer") from None


def _event_id_param() -> str:
    event_id = request.args.get("event_id")
    if not event_id:
        raise MissingParam("Missing event_id")
    return event_id


def _string_list(body: JsonDict, name: str, *, required: bool) -> list[str]:
    value: Any = body.get(name)
    if value is None and not required:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadJson(f"{name} must be a list of event IDs")
    return value


class RoomGraphApi:
    """``/event``, ``/state``, ``/state_ids``, ``/event_auth``, ``/backfill``,
    ``/get_missing_events``, ``/timestamp_to_event``.

    Args:
        graph: the room graph service.
        authenticate: the request authentication (X-Matrix).
        clock: for the ``origin_server_ts`` of transaction-shaped answers.
        server_name: our server name (their ``origin``).
        max_body_bytes: the request body limit.
    """

    def __init__(
        self,
        graph: RoomGraphService,
        authenticate: Authenticate,
        clock: Clock,
        *,
        server_name: str,
        max_body_bytes: int,
    ) -> None:
        self._graph = graph
        self._authenticate = authenticate
        self._clock = clock
        self._server_name = server_name
        self._max_body = max_body_bytes

    def _transaction(self, pdus: list[JsonDict]) -> JsonDict:
        return {
            "origin": self._server_name,
            "origin_server_ts": self._clock.time_ms(),
            "pdus": pdus,
        }

    @route("GET", "/_matrix/federation/v1/event/{event_id}")
    async def event(self, event_id: str) -> JsonDict:
        """GET /_matrix/federation/v1/event/{eventId} — spec: #get_matrixfederationv1eventeventid.

        "Retrieves a single event." Answered as a transaction holding the one PDU.
        """
        origin = await self._authenticate()
        return self._transaction([await self._graph.get_event(origin, event_id)])

    @route("GET", "/_matrix/federation/v1/state/{room_id}")
    async def state(self, room_id: str) -> JsonDict:
        """GET /_matrix/federation/v1/state/{roomId} — spec: #get_matrixfederationv1stateroomid.

        "Retrieves a snapshot of a room's state at a given event." ``event_id`` is required.
        """
        origin = await self._authenticate()
        pdus, chain = await self._graph.state(origin, room_id, _event_id_param())
        return {"pdus": pdus, "auth_chain": chain}

    @route("GET", "/_matrix/federation/v1/state_ids/{room_id}")
    async def state_ids(self, room_id: str) -> JsonDict:
        """GET /_matrix/federation/v1/state_ids/{roomId} — spec:
        #get_matrixfederationv1state_idsroomid.

        "Retrieves a snapshot of a room's state at a given event, in the form of event IDs."
        ``404 M_NOT_FOUND`` when the event or its state is not known here.
        """
        origin = await self._authenticate()
        pdu_ids, chain_ids = await self._graph.state_ids(origin, room_id, _event_id_param())
        return {"pdu_ids": pdu_ids, "auth_chain_ids": chain_ids}

    @route("GET", "/_matrix/federation/v1/event_auth/{room_id}/{event_id}")
    async def event_auth(self, room_id: str, event_id: str) -> JsonDict:
        """GET /_matrix/federation/v1/event_auth/{roomId}/{eventId} — spec:
        #get_matrixfederationv1event_authroomideventid.

        "Retrieves the complete auth chain for a given event."
        """
        origin = await self._authenticate()
        return {"auth_chain": await self._graph.event_auth(origin, room_id, event_id)}

    @route("GET", "/_matrix/federation/v1/backfill/{room_id}")
    async def backfill(self, room_id: str) -> JsonDict:
        """GET /_matrix/federation/v1/backfill/{roomId} — spec:
        #get_matrixfederationv1backfillroomid.

        "Retrieves a sliding-window history of previous PDUs that occurred in the given room.
        Starting from the PDU ID(s) given in the `v` argument, the PDUs given in `v` and the
        PDUs that preceded them are retrieved, up to the total number given by the `limit`."
        """
        origin = await self._authenticate()
        from_ids = request.args.getlist("v")
        if not from_ids:
            raise MissingParam("Missing v")
        limit = _int_param("limit")
        pdus = await self._graph.backfill(origin, room_id, from_ids, limit)
        return self._transaction(pdus)

    @route("POST", "/_matrix/federation/v1/get_missing_events/{room_id}")
    async def get_missing_events(self, room_id: str) -> JsonDict:
        """POST /_matrix/federation/v1/get_missing_events/{roomId} — spec:
        #post_matrixfederationv1get_missing_eventsroomid.

        "Retrieves previous events that the sender is missing. This is done by doing a
        breadth-first walk of the `prev_events` for the `latest_events`, ignoring any events
        in `earliest_events` and stopping at the `limit`."
        """
        origin = await self._authenticate()
        await self._graph.check_access(origin, room_id)  # 403 before looking at the body
        body = await read_json_body(self._max_body)
        # absent lists are empty (Synapse's leniency; SyTest sends ``{}``)
        earliest = _string_list(body, "earliest_events", required=False)
        latest = _string_list(body, "latest_events", required=False)
        limit, min_depth = body.get("limit", 10), body.get("min_depth", 0)
        if not isinstance(limit, int) or isinstance(limit, bool):
            raise BadJson("limit must be an integer")
        if not isinstance(min_depth, int) or isinstance(min_depth, bool):
            raise BadJson("min_depth must be an integer")
        events = await self._graph.get_missing_events(
            origin, room_id, earliest, latest, limit, min_depth
        )
        return {"events": events}

    @route("GET", "/_matrix/federation/v1/timestamp_to_event/{room_id}")
    async def timestamp_to_event(self, room_id: str) -> JsonDict:
        """GET /_matrix/federation/v1/timestamp_to_event/{roomId} — spec:
        #get_matrixfederationv1timestamp_to_eventroomid.

        "Get the ID of the event closest to the given timestamp, in the direction specified
        by the `dir` parameter." ``404 M_NOT_FOUND`` when there is none.
        """
        origin = await self._authenticate()
        ts = _int_param("ts")
        direction = request.args.get("dir")
        if direction == "f":
            return await self._graph.timestamp_to_event(origin, room_id, ts, "f")
        if direction == "b":
            return await self._graph.timestamp_to_event(origin, room_id, ts, "b")
        raise InvalidParam("dir must be 'f' or 'b'")

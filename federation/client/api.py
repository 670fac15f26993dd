"""Typed calls of the server-server API: one method per endpoint we call on other servers.

Spec: server-server-api.md (https://spec.matrix.org/v1.19/server-server-api/), OpenAPI under
``data/api/server-server/``. Each method names its endpoint and section.

Responses are parsed here, at the edge: into small frozen dataclasses, or, for events (which
need their room version to be parsed, ``federation.core.events``), into checked JSON objects.
Anything malformed raises :class:`~federation.client.errors.InvalidResponse`; no remote answer
makes the caller meet a ``KeyError`` or a ``TypeError``. Path parameters are percent-encoded
whole (``!room:server`` → ``%21room%3Aserver``), as Synapse sends them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from federation.client.errors import InvalidResponse
from federation.client.transport import FederationTransport, Query

__all__ = [
    "ClaimedKeys",
    "DeviceKeysResponse",
    "DirectoryResponse",
    "EventAuthResponse",
    "FederationClient",
    "JsonObject",
    "MakeMembershipResponse",
    "PublicRoomsResponse",
    "RoomStateIds",
    "RoomStateResponse",
    "SendJoinResponse",
    "ServerVersion",
    "TimestampToEventResponse",
    "TransactionResult",
    "UserDevicesResponse",
]

JsonObject = Mapping[str, Any]


def _q(value: str) -> str:
    return quote(value, safe="")


class _Parser:
    """Checks one response body; every failure is an InvalidResponse naming the field."""

    def __init__(self, destination: str, endpoint: str) -> None:
        self.destination = destination
        self.endpoint = endpoint

    def fail(self, what: str) -> InvalidResponse:
        return InvalidResponse(self.destination, f"{self.endpoint}: {what}")

    def obj(self, value: Any, what: str = "body") -> JsonObject:
        if not isinstance(value, dict):
            raise self.fail(f"{what} is not a JSON object")
        return value

    def field(self, body: JsonObject, key: str) -> Any:
        if key not in body:
            raise self.fail(f"missing {key!r}")
        return body[key]

    def string(self, body: JsonObject, key: str, *, optional: bool = False) -> Any:
        if optional and body.get(key) is None:
            return None
        value = self.field(body, key)
        if not isinstance(value, str):
            raise self.fail(f"{key!r} is not a string")
        return value

    def integer(self, body: JsonObject, key: str, *, optional: bool = False) -> Any:
        if optional and body.get(key) is None:
            return None
        value = self.field(body, key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(f"{key!r} is not an integer")
        return value

    def objects(
        self, body: JsonObject, key: str, *, optional: bool = False
    ) -> tuple[JsonObject, ...]:
        if optional and body.get(key) is None:
            return ()
        value = self.field(body, key)
        if not isinstance(value, list):
            raise self.fail(f"{key!r} is not a list")
        return tuple(self.obj(v, f"an entry of {key!r}") for v in value)

    def strings(self, body: JsonObject, key: str, *, optional: bool = False) -> tuple[str, ...]:
        if optional and body.get(key) is None:
            return ()
        value = self.field(body, key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(f"{key!r} is not a list of strings")
        return tuple(value)

    def mapping(self, body: JsonObject, key: str, *, optional: bool = False) -> JsonObject:
        if optional and body.get(key) is None:
            return {}
        return self.obj(self.field(body, key), repr(key))

    def boolean(self, body: JsonObject, key: str, default: bool = False) -> bool:
        value = body.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(f"{key!r} is not a boolean")
        return value


@dataclass(frozen=True, slots=True)
class ServerVersion:
    name: str | None
    version: str | None


@dataclass(frozen=True, slots=True)
class TransactionResult:
    """The answer to ``PUT /send``: per PDU, the error the remote had with it (absent: fine)."""

    pdu_errors: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class MakeMembershipResponse:
    """``make_join`` / ``make_leave`` / ``make_knock``: the event template to sign."""

    room_version: str | None
    event: JsonObject


@dataclass(frozen=True, slots=True)
class SendJoinResponse:
    origin: str | None
    state: tuple[JsonObject, ...]
    auth_chain: tuple[JsonObject, ...]
    #: the resident server's signed copy of the join (room versions with restricted joins)
    event: JsonObject | None
    members_omitted: bool
    servers_in_room: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class RoomStateIds:
    pdu_ids: tuple[str, ...]
    auth_chain_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RoomStateResponse:
    pdus: tuple[JsonObject, ...]
    auth_chain: tuple[JsonObject, ...]


@dataclass(frozen=True, slots=True)
class EventAuthResponse:
    auth_chain: tuple[JsonObject, ...]


@dataclass(frozen=True, slots=True)
class TimestampToEventResponse:
    event_id: str
    origin_server_ts: int


@dataclass(frozen=True, slots=True)
class DirectoryResponse:
    room_id: str
    servers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UserDevicesResponse:
    user_id: str
    stream_id: int
    devices: tuple[JsonObject, ...]
    master_key: JsonObject | None
    self_signing_key: JsonObject | None


@dataclass(frozen=True, slots=True)
class ClaimedKeys:
    #: ``{user_id: {device_id: {key_id: key}}}``
    one_time_keys: Mapping[str, Mapping[str, JsonObject]]


@dataclass(frozen=True, slots=True)
class DeviceKeysResponse:
    #: ``{user_id: {device_id: device_keys}}``
    device_keys: Mapping[str, Mapping[str, JsonObject]]
    master_keys: Mapping[str, JsonObject]
    self_signing_keys: Mapping[str, JsonObject]


@dataclass(frozen=True, slots=True)
class PublicRoomsResponse:
    chunk: tuple[JsonObject, ...]
    next_batch: str | None
    prev_batch: str | None
    total_room_count_estimate: int | None


class FederationClient:
    """The server-server calls we make (implements ``ServerKeyFetcher`` for the key ring).

    Args:
        transport: signed HTTPS requests to other servers.
    """

    def __init__(self, transport: FederationTransport) -> None:
        self._transport = transport

    @property
    def server_name(self) -> str:
        return self._transport.server_name

    async def _call(
        self,
        destination: str,
        method: str,
        path: str,
        *,
        query: Query | None = None,
        content: Any = None,
        signed: bool = True,
    ) -> Any:
        return await self._transport.request(
            destination, method, path, query=query, content=content, signed=signed
        )

    # --- keys -------------------------------------------------------------------------------

    async def fetch_server_keys(self, server_name: str) -> JsonObject:
        """``GET /_matrix/key/v2/server`` (unsigned), server-server-api › Publishing Keys.

        Returns the JSON object; its signatures are the key ring's business.
        """
        body = await self._call(server_name, "GET", "/_matrix/key/v2/server", signed=False)
        return _Parser(server_name, "key/v2/server").obj(body)

    async def query_notary(
        self, notary: str, criteria: Mapping[str, Mapping[str, Mapping[str, int]]]
    ) -> Sequence[JsonObject]:
        """``POST /_matrix/key/v2/query``, › Querying Keys Through Another Server.

        Args:
            criteria: ``{server_name: {key_id: {"minimum_valid_until_ts": ts}}}``.

        Returns the ``server_keys`` list.
        """
        body = await self._call(
            notary, "POST", "/_matrix/key/v2/query", content={"server_keys": criteria}
        )
        p = _Parser(notary, "key/v2/query")
        return p.objects(p.obj(body), "server_keys")

    # --- version, transactions --------------------------------------------------------------

    async def version(self, destination: str) -> ServerVersion:
        """``GET /_matrix/federation/v1/version``, › Server Implementation."""
        body = await self._call(destination, "GET", "/_matrix/federation/v1/version")
        p = _Parser(destination, "version")
        server = p.mapping(p.obj(body), "server", optional=True)
        return ServerVersion(
            p.string(server, "name", optional=True), p.string(server, "version", optional=True)
        )

    async def send_transaction(
        self,
        destination: str,
        txn_id: str,
        pdus: Sequence[JsonObject],
        edus: Sequence[JsonObject],
        origin_server_ts: int,
    ) -> TransactionResult:
        """``PUT /_matrix/federation/v1/send/{txnId}``, › Transactions."""
        content: dict[str, Any] = {
            "origin": self.server_name,
            "origin_server_ts": origin_server_ts,
            "pdus": list(pdus),
        }
        if edus:
            content["edus"] = list(edus)
        body = await self._call(
            destination, "PUT", f"/_matrix/federation/v1/send/{_q(txn_id)}", content=content
        )
        p = _Parser(destination, "send")
        results = p.mapping(p.obj(body), "pdus", optional=True)
        errors: dict[str, str] = {}
        for event_id, result in results.items():
            if isinstance(result, dict) and isinstance(result.get("error"), str):
                errors[event_id] = result["error"]
        return TransactionResult(errors)

    # --- joining, leaving, knocking, inviting ----------------------------------------------

    async def make_join(
        self, destination: str, room_id: str, user_id: str, supported_versions: Sequence[str]
    ) -> MakeMembershipResponse:
        """``GET /_matrix/federation/v1/make_join/{roomId}/{userId}?ver=...``, › Joining Rooms."""
        body = await self._call(
            destination,
            "GET",
            f"/_matrix/federation/v1/make_join/{_q(room_id)}/{_q(user_id)}",
            query=[("ver", v) for v in supported_versions],
        )
        return _make_response(destination, "make_join", body)

    async def send_join_v2(
        self,
        destination: str,
        room_id: str,
        event_id: str,
        event: JsonObject,
        *,
        omit_members: bool = False,
    ) -> SendJoinResponse:
        """``PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}``, › Joining Rooms."""
        body = await self._call(
            destination,
            "PUT",
            f"/_matrix/federation/v2/send_join/{_q(room_id)}/{_q(event_id)}",
            query={"omit_members": "true"} if omit_members else None,
            content=event,
        )
        return _send_join_response(_Parser(destination, "send_join"), body)

    async def send_join_v1(
        self, destination: str, room_id: str, event_id: str, event: JsonObject
    ) -> SendJoinResponse:
        """``PUT /_matrix/federation/v1/send_join/{roomId}/{eventId}`` (deprecated, for
        servers without v2), › Joining Rooms. The answer is ``[200, {...}]``."""
        body = await self._call(
            destination,
            "PUT",
            f"/_matrix/federation/v1/send_join/{_q(room_id)}/{_q(event_id)}",
            content=event,
        )
        p = _Parser(destination, "send_join v1")
        if not isinstance(body, list) or len(body) != 2:
            raise p.fail("body is not [200, {...}]")
        return _send_join_response(p, body[1])

    async def make_leave(
        self, destination: str, room_id: str, user_id: str
    ) -> MakeMembershipResponse:
        """``GET /_matrix/federation/v1/make_leave/{roomId}/{userId}``, › Leaving Rooms."""
        body = await self._call(
            destination, "GET", f"/_matrix/federation/v1/make_leave/{_q(room_id)}/{_q(user_id)}"
        )
        return _make_response(destination, "make_leave", body)

    async def send_leave_v2(
        self, destination: str, room_id: str, event_id: str, event: JsonObject
    ) -> None:
        """``PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}``, › Leaving Rooms."""
        body = await self._call(
            destination,
            "PUT",
            f"/_matrix/federation/v2/send_leave/{_q(room_id)}/{_q(event_id)}",
            content=event,
        )
        _Parser(destination, "send_leave").obj(body)

    async def make_knock(
        self, destination: str, room_id: str, user_id: str, supported_versions: Sequence[str]
    ) -> MakeMembershipResponse:
        """``GET /_matrix/federation/v1/make_knock/{roomId}/{userId}?ver=...``, › Knocking."""
        body = await self._call(
            destination,
            "GET",
            f"/_matrix/federation/v1/make_knock/{_q(room_id)}/{_q(user_id)}",
            query=[("ver", v) for v in supported_versions],
        )
        return _make_response(destination, "make_knock", body)

    async def send_knock(
        self, destination: str, room_id: str, event_id: str, event: JsonObject
    ) -> tuple[JsonObject, ...]:
        """``PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}``, › Knocking.

        Returns the ``knock_room_state`` (stripped state events).
        """
        body = await self._call(
            destination,
            "PUT",
            f"/_matrix/federation/v1/send_knock/{_q(room_id)}/{_q(event_id)}",
            content=event,
        )
        p = _Parser(destination, "send_knock")
        return p.objects(p.obj(body), "knock_room_state", optional=True)

    async def invite_v2(
        self,
        destination: str,
        room_id: str,
        event_id: str,
        event: JsonObject,
        room_version: str,
        invite_room_state: Sequence[JsonObject] = (),
    ) -> JsonObject:
        """``PUT /_matrix/federation/v2/invite/{roomId}/{eventId}``, › Inviting to a room.

        Returns the invite event signed by the invitee's server.
        """
        body = await self._call(
            destination,
            "PUT",
            f"/_matrix/federation/v2/invite/{_q(room_id)}/{_q(event_id)}",
            content={
                "event": event,
                "room_version": room_version,
                "invite_room_state": list(invite_room_state),
            },
        )
        p = _Parser(destination, "invite")
        return p.mapping(p.obj(body), "event")

    async def invite_v1(
        self, destination: str, room_id: str, event_id: str, event: JsonObject
    ) -> JsonObject:
        """``PUT /_matrix/federation/v1/invite/{roomId}/{eventId}`` (room versions 1 and 2,
        for servers that predate v2), › Inviting to a room. The answer is ``[200, {"event"}]``.
        """
        body = await self._call(
            destination,
            "PUT",
            f"/_matrix/federation/v1/invite/{_q(room_id)}/{_q(event_id)}",
            content=event,
        )
        p = _Parser(destination, "invite v1")
        if not isinstance(body, list) or len(body) != 2:
            raise p.fail("body is not [200, {...}]")
        return p.mapping(p.obj(body[1]), "event")

    # --- the room graph ---------------------------------------------------------------------

    async def get_event(self, destination: str, event_id: str) -> JsonObject:
        """``GET /_matrix/federation/v1/event/{eventId}``, › Retrieving events.

        Returns the one PDU of the transaction-shaped answer.
        """
        body = await self._call(destination, "GET", f"/_matrix/federation/v1/event/{_q(event_id)}")
        p = _Parser(destination, "event")
        pdus = p.objects(p.obj(body), "pdus")
        if len(pdus) != 1:
            raise p.fail(f"expected one PDU, got {len(pdus)}")
        return pdus[0]

    async def get_missing_events(
        self,
        destination: str,
        room_id: str,
        earliest_events: Sequence[str],
        latest_events: Sequence[str],
        *,
        limit: int = 10,
        min_depth: int = 0,
    ) -> tuple[JsonObject, ...]:
        """``POST /_matrix/federation/v1/get_missing_events/{roomId}``, › Retrieving events."""
        body = await self._call(
            destination,
            "POST",
            f"/_matrix/federation/v1/get_missing_events/{_q(room_id)}",
            content={
                "earliest_events": list(earliest_events),
                "latest_events": list(latest_events),
                "limit": limit,
                "min_depth": min_depth,
            },
        )
        p = _Parser(destination, "get_missing_events")
        return p.objects(p.obj(body), "events")

    async def backfill(
        self, destination: str, room_id: str, event_ids: Sequence[str], limit: int
    ) -> tuple[JsonObject, ...]:
        """``GET /_matrix/federation/v1/backfill/{roomId}?v=...&limit=``, › Backfilling."""
        body = await self._call(
            destination,
            "GET",
            f"/_matrix/federation/v1/backfill/{_q(room_id)}",
            query=[*(("v", e) for e in event_ids), ("limit", str(limit))],
        )
        p = _Parser(destination, "backfill")
        return p.objects(p.obj(body), "pdus")

    async def state_ids(self, destination: str, room_id: str, event_id: str) -> RoomStateIds:
        """``GET /_matrix/federation/v1/state_ids/{roomId}?event_id=``, › Retrieving events."""
        body = await self._call(
            destination,
            "GET",
            f"/_matrix/federation/v1/state_ids/{_q(room_id)}",
            query={"event_id": event_id},
        )
        p = _Parser(destination, "state_ids")
        obj = p.obj(body)
        return RoomStateIds(p.strings(obj, "pdu_ids"), p.strings(obj, "auth_chain_ids"))

    async def state(self, destination: str, room_id: str, event_id: str) -> RoomStateResponse:
        """``GET /_matrix/federation/v1/state/{roomId}?event_id=``, › Retrieving events."""
        body = await self._call(
            destination,
            "GET",
            f"/_matrix/federation/v1/state/{_q(room_id)}",
            query={"event_id": event_id},
        )
        p = _Parser(destination, "state")
        obj = p.obj(body)
        return RoomStateResponse(p.objects(obj, "pdus"), p.objects(obj, "auth_chain"))

    async def event_auth(self, destination: str, room_id: str, event_id: str) -> EventAuthResponse:
        """``GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}``, › Retrieving events."""
        body = await self._call(
            destination,
            "GET",
            f"/_matrix/federation/v1/event_auth/{_q(room_id)}/{_q(event_id)}",
        )
        p = _Parser(destination, "event_auth")
        return EventAuthResponse(p.objects(p.obj(body), "auth_chain"))

    async def timestamp_to_event(
        self, destination: str, room_id: str, ts: int, direction: str
    ) -> TimestampToEventResponse:
        """``GET /_matrix/federation/v1/timestamp_to_event/{roomId}?ts=&dir=``, › Retrieving
        events."""
        if direction not in ("f", "b"):
            raise ValueError("direction must be 'f' or 'b'")
        body = await self._call(
            destination,
            "GET",
            f"/_matrix/federation/v1/timestamp_to_event/{_q(room_id)}",
            query={"ts": str(ts), "dir": direction},
        )
        p = _Parser(destination, "timestamp_to_event")
        obj = p.obj(body)
        return TimestampToEventResponse(
            p.string(obj, "event_id"), p.integer(obj, "origin_server_ts")
        )

    # --- queries ----------------------------------------------------------------------------

    async def query_profile(
        self, destination: str, user_id: str, field: str | None = None
    ) -> JsonObject:
        """``GET /_matrix/federation/v1/query/profile?user_id=&field=``, › Query ›
        Profile. Returns the profile object (``displayname``, ``avatar_url``, custom fields)."""
        query = {"user_id": user_id}
        if field is not None:
            query["field"] = field
        body = await self._call(
            destination, "GET", "/_matrix/federation/v1/query/profile", query=query
        )
        p = _Parser(destination, "query/profile")
        obj = p.obj(body)
        for key in ("displayname", "avatar_url"):
            p.string(obj, key, optional=True)
        return obj

    async def query_directory(self, destination: str, room_alias: str) -> DirectoryResponse:
        """``GET /_matrix/federation/v1/query/directory?room_alias=``, › Query › Directory."""
        body = await self._call(
            destination,
            "GET",
            "/_matrix/federation/v1/query/directory",
            query={"room_alias": room_alias},
        )
        p = _Parser(destination, "query/directory")
        obj = p.obj(body)
        return DirectoryResponse(p.string(obj, "room_id"), p.strings(obj, "servers"))

    async def user_devices(self, destination: str, user_id: str) -> UserDevicesResponse:
        """``GET /_matrix/federation/v1/user/devices/{userId}``, › Device Management."""
        body = await self._call(
            destination, "GET", f"/_matrix/federation/v1/user/devices/{_q(user_id)}"
        )
        p = _Parser(destination, "user/devices")
        obj = p.obj(body)
        master = p.mapping(obj, "master_key") if obj.get("master_key") is not None else None
        ssk = (
            p.mapping(obj, "self_signing_key") if obj.get("self_signing_key") is not None else None
        )
        return UserDevicesResponse(
            user_id=p.string(obj, "user_id"),
            stream_id=p.integer(obj, "stream_id"),
            devices=p.objects(obj, "devices"),
            master_key=master,
            self_signing_key=ssk,
        )

    async def claim_keys(
        self, destination: str, one_time_keys: Mapping[str, Mapping[str, str]]
    ) -> ClaimedKeys:
        """``POST /_matrix/federation/v1/user/keys/claim``, › End-to-End Encryption.

        Args:
            one_time_keys: ``{user_id: {device_id: algorithm}}``.
        """
        body = await self._call(
            destination,
            "POST",
            "/_matrix/federation/v1/user/keys/claim",
            content={"one_time_keys": one_time_keys},
        )
        p = _Parser(destination, "user/keys/claim")
        return ClaimedKeys(_nested(p, p.mapping(p.obj(body), "one_time_keys"), "one_time_keys"))

    async def query_keys(
        self, destination: str, device_keys: Mapping[str, Sequence[str]]
    ) -> DeviceKeysResponse:
        """``POST /_matrix/federation/v1/user/keys/query``, › End-to-End Encryption.

        Args:
            device_keys: ``{user_id: [device_id, ...]}`` (an empty list: every device).
        """
        body = await self._call(
            destination,
            "POST",
            "/_matrix/federation/v1/user/keys/query",
            content={"device_keys": {u: list(d) for u, d in device_keys.items()}},
        )
        p = _Parser(destination, "user/keys/query")
        obj = p.obj(body)
        return DeviceKeysResponse(
            device_keys=_nested(p, p.mapping(obj, "device_keys"), "device_keys"),
            master_keys=_objects_by_key(
                p, p.mapping(obj, "master_keys", optional=True), "master_keys"
            ),
            self_signing_keys=_objects_by_key(
                p, p.mapping(obj, "self_signing_keys", optional=True), "self_signing_keys"
            ),
        )

    async def public_rooms(
        self,
        destination: str,
        *,
        limit: int | None = None,
        since: str | None = None,
        include_all_networks: bool = False,
        third_party_instance_id: str | None = None,
        search_term: str | None = None,
    ) -> PublicRoomsResponse:
        """``GET`` (or, with a search term, ``POST``) ``/_matrix/federation/v1/publicRooms``,
        › Public Room Directory."""
        path = "/_matrix/federation/v1/publicRooms"
        if search_term is None:
            query: dict[str, str] = {}
            if limit is not None:
                query["limit"] = str(limit)
            if since is not None:
                query["since"] = since
            if include_all_networks:
                query["include_all_networks"] = "true"
            if third_party_instance_id is not None:
                query["third_party_instance_id"] = third_party_instance_id
            body = await self._call(destination, "GET", path, query=query or None)
        else:
            content: dict[str, Any] = {"filter": {"generic_search_term": search_term}}
            if limit is not None:
                content["limit"] = limit
            if since is not None:
                content["since"] = since
            if include_all_networks:
                content["include_all_networks"] = True
            if third_party_instance_id is not None:
                content["third_party_instance_id"] = third_party_instance_id
            body = await self._call(destination, "POST", path, content=content)
        p = _Parser(destination, "publicRooms")
        obj = p.obj(body)
        return PublicRoomsResponse(
            chunk=p.objects(obj, "chunk"),
            next_batch=p.string(obj, "next_batch", optional=True),
            prev_batch=p.string(obj, "prev_batch", optional=True),
            total_room_count_estimate=p.integer(obj, "total_room_count_estimate", optional=True),
        )


def _send_join_response(p: _Parser, body: Any) -> SendJoinResponse:
    obj = p.obj(body)
    members_omitted = p.boolean(obj, "members_omitted")
    servers = p.strings(obj, "servers_in_room") if "servers_in_room" in obj else None
    return SendJoinResponse(
        origin=p.string(obj, "origin", optional=True),
        state=p.objects(obj, "state"),
        auth_chain=p.objects(obj, "auth_chain"),
        event=p.mapping(obj, "event") if obj.get("event") is not None else None,
        members_omitted=members_omitted,
        servers_in_room=servers,
    )


def _make_response(destination: str, endpoint: str, body: Any) -> MakeMembershipResponse:
    p = _Parser(destination, endpoint)
    obj = p.obj(body)
    return MakeMembershipResponse(
        p.string(obj, "room_version", optional=True), p.mapping(obj, "event")
    )


def _objects_by_key(p: _Parser, value: JsonObject, what: str) -> dict[str, JsonObject]:
    return {k: p.obj(v, f"{what}[{k!r}]") for k, v in value.items()}


def _nested(p: _Parser, value: JsonObject, what: str) -> dict[str, dict[str, JsonObject]]:
    out: dict[str, dict[str, JsonObject]] = {}
    for user_id, devices in value.items():
        out[user_id] = _objects_by_key(p, p.obj(devices, f"{what}[{user_id!r}]"), what)
    return out

"""FederationClient: each call sends the spec's method, path, query and body, and parses the
answer; a malformed answer is an InvalidResponse, never a crash."""

from __future__ import annotations

import json

import httpx
import pytest

from federation.client.api import (
    DirectoryResponse,
    FederationClient,
    MakeMembershipResponse,
    RoomStateIds,
    ServerVersion,
    TimestampToEventResponse,
)
from federation.client.errors import InvalidResponse, RemoteServerError
from federation.client.transport import FederationTransport
from federation.core.signing import SigningKey

from ._fakes import FakeDns

KEY = SigningKey.generate("api")
DEST = "remote.example:8448"
EV = {"type": "m.room.member", "content": {"membership": "join"}}


class Remote:
    def __init__(self, body) -> None:
        self.body = body
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if isinstance(self.body, bytes):
            return httpx.Response(200, content=self.body)
        return httpx.Response(200, json=self.body)

    @property
    def last(self):
        r = self.requests[-1]
        body = json.loads(r.content) if r.content else None
        return r.method, r.url.raw_path.decode(), body


def client(remote: Remote) -> FederationClient:
    return FederationClient(
        FederationTransport(
            server_name="origin.test",
            signing_key=KEY,
            dns=FakeDns(addresses={"remote.example": ["8.8.8.8"]}),
            inner_transport=httpx.MockTransport(remote),
        )
    )


async def test_fetch_server_keys_is_unsigned():
    remote = Remote({"server_name": DEST, "verify_keys": {}})
    assert (await client(remote).fetch_server_keys(DEST))["server_name"] == DEST
    assert remote.last == ("GET", "/_matrix/key/v2/server", None)
    assert "Authorization" not in remote.requests[0].headers


async def test_query_notary():
    remote = Remote({"server_keys": [{"server_name": "a"}]})
    criteria = {"a.example": {"ed25519:1": {"minimum_valid_until_ts": 5}}}
    assert await client(remote).query_notary(DEST, criteria) == ({"server_name": "a"},)
    assert remote.last == ("POST", "/_matrix/key/v2/query", {"server_keys": criteria})
    assert "Authorization" in remote.requests[0].headers


async def test_version():
    remote = Remote({"server": {"name": "Synapse", "version": "1.0"}})
    assert await client(remote).version(DEST) == ServerVersion("Synapse", "1.0")
    assert remote.last == ("GET", "/_matrix/federation/v1/version", None)
    assert await client(Remote({})).version(DEST) == ServerVersion(None, None)


async def test_send_transaction():
    remote = Remote({"pdus": {"$a": {}, "$b": {"error": "bad"}, "$c": "junk"}})
    result = await client(remote).send_transaction(DEST, "t/1", [EV], [{"edu_type": "x"}], 1234)
    assert result.pdu_errors == {"$b": "bad"}
    method, path, body = remote.last
    assert (method, path) == ("PUT", "/_matrix/federation/v1/send/t%2F1")
    assert body == {
        "origin": "origin.test",
        "origin_server_ts": 1234,
        "pdus": [EV],
        "edus": [{"edu_type": "x"}],
    }


async def test_make_join_and_send_join():
    remote = Remote({"room_version": "10", "event": EV})
    r = await client(remote).make_join(DEST, "!r:x", "@u:origin.test", ["9", "10"])
    assert r == MakeMembershipResponse("10", EV)
    assert remote.last == (
        "GET",
        "/_matrix/federation/v1/make_join/%21r%3Ax/%40u%3Aorigin.test?ver=9&ver=10",
        None,
    )
    remote.body = {
        "origin": "x",
        "state": [EV],
        "auth_chain": [],
        "event": EV,
        "members_omitted": True,
        "servers_in_room": ["x", "y"],
    }
    j = await client(remote).send_join_v2(DEST, "!r:x", "$e", EV, omit_members=True)
    assert j.state == (EV,) and j.event == EV and j.members_omitted
    assert j.servers_in_room == ("x", "y")
    assert remote.last == (
        "PUT",
        "/_matrix/federation/v2/send_join/%21r%3Ax/%24e?omit_members=true",
        EV,
    )
    remote.body = {"state": [], "auth_chain": []}
    j = await client(remote).send_join_v2(DEST, "!r:x", "$e", EV)
    assert j.event is None and j.servers_in_room is None and not j.members_omitted


async def test_leave_knock_invite():
    remote = Remote({"event": EV})
    r = await client(remote).make_leave(DEST, "!r:x", "@u:o")
    assert r.room_version is None and r.event == EV
    assert remote.last[1] == "/_matrix/federation/v1/make_leave/%21r%3Ax/%40u%3Ao"
    remote.body = {}
    await client(remote).send_leave_v2(DEST, "!r:x", "$e", EV)
    assert remote.last == ("PUT", "/_matrix/federation/v2/send_leave/%21r%3Ax/%24e", EV)
    remote.body = {"room_version": "7", "event": EV}
    await client(remote).make_knock(DEST, "!r:x", "@u:o", ["7"])
    assert remote.last[1] == "/_matrix/federation/v1/make_knock/%21r%3Ax/%40u%3Ao?ver=7"
    remote.body = {"knock_room_state": [EV]}
    assert await client(remote).send_knock(DEST, "!r:x", "$e", EV) == (EV,)
    remote.body = {"event": EV}
    assert await client(remote).invite_v2(DEST, "!r:x", "$e", EV, "10", [EV]) == EV
    assert remote.last == (
        "PUT",
        "/_matrix/federation/v2/invite/%21r%3Ax/%24e",
        {"event": EV, "room_version": "10", "invite_room_state": [EV]},
    )
    remote.body = [200, {"event": EV}]
    assert await client(remote).invite_v1(DEST, "!r:x", "$e", EV) == EV
    assert remote.last == ("PUT", "/_matrix/federation/v1/invite/%21r%3Ax/%24e", EV)


async def test_room_graph_calls():
    remote = Remote({"origin": "x", "origin_server_ts": 1, "pdus": [EV]})
    assert await client(remote).get_event(DEST, "$e") == EV
    assert remote.last == ("GET", "/_matrix/federation/v1/event/%24e", None)
    assert await client(remote).backfill(DEST, "!r:x", ["$a", "$b"], 10) == (EV,)
    assert remote.last[1] == "/_matrix/federation/v1/backfill/%21r%3Ax?v=%24a&v=%24b&limit=10"
    remote.body = {"events": [EV]}
    assert await client(remote).get_missing_events(DEST, "!r:x", ["$a"], ["$b"], limit=5) == (EV,)
    assert remote.last == (
        "POST",
        "/_matrix/federation/v1/get_missing_events/%21r%3Ax",
        {"earliest_events": ["$a"], "latest_events": ["$b"], "limit": 5, "min_depth": 0},
    )
    remote.body = {"pdu_ids": ["$s"], "auth_chain_ids": ["$a"]}
    assert await client(remote).state_ids(DEST, "!r:x", "$e") == RoomStateIds(("$s",), ("$a",))
    assert remote.last[1] == "/_matrix/federation/v1/state_ids/%21r%3Ax?event_id=%24e"
    remote.body = {"pdus": [EV], "auth_chain": [EV]}
    s = await client(remote).state(DEST, "!r:x", "$e")
    assert s.pdus == (EV,) and s.auth_chain == (EV,)
    remote.body = {"auth_chain": [EV]}
    assert (await client(remote).event_auth(DEST, "!r:x", "$e")).auth_chain == (EV,)
    assert remote.last[1] == "/_matrix/federation/v1/event_auth/%21r%3Ax/%24e"
    remote.body = {"event_id": "$e", "origin_server_ts": 7}
    t = await client(remote).timestamp_to_event(DEST, "!r:x", 5, "b")
    assert t == TimestampToEventResponse("$e", 7)
    assert remote.last[1] == "/_matrix/federation/v1/timestamp_to_event/%21r%3Ax?ts=5&dir=b"
    with pytest.raises(ValueError):
        await client(remote).timestamp_to_event(DEST, "!r:x", 5, "x")


async def test_queries_and_keys():
    remote = Remote({"displayname": "U", "m.tz": "UTC"})
    assert (await client(remote).query_profile(DEST, "@u:x", "displayname"))["displayname"] == "U"
    assert (
        remote.last[1] == "/_matrix/federation/v1/query/profile?user_id=%40u%3Ax&field=displayname"
    )
    remote.body = {"room_id": "!r:x", "servers": ["x"]}
    assert await client(remote).query_directory(DEST, "#a:x") == DirectoryResponse("!r:x", ("x",))
    assert remote.last[1] == "/_matrix/federation/v1/query/directory?room_alias=%23a%3Ax"
    remote.body = {
        "user_id": "@u:x",
        "stream_id": 3,
        "devices": [{"device_id": "D"}],
        "master_key": {"k": 1},
    }
    d = await client(remote).user_devices(DEST, "@u:x")
    assert d.stream_id == 3 and d.master_key == {"k": 1} and d.self_signing_key is None
    assert remote.last[1] == "/_matrix/federation/v1/user/devices/%40u%3Ax"
    remote.body = {"one_time_keys": {"@u:x": {"D": {"signed_curve25519:A": {"key": "k"}}}}}
    c = await client(remote).claim_keys(DEST, {"@u:x": {"D": "signed_curve25519"}})
    assert c.one_time_keys["@u:x"]["D"] == {"signed_curve25519:A": {"key": "k"}}
    assert remote.last[2] == {"one_time_keys": {"@u:x": {"D": "signed_curve25519"}}}
    remote.body = {
        "device_keys": {"@u:x": {"D": {"keys": {}}}},
        "master_keys": {"@u:x": {"usage": []}},
    }
    q = await client(remote).query_keys(DEST, {"@u:x": []})
    assert q.device_keys == {"@u:x": {"D": {"keys": {}}}} and q.self_signing_keys == {}
    assert remote.last == (
        "POST",
        "/_matrix/federation/v1/user/keys/query",
        {"device_keys": {"@u:x": []}},
    )


async def test_public_rooms_get_and_post():
    remote = Remote(
        {"chunk": [{"room_id": "!r:x"}], "next_batch": "n", "total_room_count_estimate": 1}
    )
    r = await client(remote).public_rooms(DEST, limit=5, since="s")
    assert r.chunk == ({"room_id": "!r:x"},) and r.next_batch == "n" and r.prev_batch is None
    assert remote.last == ("GET", "/_matrix/federation/v1/publicRooms?limit=5&since=s", None)
    await client(remote).public_rooms(DEST, search_term="foo", limit=2)
    assert remote.last == (
        "POST",
        "/_matrix/federation/v1/publicRooms",
        {"filter": {"generic_search_term": "foo"}, "limit": 2},
    )


MALFORMED = [
    ("fetch_server_keys", (DEST,), [[], "x", 1]),
    ("query_notary", (DEST, {}), [{}, {"server_keys": {}}, {"server_keys": [1]}]),
    ("version", (DEST,), [{"server": []}, {"server": {"name": 1}}]),
    ("send_transaction", (DEST, "t", [], [], 1), [[], {"pdus": []}]),
    (
        "make_join",
        (DEST, "!r:x", "@u:x", ["10"]),
        [{}, {"event": []}, {"event": {}, "room_version": 10}],
    ),
    (
        "send_join_v2",
        (DEST, "!r:x", "$e", EV),
        [
            {},
            {"state": {}, "auth_chain": []},
            {"state": [1], "auth_chain": []},
            {"state": [], "auth_chain": [], "members_omitted": "yes"},
            {"state": [], "auth_chain": [], "servers_in_room": [1]},
            {"state": [], "auth_chain": [], "event": "x"},
        ],
    ),
    ("send_leave_v2", (DEST, "!r:x", "$e", EV), [[], 1]),
    ("send_knock", (DEST, "!r:x", "$e", EV), [{"knock_room_state": {}}]),
    ("invite_v2", (DEST, "!r:x", "$e", EV, "10"), [{}, {"event": 1}]),
    ("invite_v1", (DEST, "!r:x", "$e", EV), [{"event": EV}, [200], [200, []], [200, {"event": 1}]]),
    ("get_event", (DEST, "$e"), [{}, {"pdus": []}, {"pdus": [EV, EV]}, {"pdus": ["x"]}]),
    ("get_missing_events", (DEST, "!r:x", [], []), [{}, {"events": None}]),
    ("backfill", (DEST, "!r:x", [], 1), [{}, {"pdus": [1]}]),
    ("state_ids", (DEST, "!r:x", "$e"), [{}, {"pdu_ids": [1], "auth_chain_ids": []}]),
    ("state", (DEST, "!r:x", "$e"), [{"pdus": []}, {"pdus": [], "auth_chain": [[]]}]),
    ("event_auth", (DEST, "!r:x", "$e"), [{}, {"auth_chain": "x"}]),
    (
        "timestamp_to_event",
        (DEST, "!r:x", 1, "f"),
        [{}, {"event_id": 1, "origin_server_ts": 1}, {"event_id": "$e", "origin_server_ts": True}],
    ),
    ("query_profile", (DEST, "@u:x"), [[], {"displayname": 5}]),
    ("query_directory", (DEST, "#a:x"), [{}, {"room_id": "!r:x", "servers": "x"}]),
    (
        "user_devices",
        (DEST, "@u:x"),
        [
            {},
            {"user_id": "@u:x", "stream_id": "1", "devices": []},
            {"user_id": "@u:x", "stream_id": 1, "devices": [], "master_key": []},
        ],
    ),
    (
        "claim_keys",
        (DEST, {}),
        [{}, {"one_time_keys": {"@u:x": []}}, {"one_time_keys": {"@u:x": {"D": 1}}}],
    ),
    (
        "query_keys",
        (DEST, {}),
        [{}, {"device_keys": {"@u:x": {"D": []}}}, {"device_keys": {}, "master_keys": {"@u:x": 1}}],
    ),
    ("public_rooms", (DEST,), [{}, {"chunk": [1]}, {"chunk": [], "next_batch": 1}]),
]


@pytest.mark.parametrize(
    ("method", "args", "body"),
    [(m, a, b) for m, a, bodies in MALFORMED for b in [*bodies, b"not json"]],
)
async def test_malformed_answers_are_invalid_response(method, args, body):
    with pytest.raises(InvalidResponse):
        await getattr(client(Remote(body)), method)(*args)


async def test_remote_error_passes_as_remote_server_error():
    def respond(request):
        return httpx.Response(404, json={"errcode": "M_NOT_FOUND", "error": "no room"})

    c = FederationClient(
        FederationTransport(
            server_name="o.test",
            signing_key=KEY,
            dns=FakeDns(addresses={"remote.example": ["8.8.8.8"]}),
            inner_transport=httpx.MockTransport(respond),
        )
    )
    with pytest.raises(RemoteServerError) as info:
        await c.make_join(DEST, "!r:x", "@u:o", ["10"])
    assert info.value.errcode == "M_NOT_FOUND"

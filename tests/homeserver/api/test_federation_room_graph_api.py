"""``/send/{txnId}`` and the room-graph routes over HTTP (a fake X-Matrix check names the
origin from a test header), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import httpx
import hypercorn.trio
import pytest
import trio
from hypercorn.config import Config as HypercornConfig
from quart import request

from federation.core.builder import hash_and_sign_event
from federation.core.hashing import compute_event_id
from homeserver.api._http import build_asgi_app
from homeserver.api.federation.memberships import MembershipsApi
from homeserver.api.federation.room_graph import RoomGraphApi
from homeserver.api.federation.transactions import TransactionsApi
from homeserver.errors import MatrixError
from homeserver.services.federation_joins import FederationMemberships
from homeserver.services.federation_room_graph import RoomGraphService
from homeserver.services.rooms import StateEventSpec
from homeserver.storage import Database, Stores
from tests.homeserver.services.test_federation_inbound import ALICE, REMOTE, ROB, Env


async def _authenticate() -> str:
    origin = request.headers.get("X-Test-Origin")
    if origin is None:
        raise MatrixError(401, "M_UNAUTHORIZED", "no signature")
    return origin


class Api:
    def __init__(self, env: Env, client: httpx.AsyncClient) -> None:
        self.env = env
        self.client = client

    async def get(self, path: str, origin: str | None = REMOTE, **params: Any) -> httpx.Response:
        headers = {"X-Test-Origin": origin} if origin else {}
        return await self.client.get(path, params=params, headers=headers)

    async def send(self, txn_id: str, body: Any, origin: str = REMOTE) -> httpx.Response:
        return await self.client.put(
            f"/_matrix/federation/v1/send/{txn_id}", json=body, headers={"X-Test-Origin": origin}
        )


async def _serve(env: Env, nursery: trio.Nursery) -> AsyncIterator[Api]:
    graph = RoomGraphService(env.events, env.inbound)
    memberships = FederationMemberships(
        env.events, env.inbound, graph, env.clock, server_name="hs.test"
    )
    app = build_asgi_app(
        [
            TransactionsApi(env.inbound, _authenticate, 1 << 20),
            MembershipsApi(memberships, _authenticate, 1 << 20),
            RoomGraphApi(
                graph, _authenticate, env.clock, server_name="hs.test", max_body_bytes=1 << 20
            ),
        ],
        max_body_bytes=1 << 20,
    )
    hc = HypercornConfig()
    hc.bind = ["127.0.0.1:0"]
    hc.accesslog = None
    stop = trio.Event()
    urls = await nursery.start(partial(hypercorn.trio.serve, app, hc, shutdown_trigger=stop.wait))
    async with httpx.AsyncClient(base_url=urls[0]) as client:
        yield Api(env, client)
    stop.set()


@pytest.fixture
async def api(stores: Stores, db: Database, nursery: trio.Nursery) -> AsyncIterator[Api]:
    env = Env(stores, db, "10")
    await env.create_room(
        [StateEventSpec("m.room.history_visibility", "", {"history_visibility": "joined"})]
    )
    async for served in _serve(env, nursery):
        yield served


async def _join(api: Api) -> str:
    join = await api.env.remote_event("m.room.member", {"membership": "join"}, state_key=ROB)
    resp = await api.send("join", {"origin": REMOTE, "origin_server_ts": 1, "pdus": [join.pdu]})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"pdus": {join.event_id: {}}}
    return join.event_id


async def test_send_transaction(api: Api) -> None:
    join = await api.env.remote_event("m.room.member", {"membership": "join"}, state_key=ROB)
    body = {"origin": REMOTE, "origin_server_ts": 1, "pdus": [join.pdu], "edus": []}
    first = await api.send("t1", body)
    assert first.status_code == 200 and first.json() == {"pdus": {join.event_id: {}}}
    again = await api.send("t1", {"origin": REMOTE, "origin_server_ts": 1, "pdus": []})
    assert again.json() == first.json()
    unsigned = await api.client.put("/_matrix/federation/v1/send/t2", json=body)
    assert unsigned.status_code == 401
    too_many = await api.send("t3", {"pdus": [join.pdu] * 51})
    assert too_many.status_code == 400 and too_many.json()["errcode"] == "M_BAD_JSON"
    too_many_edus = await api.send("t4", {"pdus": [], "edus": [{}] * 101})
    assert too_many_edus.status_code == 400
    for bad in ({"pdus": "x"}, {}, {"pdus": [1]}, {"pdus": [], "edus": {}}):
        resp = await api.send("t5", bad)
        assert resp.status_code == 400 and resp.json()["errcode"] == "M_BAD_JSON", bad
    not_json = await api.client.put(
        "/_matrix/federation/v1/send/t6", content=b"{", headers={"X-Test-Origin": REMOTE}
    )
    assert not_json.status_code == 400


async def test_event_and_access(api: Api) -> None:
    room_id = api.env.room_id
    tips = await api.env.events.get_forward_extremities(room_id)
    tip = tips[0].event_id
    # not in the room yet
    assert (await api.get(f"/_matrix/federation/v1/event/{tip}")).status_code == 403
    await _join(api)
    resp = await api.get(f"/_matrix/federation/v1/event/{tip}")
    assert resp.status_code == 200
    body = resp.json()
    assert body["origin"] == "hs.test" and body["pdus"][0]["room_id"] == room_id
    assert (await api.get("/_matrix/federation/v1/event/$nope")).status_code == 404
    assert (await api.get(f"/_matrix/federation/v1/event/{tip}", origin=None)).status_code == 401
    other = await api.get(f"/_matrix/federation/v1/event/{tip}", origin="other.test")
    assert other.status_code == 403 and other.json()["errcode"] == "M_FORBIDDEN"


async def test_history_visibility_for_a_server(api: Api) -> None:
    secret = await api.env.rooms.send(ALICE, api.env.room_id, "m.room.message", {"body": "s"})
    await _join(api)
    later = await api.env.rooms.send(ALICE, api.env.room_id, "m.room.message", {"body": "l"})
    hidden = (await api.get(f"/_matrix/federation/v1/event/{secret.event_id}")).json()
    assert hidden["pdus"][0]["content"] == {}
    shown = (await api.get(f"/_matrix/federation/v1/event/{later.event_id}")).json()
    assert shown["pdus"][0]["content"] == {"body": "l"}


async def test_state_and_auth(api: Api) -> None:
    join_id = await _join(api)
    room_id = api.env.room_id
    message = await api.env.rooms.send(ALICE, room_id, "m.room.message", {"body": "m"})
    resp = await api.get(f"/_matrix/federation/v1/state_ids/{room_id}", event_id=message.event_id)
    assert resp.status_code == 200
    state_ids = resp.json()
    current = await api.env.state_ids()
    assert sorted(state_ids["pdu_ids"]) == sorted(current.values())
    assert set(state_ids["auth_chain_ids"]) <= set(current.values())
    # the state *before* rob's join does not hold it
    before_join = await api.get(f"/_matrix/federation/v1/state_ids/{room_id}", event_id=join_id)
    assert join_id not in before_join.json()["pdu_ids"]
    full = await api.get(f"/_matrix/federation/v1/state/{room_id}", event_id=message.event_id)
    assert sorted(p["type"] for p in full.json()["pdus"]).count("m.room.member") == 2
    assert "auth_chain" in full.json()
    missing = await api.get(f"/_matrix/federation/v1/state_ids/{room_id}")
    assert missing.status_code == 400 and missing.json()["errcode"] == "M_MISSING_PARAM"
    unknown = await api.get(f"/_matrix/federation/v1/state_ids/{room_id}", event_id="$nope")
    assert unknown.status_code == 404 and unknown.json()["errcode"] == "M_NOT_FOUND"
    auth = await api.get(f"/_matrix/federation/v1/event_auth/{room_id}/{message.event_id}")
    types = {p["type"] for p in auth.json()["auth_chain"]}
    assert {"m.room.create", "m.room.power_levels", "m.room.member"} <= types


async def test_rejected_events_are_not_served(api: Api) -> None:
    await _join(api)
    env = api.env
    state = await env.state_ids()
    # a message by someone never joined: rejected
    bad = await env.remote_event("m.room.message", {"body": "x"}, sender="@eve:remote.test")
    resp = await api.send("bad", {"pdus": [bad.pdu]})
    assert resp.json()["pdus"][bad.event_id] == {}
    assert (await api.get(f"/_matrix/federation/v1/event/{bad.event_id}")).status_code == 404
    resp = await api.get(f"/_matrix/federation/v1/state_ids/{env.room_id}", event_id=bad.event_id)
    assert resp.status_code == 404
    assert state == await env.state_ids()


async def test_backfill_and_missing_events(api: Api) -> None:
    await _join(api)
    room_id = api.env.room_id
    sent = [
        (await api.env.rooms.send(ALICE, room_id, "m.room.message", {"body": str(i)})).event_id
        for i in range(5)
    ]
    resp = await api.get(f"/_matrix/federation/v1/backfill/{room_id}", v=sent[-1], limit="3")
    assert resp.status_code == 200
    assert [p["content"]["body"] for p in resp.json()["pdus"]] == ["4", "3", "2"]
    assert (
        await api.get(f"/_matrix/federation/v1/backfill/{room_id}", limit="3")
    ).status_code == 400
    bad_limit = await api.get(f"/_matrix/federation/v1/backfill/{room_id}", v=sent[0], limit="x")
    assert bad_limit.status_code == 400
    missing = await api.client.post(
        f"/_matrix/federation/v1/get_missing_events/{room_id}",
        json={"earliest_events": [sent[0]], "latest_events": [sent[-1]], "limit": 10},
        headers={"X-Test-Origin": REMOTE},
    )
    assert missing.status_code == 200, missing.text
    assert [p["content"]["body"] for p in missing.json()["events"]] == ["1", "2", "3"]
    bad = await api.client.post(
        f"/_matrix/federation/v1/get_missing_events/{room_id}",
        json={"earliest_events": "x", "latest_events": []},
        headers={"X-Test-Origin": REMOTE},
    )
    assert bad.status_code == 400
    empty = await api.client.post(
        f"/_matrix/federation/v1/get_missing_events/{room_id}",
        json={},
        headers={"X-Test-Origin": REMOTE},
    )
    assert empty.status_code == 200 and empty.json() == {"events": []}


async def test_timestamp_to_event(api: Api) -> None:
    await _join(api)
    room_id = api.env.room_id
    path = f"/_matrix/federation/v1/timestamp_to_event/{room_id}"
    resp = await api.get(path, ts="0", dir="f")
    assert resp.status_code == 200 and resp.json()["event_id"].startswith("$")
    assert (await api.get(path, ts="0", dir="b")).status_code == 404
    assert (await api.get(path, ts="0", dir="x")).status_code == 400
    assert (await api.get(path, dir="f")).status_code == 400


async def test_server_acl_on_reads(api: Api) -> None:
    await _join(api)
    room_id = api.env.room_id
    await api.env.rooms.send(
        ALICE, room_id, "m.room.server_acl", {"allow": ["*"], "deny": [REMOTE]}, state_key=""
    )
    tips = await api.env.events.get_forward_extremities(room_id)
    resp = await api.get(f"/_matrix/federation/v1/state_ids/{room_id}", event_id=tips[0].event_id)
    assert resp.status_code == 403 and "ACL" in resp.json()["error"]


async def _signed_from_template(api: Api, template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    pdu = hash_and_sign_event(api.env.version, template, REMOTE, api.env.remote_key)
    return compute_event_id(api.env.version, pdu), pdu


async def test_remote_join_handshake(api: Api) -> None:
    room_id = api.env.room_id
    base = f"/_matrix/federation/v1/make_join/{room_id}/{ROB}"
    old_only = await api.get(base, ver="1")
    assert old_only.status_code == 400
    assert old_only.json()["errcode"] == "M_INCOMPATIBLE_ROOM_VERSION"
    assert old_only.json()["room_version"] == "10"
    resp = await api.get(base, ver=["9", "10"])
    assert resp.status_code == 200, resp.text
    assert resp.json()["room_version"] == "10"
    template = resp.json()["event"]
    assert template["content"] == {"membership": "join"} and template["state_key"] == ROB
    other_user = await api.get(f"/_matrix/federation/v1/make_join/{room_id}/@x:else.test", ver="10")
    assert other_user.status_code == 403
    unknown = await api.get(f"/_matrix/federation/v1/make_join/!nope:hs.test/{ROB}", ver="10")
    assert unknown.status_code == 404

    event_id, pdu = await _signed_from_template(api, template)
    wrong_path = await api.client.put(
        f"/_matrix/federation/v2/send_join/{room_id}/$other",
        json=pdu,
        headers={"X-Test-Origin": REMOTE},
    )
    assert wrong_path.status_code == 400
    sent = await api.client.put(
        f"/_matrix/federation/v2/send_join/{room_id}/{event_id}",
        json=pdu,
        headers={"X-Test-Origin": REMOTE},
    )
    assert sent.status_code == 200, sent.text
    body = sent.json()
    types = {p["type"] for p in body["state"]}
    assert {"m.room.create", "m.room.power_levels", "m.room.join_rules"} <= types
    assert ROB not in [p.get("state_key") for p in body["state"]]  # the state *before* it
    assert {p["type"] for p in body["auth_chain"]} >= {"m.room.create"}
    assert body["members_omitted"] is False and REMOTE in body["servers_in_room"]
    assert (await api.env.state_ids())[("m.room.member", ROB)] == event_id
    # v1 answers [200, {...}] (the event is known now: same answer)
    again = await api.client.put(
        f"/_matrix/federation/v1/send_join/{room_id}/{event_id}",
        json=pdu,
        headers={"X-Test-Origin": REMOTE},
    )
    assert again.status_code == 200 and again.json()[0] == 200

    # and leaves again
    resp = await api.get(f"/_matrix/federation/v1/make_leave/{room_id}/{ROB}")
    assert resp.status_code == 200, resp.text
    leave_id, leave = await _signed_from_template(api, resp.json()["event"])
    left = await api.client.put(
        f"/_matrix/federation/v2/send_leave/{room_id}/{leave_id}",
        json=leave,
        headers={"X-Test-Origin": REMOTE},
    )
    assert left.status_code == 200 and left.json() == {}
    assert (await api.env.state_ids())[("m.room.member", ROB)] == leave_id


async def test_send_join_refuses_other_events(api: Api) -> None:
    room_id = api.env.room_id
    resp = await api.get(f"/_matrix/federation/v1/make_join/{room_id}/{ROB}", ver="10")
    template = resp.json()["event"]
    template["content"] = {"membership": "leave"}
    event_id, pdu = await _signed_from_template(api, template)
    sent = await api.client.put(
        f"/_matrix/federation/v2/send_join/{room_id}/{event_id}",
        json=pdu,
        headers={"X-Test-Origin": REMOTE},
    )
    assert sent.status_code == 400 and sent.json()["errcode"] == "M_BAD_JSON"
    not_json = await api.client.put(
        f"/_matrix/federation/v2/send_join/{room_id}/{event_id}",
        content=b"[]",
        headers={"X-Test-Origin": REMOTE},
    )
    assert not_json.status_code == 400
    # an invite-only room: make_join says no, naming the rule
    await api.env.rooms.send(
        ALICE, room_id, "m.room.join_rules", {"join_rule": "invite"}, state_key=""
    )
    refused = await api.get(f"/_matrix/federation/v1/make_join/{room_id}/{ROB}", ver="10")
    assert refused.status_code == 403 and "not_invited" in refused.json()["error"]


async def test_send_join_with_a_float_is_bad_json(api: Api) -> None:
    room_id = api.env.room_id
    resp = await api.get(f"/_matrix/federation/v1/make_join/{room_id}/{ROB}", ver="10")
    template = resp.json()["event"]
    template["content"]["bad_val"] = 1.1
    pdu = dict(template)
    pdu["hashes"] = {"sha256": "x"}
    pdu["signatures"] = {}
    sent = await api.client.put(
        f"/_matrix/federation/v2/send_join/{room_id}/$whatever",
        json=pdu,
        headers={"X-Test-Origin": REMOTE},
    )
    assert sent.status_code == 400 and sent.json()["errcode"] == "M_BAD_JSON", sent.text


async def test_get_missing_events_checks_access_before_the_body(api: Api) -> None:
    resp = await api.client.post(
        f"/_matrix/federation/v1/get_missing_events/{api.env.room_id}",
        json={"earliest_events": "x"},
        headers={"X-Test-Origin": "other.test"},
    )
    assert resp.status_code == 403 and resp.json()["errcode"] == "M_FORBIDDEN"


async def test_send_join_of_an_unsigned_event_is_forbidden(api: Api) -> None:
    room_id = api.env.room_id
    resp = await api.get(f"/_matrix/federation/v1/make_join/{room_id}/{ROB}", ver="10")
    template = resp.json()["event"]
    sent = await api.client.put(
        f"/_matrix/federation/v1/send_join/{room_id}/$whatever",
        json=template,
        headers={"X-Test-Origin": REMOTE},
    )
    assert sent.status_code == 403 and sent.json()["errcode"] == "M_FORBIDDEN", sent.text


async def test_auth_chains_and_state_come_oldest_first(api: Api) -> None:
    await _join(api)
    room_id = api.env.room_id
    for level in (1, 2, 3):  # power level events: each one the next one's auth event
        await api.env.rooms.send(
            ALICE,
            room_id,
            "m.room.power_levels",
            {"users": {ALICE.user_id: 100, ROB: level}},
            state_key="",
        )
    message = await api.env.rooms.send(ALICE, room_id, "m.room.message", {"body": "m"})
    auth = await api.get(f"/_matrix/federation/v1/event_auth/{room_id}/{message.event_id}")
    full = await api.get(f"/_matrix/federation/v1/state/{room_id}", event_id=message.event_id)
    for pdus in (auth.json()["auth_chain"], full.json()["auth_chain"], full.json()["pdus"]):
        depths = [p["depth"] for p in pdus]
        assert depths == sorted(depths)
    levels = [p for p in full.json()["auth_chain"] if p["type"] == "m.room.power_levels"]
    assert [p["content"].get("users", {}).get(ROB) for p in levels][-2:] == [1, 2]

"""History visibility on every read path, context, timestamp_to_event, members, forget, knock,
bad input, and matrix-nio driving a 1:1 chat and an admin-only group, over real sockets."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import trio
from nio import (  # type: ignore[import-untyped]
    AsyncClient,
    AsyncClientConfig,
    JoinResponse,
    RoomBanResponse,
    RoomCreateResponse,
    RoomInviteResponse,
    RoomKickResponse,
    RoomMessagesResponse,
    RoomPutStateResponse,
    RoomSendResponse,
)

from tests.integration.conftest import RunningServer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
V3 = "/_matrix/client/v3"
V1 = "/_matrix/client/v1"


async def _client(server: RunningServer, name: str) -> tuple[str, httpx.AsyncClient]:
    login = await server.register(name)
    headers = {"Authorization": f"Bearer {login['access_token']}"}
    return login["user_id"], server.client(headers=headers)


async def _send(c: httpx.AsyncClient, room_id: str, body: str) -> str:
    r = await c.put(f"{V3}/rooms/{room_id}/send/m.room.message/{body}", json={"body": body})
    assert r.status_code == 200, r.text
    return str(r.json()["event_id"])


async def test_read_paths_follow_history_visibility(server: RunningServer) -> None:
    _, a = await _client(server, "alice")
    bob_id, b = await _client(server, "bob")
    carol_id, c = await _client(server, "carol")
    _, d = await _client(server, "dave")
    async with a, b, c, d:
        r = await a.post(
            f"{V3}/createRoom",
            json={
                "preset": "private_chat",
                "invite": [bob_id, carol_id],
                "initial_state": [
                    {
                        "type": "m.room.history_visibility",
                        "content": {"history_visibility": "joined"},
                    }
                ],
            },
        )
        room_id = r.json()["room_id"]
        before = await _send(a, room_id, "before")
        assert (await b.post(f"{V3}/rooms/{room_id}/join", json={})).status_code == 200
        during = await _send(a, room_id, "during")
        assert (await b.post(f"{V3}/rooms/{room_id}/leave", json={})).status_code == 200
        await a.put(f"{V3}/rooms/{room_id}/state/m.room.topic", json={"topic": "later"})
        after = await _send(a, room_id, "after")

        # bob left: his window only
        page = (
            await b.get(f"{V3}/rooms/{room_id}/messages", params={"dir": "f", "limit": 100})
        ).json()
        assert [e["content"]["body"] for e in page["chunk"] if "body" in e["content"]] == ["during"]
        assert (await b.get(f"{V3}/rooms/{room_id}/event/{during}")).status_code == 200
        for hidden in (before, after):
            r = await b.get(f"{V3}/rooms/{room_id}/event/{hidden}")
            assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"
        state = (await b.get(f"{V3}/rooms/{room_id}/state")).json()
        assert ("m.room.topic", "") not in {(s["type"], s["state_key"]) for s in state}
        assert (await b.get(f"{V3}/rooms/{room_id}/state/m.room.topic")).status_code == 404
        assert (await b.get(f"{V3}/rooms/{room_id}/joined_members")).status_code == 403
        r = await b.get(f"{V3}/rooms/{room_id}/context/{after}")
        assert r.status_code == 404

        # carol (invited) and dave (stranger): every read path is 403
        paths = [
            f"{V3}/rooms/{room_id}/messages",
            f"{V3}/rooms/{room_id}/state",
            f"{V3}/rooms/{room_id}/state/m.room.create/",
            f"{V3}/rooms/{room_id}/members",
            f"{V3}/rooms/{room_id}/joined_members",
            f"{V3}/rooms/{room_id}/context/{during}",
            f"{V1}/rooms/{room_id}/timestamp_to_event?ts=0&dir=f",
        ]
        for client in (c, d):
            for path in paths:
                r = await client.get(path)
                assert r.status_code == 403, (path, r.text)
                assert r.json()["errcode"] == "M_FORBIDDEN"
            # a single event is not found rather than forbidden (as on Synapse)
            r = await client.get(f"{V3}/rooms/{room_id}/event/{during}")
            assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"

        # world_readable: a stranger may read history from then on, but not earlier events
        r = await a.put(
            f"{V3}/rooms/{room_id}/state/m.room.history_visibility",
            json={"history_visibility": "world_readable"},
        )
        assert r.status_code == 200
        public = await _send(a, room_id, "public")
        page = (
            await d.get(f"{V3}/rooms/{room_id}/messages", params={"dir": "f", "limit": 100})
        ).json()
        assert [e["content"]["body"] for e in page["chunk"] if "body" in e["content"]] == ["public"]
        assert (await d.get(f"{V3}/rooms/{room_id}/event/{public}")).status_code == 200
        assert (await d.get(f"{V3}/rooms/{room_id}/event/{before}")).status_code == 404
        assert (await d.get(f"{V3}/rooms/{room_id}/joined_members")).status_code == 200


async def test_context_timestamp_members_and_tokens(server: RunningServer) -> None:
    alice_id, a = await _client(server, "alice")
    bob_id, b = await _client(server, "bob")
    async with a, b:
        room_id = (await a.post(f"{V3}/createRoom", json={"preset": "public_chat"})).json()[
            "room_id"
        ]
        ids = [await _send(a, room_id, f"m{i}") for i in range(9)]
        r = await a.get(f"{V3}/rooms/{room_id}/context/{ids[4]}", params={"limit": 4})
        assert r.status_code == 200, r.text
        ctx = r.json()
        assert ctx["event"]["event_id"] == ids[4]
        assert [e["event_id"] for e in ctx["events_before"]] == [ids[3], ids[2]]
        assert [e["event_id"] for e in ctx["events_after"]] == [ids[5], ids[6]]
        assert ("m.room.create", "") in {(s["type"], s["state_key"]) for s in ctx["state"]}
        # the tokens continue with /messages, with nothing skipped or repeated
        back = (
            await a.get(
                f"{V3}/rooms/{room_id}/messages",
                params={"dir": "b", "from": ctx["start"], "limit": 2},
            )
        ).json()
        assert [e["event_id"] for e in back["chunk"]] == [ids[1], ids[0]]
        forward = (
            await a.get(
                f"{V3}/rooms/{room_id}/messages",
                params={"dir": "f", "from": ctx["end"], "limit": 5},
            )
        ).json()
        assert [e["event_id"] for e in forward["chunk"]] == ids[7:]
        # a filter applies to the context (not to the event itself)
        flt = json.dumps({"types": ["m.room.member"], "lazy_load_members": True})
        ctx = (await a.get(f"{V3}/rooms/{room_id}/context/{ids[4]}", params={"filter": flt})).json()
        assert ctx["events_before"] == [] and ctx["events_after"] == []
        assert {s["state_key"] for s in ctx["state"]} == {alice_id}
        r = await a.get(f"{V3}/rooms/{room_id}/context/{ids[4]}", params={"filter": "{nope"})
        assert r.status_code == 400 and r.json()["errcode"] == "M_NOT_JSON"  # as Synapse
        r = await a.get(f"{V3}/rooms/{room_id}/context/{ids[4]}", params={"limit": "x"})
        assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM"
        r = await a.get(f"{V3}/rooms/{room_id}/context/$unknown")
        assert r.status_code == 404
        # messages filter
        flt = json.dumps({"not_types": ["m.room.message"]})
        page = (
            await a.get(f"{V3}/rooms/{room_id}/messages", params={"dir": "f", "filter": flt})
        ).json()
        assert page["chunk"] and all(e["type"] != "m.room.message" for e in page["chunk"])

        # timestamp_to_event in both directions
        event = (await a.get(f"{V3}/rooms/{room_id}/event/{ids[4]}")).json()
        ts = event["origin_server_ts"]
        r = await a.get(f"{V1}/rooms/{room_id}/timestamp_to_event", params={"ts": ts, "dir": "b"})
        assert r.status_code == 200 and r.json()["origin_server_ts"] <= ts
        r = await a.get(f"{V1}/rooms/{room_id}/timestamp_to_event", params={"ts": ts, "dir": "f"})
        assert r.status_code == 200 and r.json()["origin_server_ts"] >= ts
        r = await a.get(
            f"{V1}/rooms/{room_id}/timestamp_to_event", params={"ts": 2**50, "dir": "f"}
        )
        assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"
        bad: list[dict[str, str | int]] = [
            {"ts": ts},
            {"dir": "f"},
            {"ts": "x", "dir": "f"},
            {"ts": 1, "dir": "x"},
        ]
        for params in bad:
            r = await a.get(f"{V1}/rooms/{room_id}/timestamp_to_event", params=params)
            assert r.status_code == 400, params

        # members: at a token from before bob joined, membership filters
        token = (await a.get(f"{V3}/rooms/{room_id}/messages", params={"limit": 1})).json()["start"]
        assert (
            await b.post(f"{V3}/join/{room_id}", params={"via": "test.local"})
        ).status_code == 200
        now = (await a.get(f"{V3}/rooms/{room_id}/members")).json()["chunk"]
        assert {m["state_key"] for m in now} == {alice_id, bob_id}
        at_end = (await a.get(f"{V3}/rooms/{room_id}/members", params={"at": token})).json()
        assert {m["state_key"] for m in at_end["chunk"]} == {alice_id, bob_id}
        at_ctx = (
            await a.get(f"{V3}/rooms/{room_id}/context/{ids[0]}", params={"limit": 0})
        ).json()["start"]
        old = (await a.get(f"{V3}/rooms/{room_id}/members", params={"at": at_ctx})).json()
        assert {m["state_key"] for m in old["chunk"]} == {alice_id}
        r = await a.get(f"{V3}/rooms/{room_id}/members", params={"not_membership": "join"})
        assert r.json()["chunk"] == []
        r = await a.get(f"{V3}/rooms/{room_id}/members", params={"membership": "nope"})
        assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM"
        r = await a.get(f"{V3}/rooms/{room_id}/members", params={"at": "garbage"})
        assert r.status_code == 400


async def test_forget_knock_and_bad_input(server: RunningServer) -> None:
    alice_id, a = await _client(server, "alice")
    bob_id, b = await _client(server, "bob")
    async with a, b:
        room_id = (
            await a.post(
                f"{V3}/createRoom",
                json={
                    "room_version": "10",
                    "initial_state": [
                        {"type": "m.room.join_rules", "content": {"join_rule": "knock"}}
                    ],
                },
            )
        ).json()["room_id"]
        r = await b.post(f"{V3}/knock/{room_id}", json={"reason": "please"})
        assert r.status_code == 200 and r.json() == {"room_id": room_id}
        members = (await a.get(f"{V3}/rooms/{room_id}/members")).json()["chunk"]
        knock = next(m for m in members if m["state_key"] == bob_id)
        assert knock["content"] == {"membership": "knock", "reason": "please"}
        r = await a.post(
            f"{V3}/rooms/{room_id}/invite", json={"user_id": bob_id, "reason": "come in"}
        )
        assert r.status_code == 200
        assert (await b.post(f"{V3}/join/{room_id}", json={})).status_code == 200
        await _send(a, room_id, "hello")
        r = await b.post(f"{V3}/rooms/{room_id}/forget", json={})
        assert r.status_code == 400 and r.json()["errcode"] == "M_UNKNOWN"
        assert (await b.post(f"{V3}/rooms/{room_id}/leave", json={})).status_code == 200
        assert (await b.get(f"{V3}/rooms/{room_id}/messages")).status_code == 200
        assert (await b.post(f"{V3}/rooms/{room_id}/forget")).status_code == 200
        assert (await b.get(f"{V3}/rooms/{room_id}/messages")).status_code == 403
        assert (await b.get(f"{V3}/rooms/{room_id}/state")).status_code == 403

        # a third-party invite needs id_access_token (the flows: test_identity_server.py)
        r = await a.post(
            f"{V3}/rooms/{room_id}/invite",
            json={"id_server": "id.example", "medium": "email", "address": "x@example.org"},
        )
        assert r.status_code == 400 and r.json()["errcode"] == "M_MISSING_PARAM"
        # invalid IDs, types and keys
        for method, path, body in [
            ("PUT", f"{V3}/rooms/not-a-room/send/m.room.message/1", {}),
            ("GET", f"{V3}/rooms/not-a-room/messages", None),
            ("POST", f"{V3}/rooms/{room_id}/invite", {"user_id": "bob"}),
            ("POST", f"{V3}/rooms/{room_id}/ban", {"user_id": "@"}),
            ("PUT", f"{V3}/rooms/{room_id}/send/{'t' * 256}/1", {}),
            ("PUT", f"{V3}/rooms/{room_id}/state/m.x/{'k' * 256}", {}),
            ("GET", f"{V3}/rooms/{room_id}/event/not-an-event", None),
            ("POST", f"{V3}/join/nothing", {}),
            ("PUT", f"{V3}/rooms/{room_id}/state/m.room.member/{bob_id}", {"membership": "x"}),
        ]:
            r = await a.request(method, path, json=body)
            assert r.status_code == 400, (path, r.text)
            assert r.json()["errcode"] == "M_INVALID_PARAM", (path, r.text)
        r = await a.put(f"{V3}/rooms/{room_id}/send/m.room.message/big", json={"b": "x" * 66_000})
        assert r.status_code == 413 and r.json()["errcode"] == "M_TOO_LARGE"
        r = await a.put(
            f"{V3}/rooms/{room_id}/send/m.room.message/badjson",
            content=b"[1, 2]",
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 400 and r.json()["errcode"] == "M_BAD_JSON"
        r = await a.post(f"{V3}/join/%23nowhere:test.local", json={})
        assert r.status_code == 404
        r = await a.post(f"{V3}/createRoom", json={"room_alias_name": 5})
        assert r.status_code == 400 and r.json()["errcode"] == "M_BAD_JSON"
        # transaction_id is shown to the sending device only
        event_id = await _send(a, room_id, "with-txn")
        mine = (await a.get(f"{V3}/rooms/{room_id}/event/{event_id}")).json()
        assert mine["unsigned"]["transaction_id"] == "with-txn" and mine["unsigned"]["age"] >= 0
        assert alice_id


async def test_matrix_nio_one_to_one_and_admin_only_group(server: RunningServer) -> None:
    """matrix-nio 0.26.0: a 1:1 chat, then a group where only admins send and edit info,
    with kick and ban."""

    async def scenario(base_url: str) -> None:
        def client() -> AsyncClient:
            return AsyncClient(base_url, "", config=AsyncClientConfig(store_sync_tokens=False))

        admin, member, other = client(), client(), client()
        try:
            for c, name in ((admin, "admin"), (member, "member"), (other, "other")):
                await c.register(name, "correct horse battery")
            # 1:1 chat
            dm = await admin.room_create(is_direct=True, invite=[member.user_id])
            assert isinstance(dm, RoomCreateResponse), dm
            assert isinstance(await member.join(dm.room_id), JoinResponse)
            sent = await member.room_send(dm.room_id, "m.room.message", {"body": "hi admin"})
            assert isinstance(sent, RoomSendResponse), sent
            msgs = await admin.room_messages(dm.room_id, start="", limit=20)
            assert isinstance(msgs, RoomMessagesResponse)
            assert sent.event_id in [e.event_id for e in msgs.chunk]

            # the group: only admins send (events_default 50) and edit info (state 50)
            group = await admin.room_create(
                name="Announcements",
                power_level_override={"events_default": 50, "state_default": 50},
            )
            assert isinstance(group, RoomCreateResponse), group
            for c in (member, other):
                invited = await admin.room_invite(group.room_id, c.user_id)
                assert isinstance(invited, RoomInviteResponse), invited
                assert isinstance(await c.join(group.room_id), JoinResponse)
            ok = await admin.room_send(group.room_id, "m.room.message", {"body": "news"})
            assert isinstance(ok, RoomSendResponse), ok
            denied = await member.room_send(group.room_id, "m.room.message", {"body": "me"})
            assert not isinstance(denied, RoomSendResponse)
            assert denied.status_code == "M_FORBIDDEN"
            rename = await member.room_put_state(group.room_id, "m.room.name", {"name": "mine"})
            assert not isinstance(rename, RoomPutStateResponse)
            topic = await admin.room_put_state(group.room_id, "m.room.topic", {"topic": "t"})
            assert isinstance(topic, RoomPutStateResponse), topic
            # a member may not kick; the admin kicks and bans
            kick = await member.room_kick(group.room_id, other.user_id)
            assert not isinstance(kick, RoomKickResponse)
            assert isinstance(await admin.room_kick(group.room_id, other.user_id), RoomKickResponse)
            assert isinstance(await admin.room_ban(group.room_id, member.user_id), RoomBanResponse)
            again = await member.join(group.room_id)
            assert not isinstance(again, JoinResponse)
        finally:
            for c in (admin, member, other):
                await c.close()

    await trio.to_thread.run_sync(lambda: asyncio.run(scenario(server.base_url)))

"""``/sync`` over real sockets, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import trio

from tests.integration.conftest import RunningServer, ServerFactory

V3 = "/_matrix/client/v3"


class User:
    def __init__(self, server: RunningServer, login: dict[str, Any]) -> None:
        self.user_id: str = login["user_id"]
        self.device_id: str = login["device_id"]
        self.token: str = login["access_token"]
        self.client = server.client(headers={"Authorization": f"Bearer {self.token}"})

    async def sync(self, **params: Any) -> dict[str, Any]:
        r = await self.client.get(f"{V3}/sync", params=params)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def create_room(self, **body: Any) -> str:
        r = await self.client.post(f"{V3}/createRoom", json=body)
        assert r.status_code == 200, r.text
        room_id: str = r.json()["room_id"]
        return room_id

    async def send(self, room_id: str, body: str, txn: str | None = None) -> str:
        txn = txn or f"t{trio.current_time()}{body}"
        r = await self.client.put(
            f"{V3}/rooms/{room_id}/send/m.room.message/{txn}",
            json={"msgtype": "m.text", "body": body},
        )
        assert r.status_code == 200, r.text
        event_id: str = r.json()["event_id"]
        return event_id

    async def join(self, room_id: str) -> None:
        r = await self.client.post(f"{V3}/join/{room_id}", json={})
        assert r.status_code == 200, r.text


async def _user(server: RunningServer, name: str, **body: Any) -> User:
    return User(server, await server.register(name, **body))


def _bodies(room: dict[str, Any]) -> list[str]:
    return [
        e["content"]["body"] for e in room["timeline"]["events"] if e["type"] == "m.room.message"
    ]


async def test_initial_then_incremental(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    async with alice.client:
        room_id = await alice.create_room(name="Room")
        await alice.send(room_id, "one", "txn-one")
        first = await alice.sync()
        assert first["next_batch"].startswith("s")
        room = first["rooms"]["join"][room_id]
        assert _bodies(room) == ["one"]
        ev = room["timeline"]["events"][-1]
        assert ev["unsigned"]["transaction_id"] == "txn-one"
        assert "room_id" not in ev and ev["sender"] == alice.user_id
        state_types = {e["type"] for e in room["state"]["events"]} | {
            e["type"] for e in room["timeline"]["events"]
        }
        assert {"m.room.create", "m.room.member", "m.room.power_levels", "m.room.name"} <= (
            state_types
        )
        assert room["summary"]["m.joined_member_count"] == 1

        # nothing new: returns at once without timeout, empty
        again = await alice.sync(since=first["next_batch"])
        assert again["rooms"]["join"] == {}
        assert again["next_batch"] == first["next_batch"]

        await alice.send(room_id, "two")
        inc = await alice.sync(since=first["next_batch"])
        room = inc["rooms"]["join"][room_id]
        assert _bodies(room) == ["two"]
        assert room["timeline"]["limited"] is False
        assert room["state"]["events"] == []


async def test_long_poll_wakes_on_message(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    bob = await _user(server, "bob")
    async with alice.client, bob.client:
        room_id = await alice.create_room(preset="public_chat")
        await bob.join(room_id)
        since = (await bob.sync())["next_batch"]
        got: dict[str, Any] = {}

        async def poll() -> None:
            start = trio.current_time()
            got["body"] = await bob.sync(since=since, timeout=20000)
            got["elapsed"] = trio.current_time() - start

        async with trio.open_nursery() as nursery:
            nursery.start_soon(poll)
            await trio.sleep(0.3)  # let the poll park; the assertion does not depend on it
            await alice.send(room_id, "wake up")
        assert got["elapsed"] < 15, "the long-poll was not woken by the message"
        assert _bodies(got["body"]["rooms"]["join"][room_id]) == ["wake up"]


async def test_long_poll_times_out_empty(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    async with alice.client:
        since = (await alice.sync())["next_batch"]
        start = trio.current_time()
        body = await alice.sync(since=since, timeout=300)
        assert trio.current_time() - start >= 0.25
        assert body["rooms"]["join"] == {} and body["next_batch"] == since


async def test_limited_timeline_and_gap_fill(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    async with alice.client:
        room_id = await alice.create_room()
        since = (await alice.sync())["next_batch"]
        for i in range(15):
            await alice.send(room_id, f"m{i}")
        filt = json.dumps({"room": {"timeline": {"limit": 5}}})
        body = await alice.sync(since=since, filter=filt)
        room = body["rooms"]["join"][room_id]
        assert _bodies(room) == [f"m{i}" for i in range(10, 15)]
        assert room["timeline"]["limited"] is True
        # the gap is filled backwards from prev_batch, exactly once, in order
        r = await alice.client.get(
            f"{V3}/rooms/{room_id}/messages",
            params={"dir": "b", "from": room["timeline"]["prev_batch"], "limit": 5},
        )
        assert r.status_code == 200, r.text
        assert [e["content"]["body"] for e in r.json()["chunk"]] == [
            f"m{i}" for i in range(9, 4, -1)
        ]


async def test_invite_join_leave_sections(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    bob = await _user(server, "bob")
    async with alice.client, bob.client:
        since = (await bob.sync())["next_batch"]
        room_id = await alice.create_room(name="Secret", invite=[bob.user_id])
        body = await bob.sync(since=since)
        invite = body["rooms"]["invite"][room_id]["invite_state"]["events"]
        assert {
            "type": "m.room.name",
            "state_key": "",
            "content": {"name": "Secret"},
            "sender": alice.user_id,
        } in invite
        assert any(
            e["type"] == "m.room.member" and e["content"]["membership"] == "invite" for e in invite
        )
        assert body["rooms"]["join"] == {}

        await bob.join(room_id)
        body = await bob.sync(since=body["next_batch"])
        assert room_id in body["rooms"]["join"] and body["rooms"]["invite"] == {}
        joined = body["rooms"]["join"][room_id]
        # a newly joined room comes with its full state
        all_types = {e["type"] for e in joined["state"]["events"] + joined["timeline"]["events"]}
        assert {"m.room.create", "m.room.name", "m.room.power_levels"} <= all_types

        await alice.send(room_id, "before leave")
        r = await bob.client.post(f"{V3}/rooms/{room_id}/leave", json={})
        assert r.status_code == 200
        await alice.send(room_id, "after leave")
        body = await bob.sync(since=body["next_batch"])
        left = body["rooms"]["leave"][room_id]
        assert _bodies(left) == ["before leave"]
        assert left["timeline"]["events"][-1]["content"]["membership"] == "leave"
        assert room_id not in body["rooms"]["join"]

        # not shown in an initial sync unless include_leave
        assert room_id not in (await bob.sync())["rooms"]["leave"]
        with_leave = await bob.sync(filter=json.dumps({"room": {"include_leave": True}}))
        assert room_id in with_leave["rooms"]["leave"]


async def test_account_data_in_sync(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    async with alice.client as a:
        room_id = await alice.create_room()
        since = (await alice.sync())["next_batch"]
        r = await a.put(
            f"{V3}/user/{alice.user_id}/account_data/org.example.setting", json={"on": True}
        )
        assert r.status_code == 200
        r = await a.put(
            f"{V3}/user/{alice.user_id}/rooms/{room_id}/account_data/org.example.room",
            json={"x": 1},
        )
        assert r.status_code == 200
        body = await alice.sync(since=since)
        assert {"type": "org.example.setting", "content": {"on": True}} in body["account_data"][
            "events"
        ]
        room = body["rooms"]["join"][room_id]
        assert room["account_data"]["events"] == [{"type": "org.example.room", "content": {"x": 1}}]
        assert room["timeline"]["events"] == []


async def test_account_data_wakes_long_poll(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    async with alice.client as a:
        since = (await alice.sync())["next_batch"]
        got: dict[str, Any] = {}

        async def poll() -> None:
            got["body"] = await alice.sync(since=since, timeout=20000)

        with trio.fail_after(15):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(poll)
                await trio.sleep(0.3)
                await a.put(f"{V3}/user/{alice.user_id}/account_data/org.example.t", json={})
        assert got["body"]["account_data"]["events"][0]["type"] == "org.example.t"


async def test_filters_applied(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    bob = await _user(server, "bob")
    async with alice.client, bob.client:
        room_id = await alice.create_room(preset="public_chat")
        other_room = await alice.create_room()
        await bob.join(room_id)
        await bob.send(room_id, "from bob")
        await alice.send(room_id, "from alice")
        r = await alice.client.post(
            f"{V3}/user/{alice.user_id}/filter",
            json={
                "room": {
                    "not_rooms": [other_room],
                    "timeline": {"types": ["m.room.message"], "limit": 1},
                    "state": {"lazy_load_members": True},
                },
                "event_fields": ["type", "content.body", "sender", "state_key"],
            },
        )
        assert r.status_code == 200, r.text
        body = await alice.sync(filter=r.json()["filter_id"])
        assert other_room not in body["rooms"]["join"]
        room = body["rooms"]["join"][room_id]
        assert room["timeline"]["events"] == [
            {"type": "m.room.message", "content": {"body": "from alice"}, "sender": alice.user_id}
        ]
        assert room["timeline"]["limited"] is True
        members = {e["state_key"] for e in room["state"]["events"] if e["type"] == "m.room.member"}
        # lazy: only the timeline's senders, me, and the summary's heroes (an unnamed room)
        assert members == {alice.user_id, bob.user_id}
        assert room["summary"]["m.heroes"] == [bob.user_id]


@pytest.mark.parametrize(
    "params",
    [
        {"since": "garbage"},
        {"since": "s999999999_0_0_0_0_0_0"},
        {"timeout": "soon"},
        {"full_state": "yes"},
        {"set_presence": "busy"},
        {"filter": "{not json"},
    ],
)
async def test_bad_parameters(server: RunningServer, params: dict[str, str]) -> None:
    alice = await _user(server, "alice")
    async with alice.client as a:
        r = await a.get(f"{V3}/sync", params=params)
        assert r.status_code == 400, r.text
        assert r.json()["errcode"] in ("M_INVALID_PARAM", "M_BAD_JSON", "M_NOT_JSON")


async def test_unknown_filter_id(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    async with alice.client as a:
        r = await a.get(f"{V3}/sync", params={"filter": "12345"})
        assert r.status_code in (400, 404), r.text
        assert r.json()["errcode"] in ("M_NOT_FOUND", "M_INVALID_PARAM")


async def test_sync_requires_token(server: RunningServer) -> None:
    async with server.client() as c:
        r = await c.get(f"{V3}/sync")
        assert r.status_code == 401 and r.json()["errcode"] == "M_MISSING_TOKEN"


async def test_devices_sync_independently(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    async with server.client() as c:
        r = await c.post(
            f"{V3}/login",
            json={
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": "alice"},
                "password": "correct horse",
            },
        )
        assert r.status_code == 200
        phone = User(server, r.json())
    async with alice.client, phone.client:
        room_id = await alice.create_room()
        t1 = (await alice.sync())["next_batch"]
        t2 = (await phone.sync())["next_batch"]
        await alice.send(room_id, "hi", "same-txn")
        a = (await alice.sync(since=t1))["rooms"]["join"][room_id]["timeline"]["events"][-1]
        p = (await phone.sync(since=t2))["rooms"]["join"][room_id]["timeline"]["events"][-1]
        assert a["event_id"] == p["event_id"]
        # the transaction ID is only shown to the device that sent the event
        assert a["unsigned"]["transaction_id"] == "same-txn"
        assert "transaction_id" not in p["unsigned"]


async def test_token_valid_after_restart(homeserver_factory: ServerFactory, tmp_path: Any) -> None:
    srv = await homeserver_factory()
    alice = await _user(srv, "alice")
    async with alice.client:
        room_id = await alice.create_room()
        since = (await alice.sync())["next_batch"]
        await alice.send(room_id, "before restart")
    # a second server on the same database and keys stands in for a restart
    srv2 = await homeserver_factory(
        data_dir=str(srv.directory / "data"),
        signing_key_path=str(srv.directory / "data/signing.key"),
    )
    async with httpx.AsyncClient(
        base_url=srv2.base_url, headers={"Authorization": f"Bearer {alice.token}"}, timeout=30
    ) as c:
        r = await c.get(f"{V3}/sync", params={"since": since})
        assert r.status_code == 200, r.text
        assert _bodies(r.json()["rooms"]["join"][room_id]) == ["before restart"]


async def test_history_visibility_applies_to_timelines(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    bob = await _user(server, "bob")
    async with alice.client, bob.client:
        room_id = await alice.create_room(
            preset="public_chat",
            initial_state=[
                {"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}}
            ],
        )
        await alice.send(room_id, "before bob")
        since = (await bob.sync())["next_batch"]
        await bob.join(room_id)
        await alice.send(room_id, "after bob")
        for body in (await bob.sync(), await bob.sync(since=since)):
            room = body["rooms"]["join"][room_id]
            assert _bodies(room) == ["after bob"]
        # alice, joined all along, sees both
        assert _bodies((await alice.sync())["rooms"]["join"][room_id]) == [
            "before bob",
            "after bob",
        ]


def _open_requests(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith("homeserver_http_open_requests "):
            return float(line.split()[1])
    raise AssertionError("no open-requests gauge in /metrics")


async def test_a_long_poll_ends_when_its_client_disconnects(
    homeserver_factory: ServerFactory,
) -> None:
    """The waiting long-poll watches its connection: when the client goes away it stops at
    once (no task or listener left behind until the timeout), and the server still works."""
    srv = await homeserver_factory(
        listeners=[{"host": "127.0.0.1", "port": 0, "resources": ["client", "metrics"]}],
        presence={"enabled": False},  # nothing else wakes the poll
    )
    alice = await _user(srv, "alice")
    async with alice.client:
        since = (await alice.sync())["next_batch"]
        host, port = srv.base_url.removeprefix("http://").rsplit(":", 1)

        async def open_requests() -> float:
            r = await alice.client.get("/metrics")
            return _open_requests(r.text) - 1  # not counting this scrape

        idle = await open_requests()
        stream = await trio.open_tcp_stream(host, int(port))
        await stream.send_all(
            (
                f"GET {V3}/sync?since={since}&timeout=600000 HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: Bearer {alice.token}\r\n\r\n"
            ).encode()
        )
        with trio.fail_after(10):
            while await open_requests() < idle + 1:  # parked
                await trio.sleep(0.02)
            await stream.aclose()
            while await open_requests() > idle:  # gone without waiting for the timeout
                await trio.sleep(0.02)
        # another long-poll of the same user still wakes
        room_id = await alice.create_room()
        body = await alice.sync(since=since, timeout=5000)
        assert room_id in body["rooms"]["join"]

"""The r0 API over real sockets (SQLite and PostgreSQL): ``/_matrix/client/r0/`` as ``v3``, the
``GET /events`` stream, and the sends without a transaction ID."""

from __future__ import annotations

from typing import Any

import trio

from tests.integration.conftest import RunningServer

R0 = "/_matrix/client/r0"
V3 = "/_matrix/client/v3"
V1 = "/_matrix/client/v1"


class User:
    def __init__(self, server: RunningServer, login: dict[str, Any]) -> None:
        self.user_id: str = login["user_id"]
        self.client = server.client(headers={"Authorization": f"Bearer {login['access_token']}"})


async def _user(server: RunningServer, name: str) -> User:
    return User(server, await server.register(name))


async def test_r0_is_v3(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    async with alice.client as a:
        r = await a.get(f"{R0}/account/whoami")
        assert r.status_code == 200 and r.json()["user_id"] == alice.user_id
        r = await a.post(f"{R0}/createRoom", json={"name": "old client"})
        assert r.status_code == 200, r.text
        room_id = r.json()["room_id"]
        # the raw endpoints (send, sync) and the framework's routes alike
        r = await a.put(f"{R0}/rooms/{room_id}/send/m.room.message/1", json={"body": "hi"})
        assert r.status_code == 200, r.text
        event_id = r.json()["event_id"]
        r = await a.put(f"{R0}/rooms/{room_id}/send/m.room.message/1", json={"body": "hi"})
        assert r.json()["event_id"] == event_id  # the same transaction as under v3
        r = await a.put(f"{V3}/rooms/{room_id}/send/m.room.message/1", json={"body": "hi"})
        assert r.json()["event_id"] == event_id
        r = await a.get(f"{R0}/sync")
        assert r.status_code == 200
        events = r.json()["rooms"]["join"][room_id]["timeline"]["events"]
        assert event_id in [e["event_id"] for e in events]
        r = await a.get(f"{R0}/rooms/{room_id}/messages", params={"dir": "b"})
        assert event_id in [e["event_id"] for e in r.json()["chunk"]]
        r = await a.get(f"{R0}/rooms/{room_id}/messages", params={"from": f"t{'9' * 30}_1"})
        assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM"
        # a handler that parses its own path (push rules)
        r = await a.get(f"{R0}/pushrules/global/override/.m.rule.master")
        assert r.status_code == 200, r.text
        assert r.json()["rule_id"] == ".m.rule.master"
        # the access token as a query parameter, as old clients send it
        async with server.client() as anon:
            token = a.headers["Authorization"].split()[1]
            r = await anon.get(f"{R0}/account/whoami", params={"access_token": token})
            assert r.status_code == 200
            r = await anon.get(f"{R0}/account/whoami")
            assert r.status_code == 401 and r.json()["errcode"] == "M_MISSING_TOKEN"
        # the media repository's r0 prefix too
        r = await a.post(
            "/_matrix/media/r0/upload", content=b"hello", headers={"Content-Type": "text/plain"}
        )
        assert r.status_code == 200, r.text
        media_id = r.json()["content_uri"].rsplit("/", 1)[1]
        # the deprecated download answers under r0 exactly as under v3 (frozen media: 404)
        old = await a.get(f"/_matrix/media/r0/download/test.local/{media_id}")
        new = await a.get(f"/_matrix/media/v3/download/test.local/{media_id}")
        assert (old.status_code, old.content) == (new.status_code, new.content)
        assert old.json()["errcode"] != "M_UNRECOGNIZED"
        # unknown endpoints, and v1-only ones, are not found under r0
        r = await a.get(f"{R0}/no/such/endpoint")
        assert r.status_code == 404 and r.json()["errcode"] == "M_UNRECOGNIZED"
        r = await a.get(f"{R0}/rooms/{room_id}/relations/{event_id}")
        assert r.status_code == 404
        # only the prefix is rewritten
        r = await a.get("/_matrix/client/r0x/account/whoami")
        assert r.status_code == 404


async def test_event_stream(server: RunningServer) -> None:
    alice = await _user(server, "alice2")
    bob = await _user(server, "bob2")
    async with alice.client as a, bob.client as b:
        r = await a.get(f"{R0}/events", params={"timeout": 0})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["chunk"] == [] and body["start"] and body["end"]
        token = body["end"]
        bob_token = (await b.get(f"{R0}/events", params={"timeout": 0})).json()["end"]

        r = await a.post(f"{V3}/createRoom", json={"invite": [bob.user_id]})
        room_id = r.json()["room_id"]
        r = await a.put(f"{V3}/rooms/{room_id}/send/m.room.message/t", json={"body": "one"})
        sent = r.json()["event_id"]
        r = await a.get(f"{R0}/events", params={"from": token, "timeout": 0})
        body = r.json()
        assert body["start"] == token
        by_id = {e.get("event_id"): e for e in body["chunk"]}
        assert by_id[sent]["room_id"] == room_id
        assert by_id[sent]["content"] == {"body": "one"}
        assert any(e["type"] == "m.room.create" for e in body["chunk"])
        token = body["end"]

        # nothing new in the room (presence is kept apart: the presence timers may move it)
        r = await a.get(f"{V3}/events", params={"from": token, "timeout": 0})
        assert [e for e in r.json()["chunk"] if e["type"] != "m.presence"] == []

        # the invitee sees its invite
        r = await b.get(f"{R0}/events", params={"timeout": 0, "from": bob_token})
        invites = [
            e
            for e in r.json()["chunk"]
            if e["type"] == "m.room.member" and e.get("state_key") == bob.user_id
        ]
        assert invites and invites[-1]["room_id"] == room_id
        assert invites[-1]["content"]["membership"] == "invite"

        # a long-poll returns when something happens (another change, e.g. presence, may wake
        # it first: poll on from each answer's end, as a client does)
        typing: list[dict[str, Any]] = []

        async def poll() -> None:
            since = token
            while not typing:
                r = await a.get(f"{R0}/events", params={"from": since, "timeout": 20000})
                typing.extend(e for e in r.json()["chunk"] if e["type"] == "m.typing")
                since = r.json()["end"]

        with trio.fail_after(15):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(poll)
                r = await a.put(
                    f"{V3}/rooms/{room_id}/typing/{alice.user_id}",
                    json={"typing": True, "timeout": 10000},
                )
                assert r.status_code == 200
        assert typing[0]["room_id"] == room_id
        assert typing[0]["content"]["user_ids"] == [alice.user_id]

        # account data, global and of a room
        r = await a.get(f"{V3}/events", params={"timeout": 0})
        here = r.json()["end"]
        await a.put(f"{V3}/user/{alice.user_id}/account_data/my.type", json={"n": 1})
        await a.put(
            f"{V3}/user/{alice.user_id}/rooms/{room_id}/account_data/my.type", json={"n": 2}
        )
        r = await a.get(f"{V3}/events", params={"from": here, "timeout": 0})
        mine = [e for e in r.json()["chunk"] if e["type"] == "my.type"]
        assert {(e.get("room_id"), e["content"]["n"]) for e in mine} == {(None, 1), (room_id, 2)}

        # one room only
        await a.put(f"{V3}/rooms/{room_id}/send/m.room.message/t2", json={"body": "two"})
        r = await a.get(
            f"{V3}/events", params={"from": token, "room_id": "!other:test.local", "timeout": 0}
        )
        assert r.json()["chunk"] == []

        for params in (
            {"timeout": "hello"},
            {"limit": "hello"},
            {"limit": "-2"},
            {"from": "nonsense"},
            {"room_id": "nonsense"},
        ):
            r = await a.get(f"{R0}/events", params=params)
            assert r.status_code == 400, (params, r.text)
        async with server.client() as anon:
            assert (await anon.get(f"{R0}/events")).status_code == 401


async def test_sends_without_transaction_id(server: RunningServer) -> None:
    alice = await _user(server, "alice3")
    async with alice.client as a:
        r = await a.post(f"{R0}/createRoom", json={})
        room_id = r.json()["room_id"]
        url = f"{R0}/rooms/{room_id}/send/m.room.message"
        first = await a.post(url, json={"msgtype": "m.text", "body": "a"})
        second = await a.post(url, json={"msgtype": "m.text", "body": "a"})
        assert first.status_code == 200 and second.status_code == 200, first.text
        assert first.json()["event_id"] != second.json()["event_id"]
        target = first.json()["event_id"]
        r = await a.post(f"{R0}/rooms/{room_id}/redact/{target}", json={"reason": "typo"})
        assert r.status_code == 200, r.text
        redaction = r.json()["event_id"]
        r = await a.get(f"{R0}/rooms/{room_id}/event/{target}")
        assert r.json()["content"] == {}
        assert r.json()["unsigned"]["redacted_because"]["event_id"] == redaction

        # one event by its ID alone
        r = await a.get(f"{R0}/events/{second.json()['event_id']}")
        assert r.status_code == 200, r.text
        assert r.json()["room_id"] == room_id and r.json()["content"]["body"] == "a"
        r = await a.get(f"{V3}/events/$unknown:test.local")
        assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"
        r = await a.get(f"{V3}/events/nonsense")
        assert r.status_code == 400
        mallory = await _user(server, "mallory3")
        async with mallory.client as m:
            r = await m.get(f"{R0}/events/{second.json()['event_id']}")
            assert r.status_code == 404  # not in the room: as if it did not exist

        r = await a.post(url, content=b"[1]")
        assert r.status_code == 400 and r.json()["errcode"] == "M_BAD_JSON"
        r = await a.post(f"{R0}/rooms/nonsense/send/m.room.message", json={})
        assert r.status_code == 400
        r = await a.post(f"{R0}/rooms/{room_id}/redact/nonsense", json={})
        assert r.status_code == 400
        r = await a.post(f"{R0}/rooms/!unknown:test.local/send/m.room.message", json={})
        assert r.status_code == 403


async def test_initial_sync(server: RunningServer) -> None:
    alice = await _user(server, "alice4")
    bob = await _user(server, "bob4")
    async with alice.client as a, bob.client as b:
        r = await a.post(f"{V3}/createRoom", json={"name": "Old", "invite": [bob.user_id]})
        room_id = r.json()["room_id"]
        sent = []
        for i in range(4):
            r = await a.put(f"{V3}/rooms/{room_id}/send/m.room.message/i{i}", json={"body": str(i)})
            sent.append(r.json()["event_id"])
        left = (await a.post(f"{V3}/createRoom", json={})).json()["room_id"]
        assert (await a.post(f"{V3}/rooms/{left}/leave", json={})).status_code == 200

        r = await a.put(
            f"{V3}/user/{alice.user_id}/rooms/{room_id}/account_data/my.type", json={"n": 1}
        )
        assert r.status_code == 200
        r = await a.put(f"{V3}/user/{alice.user_id}/account_data/my.type", json={"n": 2})
        assert r.status_code == 200
        r = await a.get(f"{R0}/initialSync", params={"limit": 2})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["end"] and isinstance(body["presence"], list)
        rooms = {room["room_id"]: room for room in body["rooms"]}
        assert set(rooms) == {room_id}  # not archived rooms
        room = rooms[room_id]
        assert room["membership"] == "join"
        assert room["account_data"] == [{"type": "my.type", "content": {"n": 1}}]
        assert body["account_data"] == [{"type": "my.type", "content": {"n": 2}}]  # no push rules
        assert [e["event_id"] for e in room["messages"]["chunk"]] == sent[-2:]
        assert all(e["room_id"] == room_id for e in room["messages"]["chunk"])
        names = [e for e in room["state"] if e["type"] == "m.room.name"]
        assert names[0]["content"] == {"name": "Old"}
        assert {e["state_key"] for e in room["state"] if e["type"] == "m.room.member"} == {
            alice.user_id,
            bob.user_id,
        }
        r = await a.get(f"{V3}/initialSync", params={"archived": "true", "limit": 0})
        rooms = {room["room_id"]: room for room in r.json()["rooms"]}
        assert rooms[left]["membership"] == "leave"
        assert rooms[room_id]["messages"]["chunk"] == []

        # the invitee sees the invite
        r = await b.get(f"{R0}/initialSync")
        (invited,) = r.json()["rooms"]
        assert invited["membership"] == "invite" and invited["room_id"] == room_id
        assert invited["invite"]["content"]["membership"] == "invite"

        # one room
        r = await a.get(f"{R0}/rooms/{room_id}/initialSync", params={"limit": 3})
        assert r.status_code == 200, r.text
        room = r.json()
        assert room["room_id"] == room_id and room["membership"] == "join"
        assert [e["event_id"] for e in room["messages"]["chunk"]] == sent[-3:]
        assert any(e["type"] == "m.room.create" for e in room["state"])
        assert room["account_data"] == [{"type": "my.type", "content": {"n": 1}}]
        assert isinstance(room["receipts"], list) and isinstance(room["presence"], list)
        # paging on from its start token with /messages
        r = await a.get(
            f"{V3}/rooms/{room_id}/messages",
            params={"from": room["messages"]["start"], "dir": "b", "limit": 1},
        )
        assert [e["event_id"] for e in r.json()["chunk"]] == [sent[0]]
        r = await b.get(f"{R0}/rooms/{room_id}/initialSync")
        assert r.status_code == 403  # invited, never joined

        for params in ({"limit": "x"}, {"limit": "-1"}, {"archived": "maybe"}):
            r = await a.get(f"{R0}/initialSync", params=params)
            assert r.status_code == 400, (params, r.text)
        r = await a.get(f"{R0}/rooms/{room_id}/initialSync", params={"limit": "x"})
        assert r.status_code == 400
        r = await a.get(f"{R0}/rooms/nonsense/initialSync")
        assert r.status_code == 400

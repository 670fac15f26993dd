"""Relations, threads, bundled aggregations and ``redacted_because`` over real sockets (SQLite
and PostgreSQL)."""

from __future__ import annotations

import itertools
from typing import Any

import httpx

from tests.integration.conftest import RunningServer

V3 = "/_matrix/client/v3"
V1 = "/_matrix/client/v1"
_txn = itertools.count()


class User:
    def __init__(self, server: RunningServer, login: dict[str, Any]) -> None:
        self.user_id: str = login["user_id"]
        self.client = server.client(headers={"Authorization": f"Bearer {login['access_token']}"})


async def _user(server: RunningServer, name: str) -> User:
    return User(server, await server.register(name))


async def _send(c: httpx.AsyncClient, room_id: str, content: dict[str, Any], typ: str = "") -> str:
    typ = typ or "m.room.message"
    r = await c.put(f"{V3}/rooms/{room_id}/send/{typ}/t{next(_txn)}", json=content)
    assert r.status_code == 200, r.text
    event_id: str = r.json()["event_id"]
    return event_id


def _text(body: str, **extra: Any) -> dict[str, Any]:
    return {"msgtype": "m.text", "body": body, **extra}


def _edit(target: str, body: str) -> dict[str, Any]:
    return _text(
        f"* {body}",
        **{
            "m.new_content": _text(body),
            "m.relates_to": {"rel_type": "m.replace", "event_id": target},
        },
    )


def _in_thread(root: str, body: str) -> dict[str, Any]:
    return _text(body, **{"m.relates_to": {"rel_type": "m.thread", "event_id": root}})


async def _room(a: httpx.AsyncClient, b: httpx.AsyncClient | None = None) -> str:
    r = await a.post(f"{V3}/createRoom", json={"preset": "public_chat"})
    assert r.status_code == 200, r.text
    room_id: str = r.json()["room_id"]
    if b is not None:
        assert (await b.post(f"{V3}/rooms/{room_id}/join", json={})).status_code == 200
    return room_id


async def test_edits_threads_references_bundled_everywhere(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    bob = await _user(server, "bob")
    async with alice.client as a, bob.client as b:
        room_id = await _room(a, b)
        root = await _send(a, room_id, _text("root"))
        await _send(a, room_id, _edit(root, "first edit"))
        latest_edit = await _send(a, room_id, _edit(root, "second edit"))
        # bob's edit of alice's message is not valid: never bundled
        await _send(b, room_id, _edit(root, "bob's edit"))
        reply1 = await _send(b, room_id, _in_thread(root, "reply 1"))
        reply2 = await _send(b, room_id, _in_thread(root, "reply 2"))
        reply2_edit = await _send(b, room_id, _edit(reply2, "reply 2, edited"))
        ref = await _send(
            b,
            room_id,
            {"m.relates_to": {"rel_type": "m.reference", "event_id": root}},
            "m.key.verification.done",
        )
        await _send(
            b,
            room_id,
            {"m.relates_to": {"rel_type": "m.annotation", "event_id": root, "key": "👍"}},
            "m.reaction",
        )

        def check(event: dict[str, Any], user: User) -> None:
            relations = event["unsigned"]["m.relations"]
            assert set(relations) == {"m.replace", "m.thread", "m.reference"}  # no annotation
            assert relations["m.replace"]["event_id"] == latest_edit
            assert relations["m.replace"]["content"]["m.new_content"]["body"] == "second edit"
            thread = relations["m.thread"]
            assert thread["count"] == 2
            assert thread["latest_event"]["event_id"] == reply2
            # the latest threaded event carries its own edit
            inner = thread["latest_event"]["unsigned"]["m.relations"]
            assert inner["m.replace"]["event_id"] == reply2_edit
            # alice sent the root, bob replied
            assert thread["current_user_participated"] is True
            assert relations["m.reference"] == {"chunk": [{"event_id": ref}]}
            assert event["content"]["body"] == "root"  # the content is never replaced

        # /event, /context and /messages
        r = await a.get(f"{V3}/rooms/{room_id}/event/{root}")
        assert r.status_code == 200, r.text
        check(r.json(), alice)
        r = await b.get(f"{V3}/rooms/{room_id}/context/{root}", params={"limit": 2})
        check(r.json()["event"], bob)
        r = await a.get(f"{V3}/rooms/{room_id}/messages", params={"dir": "b", "limit": 50})
        (found,) = [e for e in r.json()["chunk"] if e["event_id"] == root]
        check(found, alice)

        # /sync with a limited timeline bundles too (spec: when limited is true)
        r = await a.get(f"{V3}/sync", params={"filter": '{"room":{"timeline":{"limit":10}}}'})
        timeline = r.json()["rooms"]["join"][room_id]["timeline"]
        assert timeline["limited"] is True
        (found,) = [e for e in timeline["events"] if e["event_id"] == root]
        check(found, alice)

        # a user who took no part in the thread
        carol = await _user(server, "carol")
        async with carol.client as c:
            assert (await c.post(f"{V3}/rooms/{room_id}/join", json={})).status_code == 200
            r = await c.get(f"{V3}/rooms/{room_id}/event/{root}")
            assert r.json()["unsigned"]["m.relations"]["m.thread"]["current_user_participated"] is (
                False
            )

        # /relations: every child, newest first, with its own bundle
        r = await a.get(f"{V1}/rooms/{room_id}/relations/{root}")
        assert r.status_code == 200, r.text
        body = r.json()
        assert "recursion_depth" not in body
        assert len(body["chunk"]) == 5  # the default page
        r = await a.get(f"{V1}/rooms/{room_id}/relations/{root}/m.thread")
        assert [e["event_id"] for e in r.json()["chunk"]] == [reply2, reply1]
        assert r.json()["chunk"][0]["unsigned"]["m.relations"]["m.replace"]["event_id"] == (
            reply2_edit
        )
        r = await a.get(f"{V1}/rooms/{room_id}/relations/{root}/m.thread", params={"dir": "f"})
        assert [e["event_id"] for e in r.json()["chunk"]] == [reply1, reply2]
        r = await a.get(f"{V1}/rooms/{room_id}/relations/{root}/m.annotation/m.reaction")
        assert [e["content"]["m.relates_to"]["key"] for e in r.json()["chunk"]] == ["👍"]
        r = await a.get(f"{V1}/rooms/{room_id}/relations/{root}/m.annotation/m.room.message")
        assert r.json()["chunk"] == []

        # pagination: one at a time, then the rest
        seen: list[str] = []
        token: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 1}
            if token is not None:
                params["from"] = token
            r = await a.get(f"{V1}/rooms/{room_id}/relations/{root}", params=params)
            assert r.status_code == 200, r.text
            seen += [e["event_id"] for e in r.json()["chunk"]]
            token = r.json().get("next_batch")
            if token is None:
                break
        assert len(seen) == 7 and len(set(seen)) == 7 and reply2_edit not in seen

        # recurse reaches the edit of the reply
        r = await a.get(
            f"{V1}/rooms/{room_id}/relations/{root}", params={"recurse": "true", "limit": 50}
        )
        assert r.json()["recursion_depth"] == 3
        assert reply2_edit in [e["event_id"] for e in r.json()["chunk"]]
        r = await a.get(
            f"{V1}/rooms/{room_id}/relations/{root}", params={"recurse": "false", "limit": 50}
        )
        assert r.json()["recursion_depth"] == 1
        assert reply2_edit not in [e["event_id"] for e in r.json()["chunk"]]


async def test_redactions_break_relations_and_carry_redacted_because(
    server: RunningServer,
) -> None:
    alice = await _user(server, "alice2")
    async with alice.client as a:
        room_id = await _room(a)
        root = await _send(a, room_id, _text("root"))
        edit1 = await _send(a, room_id, _edit(root, "one"))
        edit2 = await _send(a, room_id, _edit(root, "two"))
        r = await a.put(f"{V3}/rooms/{room_id}/redact/{edit2}/r1", json={"reason": "oops"})
        assert r.status_code == 200, r.text
        redaction = r.json()["event_id"]

        # the redacted edit is gone from the aggregation: the earlier one is back
        r = await a.get(f"{V3}/rooms/{room_id}/event/{root}")
        assert r.json()["unsigned"]["m.relations"]["m.replace"]["event_id"] == edit1
        r = await a.get(f"{V1}/rooms/{room_id}/relations/{root}")
        assert [e["event_id"] for e in r.json()["chunk"]] == [edit1]

        # the redacted event says what redacted it, wherever it is served
        r = await a.get(f"{V3}/rooms/{room_id}/event/{edit2}")
        because = r.json()["unsigned"]["redacted_because"]
        assert because["event_id"] == redaction
        assert because["content"]["reason"] == "oops"
        assert because["type"] == "m.room.redaction"
        r = await a.get(f"{V3}/rooms/{room_id}/messages", params={"dir": "b"})
        (found,) = [e for e in r.json()["chunk"] if e["event_id"] == edit2]
        assert found["unsigned"]["redacted_because"]["event_id"] == redaction
        r = await a.get(f"{V3}/sync")
        (found,) = [
            e
            for e in r.json()["rooms"]["join"][room_id]["timeline"]["events"]
            if e["event_id"] == edit2
        ]
        assert found["unsigned"]["redacted_because"]["event_id"] == redaction
        assert found["content"] == {}

        # a redacted original bundles no edit
        r = await a.put(f"{V3}/rooms/{room_id}/redact/{root}/r2", json={})
        assert r.status_code == 200
        root_redaction = r.json()["event_id"]
        r = await a.get(f"{V3}/rooms/{room_id}/event/{root}")
        unsigned = r.json()["unsigned"]
        assert "m.replace" not in unsigned.get("m.relations", {})
        assert unsigned["redacted_because"]["event_id"] == root_redaction


async def test_threads_list(server: RunningServer) -> None:
    alice = await _user(server, "alice3")
    bob = await _user(server, "bob3")
    async with alice.client as a, bob.client as b:
        room_id = await _room(a, b)
        t1 = await _send(a, room_id, _text("thread 1"))
        t2 = await _send(b, room_id, _text("thread 2"))
        t3 = await _send(b, room_id, _text("thread 3"))
        await _send(b, room_id, _in_thread(t1, "in 1"))
        await _send(b, room_id, _in_thread(t2, "in 2"))
        await _send(b, room_id, _in_thread(t3, "in 3"))
        await _send(b, room_id, _in_thread(t1, "in 1 again"))  # t1 is now the newest

        r = await a.get(f"{V1}/rooms/{room_id}/threads")
        assert r.status_code == 200, r.text
        chunk = r.json()["chunk"]
        assert [e["event_id"] for e in chunk] == [t1, t3, t2]
        assert chunk[0]["unsigned"]["m.relations"]["m.thread"]["count"] == 2
        assert "next_batch" not in r.json()

        # alice took part in t1 only (she sent its root)
        r = await a.get(f"{V1}/rooms/{room_id}/threads", params={"include": "participated"})
        assert [e["event_id"] for e in r.json()["chunk"]] == [t1]

        # pages of one
        seen = []
        params: dict[str, Any] = {"limit": 1}
        while True:
            r = await a.get(f"{V1}/rooms/{room_id}/threads", params=params)
            seen += [e["event_id"] for e in r.json()["chunk"]]
            if "next_batch" not in r.json():
                break
            params["from"] = r.json()["next_batch"]
        assert seen == [t1, t3, t2]


async def test_bad_requests(server: RunningServer) -> None:
    alice = await _user(server, "alice4")
    mallory = await _user(server, "mallory4")
    async with alice.client as a, mallory.client as m:
        r = await a.post(f"{V3}/createRoom", json={"preset": "private_chat"})
        room_id = r.json()["room_id"]
        root = await _send(a, room_id, _text("root"))
        base = f"{V1}/rooms/{room_id}/relations/{root}"
        for params in (
            {"dir": "x"},
            {"limit": "many"},
            {"limit": "0"},
            {"recurse": "yes"},
            {"from": "nonsense"},
            {"from": f"t{'9' * 30}_1"},  # beyond what the database stores
            {"to": f"t1_{'9' * 30}"},
        ):
            r = await a.get(base, params=params)
            assert r.status_code == 400, (params, r.text)
            assert r.json()["errcode"] == "M_INVALID_PARAM"
        r = await a.get(f"{V1}/rooms/{room_id}/relations/$unknown:test.local")
        assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"
        r = await a.get(f"{V1}/rooms/{room_id}/relations/notanid")
        assert r.status_code == 400
        r = await a.get(f"{V1}/rooms/notaroom/relations/{root}")
        assert r.status_code == 400
        # not in the room
        r = await m.get(base)
        assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"
        r = await m.get(f"{V1}/rooms/{room_id}/threads")
        assert r.status_code == 403
        for params in ({"include": "mine"}, {"from": "x"}, {"limit": "-1"}, {"from": "9" * 30}):
            r = await a.get(f"{V1}/rooms/{room_id}/threads", params=params)
            assert r.status_code == 400, (params, r.text)
            assert r.json()["errcode"] == "M_INVALID_PARAM"
        # no token
        async with server.client() as anon:
            r = await anon.get(base)
            assert r.status_code == 401
        # a thread cannot start from an event that has a relation (spec: 400 M_UNKNOWN)
        reply = await _send(a, room_id, _in_thread(root, "in a thread"))
        r = await a.put(
            f"{V3}/rooms/{room_id}/send/m.room.message/nested", json=_in_thread(reply, "nested")
        )
        assert r.status_code == 400 and r.json()["errcode"] == "M_UNKNOWN", r.text
        edit = await _send(a, room_id, _edit(root, "edited"))
        r = await a.put(f"{V3}/rooms/{room_id}/send/m.room.message/e", json=_in_thread(edit, "x"))
        assert r.status_code == 400
        # a rich reply has no rel_type: a thread may start from it
        rich = await _send(a, room_id, _text("re", **{"m.relates_to": {"m.in_reply_to": {}}}))
        await _send(a, room_id, _in_thread(rich, "from a reply"))
        # malformed relations are not relations
        await _send(a, room_id, _text("x", **{"m.relates_to": {"rel_type": 5, "event_id": root}}))
        await _send(a, room_id, _text("x", **{"m.relates_to": "nope"}))
        r = await a.get(base, params={"limit": 50})
        assert r.status_code == 200
        assert [e["event_id"] for e in r.json()["chunk"]] == [edit, reply]


async def test_ignored_users_are_left_out(server: RunningServer) -> None:
    alice = await _user(server, "alice5")
    bob = await _user(server, "bob5")
    carol = await _user(server, "carol5")
    async with alice.client as a, bob.client as b, carol.client as c:
        room_id = await _room(a, b)
        assert (await c.post(f"{V3}/rooms/{room_id}/join", json={})).status_code == 200
        root = await _send(a, room_id, _text("root"))
        from_bob = await _send(b, room_id, _in_thread(root, "bob"))
        from_carol = await _send(c, room_id, _in_thread(root, "carol"))
        carols_root = await _send(c, room_id, _text("carol's thread"))
        await _send(b, room_id, _in_thread(carols_root, "bob in carol's thread"))

        r = await a.get(f"{V3}/rooms/{room_id}/event/{root}")
        thread = r.json()["unsigned"]["m.relations"]["m.thread"]
        assert (thread["count"], thread["latest_event"]["event_id"]) == (2, from_carol)

        r = await a.put(
            f"{V3}/user/{alice.user_id}/account_data/m.ignored_user_list",
            json={"ignored_users": {carol.user_id: {}}},
        )
        assert r.status_code == 200
        r = await a.get(f"{V3}/rooms/{room_id}/event/{root}")
        thread = r.json()["unsigned"]["m.relations"]["m.thread"]
        assert (thread["count"], thread["latest_event"]["event_id"]) == (1, from_bob)
        r = await a.get(f"{V1}/rooms/{room_id}/relations/{root}")
        assert [e["event_id"] for e in r.json()["chunk"]] == [from_bob]
        # a thread root from an ignored user is served redacted
        r = await a.get(f"{V1}/rooms/{room_id}/threads")
        chunk = {e["event_id"]: e for e in r.json()["chunk"]}
        assert chunk[carols_root]["content"] == {}
        assert chunk[root]["content"]["body"] == "root"
        # bob ignores nobody
        r = await b.get(f"{V3}/rooms/{room_id}/event/{root}")
        assert r.json()["unsigned"]["m.relations"]["m.thread"]["count"] == 2


async def test_children_in_another_room_are_not_relations(server: RunningServer) -> None:
    alice = await _user(server, "alice6")
    async with alice.client as a:
        room_a = await _room(a)
        room_b = await _room(a)
        root = await _send(a, room_a, _text("root"))
        await _send(a, room_b, _edit(root, "from elsewhere"))
        await _send(a, room_b, _in_thread(root, "from elsewhere"))
        r = await a.get(f"{V3}/rooms/{room_a}/event/{root}")
        assert "m.relations" not in r.json()["unsigned"]
        r = await a.get(f"{V1}/rooms/{room_a}/relations/{root}", params={"recurse": "true"})
        assert r.json()["chunk"] == []
        r = await a.get(f"{V1}/rooms/{room_a}/threads")
        assert r.json()["chunk"] == []
        # the same edit in the right room is bundled
        edit = await _send(a, room_a, _edit(root, "here"))
        r = await a.get(f"{V3}/rooms/{room_a}/event/{root}")
        assert r.json()["unsigned"]["m.relations"]["m.replace"]["event_id"] == edit

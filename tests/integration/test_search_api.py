"""Server-side search (POST /search) over real sockets, on SQLite and PostgreSQL, and mautrix."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import trio
from mautrix.api import Method, Path
from mautrix.client import Client

from tests.integration.conftest import RunningServer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
V3 = "/_matrix/client/v3"


class User:
    def __init__(self, server: RunningServer, login: dict[str, Any]) -> None:
        self.user_id: str = login["user_id"]
        self.token: str = login["access_token"]
        self.client = server.client(headers={"Authorization": f"Bearer {self.token}"})


async def _user(server: RunningServer, name: str) -> User:
    return User(server, await server.register(name))


def _search_body(term: str, **criteria: Any) -> dict[str, Any]:
    return {"search_categories": {"room_events": {"search_term": term, **criteria}}}


async def _send(c: Any, room_id: str, body: str, txn: str) -> str:
    r = await c.put(
        f"{V3}/rooms/{room_id}/send/m.room.message/{txn}", json={"msgtype": "m.text", "body": body}
    )
    assert r.status_code == 200, r.text
    event_id: str = r.json()["event_id"]
    return event_id


async def test_search_finds_ranks_pages_and_respects_visibility(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    bob = await _user(server, "bob")
    async with alice.client as a, bob.client as b:
        room = (await a.post(f"{V3}/createRoom", json={"preset": "public_chat"})).json()["room_id"]
        other = (
            await a.post(f"{V3}/createRoom", json={"preset": "private_chat", "name": "Martians"})
        ).json()["room_id"]
        before_join = await _send(a, room, "martians landed before bob came", "t0")
        await a.put(
            f"{V3}/rooms/{room}/state/m.room.history_visibility",
            json={"history_visibility": "joined"},
        )
        hidden = await _send(a, room, "martians are secret now", "t1")
        assert (await b.post(f"{V3}/join/{room}", json={})).status_code == 200
        seen = [await _send(a, room, f"martians and men number {i}", f"m{i}") for i in range(5)]
        men = await _send(b, room, "only men here", "b1")
        await _send(a, other, "martians in a room bob is not in", "o1")

        # bob finds what he may see: not the messages of the private room, nor the one
        # sent while history was "joined" and he was not in the room.
        r = await b.post(f"{V3}/search", json=_search_body("martians", order_by="recent"))
        assert r.status_code == 200, r.text
        found = r.json()["search_categories"]["room_events"]
        ids = [x["result"]["event_id"] for x in found["results"]]
        # newest first; the message from before bob joined is visible ("shared" then)
        assert ids == [*reversed(seen), before_join]
        assert hidden not in ids
        assert found["highlights"] == ["martians"]
        assert found["count"] >= len(seen) + 1
        assert all(x["result"]["room_id"] == room for x in found["results"])
        assert "next_batch" not in found

        # every word must match; prefixes and stemming ("martian" finds "martians")
        r = await b.post(f"{V3}/search", json=_search_body("MARTIAN men!"))
        ids = [
            x["result"]["event_id"] for x in r.json()["search_categories"]["room_events"]["results"]
        ]
        assert set(ids) == set(seen) and men not in ids
        r = await b.post(f"{V3}/search", json=_search_body("men"))
        results = r.json()["search_categories"]["room_events"]["results"]
        assert {x["result"]["event_id"] for x in results} == {*seen, men}
        ranks = [x["rank"] for x in results]
        assert ranks == sorted(ranks, reverse=True)

        # pagination, both orders: the pages together are the whole answer, without repeats
        for order in ("recent", "rank"):
            pages: list[str] = []
            token = None
            for _ in range(10):
                url = f"{V3}/search" + (f"?next_batch={token}" if token else "")
                body = _search_body("men", order_by=order, filter={"limit": 2})
                page = (await b.post(url, json=body)).json()["search_categories"]["room_events"]
                assert len(page["results"]) <= 2
                pages += [x["result"]["event_id"] for x in page["results"]]
                token = page.get("next_batch")
                if token is None:
                    break
            assert sorted(pages) == sorted({*seen, men}), order

        # filter, groups, context with profiles, state
        body = _search_body(
            "martians",
            filter={"senders": [alice.user_id], "limit": 3},
            order_by="recent",
            groupings={"group_by": [{"key": "room_id"}, {"key": "sender"}]},
            event_context={"before_limit": 1, "after_limit": 1, "include_profile": True},
            include_state=True,
        )
        found = (await b.post(f"{V3}/search", json=body)).json()["search_categories"]["room_events"]
        assert len(found["results"]) == 3
        top = found["results"][0]
        assert top["result"]["event_id"] == seen[-1]
        ctx = top["context"]
        assert [e["event_id"] for e in ctx["events_before"]] == [seen[-2]]
        assert [e["event_id"] for e in ctx["events_after"]] == [men]
        assert ctx["start"] and ctx["end"]
        assert alice.user_id in ctx["profile_info"]
        assert found["groups"]["room_id"][room]["results"] == [seen[4], seen[3], seen[2]]
        assert list(found["groups"]["sender"]) == [alice.user_id]
        assert any(e["type"] == "m.room.create" for e in found["state"][room])

        # a redacted message is no longer found by what it said
        r = await a.put(f"{V3}/rooms/{room}/redact/{seen[0]}/r1", json={})
        assert r.status_code == 200
        r = await b.post(f"{V3}/search", json=_search_body("number 0"))
        ids = [
            x["result"]["event_id"] for x in r.json()["search_categories"]["room_events"]["results"]
        ]
        assert seen[0] not in ids

        # after bob leaves, he still finds what he saw, but nothing sent after
        assert (await b.post(f"{V3}/rooms/{room}/leave", json={})).status_code == 200
        later = await _send(a, room, "martians after bob left", "late")
        r = await b.post(f"{V3}/search", json=_search_body("martians"))
        ids = [
            x["result"]["event_id"] for x in r.json()["search_categories"]["room_events"]["results"]
        ]
        assert later not in ids and seen[-1] in ids

        # names and topics are searchable, keys narrow it down
        await a.put(f"{V3}/rooms/{room}/state/m.room.topic", json={"topic": "Xylophones"})
        r = await a.post(f"{V3}/search", json=_search_body("xylophones"))
        assert len(r.json()["search_categories"]["room_events"]["results"]) == 1
        r = await a.post(f"{V3}/search", json=_search_body("xylophones", keys=["content.body"]))
        assert r.json()["search_categories"]["room_events"]["results"] == []


async def test_search_bad_input(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    async with alice.client as a:
        cases: list[tuple[Any, int, str]] = [
            ({}, 400, "M_MISSING_PARAM"),
            ({"search_categories": []}, 400, "M_BAD_JSON"),
            ({"search_categories": {"room_events": {}}}, 400, "M_MISSING_PARAM"),
            (_search_body(5), 400, "M_BAD_JSON"),
            (_search_body("x", keys=["content.nope"]), 400, "M_INVALID_PARAM"),
            (_search_body("x", keys="content.body"), 400, "M_BAD_JSON"),
            (_search_body("x", order_by="best"), 400, "M_INVALID_PARAM"),
            (_search_body("x", filter=[]), 400, "M_BAD_JSON"),
            (_search_body("x", event_context={"before_limit": "3"}), 400, "M_BAD_JSON"),
            (_search_body("x", groupings={"group_by": [{"key": "type"}]}), 400, "M_INVALID_PARAM"),
        ]
        for body, status, errcode in cases:
            r = await a.post(f"{V3}/search", json=body)
            assert (r.status_code, r.json().get("errcode")) == (status, errcode), body
        r = await a.post(f"{V3}/search?next_batch=garbage!", json=_search_body("x"))
        assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM"
        r = await a.post(f"{V3}/search", content=b"{not json")
        assert r.status_code == 400 and r.json()["errcode"] == "M_NOT_JSON"
        # no room_events criteria: an empty answer; operators of FTS syntax are just words
        r = await a.post(f"{V3}/search", json={"search_categories": {}})
        assert r.status_code == 200 and r.json() == {"search_categories": {}}
        r = await a.post(f"{V3}/search", json=_search_body('"NEAR( * OR ) : & |'))
        assert r.status_code == 200, r.text
        assert r.json()["search_categories"]["room_events"]["results"] == []
    async with server.client() as anon:
        r = await anon.post(f"{V3}/search", json=_search_body("x"))
        assert r.status_code == 401


async def test_mautrix_searches(server: RunningServer) -> None:
    login = await server.register("mia")

    async def scenario() -> None:
        client = Client(
            base_url=server.base_url, token=login["access_token"], mxid=login["user_id"]
        )
        try:
            room_id = await client.create_room(name="Notes")
            event_id = await client.send_text(room_id, "remember the milk")
            await client.send_text(room_id, "and the bread")
            answer = await client.api.request(Method.POST, Path.v3.search, _search_body("milk"))
            results = answer["search_categories"]["room_events"]["results"]
            assert [x["result"]["event_id"] for x in results] == [str(event_id)]
            assert results[0]["result"]["content"]["body"] == "remember the milk"
        finally:
            await client.api.session.close()

    await trio.to_thread.run_sync(lambda: asyncio.run(scenario()))

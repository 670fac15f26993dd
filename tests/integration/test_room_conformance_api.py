"""Room endpoints where the spec leaves the answer to the server and we follow Synapse (and
SyTest): redactions across rooms, single events of unreadable rooms, deleted canonical
aliases. Over real sockets, SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import httpx

from tests.integration.conftest import RunningServer, ServerFactory

V3 = "/_matrix/client/v3"


class User:
    def __init__(self, server: RunningServer, login: dict[str, Any]) -> None:
        self.user_id: str = login["user_id"]
        self.client = server.client(headers={"Authorization": f"Bearer {login['access_token']}"})


async def _user(server: RunningServer, name: str) -> User:
    return User(server, await server.register(name))


async def _room(c: httpx.AsyncClient, **body: Any) -> str:
    r = await c.post(f"{V3}/createRoom", json=body)
    assert r.status_code == 200, r.text
    room_id: str = r.json()["room_id"]
    return room_id


async def _send(c: httpx.AsyncClient, room_id: str, body: str, txn: str) -> str:
    r = await c.put(
        f"{V3}/rooms/{room_id}/send/m.room.message/{txn}", json={"msgtype": "m.text", "body": body}
    )
    assert r.status_code == 200, r.text
    event_id: str = r.json()["event_id"]
    return event_id


async def test_redaction_of_an_event_of_another_room_is_refused(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    bob = await _user(server, "bob")
    async with alice.client as a, bob.client as b:
        room1 = await _room(a)
        room2 = await _room(b)
        event_id = await _send(a, room1, "test", "t1")
        r = await b.put(f"{V3}/rooms/{room2}/redact/{event_id}/r1", json={})
        assert r.status_code == 400, r.text
        assert r.json()["errcode"] == "M_INVALID_PARAM"
        # nor by the event's own sender, through the wrong room
        room3 = await _room(a)
        r = await a.put(f"{V3}/rooms/{room3}/redact/{event_id}/r2", json={})
        assert r.status_code == 400, r.text
        # an unknown event is not found; the right room works
        r = await a.put(f"{V3}/rooms/{room1}/redact/$unknown/r3", json={})
        assert r.status_code == 404, r.text
        r = await a.put(f"{V3}/rooms/{room1}/redact/{event_id}/r4", json={"reason": "x"})
        assert r.status_code == 200, r.text
        r = await a.get(f"{V3}/rooms/{room1}/event/{event_id}")
        assert r.json()["content"] == {}


async def test_event_of_a_room_one_cannot_read_is_not_found(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    bob = await _user(server, "bob")
    async with alice.client as a, bob.client as b:
        room_id = await _room(a, preset="private_chat")
        event_id = await _send(a, room_id, "hello, world", "t1")
        assert (await a.get(f"{V3}/rooms/{room_id}/event/{event_id}")).status_code == 200
        for room in (room_id, "!unknown:test.local"):
            r = await b.get(f"{V3}/rooms/{room}/event/{event_id}")
            assert r.status_code == 404, r.text
            assert r.json()["errcode"] == "M_NOT_FOUND"
        # once the history is world readable, bob may read it
        r = await a.put(
            f"{V3}/rooms/{room_id}/state/m.room.history_visibility",
            json={"history_visibility": "world_readable"},
        )
        assert r.status_code == 200
        later = await _send(a, room_id, "public now", "t2")
        assert (await b.get(f"{V3}/rooms/{room_id}/event/{later}")).status_code == 200


async def test_deleting_an_alias_updates_the_canonical_alias(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    bob = await _user(server, "bob")
    async with alice.client as a, bob.client as b:
        room_id = await _room(a, preset="public_chat")
        main, alt, other = "#main:test.local", "#alt:test.local", "#other:test.local"
        for alias in (main, alt, other):
            r = await a.put(
                f"{V3}/directory/room/{alias.replace('#', '%23')}", json={"room_id": room_id}
            )
            assert r.status_code == 200, r.text
        state = f"{V3}/rooms/{room_id}/state/m.room.canonical_alias"
        r = await a.put(state, json={"alias": main, "alt_aliases": [alt, other]})
        assert r.status_code == 200, r.text

        assert (await a.delete(f"{V3}/directory/room/%23main:test.local")).status_code == 200
        assert (await a.get(state)).json() == {"alt_aliases": [alt, other]}
        assert (await a.delete(f"{V3}/directory/room/%23alt:test.local")).status_code == 200
        assert (await a.get(state)).json() == {"alt_aliases": [other]}

        # bob created an alias the event does not list: deleting it sends nothing
        assert (await b.post(f"{V3}/rooms/{room_id}/join", json={})).status_code == 200
        r = await b.put(f"{V3}/directory/room/%23bobs:test.local", json={"room_id": room_id})
        assert r.status_code == 200, r.text
        before = (await a.get(state, params={"format": "event"})).json()["event_id"]
        assert (await b.delete(f"{V3}/directory/room/%23bobs:test.local")).status_code == 200
        assert (await a.get(state, params={"format": "event"})).json()["event_id"] == before

        # an alias bob created and alice listed: bob may delete it (its creator) but may not
        # send the event (power level): the alias goes, the event stays
        r = await b.put(f"{V3}/directory/room/%23bob2:test.local", json={"room_id": room_id})
        assert r.status_code == 200
        r = await a.put(state, json={"alt_aliases": [other, "#bob2:test.local"]})
        assert r.status_code == 200, r.text
        assert (await b.delete(f"{V3}/directory/room/%23bob2:test.local")).status_code == 200
        assert (await a.get(f"{V3}/directory/room/%23bob2:test.local")).status_code == 404
        assert (await a.get(state)).json() == {"alt_aliases": [other, "#bob2:test.local"]}


async def test_guests_need_guest_access_and_leave_when_it_is_revoked(
    homeserver_factory: ServerFactory,
) -> None:
    srv = await homeserver_factory(registration={"allow_guests": True})
    alice = await _user(srv, "alice")
    bob = await _user(srv, "bob")
    async with srv.client() as c:
        r = await c.post(f"{V3}/register", params={"kind": "guest"}, json={})
        assert r.status_code == 200, r.text
    guest = User(srv, r.json())
    async with alice.client as a, bob.client as b, guest.client as g:
        room_id = await _room(a, preset="public_chat")
        member = f"{V3}/rooms/{room_id}/state/m.room.member/{guest.user_id}"
        # a public room without guest access: guests may not join
        r = await g.post(f"{V3}/rooms/{room_id}/join", json={})
        assert r.status_code == 403 and r.json()["errcode"] == "M_GUEST_ACCESS_FORBIDDEN"
        r = await g.put(member, json={"membership": "join"})
        assert r.status_code == 403 and r.json()["errcode"] == "M_GUEST_ACCESS_FORBIDDEN"
        guest_access = f"{V3}/rooms/{room_id}/state/m.room.guest_access"
        assert (await a.put(guest_access, json={"guest_access": "can_join"})).status_code == 200
        assert (await g.post(f"{V3}/join/{room_id}", json={})).status_code == 200
        # guests read, join, leave and send; nothing else in rooms
        event_id = await _send(g, room_id, "hi from a guest", "g1")
        for method, path, body in (
            ("POST", f"{V3}/createRoom", {}),
            ("POST", f"{V3}/rooms/{room_id}/invite", {"user_id": bob.user_id}),
            ("POST", f"{V3}/rooms/{room_id}/ban", {"user_id": bob.user_id}),
            ("POST", f"{V3}/rooms/{room_id}/kick", {"user_id": alice.user_id}),
            (
                "PUT",
                f"{V3}/rooms/{room_id}/state/m.room.member/{bob.user_id}",
                {"membership": "invite"},
            ),
            ("PUT", f"{V3}/rooms/{room_id}/redact/{event_id}/r1", {}),
            ("POST", f"{V3}/knock/{room_id}", {}),
            ("POST", f"{V3}/user_directory/search", {"search_term": "alice"}),
        ):
            r = await g.request(method, path, json=body)
            assert r.status_code == 403, (path, r.text)
            assert r.json()["errcode"] == "M_GUEST_ACCESS_FORBIDDEN", path
        assert (await b.post(f"{V3}/rooms/{room_id}/join", json={})).status_code == 200
        assert (await a.get(member)).json()["membership"] == "join"
        # revoked: the guest leaves (as themself); bob, a full account, stays
        assert (await a.put(guest_access, json={"guest_access": "forbidden"})).status_code == 200
        event = (await a.get(member, params={"format": "event"})).json()
        assert event["content"]["membership"] == "leave"
        assert event["sender"] == guest.user_id
        bob_member = f"{V3}/rooms/{room_id}/state/m.room.member/{bob.user_id}"
        assert (await a.get(bob_member)).json()["membership"] == "join"
        r = await g.post(f"{V3}/rooms/{room_id}/join", json={})
        assert r.status_code == 403 and r.json()["errcode"] == "M_GUEST_ACCESS_FORBIDDEN"


async def test_a_departed_user_pages_back_from_their_leave(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    bob = await _user(server, "bob")
    async with alice.client as a, bob.client as b:
        room_id = await _room(a, preset="public_chat")
        assert (await b.post(f"{V3}/rooms/{room_id}/join", json={})).status_code == 200
        await _send(a, room_id, "M1", "t1")
        await _send(a, room_id, "M2", "t2")
        assert (await b.post(f"{V3}/rooms/{room_id}/leave", json={})).status_code == 200
        for i in range(3):
            await _send(a, room_id, f"after {i}", f"t{3 + i}")
        messages = f"{V3}/rooms/{room_id}/messages"
        r = await b.get(messages, params={"dir": "b", "limit": 2})
        assert r.status_code == 200, r.text
        page = r.json()
        assert page["chunk"][0]["content"]["membership"] == "leave"
        assert page["chunk"][1]["content"]["body"] == "M2"
        assert "end" in page
        r = await b.get(messages, params={"dir": "b", "limit": 1, "from": page["end"]})
        assert r.json()["chunk"][0]["content"]["body"] == "M1"
        # alice, still joined, pages from the newest event
        r = await a.get(messages, params={"dir": "b", "limit": 1})
        assert r.json()["chunk"][0]["content"]["body"] == "after 2"
        # from a /sync token (after the leave) as well
        r = await b.get(f"{V3}/sync")
        since = r.json()["next_batch"]
        r = await b.get(messages, params={"dir": "b", "limit": 2, "from": since})
        assert [e["content"].get("body") for e in r.json()["chunk"]] == [None, "M2"]

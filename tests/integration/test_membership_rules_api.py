"""Membership changes over real sockets: each action's rule beyond the auth rules (kick, unban),
the auth rules' answers for the other transitions, and idempotent state and joins."""

from __future__ import annotations

from typing import Any

import httpx

from tests.integration.conftest import RunningServer

V3 = "/_matrix/client/v3"


class User:
    def __init__(self, server: RunningServer, login: dict[str, Any]) -> None:
        self.user_id: str = login["user_id"]
        self.client = server.client(headers={"Authorization": f"Bearer {login['access_token']}"})


async def _user(server: RunningServer, name: str) -> User:
    return User(server, await server.register(name))


async def _room(c: httpx.AsyncClient, **body: Any) -> str:
    r = await c.post(f"{V3}/createRoom", json={"preset": "public_chat", **body})
    assert r.status_code == 200, r.text
    room_id: str = r.json()["room_id"]
    return room_id


async def _membership(c: httpx.AsyncClient, room_id: str, user_id: str) -> str | None:
    r = await c.get(f"{V3}/rooms/{room_id}/state/m.room.member/{user_id}")
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r.text
    membership: str = r.json()["membership"]
    return membership


def _forbidden(r: httpx.Response) -> None:
    assert r.status_code == 403, r.text
    assert r.json()["errcode"] == "M_FORBIDDEN"


async def test_kick_needs_a_target_in_the_room(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    bob = await _user(server, "bob")
    async with alice.client as a, bob.client as b:
        room_id = await _room(a)
        kick = f"{V3}/rooms/{room_id}/kick"
        # never in the room (here, or on a server we do not know)
        _forbidden(await a.post(kick, json={"user_id": "@bob:example.com", "reason": "x"}))
        _forbidden(await a.post(kick, json={"user_id": bob.user_id}))
        assert await _membership(a, room_id, bob.user_id) is None
        # joined: kicked; then gone: a second kick is refused
        assert (await b.post(f"{V3}/rooms/{room_id}/join", json={})).status_code == 200
        r = await a.post(kick, json={"user_id": bob.user_id, "reason": "testing"})
        assert r.status_code == 200, r.text
        assert await _membership(a, room_id, bob.user_id) == "leave"
        _forbidden(await a.post(kick, json={"user_id": bob.user_id}))
        # the same through PUT /state: a leave of someone not in the room is a kick too
        r = await a.put(
            f"{V3}/rooms/{room_id}/state/m.room.member/{bob.user_id}",
            json={"membership": "leave"},
        )
        _forbidden(r)
        # invited: a kick withdraws the invite
        r = await a.post(f"{V3}/rooms/{room_id}/invite", json={"user_id": "@carol:test.local"})
        assert r.status_code == 200, r.text
        r = await a.post(kick, json={"user_id": "@carol:test.local"})
        assert r.status_code == 200, r.text
        assert await _membership(a, room_id, "@carol:test.local") == "leave"


async def test_kick_refuses_bad_input(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    async with alice.client as a:
        room_id = await _room(a)
        kick = f"{V3}/rooms/{room_id}/kick"
        r = await a.post(kick, json={})
        assert r.status_code == 400 and r.json()["errcode"] == "M_MISSING_PARAM"
        r = await a.post(kick, json={"user_id": 5})
        assert r.status_code == 400 and r.json()["errcode"] == "M_BAD_JSON"
        r = await a.post(kick, json={"user_id": "bob"})
        assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM"
        r = await a.post(f"{V3}/rooms/!nope:test.local/kick", json={"user_id": "@b:test.local"})
        assert r.status_code in (403, 404), r.text


async def test_banned_user_is_not_unbanned_by_a_kick(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    bob = await _user(server, "bob")
    async with alice.client as a, bob.client as b:
        room_id = await _room(a)
        assert (await b.post(f"{V3}/rooms/{room_id}/join", json={})).status_code == 200
        r = await a.post(f"{V3}/rooms/{room_id}/ban", json={"user_id": bob.user_id})
        assert r.status_code == 200, r.text
        assert await _membership(a, room_id, bob.user_id) == "ban"
        _forbidden(await b.post(f"{V3}/rooms/{room_id}/join", json={}))
        _forbidden(await a.post(f"{V3}/rooms/{room_id}/invite", json={"user_id": bob.user_id}))
        _forbidden(await a.post(f"{V3}/rooms/{room_id}/kick", json={"user_id": bob.user_id}))
        assert await _membership(a, room_id, bob.user_id) == "ban"
        # bob cannot unban himself, nor leave the ban behind
        _forbidden(await b.post(f"{V3}/rooms/{room_id}/unban", json={"user_id": bob.user_id}))
        _forbidden(await b.post(f"{V3}/rooms/{room_id}/leave", json={}))
        r = await a.post(f"{V3}/rooms/{room_id}/unban", json={"user_id": bob.user_id})
        assert r.status_code == 200, r.text
        assert await _membership(a, room_id, bob.user_id) == "leave"
        # unbanning someone who is not banned is refused
        _forbidden(await a.post(f"{V3}/rooms/{room_id}/unban", json={"user_id": bob.user_id}))
        r = await b.post(f"{V3}/rooms/{room_id}/join", json={})
        assert r.status_code == 200, r.text


async def test_other_transitions_follow_the_auth_rules(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    bob = await _user(server, "bob")
    carol = await _user(server, "carol")
    async with alice.client as a, bob.client as b, carol.client as c:
        room_id = await _room(a, preset="private_chat")
        # not invited: no join; an outsider cannot invite, kick or ban
        _forbidden(await b.post(f"{V3}/rooms/{room_id}/join", json={}))
        _forbidden(await c.post(f"{V3}/rooms/{room_id}/invite", json={"user_id": bob.user_id}))
        _forbidden(await c.post(f"{V3}/rooms/{room_id}/ban", json={"user_id": alice.user_id}))
        _forbidden(await c.post(f"{V3}/rooms/{room_id}/leave", json={}))
        r = await a.post(f"{V3}/rooms/{room_id}/invite", json={"user_id": bob.user_id})
        assert r.status_code == 200, r.text
        assert (await b.post(f"{V3}/rooms/{room_id}/join", json={})).status_code == 200
        # a joined user cannot be invited; a member below the kick level cannot kick
        _forbidden(await a.post(f"{V3}/rooms/{room_id}/invite", json={"user_id": bob.user_id}))
        _forbidden(await b.post(f"{V3}/rooms/{room_id}/kick", json={"user_id": alice.user_id}))
        _forbidden(await b.post(f"{V3}/rooms/{room_id}/ban", json={"user_id": alice.user_id}))
        # knocking on an invite-only room (not a knock room) is refused
        _forbidden(await c.post(f"{V3}/knock/{room_id}", json={}))
        # a ban of someone who never was in the room is allowed
        r = await a.post(f"{V3}/rooms/{room_id}/ban", json={"user_id": carol.user_id})
        assert r.status_code == 200, r.text
        assert await _membership(a, room_id, carol.user_id) == "ban"


async def test_state_and_joins_are_idempotent(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    bob = await _user(server, "bob")
    async with alice.client as a, bob.client as b:
        room_id = await _room(a, power_level_content_override={"state_default": 0})
        url = f"{V3}/rooms/{room_id}/state/m.room.topic"
        first = (await a.put(url, json={"topic": "same"})).json()["event_id"]
        assert (await a.put(url, json={"topic": "same"})).json()["event_id"] == first
        changed = (await a.put(url, json={"topic": "other"})).json()["event_id"]
        assert changed != first
        # the same content from another sender is a new event
        assert (await b.post(f"{V3}/rooms/{room_id}/join", json={})).status_code == 200
        by_bob = (await b.put(url, json={"topic": "other"})).json()["event_id"]
        assert by_bob not in (first, changed)

        # joining twice answers the first join
        r = await b.get(f"{V3}/rooms/{room_id}/state/m.room.member/{bob.user_id}")
        join_id = (
            await b.get(
                f"{V3}/rooms/{room_id}/state/m.room.member/{bob.user_id}",
                params={"format": "event"},
            )
        ).json()["event_id"]
        assert (await b.post(f"{V3}/join/{room_id}", json={})).status_code == 200
        again = await b.get(
            f"{V3}/rooms/{room_id}/state/m.room.member/{bob.user_id}", params={"format": "event"}
        )
        assert again.json()["event_id"] == join_id
        # PUT /state with the same member content: the same event too
        r = await b.put(f"{V3}/rooms/{room_id}/state/m.room.member/{bob.user_id}", json=r.json())
        assert r.status_code == 200 and r.json()["event_id"] == join_id

        # a user who left learns nothing by repeating their old state: refused
        assert (await b.post(f"{V3}/rooms/{room_id}/leave", json={})).status_code == 200
        _forbidden(await b.put(url, json={"topic": "other"}))


async def test_join_puts_the_body_into_the_member_event(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    bob = await _user(server, "bob")
    async with alice.client as a, bob.client as b:
        r = await a.put(
            f"{V3}/profile/{alice.user_id}/avatar_url", json={"avatar_url": "mxc://test.local/a"}
        )
        assert r.status_code == 200, r.text
        room_id = await _room(a)
        # the creator's join carries the profile too
        r = await a.get(f"{V3}/rooms/{room_id}/state/m.room.member/{alice.user_id}")
        assert r.json()["avatar_url"] == "mxc://test.local/a"
        r = await a.put(f"{V3}/directory/room/%23custom:test.local", json={"room_id": room_id})
        assert r.status_code == 200, r.text
        member = f"{V3}/rooms/{room_id}/state/m.room.member/{bob.user_id}"

        r = await b.put(f"{V3}/profile/{bob.user_id}/displayname", json={"displayname": "Bobby"})
        assert r.status_code == 200, r.text
        r = await b.post(f"{V3}/join/{room_id}", json={"foo": "bar", "reason": "hi"})
        assert r.status_code == 200, r.text
        content = (await a.get(member)).json()
        # the profile's display name comes along; no avatar is set: null, as Synapse has it
        assert content == {
            "membership": "join",
            "foo": "bar",
            "reason": "hi",
            "displayname": "Bobby",
            "avatar_url": None,
        }

        r = await b.post(
            f"{V3}/join/%23custom:test.local",
            json={
                "foo": "baz",
                "membership": "leave",
                "join_authorised_via_users_server": "x",
                "displayname": "Custom",
            },
        )
        assert r.status_code == 200, r.text
        assert (await a.get(member)).json() == {
            "membership": "join",
            "foo": "baz",
            "displayname": "Custom",
            "avatar_url": None,
        }

        r = await b.post(f"{V3}/rooms/{room_id}/join", json={"reason": 5})
        assert r.status_code == 400 and r.json()["errcode"] == "M_BAD_JSON"
        r = await b.post(f"{V3}/rooms/{room_id}/join", json=["not", "an", "object"])
        assert r.status_code == 400 and r.json()["errcode"] == "M_BAD_JSON"

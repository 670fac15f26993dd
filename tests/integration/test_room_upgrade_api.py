"""``POST /rooms/{roomId}/upgrade`` over real sockets (SQLite and PostgreSQL): 10→11, 11→12 and
12→12, checking the tombstone, the predecessor, the copied state and power levels, the moved
aliases and directory listing, and the failures."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from tests.integration.conftest import RunningServer

V3 = "/_matrix/client/v3"

COPIED: dict[str, dict[str, Any]] = {
    "m.room.name": {"name": "Old room"},
    "m.room.topic": {"topic": "things"},
    "m.room.avatar": {"url": "mxc://test.local/avatar"},
    "m.room.guest_access": {"guest_access": "can_join"},
    "m.room.history_visibility": {"history_visibility": "joined"},
    "m.room.encryption": {"algorithm": "m.megolm.v1.aes-sha2"},
    "m.room.server_acl": {"allow": ["*"], "deny": ["evil.example"], "allow_ip_literals": False},
}


class User:
    def __init__(self, server: RunningServer, login: dict[str, Any]) -> None:
        self.user_id: str = login["user_id"]
        self.client = server.client(headers={"Authorization": f"Bearer {login['access_token']}"})


def _alias_url(alias: str) -> str:
    return f"{V3}/directory/room/{quote(alias, safe='')}"


async def _state(client: Any, room_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    r = await client.get(f"{V3}/rooms/{room_id}/state")
    assert r.status_code == 200, r.text
    return {(e["type"], e["state_key"]): e for e in r.json()}


@pytest.mark.parametrize(("old", "new"), [("10", "11"), ("11", "12"), ("12", "12")])
async def test_upgrade(server: RunningServer, old: str, new: str) -> None:
    alice = User(server, await server.register("alice"))
    bob = User(server, await server.register("bob"))
    carol = User(server, await server.register("carol"))
    mallory = User(server, await server.register("mallory"))
    async with alice.client as a, bob.client as b, carol.client as c, mallory.client as m:
        r = await a.post(
            f"{V3}/createRoom",
            json={"preset": "public_chat", "room_version": old, "visibility": "public"},
        )
        assert r.status_code == 200, r.text
        room = r.json()["room_id"]
        await a.put(f"{V3}/directory/list/room/{room}", json={"visibility": "public"})
        for user in (b, c, m):
            assert (await user.post(f"{V3}/rooms/{room}/join", json={})).status_code == 200
        power = (await a.get(f"{V3}/rooms/{room}/state/m.room.power_levels")).json()
        power["users"][bob.user_id] = 50
        assert (await a.put(f"{V3}/rooms/{room}/state/m.room.power_levels", json=power)).is_success
        for event_type, content in COPIED.items():
            r = await a.put(f"{V3}/rooms/{room}/state/{event_type}", json=content)
            assert r.status_code == 200, (event_type, r.text)
        r = await a.post(
            f"{V3}/rooms/{room}/ban", json={"user_id": mallory.user_id, "reason": "spam"}
        )
        assert r.status_code == 200, r.text
        for alias in ("#main:test.local", "#alt:test.local"):
            assert (await a.put(_alias_url(alias), json={"room_id": room})).status_code == 200
        r = await a.put(
            f"{V3}/rooms/{room}/state/m.room.canonical_alias",
            json={"alias": "#main:test.local", "alt_aliases": ["#alt:test.local"]},
        )
        assert r.status_code == 200, r.text
        last = (
            await a.put(
                f"{V3}/rooms/{room}/send/m.room.message/t1", json={"body": "x", "msgtype": "m.text"}
            )
        ).json()["event_id"]

        # who may not, and bad requests
        url = f"{V3}/rooms/{room}/upgrade"
        r = await b.post(url, json={"new_version": new})  # level 50 < tombstone's 100
        assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"
        r = await a.post(url, json={"new_version": "99"})
        assert r.status_code == 400 and r.json()["errcode"] == "M_UNSUPPORTED_ROOM_VERSION"
        r = await a.post(url, json={})
        assert r.status_code == 400 and r.json()["errcode"] == "M_MISSING_PARAM"
        r = await a.post(url, json={"new_version": 12})
        assert r.status_code == 400 and r.json()["errcode"] == "M_BAD_JSON"
        r = await a.post(url, json={"new_version": new, "additional_creators": "bob"})
        assert r.status_code == 400 and r.json()["errcode"] == "M_BAD_JSON"
        r = await a.post(url, json={"new_version": new, "additional_creators": ["bob"]})
        assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM"
        r = await a.post(url, content=b"{")
        assert r.status_code == 400 and r.json()["errcode"] == "M_NOT_JSON"
        r = await a.post(f"{V3}/rooms/!unknown:test.local/upgrade", json={"new_version": new})
        assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"

        body: dict[str, Any] = {"new_version": new}
        if new == "12":
            body["additional_creators"] = [bob.user_id]
        r = await a.post(url, json=body)
        assert r.status_code == 200, r.text
        replacement = r.json()["replacement_room"]
        assert replacement != room

        # the old room: tombstone, restricted power levels, canonical alias moved away
        old_state = await _state(a, room)
        tombstone = old_state[("m.room.tombstone", "")]
        assert tombstone["content"]["replacement_room"] == replacement
        assert tombstone["content"]["body"] and tombstone["sender"] == alice.user_id
        old_power = old_state[("m.room.power_levels", "")]["content"]
        assert old_power["events_default"] == 50 and old_power["invite"] == 50
        assert old_state[("m.room.canonical_alias", "")]["content"] == {}
        r = await c.put(f"{V3}/rooms/{room}/send/m.room.message/t2", json={"body": "late"})
        assert r.status_code == 403  # regular members can no longer talk there

        # the new room: create event with predecessor, copied state
        new_state = await _state(a, replacement)
        create = new_state[("m.room.create", "")]["content"]
        assert create["room_version"] == new
        if new == "12":  # the new room's ID is its create event's hash: it comes first
            assert create["predecessor"] == {"room_id": room, "event_id": last}
        else:  # as Synapse: the predecessor names the old room's tombstone
            assert create["predecessor"] == {"room_id": room, "event_id": tombstone["event_id"]}
        assert "creator" not in create  # v11+
        if new == "12":
            assert create["additional_creators"] == [bob.user_id]
            assert "!" + create_event_id(new_state)[1:] == replacement
        else:
            assert "additional_creators" not in create
        for event_type, content in COPIED.items():
            assert new_state[(event_type, "")]["content"] == content, event_type
        assert new_state[("m.room.join_rules", "")]["content"] == {"join_rule": "public"}
        ban = new_state[("m.room.member", mallory.user_id)]["content"]
        assert ban == {"membership": "ban", "reason": "spam"}
        assert new_state[("m.room.member", alice.user_id)]["content"]["membership"] == "join"
        assert ("m.room.member", carol.user_id) not in new_state  # nobody else is moved
        users = new_state[("m.room.power_levels", "")]["content"]["users"]
        if new == "12":
            assert alice.user_id not in users and bob.user_id not in users  # creators
        else:
            assert users[alice.user_id] == 100 and users[bob.user_id] == 50
        assert new_state[("m.room.canonical_alias", "")]["content"] == {
            "alias": "#main:test.local",
            "alt_aliases": ["#alt:test.local"],
        }

        # aliases and the directory listing moved
        for alias in ("#main:test.local", "#alt:test.local"):
            assert (await c.get(_alias_url(alias))).json()["room_id"] == replacement
        assert (await a.get(f"{V3}/rooms/{room}/aliases")).json() == {"aliases": []}
        r = await a.get(f"{V3}/directory/list/room/{replacement}")
        assert r.json() == {"visibility": "public"}
        r = await a.get(f"{V3}/directory/list/room/{room}")
        assert r.json() == {"visibility": "private"}

        # others follow by joining; the new room works
        assert (await c.post(f"{V3}/rooms/{replacement}/join", json={})).status_code == 200
        assert (await m.post(f"{V3}/rooms/{replacement}/join", json={})).status_code == 403
        r = await c.put(f"{V3}/rooms/{replacement}/send/m.room.message/t3", json={"body": "hi"})
        assert r.status_code == 200, r.text


def create_event_id(state: dict[tuple[str, str], dict[str, Any]]) -> str:
    event_id: str = state[("m.room.create", "")]["event_id"]
    return event_id


async def test_upgrade_of_a_room_without_the_power_levels_to_copy(server: RunningServer) -> None:
    """A moderator at 100 in a room where some state needs more gets raised to copy it, then set
    back to 100; the old room's creator (v12) keeps admin power in a v11 replacement."""
    alice = User(server, await server.register("alice"))
    bob = User(server, await server.register("bob"))
    async with alice.client as a, bob.client as b:
        r = await a.post(f"{V3}/createRoom", json={"preset": "public_chat", "room_version": "12"})
        room = r.json()["room_id"]
        assert (await b.post(f"{V3}/rooms/{room}/join", json={})).status_code == 200
        power = (await a.get(f"{V3}/rooms/{room}/state/m.room.power_levels")).json()
        power["users"][bob.user_id] = 100
        power["events"]["m.room.server_acl"] = 150
        assert (await a.put(f"{V3}/rooms/{room}/state/m.room.power_levels", json=power)).is_success
        r = await a.put(f"{V3}/rooms/{room}/state/m.room.server_acl", json={"allow": ["*"]})
        assert r.status_code == 200
        r = await b.post(f"{V3}/rooms/{room}/upgrade", json={"new_version": "11"})
        assert r.status_code == 200, r.text
        replacement = r.json()["replacement_room"]
        state = await _state(b, replacement)
        assert state[("m.room.server_acl", "")]["content"] == {"allow": ["*"]}
        final = state[("m.room.power_levels", "")]["content"]
        assert final["users"] == {bob.user_id: 100, alice.user_id: 100}
        assert final["events"]["m.room.server_acl"] == 150
        assert "predecessor" in state[("m.room.create", "")]["content"]


async def test_upgrade_of_a_v9_space_with_string_power_levels(server: RunningServer) -> None:
    """v1-9 allow power levels as strings; v10 does not: they are carried over as integers.
    A space keeps its type and its children."""
    alice = User(server, await server.register("alice"))
    bob = User(server, await server.register("bob"))
    async with alice.client as a, bob.client as b:
        r = await a.post(
            f"{V3}/createRoom",
            json={
                "preset": "public_chat",
                "room_version": "9",
                "creation_content": {"type": "m.space"},
            },
        )
        space = r.json()["room_id"]
        assert (await b.post(f"{V3}/rooms/{space}/join", json={})).status_code == 200
        power = (await a.get(f"{V3}/rooms/{space}/state/m.room.power_levels")).json()
        power["users"][bob.user_id] = "50"
        power["events_default"] = " 0 "
        r = await a.put(f"{V3}/rooms/{space}/state/m.room.power_levels", json=power)
        assert r.status_code == 200, r.text
        child = "!child:test.local"
        r = await a.put(
            f"{V3}/rooms/{space}/state/m.space.child/{child}", json={"via": ["test.local"]}
        )
        assert r.status_code == 200, r.text
        gone = "!gone:test.local"
        await a.put(f"{V3}/rooms/{space}/state/m.space.child/{gone}", json={"via": ["x"]})
        await a.put(f"{V3}/rooms/{space}/state/m.space.child/{gone}", json={})  # removed
        r = await a.post(f"{V3}/rooms/{space}/upgrade", json={"new_version": "10"})
        assert r.status_code == 200, r.text
        replacement = r.json()["replacement_room"]
        state = await _state(a, replacement)
        create = state[("m.room.create", "")]["content"]
        assert create["type"] == "m.space" and create["creator"] == alice.user_id
        assert state[("m.space.child", child)]["content"] == {"via": ["test.local"]}
        assert ("m.space.child", gone) not in state
        final = state[("m.room.power_levels", "")]["content"]
        assert final["users"][bob.user_id] == 50 and final["events_default"] == 0
        old_power = (await _state(a, space))[("m.room.power_levels", "")]["content"]
        assert old_power["events_default"] == 50 and old_power["invite"] == 50


async def test_upgrade_fills_in_missing_state_and_carries_personal_settings_over(
    server: RunningServer,
) -> None:
    """As Synapse: state the old room lacks gets the private_chat preset's values; every local
    member's push rules about the room, tags on it and ``m.direct`` entry are carried over
    at upgrade time (before they join); a tombstone naming its own room is refused."""
    alice = User(server, await server.register("alice"))
    bob = User(server, await server.register("bob"))
    carol = User(server, await server.register("carol"))
    async with alice.client as a, bob.client as b, carol.client as c:
        r = await a.post(f"{V3}/createRoom", json={"preset": "public_chat", "room_version": "10"})
        room = r.json()["room_id"]
        for user in (b, c):
            assert (await user.post(f"{V3}/rooms/{room}/join", json={})).status_code == 200
        assert (await c.post(f"{V3}/rooms/{room}/leave", json={})).status_code == 200
        before = await _state(a, room)
        assert ("m.room.guest_access", "") not in before
        # bob's settings about the room; carol (no longer a member) has the same ones
        override = {
            "conditions": [{"kind": "event_match", "key": "room_id", "pattern": room}],
            "actions": ["notify", {"set_tweak": "sound", "value": "default"}],
        }
        for user in (b, c):
            rules = f"{V3}/pushrules/global"
            r = await user.put(f"{rules}/room/{quote(room)}", json={"actions": ["dont_notify"]})
            assert r.status_code == 200, r.text
            r = await user.put(f"{rules}/override/loud-{quote(room)}", json=override)
            assert r.status_code == 200, r.text
            r = await user.put(f"{rules}/override/other", json={**override, "conditions": []})
            assert r.status_code == 200, r.text
        r = await b.put(f"{V3}/pushrules/global/override/off-{quote(room)}", json=override)
        assert r.status_code == 200
        r = await b.put(
            f"{V3}/pushrules/global/override/off-{quote(room)}/enabled", json={"enabled": False}
        )
        assert r.status_code == 200
        r = await b.put(
            f"{V3}/user/{bob.user_id}/rooms/{room}/tags/m.favourite", json={"order": 0.5}
        )
        assert r.status_code == 200, r.text
        direct = {alice.user_id: ["!other:test.local", room], "@x:test.local": ["!y:test.local"]}
        r = await b.put(f"{V3}/user/{bob.user_id}/account_data/m.direct", json=direct)
        assert r.status_code == 200, r.text

        r = await a.post(f"{V3}/rooms/{room}/upgrade", json={"new_version": "11"})
        assert r.status_code == 200, r.text
        replacement = r.json()["replacement_room"]

        state = await _state(a, replacement)
        assert state[("m.room.guest_access", "")]["content"] == {"guest_access": "can_join"}
        assert state[("m.room.join_rules", "")]["content"] == {"join_rule": "public"}
        assert state[("m.room.history_visibility", "")]["content"] == {
            "history_visibility": "shared"
        }

        ruleset = (await b.get(f"{V3}/pushrules/")).json()["global"]
        assert ruleset["room"][0] == {
            "rule_id": replacement,
            "default": False,
            "enabled": True,
            "actions": ["dont_notify"],
        }
        copied = {r["rule_id"]: r for r in ruleset["override"]}
        assert copied[f"loud-{replacement}"]["conditions"] == [
            {"kind": "event_match", "key": "room_id", "pattern": replacement}
        ]
        assert copied[f"loud-{replacement}"]["actions"] == override["actions"]
        assert f"loud-{room}" in copied and "other" in copied  # the old ones stay
        assert f"off-{replacement}" not in copied  # disabled rules are not copied
        tags = (await b.get(f"{V3}/user/{bob.user_id}/rooms/{replacement}/tags")).json()
        assert tags == {"tags": {"m.favourite": {"order": 0.5}}}
        r = await b.get(f"{V3}/user/{bob.user_id}/account_data/m.direct")
        assert r.json() == {
            alice.user_id: ["!other:test.local", room, replacement],
            "@x:test.local": ["!y:test.local"],
        }
        # carol had left: nothing of hers is carried over
        carol_rules = (await c.get(f"{V3}/pushrules/")).json()["global"]
        assert all(r["rule_id"] != replacement for r in carol_rules["room"])

        # a tombstone naming its own room is refused; another room is fine
        url = f"{V3}/rooms/{replacement}/state/m.room.tombstone"
        r = await a.put(url, json={"body": "x", "replacement_room": replacement})
        assert (r.status_code, r.json()["errcode"]) == (400, "M_INVALID_PARAM")
        r = await a.put(url, json={"body": "x", "replacement_room": room})
        assert r.status_code == 200, r.text


async def test_upgrade_of_a_room_the_user_has_nothing_to_carry_over_for(
    server: RunningServer,
) -> None:
    """Nothing stored for the room: nothing is written (no push rules, tags or m.direct)."""
    alice = User(server, await server.register("alice"))
    async with alice.client as a:
        r = await a.post(f"{V3}/createRoom", json={"room_version": "10"})
        room = r.json()["room_id"]
        r = await a.post(f"{V3}/rooms/{room}/upgrade", json={"new_version": "10"})
        assert r.status_code == 200, r.text
        replacement = r.json()["replacement_room"]
        r = await a.get(f"{V3}/user/{alice.user_id}/account_data/m.direct")
        assert r.status_code == 404
        r = await a.get(f"{V3}/user/{alice.user_id}/rooms/{replacement}/tags")
        assert r.json() == {"tags": {}}
        state = await _state(a, replacement)
        # private_chat: the old room's own join rule and history visibility are copied
        assert state[("m.room.join_rules", "")]["content"] == {"join_rule": "invite"}
        assert state[("m.room.guest_access", "")]["content"] == {"guest_access": "can_join"}

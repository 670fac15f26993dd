"""Our users joining rooms hosted on another of our servers, and invites both ways."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest
import trio

from federation.core.builder import build_event
from federation.core.room_versions import get_room_version
from tests.integration.federation.conftest import FederatedServer, FederatedServerFactory

V3 = "/_matrix/client/v3"


async def _user(server: FederatedServer, name: str) -> tuple[str, httpx.AsyncClient]:
    account = await server.register(name)
    client = server.client()
    client.headers["Authorization"] = f"Bearer {account['access_token']}"
    return account["user_id"], client


async def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _state(client: httpx.AsyncClient, room_id: str) -> dict[tuple[str, str], Any]:
    body = await _ok(await client.get(f"{V3}/rooms/{quote(room_id)}/state"))
    return {(e["type"], e["state_key"]): e["content"] for e in body}  # type: ignore[index]


async def _wait_for(predicate: Any, what: str) -> None:
    with trio.fail_after(20):
        while not await predicate():
            await trio.sleep(0.05)
    assert await predicate(), what


@pytest.mark.parametrize("room_version", ["10", "12"])
async def test_join_by_remote_alias_gives_full_state(
    two_servers: tuple[FederatedServer, FederatedServer], room_version: str
) -> None:
    a, b = two_servers
    alice, ca = await _user(a, "alice")
    bob, cb = await _user(b, "bob")
    async with ca, cb:
        created = await _ok(
            await cb.post(
                f"{V3}/createRoom",
                json={
                    "preset": "public_chat",
                    "room_alias_name": "lobby",
                    "name": "Lobby",
                    "room_version": room_version,
                },
            )
        )
        room_id = created["room_id"]
        alias = f"#lobby:{b.server_name}"
        joined = await _ok(await ca.post(f"{V3}/join/{quote(alias)}", json={}))
        assert joined == {"room_id": room_id}
        # A has the room with its full state
        state = await _state(ca, room_id)
        assert state[("m.room.create", "")]["room_version"] == room_version
        assert state[("m.room.name", "")] == {"name": "Lobby"}
        assert state[("m.room.member", bob)]["membership"] == "join"
        assert state[("m.room.member", alice)]["membership"] == "join"
        sync = await _ok(await ca.get(f"{V3}/sync"))
        room = sync["rooms"]["join"][room_id]
        types = {e["type"] for e in room["state"]["events"] + room["timeline"]["events"]}
        assert {"m.room.create", "m.room.power_levels", "m.room.name"} <= types, room
        # B (the resident) has alice joined
        members = await _ok(await cb.get(f"{V3}/rooms/{quote(room_id)}/joined_members"))
        assert set(members["joined"]) == {alice, bob}
        # joining again through the same path is a local no-op now
        assert await _ok(await ca.post(f"{V3}/join/{quote(alias)}", json={})) == joined
        # alice can send into the room (the event is built over the joined state)
        sent = await _ok(
            await ca.put(
                f"{V3}/rooms/{quote(room_id)}/send/m.room.message/t1",
                json={"msgtype": "m.text", "body": "hello from A"},
            )
        )
        assert sent["event_id"].startswith("$")


async def test_remote_join_errors(two_servers: tuple[FederatedServer, FederatedServer]) -> None:
    a, b = two_servers
    _alice, ca = await _user(a, "alice")
    _bob, cb = await _user(b, "bob")
    async with ca, cb:
        private = await _ok(await cb.post(f"{V3}/createRoom", json={"preset": "private_chat"}))
        room_id = private["room_id"]
        # invite-only: the resident's refusal is passed on as 403
        r = await ca.post(f"{V3}/join/{quote(room_id)}?server_name={quote(b.server_name)}")
        assert r.status_code == 403, r.text
        assert r.json()["errcode"] == "M_FORBIDDEN"
        # unknown room on a known server: 404
        r = await ca.post(
            f"{V3}/join/{quote('!nope:' + b.server_name)}?via={quote(b.server_name)}", json={}
        )
        assert r.status_code == 404, r.text
        # unknown alias on the remote server: 404
        r = await ca.post(f"{V3}/join/{quote('#nothing:' + b.server_name)}", json={})
        assert r.status_code == 404, r.text
        # a v12 room ID without via: no server to ask
        v12 = await _ok(
            await cb.post(f"{V3}/createRoom", json={"preset": "public_chat", "room_version": "12"})
        )
        r = await ca.post(f"{V3}/join/{quote(v12['room_id'])}", json={})
        assert r.status_code == 404, r.text
        r = await ca.post(f"{V3}/join/{quote(v12['room_id'])}?via={quote(b.server_name)}", json={})
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("room_version", ["10", "12"])
async def test_invite_remote_user_who_joins(
    two_servers: tuple[FederatedServer, FederatedServer], room_version: str
) -> None:
    a, b = two_servers
    alice, ca = await _user(a, "alice")
    bob, cb = await _user(b, "bob")
    async with ca, cb:
        created = await _ok(
            await ca.post(
                f"{V3}/createRoom",
                json={"preset": "private_chat", "name": "Secret", "room_version": room_version},
            )
        )
        room_id = created["room_id"]
        await _ok(await ca.post(f"{V3}/rooms/{quote(room_id)}/invite", json={"user_id": bob}))
        full_state = await _ok(await ca.get(f"{V3}/rooms/{quote(room_id)}/state"))
        [invite_id] = [
            e["event_id"]  # type: ignore[index]
            for e in full_state  # type: ignore[attr-defined]
            if e["type"] == "m.room.member" and e["state_key"] == bob  # type: ignore[index]
        ]
        # bob's sync shows the invite with the room's stripped state
        sync = await _ok(await cb.get(f"{V3}/sync"))
        invite = sync["rooms"]["invite"][room_id]["invite_state"]["events"]
        member = [e for e in invite if e["type"] == "m.room.member" and e["state_key"] == bob]
        assert member and member[0]["content"]["membership"] == "invite", invite
        assert member[0]["sender"] == alice
        assert {
            "type": "m.room.name",
            "state_key": "",
            "sender": alice,
            "content": {"name": "Secret"},
        } in invite
        # bob accepts: a join through the inviter's server (no via needed)
        await _ok(await cb.post(f"{V3}/rooms/{quote(room_id)}/join", json={}))
        state = await _state(cb, room_id)
        assert state[("m.room.name", "")] == {"name": "Secret"}
        assert state[("m.room.member", bob)]["membership"] == "join"
        members = await _ok(await ca.get(f"{V3}/rooms/{quote(room_id)}/joined_members"))
        assert set(members["joined"]) == {alice, bob}
        sync = await _ok(await cb.get(f"{V3}/sync"))
        assert room_id in sync["rooms"]["join"]
        # A keeps the invite as B's server countersigned it
        r = await b.signed_request(a, "GET", f"/_matrix/federation/v1/event/{quote(invite_id)}")
        assert r.status_code == 200, r.text
        [stored] = r.json()["pdus"]
        assert set(stored["signatures"]) == {a.server_name, b.server_name}
        assert room_id not in sync["rooms"].get("invite", {})


async def test_invite_errors(two_servers: tuple[FederatedServer, FederatedServer]) -> None:
    a, b = two_servers
    _alice, ca = await _user(a, "alice")
    async with ca:
        room = await _ok(await ca.post(f"{V3}/createRoom", json={"preset": "private_chat"}))
        room_id = room["room_id"]
        # an unreachable server: the invite is not made
        r = await ca.post(f"{V3}/rooms/{quote(room_id)}/invite", json={"user_id": "@x:127.0.0.1:9"})
        assert r.status_code == 502, r.text
        state = await _state(ca, room_id)
        assert ("m.room.member", "@x:127.0.0.1:9") not in state
    # inbound: bad bodies and foreign users
    target = f"/_matrix/federation/v2/invite/{quote(room_id)}/%24x"
    r = await a.signed_request(b, "PUT", target, {"event": {}, "invite_room_state": []})
    assert r.status_code == 400 and r.json()["errcode"] == "M_BAD_JSON"
    r = await a.signed_request(b, "PUT", target, {"room_version": "99", "event": {}})
    assert r.status_code == 400 and r.json()["errcode"] == "M_INCOMPATIBLE_ROOM_VERSION"
    assert r.json()["room_version"] == "99"
    r = await a.signed_request(b, "PUT", target, {"room_version": "10", "event": []})
    assert r.status_code == 400
    r = await a.signed_request(
        b,
        "PUT",
        target,
        {"room_version": "10", "event": {"type": "m.room.member", "content": {}}},
    )
    assert r.status_code == 400


@pytest.mark.parametrize("inviter_down", [False, True])
async def test_reject_remote_invite(
    federated_server_factory: FederatedServerFactory, inviter_down: bool
) -> None:
    a = await federated_server_factory()
    b = await federated_server_factory()
    alice, ca = await _user(a, "alice")
    bob, cb = await _user(b, "bob")
    async with ca, cb:
        room = await _ok(await ca.post(f"{V3}/createRoom", json={"preset": "private_chat"}))
        room_id = room["room_id"]
        await _ok(await ca.post(f"{V3}/rooms/{quote(room_id)}/invite", json={"user_id": bob}))
        first = await _ok(await cb.get(f"{V3}/sync"))
        assert room_id in first["rooms"]["invite"]
        if inviter_down:
            assert a.stop is not None
            a.stop.set()
            await trio.sleep(1.5)  # the listener's grace period
        await _ok(await cb.post(f"{V3}/rooms/{quote(room_id)}/leave", json={}))
        sync = await _ok(await cb.get(f"{V3}/sync", params={"since": first["next_batch"]}))
        assert room_id not in sync["rooms"].get("invite", {})
        assert room_id in sync["rooms"].get("leave", {})
        again = await _ok(await cb.get(f"{V3}/sync"))
        assert room_id not in again["rooms"].get("invite", {})
        if not inviter_down:
            state = await _state(ca, room_id)
            assert state[("m.room.member", bob)]["membership"] == "leave"
            assert state[("m.room.member", alice)]["membership"] == "join"


async def test_remote_profiles(two_servers: tuple[FederatedServer, FederatedServer]) -> None:
    a, b = two_servers
    _alice, ca = await _user(a, "alice")
    bob, cb = await _user(b, "bob")
    async with ca, cb:
        await _ok(
            await cb.put(f"{V3}/profile/{quote(bob)}/displayname", json={"displayname": "Bob B"})
        )
        profile = await _ok(await ca.get(f"{V3}/profile/{quote(bob)}"))
        assert profile["displayname"] == "Bob B"
        field = await _ok(await ca.get(f"{V3}/profile/{quote(bob)}/displayname"))
        assert field == {"displayname": "Bob B"}
        r = await ca.get(f"{V3}/profile/{quote(bob)}/avatar_url")
        assert r.status_code == 404, r.text
        r = await ca.get(f"{V3}/profile/{quote('@nobody:' + b.server_name)}")
        assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"
        r = await ca.get(f"{V3}/profile/{quote('@x:127.0.0.1:9')}")
        assert r.status_code == 502, r.text
    # the federation query answers for its own users only (no proxying)
    alice_on_a = f"@alice:{a.server_name}"
    target = f"/_matrix/federation/v1/query/profile?user_id={quote(alice_on_a)}"
    r = await a.signed_request(b, "GET", target)
    assert r.status_code == 404, r.text


async def test_inbound_invite_checks(two_servers: tuple[FederatedServer, FederatedServer]) -> None:
    """A signed invite from A's server for B's user: floats (not canonical JSON in v6+) are
    400 M_BAD_JSON; a good one is countersigned and shown in B's user's /sync."""
    a, b = two_servers
    bob, cb = await _user(b, "bob")
    room_id = f"!room:{a.server_name}"
    sender = f"@alice:{a.server_name}"

    def invite(content: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        event = build_event(
            get_room_version("10"),
            room_id=room_id,
            sender=sender,
            type="m.room.member",
            content=content,
            prev_event_ids=[],
            auth_event_ids=[],
            depth=5,
            origin_server_ts=1_700_000_000_000,
            origin=a.server_name,
            signing_key=a.signing_key,
            state_key=bob,
        )
        return event.event_id, dict(event.pdu)

    event_id, pdu = invite({"membership": "invite"})
    bad = dict(pdu, content={"membership": "invite", "weight": 1.5})
    target = f"/_matrix/federation/v2/invite/{quote(room_id)}/{quote(event_id)}"
    r = await a.signed_request(b, "PUT", target, {"room_version": "10", "event": bad})
    assert r.status_code == 400 and r.json()["errcode"] == "M_BAD_JSON", r.text
    # another user's event ID in the path
    r = await a.signed_request(
        b,
        "PUT",
        f"/_matrix/federation/v2/invite/{quote(room_id)}/%24other",
        {"room_version": "10", "event": pdu},
    )
    assert r.status_code == 400, r.text
    state = [{"type": "m.room.name", "state_key": "", "sender": sender, "content": {"name": "Hi"}}]
    r = await a.signed_request(
        b, "PUT", target, {"room_version": "10", "event": pdu, "invite_room_state": state}
    )
    assert r.status_code == 200, r.text
    signed = r.json()["event"]
    assert b.server_name in signed["signatures"] and a.server_name in signed["signatures"]
    async with cb:
        sync = await _ok(await cb.get(f"{V3}/sync"))
        events = sync["rooms"]["invite"][room_id]["invite_state"]["events"]
        assert events[-1]["sender"] == sender and events[-1]["state_key"] == bob
        assert events[:-1] == state


async def _bodies(client: httpx.AsyncClient, room_id: str) -> list[str]:
    page = await _ok(
        await client.get(f"{V3}/rooms/{quote(room_id)}/messages", params={"dir": "b", "limit": 50})
    )
    return [
        e["content"].get("body") for e in reversed(page["chunk"]) if e["type"] == "m.room.message"
    ]


async def test_messages_both_ways_and_leave(
    two_servers: tuple[FederatedServer, FederatedServer],
) -> None:
    """After a join by alias, messages sent on either server reach the other in order, once
    each; both agree on the members; a leave reaches the resident."""
    a, b = two_servers
    alice, ca = await _user(a, "alice")
    bob, cb = await _user(b, "bob")
    async with ca, cb:
        created = await _ok(
            await cb.post(
                f"{V3}/createRoom", json={"preset": "public_chat", "room_alias_name": "talk"}
            )
        )
        room_id = created["room_id"]
        await _ok(await ca.post(f"{V3}/join/{quote('#talk:' + b.server_name)}", json={}))
        expected = []
        for i in range(3):
            for name, client in (("bob", cb), ("alice", ca)):
                body = f"{name} {i}"
                expected.append(body)
                await _ok(
                    await client.put(
                        f"{V3}/rooms/{quote(room_id)}/send/m.room.message/{name}{i}",
                        json={"msgtype": "m.text", "body": body},
                    )
                )

                async def arrived(body: str = body) -> bool:
                    return body in await _bodies(ca, room_id) and body in await _bodies(cb, room_id)

                await _wait_for(arrived, f"{body} on both servers")
        assert await _bodies(ca, room_id) == expected
        assert await _bodies(cb, room_id) == expected
        for client in (ca, cb):
            members = await _ok(await client.get(f"{V3}/rooms/{quote(room_id)}/joined_members"))
            assert set(members["joined"]) == {alice, bob}
        await _ok(await ca.post(f"{V3}/rooms/{quote(room_id)}/leave", json={}))

        async def left() -> bool:
            members = await _ok(await cb.get(f"{V3}/rooms/{quote(room_id)}/joined_members"))
            return set(members["joined"]) == {bob}

        await _wait_for(left, "alice's leave on B")


async def test_history_from_before_the_join_is_backfilled(
    two_servers: tuple[FederatedServer, FederatedServer],
) -> None:
    a, b = two_servers
    _alice, ca = await _user(a, "alice")
    _bob, cb = await _user(b, "bob")
    async with ca, cb:
        created = await _ok(
            await cb.post(f"{V3}/createRoom", json={"preset": "public_chat", "name": "Old"})
        )
        room_id = created["room_id"]
        expected = [f"before {i}" for i in range(15)]
        for i, body in enumerate(expected):
            await _ok(
                await cb.put(
                    f"{V3}/rooms/{quote(room_id)}/send/m.room.message/b{i}",
                    json={"msgtype": "m.text", "body": body},
                )
            )
        await _ok(
            await ca.post(
                f"{V3}/join/{quote(room_id)}", params={"server_name": b.server_name}, json={}
            )
        )
        # page back in small steps: each page past the oldest event here backfills
        seen: list[str] = []
        token = None
        for _ in range(20):
            params: dict[str, Any] = {"dir": "b", "limit": 4}
            if token is not None:
                params["from"] = token
            page = await _ok(await ca.get(f"{V3}/rooms/{quote(room_id)}/messages", params=params))
            seen.extend(
                e["content"]["body"] for e in page["chunk"] if e["type"] == "m.room.message"
            )
            types = [e["type"] for e in page["chunk"]]
            if "m.room.create" in types or not page.get("end"):
                break
            token = page["end"]
        assert list(reversed(seen)) == expected
        # the backfilled events are not new to /sync
        sync = await _ok(await ca.get(f"{V3}/sync"))
        timeline = sync["rooms"]["join"][room_id]["timeline"]["events"]
        assert not [e for e in timeline if e["type"] == "m.room.message"]


async def test_two_users_join_the_same_remote_room_at_once(
    two_servers: tuple[FederatedServer, FederatedServer],
) -> None:
    a, b = two_servers
    alice, ca = await _user(a, "alice")
    anne, cn = await _user(a, "anne")
    bob, cb = await _user(b, "bob")
    async with ca, cn, cb:
        room_id = (await _ok(await cb.post(f"{V3}/createRoom", json={"preset": "public_chat"})))[
            "room_id"
        ]
        target = f"{V3}/join/{quote(room_id)}?via={quote(b.server_name)}"
        async with trio.open_nursery() as nursery:
            for client in (ca, cn):

                async def join(client: httpx.AsyncClient = client) -> None:
                    await _ok(await client.post(target, json={}))

                nursery.start_soon(join)
        everyone = {alice, anne, bob}
        for client in (ca, cn):
            members = await _ok(await client.get(f"{V3}/rooms/{quote(room_id)}/joined_members"))
            assert set(members["joined"]) == everyone

        async def resident_agrees() -> bool:
            members = await _ok(await cb.get(f"{V3}/rooms/{quote(room_id)}/joined_members"))
            return set(members["joined"]) == everyone

        await _wait_for(resident_agrees, "both joins on the resident")

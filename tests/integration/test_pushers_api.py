"""Pushers, the push sender and ``GET /notifications`` over real HTTP (SQLite and PostgreSQL),
with a real push gateway: a small hypercorn server this test starts, which records every
``POST /_matrix/push/v1/notify`` and answers as the test tells it.

Spec: client-server-api/modules/push.md › Push Notifications; push-gateway-api.md;
``pushers.yaml``, ``notifications.yaml``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import hypercorn.trio
import pytest
import trio
from hypercorn.config import Config as HypercornConfig

from homeserver.app import serve_homeserver
from homeserver.config import parse_config
from tests.integration.conftest import SERVER_NAME, RunningServer, ServerFactory

V3 = "/_matrix/client/v3"
NOTIFY = "/_matrix/push/v1/notify"
WAIT = 15


# --- the push gateway ------------------------------------------------------------------------


@dataclass
class Gateway:
    """Records notify requests; answers with ``status`` and, for a pushkey in ``reject``,
    ``{"rejected": [pushkey]}``."""

    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    reject: set[str] = field(default_factory=set)
    #: message bodies whose pushes are always answered 500
    fail_bodies: set[str] = field(default_factory=set)
    failures: int = 0
    _changed: trio.Event = field(default_factory=trio.Event)

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        status = self.status
        answer: dict[str, Any] = {}
        if scope["path"] != NOTIFY or scope["method"] != "POST":
            status = 404
        elif status == 200 and _body_of(json.loads(body)) in self.fail_bodies:
            status = 500
            self.failures += 1
        elif status == 200:
            payload = json.loads(body)
            self.received.append(payload)
            keys = {d["pushkey"] for d in payload["notification"].get("devices", [])}
            rejected = sorted(keys & self.reject)
            if rejected:
                answer["rejected"] = rejected
        else:
            self.failures += 1
        self._changed.set()
        self._changed = trio.Event()
        raw = json.dumps(answer).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": raw})

    async def wait_for(
        self, check: Callable[[dict[str, Any]], bool], *, start: int = 0
    ) -> dict[str, Any]:
        """The first request from index ``start`` on that passes ``check``."""
        with trio.fail_after(WAIT):
            while True:
                for body in self.received[start:]:
                    if check(body):
                        return body
                await self._changed.wait()

    async def wait_failures(self, n: int) -> None:
        with trio.fail_after(WAIT):
            while self.failures < n:
                await self._changed.wait()


def _body_of(payload: dict[str, Any]) -> Any:
    content = payload.get("notification", {}).get("content")
    return content.get("body") if isinstance(content, dict) else None


@pytest.fixture
async def gateway(nursery: trio.Nursery) -> AsyncIterator[Gateway]:
    gw = Gateway()
    config = HypercornConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    stop = trio.Event()
    urls = await nursery.start(
        partial(hypercorn.trio.serve, gw.app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
    )
    gw.url = urls[0] + NOTIFY
    yield gw
    stop.set()


# --- clients ---------------------------------------------------------------------------------


class User:
    def __init__(self, server: RunningServer, login: dict[str, Any]) -> None:
        self.user_id: str = login["user_id"]
        self.token: str = login["access_token"]
        self.device_id: str = login["device_id"]
        self.server = server

    async def request(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        async with self.server.client(headers={"Authorization": f"Bearer {self.token}"}) as c:
            return await c.request(method, path, json=body, params=params or None)

    async def call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        r = await self.request(method, path, body, **params)
        assert r.status_code == 200, r.text
        return r.json()

    async def send(self, room_id: str, body: str, **content: Any) -> str:
        txn = f"t{trio.current_time()}-{body}"
        answer = await self.call(
            "PUT",
            f"{V3}/rooms/{quote(room_id)}/send/m.room.message/{quote(txn)}",
            {"msgtype": "m.text", "body": body, **content},
        )
        event_id: str = answer["event_id"]
        return event_id

    async def set_pusher(self, url: str, pushkey: str = "key1", **extra: Any) -> httpx.Response:
        body: dict[str, Any] = {
            "kind": "http",
            "app_id": "org.example.app",
            "app_display_name": "Example",
            "device_display_name": "Phone",
            "pushkey": pushkey,
            "lang": "en",
            "profile_tag": "tag",
            "data": {"url": url},
        }
        body.update(extra)
        r: httpx.Response = await self.request("POST", f"{V3}/pushers/set", body)
        return r

    async def pushers(self) -> list[dict[str, Any]]:
        body = await self.call("GET", f"{V3}/pushers")
        out: list[dict[str, Any]] = body["pushers"]
        return out


async def register(server: RunningServer, name: str) -> User:
    return User(server, await server.register(name))


async def dm(alice: User, bob: User) -> str:
    """A private room of alice's that bob joined."""
    room_id: str = (await alice.call("POST", f"{V3}/createRoom", {"preset": "private_chat"}))[
        "room_id"
    ]
    await alice.call("POST", f"{V3}/rooms/{quote(room_id)}/invite", {"user_id": bob.user_id})
    await bob.call("POST", f"{V3}/join/{quote(room_id)}", {})
    return room_id


def is_message(body: dict[str, Any]) -> bool:
    return body["notification"].get("type") == "m.room.message"


PRIVATE = {"push": {"allow_private_destinations": True, "retry_initial_s": 0.05}}


# --- the pushers API -------------------------------------------------------------------------


async def test_set_get_update_and_delete(homeserver_factory: ServerFactory) -> None:
    server = await homeserver_factory()
    alice = await register(server, "alice")
    url = "https://push.example.org/_matrix/push/v1/notify"
    assert await alice.pushers() == []
    r = await alice.set_pusher(url, data={"url": url, "format": "event_id_only", "x": 1})
    assert r.status_code == 200, r.text
    [p] = await alice.pushers()
    assert p["pushkey"] == "key1"
    assert p["app_id"] == "org.example.app"
    assert p["kind"] == "http"
    assert p["data"] == {"url": url, "format": "event_id_only", "x": 1}
    assert p["profile_tag"] == "tag"
    assert p["lang"] == "en"
    assert p["device_display_name"] == "Phone"
    # same (app_id, pushkey): an update, not a second pusher
    assert (await alice.set_pusher(url, lang="de")).status_code == 200
    [p] = await alice.pushers()
    assert p["lang"] == "de"
    assert (await alice.set_pusher(url, pushkey="key2")).status_code == 200
    assert {p["pushkey"] for p in await alice.pushers()} == {"key1", "key2"}
    # kind: null deletes
    r = await alice.request(
        "POST", f"{V3}/pushers/set", {"kind": None, "app_id": "org.example.app", "pushkey": "key1"}
    )
    assert r.status_code == 200, r.text
    assert [p["pushkey"] for p in await alice.pushers()] == ["key2"]


async def test_append_false_takes_the_pushkey_from_other_users(
    homeserver_factory: ServerFactory,
) -> None:
    server = await homeserver_factory()
    alice = await register(server, "alice")
    bob = await register(server, "bob")
    url = "https://push.example.org/_matrix/push/v1/notify"
    assert (await alice.set_pusher(url)).status_code == 200
    assert (await bob.set_pusher(url, append=True)).status_code == 200
    assert len(await alice.pushers()) == 1
    assert (await bob.set_pusher(url)).status_code == 200  # append defaults to false
    assert await alice.pushers() == []
    assert len(await bob.pushers()) == 1


BAD_INPUT: list[tuple[dict[str, Any], int, str]] = [
    ({"data": {}}, 400, "M_MISSING_PARAM"),
    ({"data": {"url": 5}}, 400, "M_BAD_JSON"),
    ({"data": "x"}, 400, "M_BAD_JSON"),
    ({"kind": "carrier-pigeon"}, 400, "M_INVALID_PARAM"),
    ({"kind": 3}, 400, "M_BAD_JSON"),
    ({"pushkey": None}, 400, "M_MISSING_PARAM"),
    ({"app_id": 7}, 400, "M_BAD_JSON"),
    ({"lang": None}, 400, "M_MISSING_PARAM"),
    ({"append": "yes"}, 400, "M_BAD_JSON"),
    ({"data": {"url": "https://push.example.org/notify"}}, 400, "M_INVALID_PARAM"),
    ({"data": {"url": "ftp://push.example.org" + NOTIFY}}, 400, "M_INVALID_PARAM"),
    ({"data": {"url": NOTIFY}}, 400, "M_INVALID_PARAM"),
    ({"data": {"url": "http://127.0.0.1:9" + NOTIFY}}, 400, "M_INVALID_PARAM"),
    ({"data": {"url": "https://10.1.2.3" + NOTIFY}}, 400, "M_INVALID_PARAM"),
    ({"data": {"url": "https://[::1]" + NOTIFY}}, 400, "M_INVALID_PARAM"),
    ({"data": {"url": "http://localhost:8080" + NOTIFY}}, 400, "M_INVALID_PARAM"),
]


async def test_bad_input(homeserver_factory: ServerFactory) -> None:
    server = await homeserver_factory()
    alice = await register(server, "alice")
    for change, status, errcode in BAD_INPUT:
        r = await alice.set_pusher("https://push.example.org" + NOTIFY, **change)
        assert r.status_code == status, (change, r.text)
        assert r.json()["errcode"] == errcode, (change, r.text)
    assert await alice.pushers() == []


async def test_missing_kind_and_bad_body(homeserver_factory: ServerFactory) -> None:
    server = await homeserver_factory()
    alice = await register(server, "alice")
    r = await alice.request("POST", f"{V3}/pushers/set", {"app_id": "a", "pushkey": "k"})
    assert (r.status_code, r.json()["errcode"]) == (400, "M_MISSING_PARAM")
    r = await alice.request("POST", f"{V3}/pushers/set", [1, 2])
    assert r.status_code == 400
    async with server.client() as c:
        assert (await c.get(f"{V3}/pushers")).status_code == 401


async def test_guests_have_no_pushers(homeserver_factory: ServerFactory) -> None:
    server = await homeserver_factory(registration={"policy": "open", "allow_guests": True})
    async with server.client() as c:
        r = await c.post(f"{V3}/register", params={"kind": "guest"}, json={})
    assert r.status_code == 200, r.text
    guest = User(server, r.json())
    for method, path, body in (
        ("GET", f"{V3}/pushers", None),
        ("GET", f"{V3}/notifications", None),
    ):
        r = await guest.request(method, path, body)
        assert (r.status_code, r.json()["errcode"]) == (403, "M_GUEST_ACCESS_FORBIDDEN")
    r = await guest.set_pusher("https://push.example.org" + NOTIFY)
    assert (r.status_code, r.json()["errcode"]) == (403, "M_GUEST_ACCESS_FORBIDDEN")


async def test_private_destination_allowed_by_config(homeserver_factory: ServerFactory) -> None:
    server = await homeserver_factory(**PRIVATE)
    alice = await register(server, "alice")
    r = await alice.set_pusher("http://127.0.0.1:9" + NOTIFY)
    assert r.status_code == 200, r.text


async def test_password_change_deletes_other_devices_pushers(
    homeserver_factory: ServerFactory,
) -> None:
    server = await homeserver_factory()
    alice = await register(server, "alice")
    async with server.client() as c:
        r = await c.post(
            f"{V3}/login",
            json={
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": "alice"},
                "password": "correct horse",
            },
        )
    other = User(server, r.json())
    url = "https://push.example.org" + NOTIFY
    assert (await other.set_pusher(url, pushkey="other")).status_code == 200
    assert (await alice.set_pusher(url, pushkey="mine")).status_code == 200
    r = await alice.request(
        "POST",
        f"{V3}/account/password",
        {
            "new_password": "a new password",
            "logout_devices": True,
            "auth": {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": "alice"},
                "password": "correct horse",
            },
        },
    )
    assert r.status_code == 200, r.text
    assert [p["pushkey"] for p in await alice.pushers()] == ["mine"]


# --- sending ---------------------------------------------------------------------------------


async def test_message_is_pushed_and_receipt_clears_the_badge(
    homeserver_factory: ServerFactory, gateway: Gateway
) -> None:
    server = await homeserver_factory(**PRIVATE)
    alice = await register(server, "alice")
    bob = await register(server, "bob")
    room_id = await dm(alice, bob)
    await bob.call("PUT", f"{V3}/profile/{quote(bob.user_id)}/displayname", {"displayname": "Bob"})
    assert (await alice.set_pusher(gateway.url)).status_code == 200
    event_id = await bob.send(room_id, "hello alice")
    body = await gateway.wait_for(is_message)
    n = body["notification"]
    assert n["event_id"] == event_id
    assert n["room_id"] == room_id
    assert n["sender"] == bob.user_id
    assert n["sender_display_name"] == "Bob"
    assert n["content"] == {"msgtype": "m.text", "body": "hello alice"}
    assert n["counts"] == {"unread": 1}
    assert n["prio"] == "high"  # the one-to-one rule has a sound tweak
    [device] = n["devices"]
    assert device["app_id"] == "org.example.app"
    assert device["pushkey"] == "key1"
    assert device["data"] == {}  # the url is not sent back
    assert device["tweaks"] == {"sound": "default"}
    assert isinstance(device["pushkey_ts"], int)
    # alice's own messages are not pushed to her; a receipt sends a zero badge
    start = len(gateway.received)
    await alice.send(room_id, "mine")
    await alice.call("POST", f"{V3}/rooms/{quote(room_id)}/receipt/m.read/{quote(event_id)}", {})
    badge = await gateway.wait_for(lambda b: "type" in b["notification"], start=start)
    assert badge["notification"]["type"] is None
    assert badge["notification"]["counts"] == {"unread": 0}
    assert not any(is_message(b) for b in gateway.received[start:])


async def test_event_id_only_format_and_invites(
    homeserver_factory: ServerFactory, gateway: Gateway
) -> None:
    server = await homeserver_factory(**PRIVATE)
    alice = await register(server, "alice")
    bob = await register(server, "bob")
    assert (
        await alice.set_pusher(gateway.url, data={"url": gateway.url, "format": "event_id_only"})
    ).status_code == 200
    room_id = (await bob.call("POST", f"{V3}/createRoom", {"name": "Plans"}))["room_id"]
    await bob.call("POST", f"{V3}/rooms/{quote(room_id)}/invite", {"user_id": alice.user_id})
    body = await gateway.wait_for(lambda b: b["notification"].get("room_id") == room_id)
    n = body["notification"]
    assert set(n) == {"event_id", "id", "room_id", "prio", "counts", "devices"}
    assert n["devices"][0]["data"] == {"format": "event_id_only"}
    # the full format names the membership and the room
    assert (await alice.set_pusher(gateway.url, pushkey="full")).status_code == 200
    room2 = (await bob.call("POST", f"{V3}/createRoom", {"name": "Party"}))["room_id"]
    await bob.call("POST", f"{V3}/rooms/{quote(room2)}/invite", {"user_id": alice.user_id})
    body = await gateway.wait_for(
        lambda b: (
            b["notification"]["devices"][0]["pushkey"] == "full"
            and b["notification"].get("room_id") == room2
        )
    )
    n = body["notification"]
    assert n["type"] == "m.room.member"
    assert n["membership"] == "invite"
    assert n["user_is_target"] is True
    assert n["room_name"] == "Party"


async def test_rejected_pushkey_is_removed(
    homeserver_factory: ServerFactory, gateway: Gateway
) -> None:
    server = await homeserver_factory(**PRIVATE)
    alice = await register(server, "alice")
    bob = await register(server, "bob")
    room_id = await dm(alice, bob)
    assert (await alice.set_pusher(gateway.url, pushkey="bad")).status_code == 200
    assert (await alice.set_pusher(gateway.url, pushkey="good", append=True)).status_code == 200
    gateway.reject.add("bad")
    await bob.send(room_id, "one")
    for key in ("bad", "good"):
        await gateway.wait_for(
            lambda b, k=key: is_message(b) and b["notification"]["devices"][0]["pushkey"] == k  # type: ignore[misc]
        )
    with trio.fail_after(WAIT):
        while len(await alice.pushers()) != 1:
            await trio.sleep(0.02)
    assert [p["pushkey"] for p in await alice.pushers()] == ["good"]
    start = len(gateway.received)
    await bob.send(room_id, "two")
    await gateway.wait_for(is_message, start=start)
    assert all(
        b["notification"]["devices"][0]["pushkey"] == "good" for b in gateway.received[start:]
    )


async def test_disabled_pusher_is_not_sent_to(
    homeserver_factory: ServerFactory, gateway: Gateway
) -> None:
    server = await homeserver_factory(**PRIVATE)
    alice = await register(server, "alice")
    bob = await register(server, "bob")
    room_id = await dm(alice, bob)
    assert (await alice.set_pusher(gateway.url, pushkey="off", enabled=False)).status_code == 200
    assert (await alice.set_pusher(gateway.url, pushkey="on", append=True)).status_code == 200
    assert {p["pushkey"]: p["enabled"] for p in await alice.pushers()} == {"off": False, "on": True}
    await bob.send(room_id, "one")
    await gateway.wait_for(is_message)
    assert [b["notification"]["devices"][0]["pushkey"] for b in gateway.received] == ["on"]
    # enabling it again: it is sent what notifies from then on
    assert (await alice.set_pusher(gateway.url, pushkey="off", append=True)).status_code == 200
    second = await bob.send(room_id, "two")
    body = await gateway.wait_for(
        lambda b: b["notification"]["devices"][0]["pushkey"] == "off" and is_message(b)
    )
    assert body["notification"]["event_id"] == second


async def test_failed_push_is_retried(homeserver_factory: ServerFactory, gateway: Gateway) -> None:
    server = await homeserver_factory(**PRIVATE)
    alice = await register(server, "alice")
    bob = await register(server, "bob")
    room_id = await dm(alice, bob)
    assert (await alice.set_pusher(gateway.url)).status_code == 200
    gateway.status = 500
    event_id = await bob.send(room_id, "retry me")
    await gateway.wait_failures(3)  # 0.05 s, 0.1 s, 0.2 s apart
    gateway.status = 200
    body = await gateway.wait_for(is_message)
    assert body["notification"]["event_id"] == event_id
    assert sum(is_message(b) for b in gateway.received) == 1


async def test_a_push_failing_too_long_is_skipped(
    homeserver_factory: ServerFactory, gateway: Gateway
) -> None:
    server = await homeserver_factory(
        push={"allow_private_destinations": True, "retry_initial_s": 0.05, "give_up_after_s": 0.3}
    )
    alice = await register(server, "alice")
    bob = await register(server, "bob")
    room_id = await dm(alice, bob)
    assert (await alice.set_pusher(gateway.url)).status_code == 200
    gateway.fail_bodies.add("never delivered")
    await bob.send(room_id, "never delivered")
    await gateway.wait_failures(1)
    later = await bob.send(room_id, "delivered")
    body = await gateway.wait_for(is_message)
    assert body["notification"]["event_id"] == later
    assert gateway.failures >= 2  # retried before giving up
    assert [_body_of(b) for b in gateway.received if is_message(b)] == ["delivered"]


async def test_unreachable_private_gateway_is_not_contacted(
    homeserver_factory: ServerFactory, gateway: Gateway
) -> None:
    """A pusher stored while private destinations were allowed is not sent to once they
    are not (the sender checks the resolved address too)."""
    server = await homeserver_factory(**PRIVATE)
    alice = await register(server, "alice")
    assert (await alice.set_pusher(gateway.url)).status_code == 200
    from homeserver.services.push_sender import HttpPushGateway, PushGatewayError

    async with httpx.AsyncClient() as client:
        strict = HttpPushGateway(client, timeout_s=5, allow_private=False)
        with pytest.raises(PushGatewayError):
            await strict.notify(gateway.url, {"notification": {}})
        lenient = HttpPushGateway(client, timeout_s=5, allow_private=True)
        assert await lenient.notify(gateway.url, {"notification": {"devices": []}}) == []
    assert len(gateway.received) == 1


# --- restart ---------------------------------------------------------------------------------


async def test_restart_resumes_the_queue(
    nursery: trio.Nursery, database_url: str, tmp_path: Path, gateway: Gateway
) -> None:
    directory = tmp_path / "hs"
    directory.mkdir()
    data = {
        "server_name": SERVER_NAME,
        "listeners": [{"host": "127.0.0.1", "port": 0, "resources": ["client"]}],
        "database": {"url": database_url, "pool_size": 4},
        "limits": {"shutdown_grace_period_s": 1.0},
        "logging": {"level": "WARNING"},
        "rate_limits": {"enabled": False},
        "registration": {"policy": "open", "allow_guests": False},
        "federation": {"enabled": False},
        "push": {"allow_private_destinations": True, "retry_initial_s": 0.05},
    }
    cfg = parse_config(data, str(directory / "homeserver.yaml"))

    async def start() -> tuple[RunningServer, trio.Event, trio.Event]:
        stop, stopped = trio.Event(), trio.Event()

        async def serve(task_status: trio.TaskStatus[Any]) -> None:
            try:
                await serve_homeserver(cfg, shutdown_trigger=stop.wait, task_status=task_status)
            finally:
                stopped.set()

        bound = await nursery.start(serve)
        return RunningServer(bound[0].urls[0], cfg, directory), stop, stopped

    server, stop, stopped = await start()
    alice = await register(server, "alice")
    bob = await register(server, "bob")
    room_id = await dm(alice, bob)
    assert (await alice.set_pusher(gateway.url)).status_code == 200
    gateway.status = 503
    first = await bob.send(room_id, "while the gateway is down")
    await gateway.wait_failures(1)
    stop.set()
    with trio.fail_after(WAIT):
        await stopped.wait()
    assert not any(is_message(b) for b in gateway.received)

    gateway.status = 200
    server, stop, stopped = await start()
    alice.server = bob.server = server
    body = await gateway.wait_for(is_message)
    assert body["notification"]["event_id"] == first
    second = await bob.send(room_id, "after the restart")
    body = await gateway.wait_for(
        lambda b: is_message(b) and b["notification"]["event_id"] == second
    )
    assert [b["notification"]["event_id"] for b in gateway.received if is_message(b)] == [
        first,
        second,
    ]
    stop.set()


# --- GET /notifications ----------------------------------------------------------------------


async def test_notifications_list(homeserver_factory: ServerFactory) -> None:
    server = await homeserver_factory()
    alice = await register(server, "alice")
    bob = await register(server, "bob")
    room_id = await dm(alice, bob)
    ids = [await bob.send(room_id, f"message {i}") for i in range(3)]
    mention = await bob.send(
        room_id, f"hey {alice.user_id}", **{"m.mentions": {"user_ids": [alice.user_id]}}
    )

    async def notifications(**params: Any) -> dict[str, Any]:
        body: dict[str, Any] = await alice.call("GET", f"{V3}/notifications", **params)
        return body

    with trio.fail_after(WAIT):
        while len((await notifications())["notifications"]) < 4:
            await trio.sleep(0.02)
    body = await notifications()
    got = [n["event"]["event_id"] for n in body["notifications"]]
    assert got == [mention, *reversed(ids)]
    first = body["notifications"][0]
    assert first["room_id"] == room_id
    assert first["read"] is False
    assert "notify" in first["actions"]
    assert isinstance(first["ts"], int)
    assert "profile_tag" in first
    assert first["event"]["content"]["body"] == f"hey {alice.user_id}"
    # pagination
    page = await notifications(limit=2)
    assert [n["event"]["event_id"] for n in page["notifications"]] == [mention, ids[2]]
    page2 = await notifications(limit=2, **{"from": page["next_token"]})
    assert [n["event"]["event_id"] for n in page2["notifications"]] == [ids[1], ids[0]]
    # only=highlight: the mention
    highlights = await notifications(only="highlight")
    assert [n["event"]["event_id"] for n in highlights["notifications"]] == [mention]
    # read receipts mark them read
    await alice.call("POST", f"{V3}/rooms/{quote(room_id)}/receipt/m.read/{quote(ids[1])}", {})
    read = {n["event"]["event_id"]: n["read"] for n in (await notifications())["notifications"]}
    assert read == {ids[0]: True, ids[1]: True, ids[2]: False, mention: False}
    # bob's own messages are not his notifications: only alice's invite is
    theirs = (await bob.call("GET", f"{V3}/notifications"))["notifications"]
    assert [n["event"]["type"] for n in theirs] == ["m.room.member"]
    # bad input
    for params in ({"from": "nope"}, {"limit": "x"}, {"limit": "-1"}, {"from": "-5"}):
        r = await alice.request("GET", f"{V3}/notifications", **params)
        assert r.status_code == 400, (params, r.text)
        assert r.json()["errcode"] == "M_INVALID_PARAM"

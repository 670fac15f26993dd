"""Identity-server integration over real HTTP: third-party invites and binding 3PIDs.

A small fake identity server (hypercorn over TLS with a throwaway certificate) that this test
starts answers ``hash_details``/``lookup`` (sha256), ``store-invite``, ``3pid/bind``,
``3pid/unbind`` and ``pubkey/isvalid``, and signs what it hands out with an ed25519 key; the
homeserver reaches it on loopback (``identity.allow_private_destinations``) without checking
its certificate (``identity.verify_tls: false``).

Spec: client-server-api › Third-party invites; server-server-api › Third-party invites
(``/3pid/onbind``); identity-service-api.md.
"""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import hypercorn.trio
import pytest
import trio
import trustme
from hypercorn.config import Config as HypercornConfig
from nacl.signing import SigningKey

from federation.core.canonicaljson import encode_canonical_json
from tests.integration.conftest import RunningServer, ServerFactory

ACCESS_TOKEN = "swordfish"
PEPPER = "matrixrocks"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


@dataclass
class FakeIdentityServer:
    """Bindings (medium, address) → mxid, stored invites, and a key that can be revoked."""

    name: str = ""
    key: SigningKey = field(default_factory=SigningKey.generate)
    revoked: set[str] = field(default_factory=set)
    bindings: dict[tuple[str, str], str] = field(default_factory=dict)
    sessions: dict[str, tuple[str, str]] = field(default_factory=dict)
    invites: list[dict[str, Any]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    unbind_auth: list[str] = field(default_factory=list)

    @property
    def public_key(self) -> str:
        return _b64(bytes(self.key.verify_key))

    def sign(self, obj: dict[str, Any], key: SigningKey | None = None) -> dict[str, Any]:
        sig = (key or self.key).sign(encode_canonical_json(obj)).signature
        return {**obj, "signatures": {self.name: {"ed25519:0": _b64(sig)}}}

    def signed_invites(self, mxid: str, key: SigningKey | None = None) -> list[dict[str, Any]]:
        return [
            {**inv, "mxid": mxid, "signed": self.sign({"mxid": mxid, "token": inv["token"]}, key)}
            for inv in self.invites
        ]

    def _answer(self, method: str, path: str, query: str, body: Any, auth: str) -> Any:
        authorised = auth == f"Bearer {ACCESS_TOKEN}"
        if path == "/_matrix/identity/v2/hash_details" and authorised:
            return 200, {"algorithms": ["none", "sha256"], "lookup_pepper": PEPPER}
        if path == "/_matrix/identity/v2/lookup" and authorised:
            mappings = {}
            for (medium, address), mxid in self.bindings.items():
                h = hashlib.sha256(f"{address} {medium} {PEPPER}".encode()).digest()
                key = base64.urlsafe_b64encode(h).decode().rstrip("=")
                if key in body["addresses"]:
                    mappings[key] = mxid
            return 200, {"mappings": mappings}
        if path == "/_matrix/identity/v2/store-invite" and authorised:
            token = f"tok{len(self.invites)}"
            self.invites.append(
                {k: body[k] for k in ("medium", "address", "room_id", "sender")} | {"token": token}
            )
            url = f"https://{self.name}/_matrix/identity/v2/pubkey/isvalid"
            return 200, {
                "token": token,
                "display_name": "Bob",
                "public_keys": [{"public_key": self.public_key, "key_validity_url": url}],
            }
        if path == "/_matrix/identity/v2/3pid/bind" and authorised:
            medium, address = self.sessions[body["sid"]]
            self.bindings[(medium, address)] = body["mxid"]
            return 200, self.sign({"medium": medium, "address": address, "mxid": body["mxid"]})
        if path == "/_matrix/identity/v2/3pid/unbind":
            self.unbind_auth.append(auth)
            pair = (body["threepid"]["medium"], body["threepid"]["address"])
            if self.bindings.get(pair) != body["mxid"]:
                return 404, {"errcode": "M_NOT_FOUND", "error": "no binding"}
            del self.bindings[pair]
            return 200, {}
        if path == "/_matrix/identity/v2/pubkey/isvalid":
            key = parse_qs(query).get("public_key", [""])[0]
            return 200, {"valid": key == self.public_key and key not in self.revoked}
        if path.startswith("/_matrix/identity/v2/"):
            return 401, {"errcode": "M_UNAUTHORIZED", "error": "no token"}
        return 404, {"errcode": "M_UNRECOGNIZED", "error": "?"}

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.requests.append(scope["path"])
        status, answer = self._answer(
            scope["method"],
            scope["path"],
            scope["query_string"].decode(),
            json.loads(raw) if raw else None,
            headers.get("authorization", ""),
        )
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": json.dumps(answer).encode()})


@pytest.fixture
async def id_server(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[FakeIdentityServer]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "is.pem"))
    fake = FakeIdentityServer()
    config = HypercornConfig()
    config.bind = ["127.0.0.1:0"]
    config.certfile = config.keyfile = str(tmp_path / "is.pem")
    config.accesslog = None
    stop = trio.Event()
    urls = await nursery.start(
        partial(hypercorn.trio.serve, fake.app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
    )
    fake.name = urls[0].removeprefix("https://")
    yield fake
    stop.set()


IDENTITY = {"identity": {"allow_private_destinations": True, "verify_tls": False}}


async def _user(server: RunningServer, name: str) -> tuple[str, dict[str, str]]:
    login = await server.register(name)
    return login["user_id"], {"Authorization": f"Bearer {login['access_token']}"}


async def _room(server: RunningServer, auth: dict[str, str], **body: Any) -> str:
    async with server.client(headers=auth) as c:
        r = await c.post("/_matrix/client/v3/createRoom", json={"preset": "private_chat", **body})
    assert r.status_code == 200, r.text
    room_id: str = r.json()["room_id"]
    return room_id


async def _state(server: RunningServer, auth: dict[str, str], room_id: str) -> dict[Any, Any]:
    async with server.client(headers=auth) as c:
        r = await c.get(f"/_matrix/client/v3/rooms/{room_id}/state")
    assert r.status_code == 200, r.text
    return {(e["type"], e["state_key"]): e["content"] for e in r.json()}


def _invite_body(fake: FakeIdentityServer, address: str) -> dict[str, str]:
    return {
        "id_server": fake.name,
        "id_access_token": ACCESS_TOKEN,
        "medium": "email",
        "address": address,
    }


async def test_invite_bound_3pid_and_in_create_room(
    homeserver_factory: ServerFactory, id_server: FakeIdentityServer
) -> None:
    server = await homeserver_factory(**IDENTITY)
    _, alice = await _user(server, "alice")
    bob_id, _ = await _user(server, "bob")
    carol_id, _ = await _user(server, "carol")
    id_server.bindings[("email", "bob@example.org")] = bob_id
    id_server.bindings[("email", "carol@example.org")] = carol_id
    room_id = await _room(server, alice)
    async with server.client(headers=alice) as c:
        r = await c.post(
            f"/_matrix/client/v3/rooms/{room_id}/invite",
            json=_invite_body(id_server, "bob@example.org"),
        )
    assert r.status_code == 200, r.text
    assert (await _state(server, alice, room_id))[("m.room.member", bob_id)]["membership"] == (
        "invite"
    )
    room2 = await _room(server, alice, invite_3pid=[_invite_body(id_server, "carol@example.org")])
    assert (await _state(server, alice, room2))[("m.room.member", carol_id)]["membership"] == (
        "invite"
    )


async def test_invite_unbound_3pid_then_onbind_then_join(
    homeserver_factory: ServerFactory, id_server: FakeIdentityServer
) -> None:
    server = await homeserver_factory(**IDENTITY)
    alice_id, alice = await _user(server, "alice")
    bob_id, bob = await _user(server, "bob")
    room_id = await _room(server, alice)
    async with server.client(headers=alice) as c:
        r = await c.post(
            f"/_matrix/client/v3/rooms/{room_id}/invite",
            json=_invite_body(id_server, "bob@example.org"),
        )
    assert r.status_code == 200, r.text
    state = await _state(server, alice, room_id)
    tpi = state[("m.room.third_party_invite", "tok0")]
    assert tpi["display_name"] == "Bob" and tpi["public_key"] == id_server.public_key
    assert id_server.invites[0]["sender"] == alice_id
    assert ("m.room.member", bob_id) not in state

    onbind = {
        "medium": "email",
        "address": "bob@example.org",
        "mxid": bob_id,
        "invites": id_server.signed_invites(bob_id),
    }
    async with server.client() as c:
        r = await c.post("/_matrix/federation/v1/3pid/onbind", json=onbind)
    assert r.status_code == 200, r.text
    member = (await _state(server, alice, room_id))[("m.room.member", bob_id)]
    assert member["membership"] == "invite"
    assert member["third_party_invite"]["display_name"] == "Bob"
    async with server.client(headers=bob) as c:
        r = await c.post(f"/_matrix/client/v3/rooms/{room_id}/join", json={})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("how", ["wrong_key", "revoked", "no_invite_event", "unreachable"])
async def test_onbind_refuses_invites_it_cannot_verify(
    homeserver_factory: ServerFactory, id_server: FakeIdentityServer, how: str
) -> None:
    server = await homeserver_factory(**IDENTITY)
    _, alice = await _user(server, "alice")
    bob_id, _ = await _user(server, "bob")
    room_id = await _room(server, alice)
    async with server.client(headers=alice) as c:
        r = await c.post(
            f"/_matrix/client/v3/rooms/{room_id}/invite",
            json=_invite_body(id_server, "bob@example.org"),
        )
    assert r.status_code == 200, r.text
    invites = id_server.signed_invites(
        bob_id, SigningKey.generate() if how == "wrong_key" else None
    )
    if how == "revoked":
        id_server.revoked.add(id_server.public_key)
    if how == "no_invite_event":
        invites[0]["signed"] = id_server.sign({"mxid": bob_id, "token": "nope"})
    if how == "unreachable":
        id_server.name = "127.0.0.1:1"  # nothing listens there: isvalid cannot be asked
        async with server.client(headers=alice) as c:
            r = await c.put(
                f"/_matrix/client/v3/rooms/{room_id}/state/m.room.third_party_invite/tok0",
                json={
                    "display_name": "Bob",
                    "public_key": id_server.public_key,
                    "key_validity_url": "https://127.0.0.1:1/_matrix/identity/v2/pubkey/isvalid",
                },
            )
        assert r.status_code == 200, r.text
    async with server.client() as c:
        r = await c.post(
            "/_matrix/federation/v1/3pid/onbind",
            json={
                "medium": "email",
                "address": "bob@example.org",
                "mxid": bob_id,
                "invites": invites,
            },
        )
    assert r.status_code == 403, r.text
    assert r.json()["errcode"] == "M_FORBIDDEN"
    assert ("m.room.member", bob_id) not in await _state(server, alice, room_id)


async def test_bind_and_unbind(
    homeserver_factory: ServerFactory, id_server: FakeIdentityServer
) -> None:
    server = await homeserver_factory(**IDENTITY)
    bob_id, bob = await _user(server, "bob")
    id_server.sessions["s1"] = ("email", "bob@example.org")
    async with server.client(headers=bob) as c:
        r = await c.post(
            "/_matrix/client/v3/account/3pid/bind",
            json={
                "id_server": id_server.name,
                "id_access_token": ACCESS_TOKEN,
                "sid": "s1",
                "client_secret": "secret",
            },
        )
        assert r.status_code == 200, r.text
        assert id_server.bindings == {("email", "bob@example.org"): bob_id}
        body = {"id_server": id_server.name, "medium": "email", "address": "bob@example.org"}
        r = await c.post("/_matrix/client/v3/account/3pid/unbind", json=body)
        assert r.status_code == 200, r.text
        assert r.json() == {"id_server_unbind_result": "success"}
        assert id_server.bindings == {}
        # the homeserver signs its unbind request (X-Matrix, for its own server name)
        assert id_server.unbind_auth[-1].startswith("X-Matrix ")
        assert 'origin="test.local"' in id_server.unbind_auth[-1]
        assert f'destination="{id_server.name}"' in id_server.unbind_auth[-1]
        r = await c.post("/_matrix/client/unstable/account/3pid/unbind", json=body)
        assert r.json() == {"id_server_unbind_result": "no-support"}
        # bound out of band: /account/3pid/delete with id_server unbinds it there
        id_server.bindings[("email", "bob2@example.org")] = bob_id
        r = await c.post(
            "/_matrix/client/v3/account/3pid/delete",
            json={"id_server": id_server.name, "medium": "email", "address": "bob2@example.org"},
        )
        assert r.status_code == 200, r.text
        assert r.json() == {"id_server_unbind_result": "success"}
        assert id_server.bindings == {}
        r = await c.post(
            "/_matrix/client/v3/account/3pid/delete",
            json={"id_server": "no/such", "medium": "email", "address": "bob2@example.org"},
        )
        assert (r.status_code, r.json()["errcode"]) == (400, "M_INVALID_PARAM")
        # the identity server's own error comes back as a Matrix error, not a 500
        r = await c.post(
            "/_matrix/client/v3/account/3pid/bind",
            json={
                "id_server": id_server.name,
                "id_access_token": "wrong",
                "sid": "s1",
                "client_secret": "secret",
            },
        )
        assert r.status_code == 403 and r.json()["errcode"] == "M_UNAUTHORIZED", r.text


async def test_bad_input_and_unreachable_or_private_identity_servers(
    homeserver_factory: ServerFactory, id_server: FakeIdentityServer
) -> None:
    server = await homeserver_factory(**IDENTITY)
    _, alice = await _user(server, "alice")
    room_id = await _room(server, alice)
    invite = f"/_matrix/client/v3/rooms/{room_id}/invite"
    async with server.client(headers=alice) as c:
        for body, status, errcode in [
            ({"medium": "email", "address": "x@y"}, 400, "M_MISSING_PARAM"),
            (
                {**_invite_body(id_server, "x@y"), "id_server": "https://evil/"},
                400,
                "M_INVALID_PARAM",
            ),
            ({**_invite_body(id_server, "x@y"), "address": 7}, 400, "M_INVALID_PARAM"),
            ({**_invite_body(id_server, "x@y"), "id_server": "127.0.0.1:1"}, 502, "M_UNKNOWN"),
        ]:
            r = await c.post(invite, json=body)
            assert (r.status_code, r.json()["errcode"]) == (status, errcode), r.text
        r = await c.post(
            "/_matrix/client/v3/createRoom", json={"invite_3pid": [{"medium": "email"}]}
        )
        assert r.status_code == 400, r.text
        r = await c.post("/_matrix/client/v3/createRoom", json={"invite_3pid": "nope"})
        assert (r.status_code, r.json()["errcode"]) == (400, "M_BAD_JSON")
        r = await c.post("/_matrix/client/v3/account/3pid/bind", json={"id_server": 5})
        assert r.status_code == 400, r.text
    async with server.client() as c:
        r = await c.post(
            "/_matrix/federation/v1/3pid/onbind", json={"invites": "x", "mxid": "@a:b"}
        )
        assert r.status_code == 400, r.text

    # without identity.allow_private_destinations the loopback identity server is refused
    closed = await homeserver_factory(identity={"verify_tls": False})
    _, carol = await _user(closed, "carol")
    room2 = await _room(closed, carol)
    async with closed.client(headers=carol) as c:
        r = await c.post(
            f"/_matrix/client/v3/rooms/{room2}/invite", json=_invite_body(id_server, "x@y")
        )
    assert (r.status_code, r.json()["errcode"]) == (400, "M_SERVER_NOT_TRUSTED"), r.text
    assert id_server.requests == []


def test_tls_context_is_available() -> None:
    """The fake identity server needs TLS support in this Python (a sanity check)."""
    assert ssl.HAS_SNI

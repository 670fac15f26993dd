"""X-Matrix request authentication and the key API over HTTP, with a fake key fetcher.

A test API with one ``@signed`` route is served by hypercorn on loopback, so the request target
reaches the authenticator exactly as sent. On SQLite and PostgreSQL (the key cache).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx
import hypercorn.trio
import pytest
import trio
from hypercorn.config import Config as HypercornConfig

from federation.core.signing import SigningKey, verify_signed_json
from federation.core.xmatrix import XMatrixAuth, format_authorization, sign_request
from homeserver.api._http import JsonDict, build_asgi_app, route
from homeserver.api.federation._auth import FederationAuthenticator, signed
from homeserver.api.federation.keys import ServerKeysApi
from homeserver.api.federation.version import FederationVersionApi
from homeserver.clock import FakeClock
from homeserver.services.server_keys import ServerKeys, ServerPolicy
from homeserver.storage import Database
from homeserver.storage.server_keys import ServerKeyStore
from tests.fakes import FakeServerKeyFetcher, make_key_response

OURS = "ours.example"
REMOTE = "remote.example"
DENIED = "denied.example"
DAY = 86_400_000


class EchoApi:
    def __init__(self, auth: FederationAuthenticator) -> None:
        self.federation_auth = auth

    @route("PUT", "/_matrix/federation/v1/echo/{thing}")
    @signed
    async def echo(self, thing: str, origin: str) -> JsonDict:
        return {"origin": origin, "thing": thing}

    @route("GET", "/_matrix/federation/v1/plain")
    async def plain(self) -> JsonDict:
        return {"origin": await self.federation_auth.authenticate()}


@dataclass
class Env:
    client: httpx.AsyncClient
    fetcher: FakeServerKeyFetcher
    remote_key: SigningKey
    our_key: SigningKey
    clock: FakeClock

    async def call(
        self,
        method: str,
        target: str,
        content: Any = None,
        *,
        key: SigningKey | None = None,
        origin: str = REMOTE,
        destination: str = OURS,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        header = sign_request(key or self.remote_key, method, target, origin, destination, content)
        return await self.client.request(
            method, target, json=content, headers={"Authorization": header, **(headers or {})}
        )


@pytest.fixture
async def env(db: Database, nursery: trio.Nursery) -> AsyncIterator[Env]:
    clock = FakeClock()
    fetcher = FakeServerKeyFetcher()
    remote_key = SigningKey.generate("r1")
    fetcher.origins[REMOTE] = make_key_response(
        REMOTE, remote_key, valid_until_ts=clock.time_ms() + DAY
    )
    our_key = SigningKey.generate("o1")
    policy = ServerPolicy(denylist=frozenset({DENIED}))
    keys = ServerKeys(
        ServerKeyStore(db),
        fetcher,
        clock,
        server_name=OURS,
        signing_key=our_key,
        policy=policy,
    )
    auth = FederationAuthenticator(keys, policy, clock, max_body_bytes=4096)
    app = build_asgi_app(
        [EchoApi(auth), ServerKeysApi(keys, 4096), FederationVersionApi("1.2.3")],
        max_body_bytes=4096,
    )
    hc = HypercornConfig()
    hc.bind = ["127.0.0.1:0"]
    hc.accesslog = None
    stop = trio.Event()
    urls = await nursery.start(partial(hypercorn.trio.serve, app, hc, shutdown_trigger=stop.wait))
    async with httpx.AsyncClient(base_url=urls[0]) as client:
        yield Env(client, fetcher, remote_key, our_key, clock)
    stop.set()


def _error(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, r.json()["errcode"]


async def test_signed_request_passes_origin(env: Env) -> None:
    r = await env.call("PUT", "/_matrix/federation/v1/echo/x%20y?a=1&a=%2F", {"k": [1, "v"]})
    assert r.status_code == 200, r.text
    assert r.json() == {"origin": REMOTE, "thing": "x y"}
    r = await env.call("GET", "/_matrix/federation/v1/plain")
    assert r.json() == {"origin": REMOTE}
    assert env.fetcher.calls == [("origin", REMOTE)]  # fetched once, then cached


async def test_destination_may_be_left_out(env: Env) -> None:
    # servers before v1.3 sent no destination; the signature still names us
    header = sign_request(env.remote_key, "GET", "/_matrix/federation/v1/plain", REMOTE, OURS)
    sig = header.split('sig="')[1].rstrip('"')
    bare = format_authorization(XMatrixAuth(REMOTE, env.remote_key.key_id, sig))
    r = await env.client.get("/_matrix/federation/v1/plain", headers={"Authorization": bare})
    assert r.status_code == 200, r.text


async def test_second_authorization_header_is_used_if_the_first_is_not_x_matrix(
    env: Env,
) -> None:
    header = sign_request(env.remote_key, "GET", "/_matrix/federation/v1/plain", REMOTE, OURS)
    r = await env.client.get(
        "/_matrix/federation/v1/plain",
        headers=[("Authorization", "Bearer abc"), ("Authorization", header)],
    )
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer token"},
        {"Authorization": "X-Matrix garbage"},
        {"Authorization": 'X-Matrix origin="remote.example",key="ed25519:r1"'},
    ],
)
async def test_missing_or_malformed_header(env: Env, headers: dict[str, str]) -> None:
    r = await env.client.get("/_matrix/federation/v1/plain", headers=headers)
    assert _error(r) == (401, "M_UNAUTHORIZED")
    assert env.fetcher.calls == []


async def test_refusals(env: Env) -> None:
    path = "/_matrix/federation/v1/echo/x"
    body = {"a": 1}
    assert _error(await env.call("PUT", path, body, destination="other.example")) == (
        401,
        "M_UNAUTHORIZED",
    )
    assert _error(await env.call("PUT", path, body, origin=DENIED)) == (403, "M_FORBIDDEN")
    assert _error(await env.call("PUT", path, body, origin="bad origin!")) == (
        400,
        "M_UNAUTHORIZED",
    )
    assert _error(await env.call("PUT", path, body, origin="localhost:http")) == (
        400,
        "M_UNAUTHORIZED",
    )
    assert env.fetcher.calls == []  # none of those fetched a key
    forged = SigningKey.generate("r1")
    assert _error(await env.call("PUT", path, body, key=forged)) == (401, "M_UNAUTHORIZED")
    unknown = SigningKey.generate("r9")
    assert _error(await env.call("PUT", path, body, key=unknown)) == (401, "M_UNAUTHORIZED")
    # signed over another body or another target
    header = sign_request(env.remote_key, "PUT", path, REMOTE, OURS, {"a": 2})
    r = await env.client.put(path, json=body, headers={"Authorization": header})
    assert _error(r) == (401, "M_UNAUTHORIZED")
    r = await env.call("PUT", path + "?x=1", body)
    assert r.status_code == 200
    header = sign_request(env.remote_key, "PUT", path, REMOTE, OURS, body)
    r = await env.client.put(path + "?x=1", json=body, headers={"Authorization": header})
    assert _error(r) == (401, "M_UNAUTHORIZED")


async def test_body_not_json(env: Env) -> None:
    header = sign_request(env.remote_key, "PUT", "/_matrix/federation/v1/echo/x", REMOTE, OURS)
    r = await env.client.put(
        "/_matrix/federation/v1/echo/x", content=b"{not json", headers={"Authorization": header}
    )
    assert _error(r) == (400, "M_NOT_JSON")
    r = await env.client.put(
        "/_matrix/federation/v1/echo/x", content=b"x" * 5000, headers={"Authorization": header}
    )
    assert _error(r) == (413, "M_TOO_LARGE")


async def test_expired_origin_key_is_refetched(env: Env) -> None:
    assert (await env.call("GET", "/_matrix/federation/v1/plain")).status_code == 200
    env.clock.advance(2 * 86400)
    env.fetcher.origins[REMOTE] = ConnectionError("down")
    # the cached key is no longer valid now and cannot be refreshed
    r = await env.call("GET", "/_matrix/federation/v1/plain")
    assert _error(r) == (401, "M_UNAUTHORIZED")
    assert env.fetcher.calls == [("origin", REMOTE)] * 2


async def test_disabled_federation(db: Database) -> None:
    keys = ServerKeys(
        ServerKeyStore(db),
        None,
        FakeClock(),
        server_name=OURS,
        signing_key=SigningKey.generate("a"),
    )
    auth = FederationAuthenticator(
        keys, ServerPolicy(), FakeClock(), enabled=False, max_body_bytes=10
    )
    app = build_asgi_app([EchoApi(auth)], max_body_bytes=10)
    r = await app.test_client().get("/_matrix/federation/v1/plain")
    assert r.status_code == 403
    assert (await r.get_json())["errcode"] == "M_FORBIDDEN"


# --- the key API -------------------------------------------------------------------------------


async def test_key_api(env: Env) -> None:
    r = await env.client.get("/_matrix/key/v2/server")
    body = r.json()
    verify_signed_json(body, OURS, env.our_key.verify_key)
    assert body["valid_until_ts"] == env.clock.time_ms() + DAY
    assert (await env.client.get(f"/_matrix/key/v2/server/{env.our_key.key_id}")).json()[
        "verify_keys"
    ] == body["verify_keys"]
    v = await env.client.get("/_matrix/federation/v1/version")
    assert v.json() == {"server": {"name": "trio-homeserver", "version": "1.2.3"}}


async def test_notary_api(env: Env) -> None:
    r = await env.client.get(f"/_matrix/key/v2/query/{REMOTE}?minimum_valid_until_ts=5")
    [answer] = r.json()["server_keys"]
    verify_signed_json(answer, REMOTE, env.remote_key.verify_key)
    verify_signed_json(answer, OURS, env.our_key.verify_key)
    r = await env.client.get(f"/_matrix/key/v2/query/{REMOTE}/{env.remote_key.key_id}")
    assert r.json()["server_keys"] == [answer]
    r = await env.client.post(
        "/_matrix/key/v2/query",
        json={"server_keys": {REMOTE: {env.remote_key.key_id: {"minimum_valid_until_ts": 1}}}},
    )
    assert r.json()["server_keys"] == [answer]
    r = await env.client.post("/_matrix/key/v2/query", json={"server_keys": {"nobody.example": {}}})
    assert r.json() == {"server_keys": []}


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"server_keys": []},
        {"server_keys": {REMOTE: []}},
        {"server_keys": {REMOTE: {"ed25519:a": 1}}},
        {"server_keys": {REMOTE: {"ed25519:a": {"minimum_valid_until_ts": "soon"}}}},
        {"server_keys": {REMOTE: {"ed25519:a": {"minimum_valid_until_ts": True}}}},
    ],
)
async def test_notary_api_bad_input(env: Env, body: Any) -> None:
    r = await env.client.post("/_matrix/key/v2/query", json=body)
    assert _error(r) == (400, "M_BAD_JSON")


async def test_notary_get_bad_minimum(env: Env) -> None:
    r = await env.client.get(f"/_matrix/key/v2/query/{REMOTE}?minimum_valid_until_ts=soon")
    assert _error(r) == (400, "M_INVALID_PARAM")

"""The HTTP layer over real sockets: errors, body limits, CORS, metrics, request ids."""

from __future__ import annotations

from functools import partial

import httpx
import hypercorn.trio
import pytest
import trio
import trio.testing
from hypercorn.config import Config as HypercornConfig

from homeserver.api._http import JsonResponse, ObservedApp, build_asgi_app, read_json_body, route
from homeserver.api.metrics import HttpMetrics
from homeserver.errors import BadJson, Forbidden

LIMIT = 4096


class EchoApi:
    @route("POST", "/_matrix/client/v3/echo")
    async def echo(self):
        body = await read_json_body(LIMIT)
        if not isinstance(body.get("n"), int):
            raise BadJson("n must be an integer")
        return {"n": body["n"]}

    @route("GET", "/_matrix/client/v3/forbidden")
    async def forbidden(self):
        raise Forbidden("no")

    @route("GET", "/_matrix/client/v3/boom")
    async def boom(self):
        raise RuntimeError("secret internal detail")

    @route("PUT", "/_matrix/client/v3/rooms/{room_id}/state/{rest:path}")
    async def state(self, room_id, rest):
        return JsonResponse({"room_id": room_id, "rest": rest}, 201)


@pytest.fixture
async def server(nursery):
    metrics = HttpMetrics(pool_usage=lambda: (1, 10))
    app = ObservedApp(build_asgi_app([EchoApi()], max_body_bytes=LIMIT), metrics, ("*",))
    hc = HypercornConfig()
    hc.bind = ["127.0.0.1:0"]
    hc.accesslog = None
    stop = trio.Event()
    urls = await nursery.start(partial(hypercorn.trio.serve, app, hc, shutdown_trigger=stop.wait))
    async with httpx.AsyncClient(base_url=urls[0]) as client:
        yield client, metrics
    stop.set()


async def test_ok_roundtrip(server):
    client, _ = server
    r = await client.post("/_matrix/client/v3/echo", json={"n": 5})
    assert r.status_code == 200
    assert r.json() == {"n": 5}
    assert r.headers["content-type"] == "application/json"
    assert r.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize(
    "content, status, errcode",
    [
        (b"{not json", 400, "M_NOT_JSON"),
        (b"", 400, "M_NOT_JSON"),
        (b"\xff\xfe", 400, "M_NOT_JSON"),
        (b"[1, 2]", 400, "M_BAD_JSON"),
        (b'{"n": "five"}', 400, "M_BAD_JSON"),
        (b'{"n": 1, "pad": "' + b"x" * LIMIT + b'"}', 413, "M_TOO_LARGE"),
    ],
)
async def test_bad_bodies(server, content, status, errcode):
    client, _ = server
    r = await client.post("/_matrix/client/v3/echo", content=content)
    assert r.status_code == status
    assert r.json()["errcode"] == errcode
    assert isinstance(r.json()["error"], str)
    # and the server still serves
    assert (await client.post("/_matrix/client/v3/echo", json={"n": 1})).json() == {"n": 1}


async def test_oversize_chunked_body_without_length(server):
    client, _ = server

    async def chunks():
        for _ in range(10):
            yield b"x" * 1024

    r = await client.post("/_matrix/client/v3/echo", content=chunks())
    assert r.status_code == 413
    assert r.json()["errcode"] == "M_TOO_LARGE"


async def test_unknown_route_and_wrong_method(server):
    client, _ = server
    r = await client.get("/_matrix/client/v3/nope")
    assert (r.status_code, r.json()["errcode"]) == (404, "M_UNRECOGNIZED")
    r = await client.get("/_matrix/client/v3/echo")
    assert (r.status_code, r.json()["errcode"]) == (405, "M_UNRECOGNIZED")
    assert r.headers["access-control-allow-origin"] == "*"


async def test_matrix_error_and_internal_error(server, caplog):
    client, _ = server
    r = await client.get("/_matrix/client/v3/forbidden")
    assert r.status_code == 403
    assert r.json() == {"errcode": "M_FORBIDDEN", "error": "no"}
    r = await client.get("/_matrix/client/v3/boom")
    assert r.status_code == 500
    assert r.json()["errcode"] == "M_UNKNOWN"
    assert "secret" not in r.text
    assert any(
        "secret internal detail" in (rec.exc_text or str(rec.exc_info)) for rec in caplog.records
    )


async def test_path_params_with_slashes(server):
    client, _ = server
    r = await client.put("/_matrix/client/v3/rooms/!a:b/state/m.room.name/", json={})
    assert r.status_code == 201
    assert r.json() == {"room_id": "!a:b", "rest": "m.room.name/"}


async def test_options_preflight_anywhere(server):
    client, _ = server
    for path in ("/_matrix/client/v3/echo", "/_matrix/client/v3/unknown"):
        r = await client.options(path, headers={"Origin": "https://app.example"})
        assert r.status_code == 204
        assert r.headers["access-control-allow-origin"] == "*"
        assert "Authorization" in r.headers["access-control-allow-headers"]
        assert "PUT" in r.headers["access-control-allow-methods"]


async def test_metrics_count_requests_by_route_and_status(server):
    client, metrics = server
    await client.post("/_matrix/client/v3/echo", json={"n": 1})
    await client.get("/_matrix/client/v3/nope")
    await trio.testing.wait_all_tasks_blocked()  # the access line is written after the body
    text = metrics.render().decode()
    assert (
        'homeserver_http_requests_total{method="POST",route="/_matrix/client/v3/echo",status="200"} 1.0'
        in text
    )
    assert 'route="<unmatched>",status="404"' in text
    assert "homeserver_http_request_duration_seconds_bucket" in text
    assert "homeserver_db_pool_connections_in_use 1.0" in text
    assert "process_resident_memory_bytes" in text


async def test_restricted_cors_origins(nursery):
    metrics = HttpMetrics()
    app = ObservedApp(
        build_asgi_app([EchoApi()], max_body_bytes=LIMIT), metrics, ("https://ok.example",)
    )
    hc = HypercornConfig()
    hc.bind = ["127.0.0.1:0"]
    stop = trio.Event()
    urls = await nursery.start(partial(hypercorn.trio.serve, app, hc, shutdown_trigger=stop.wait))
    async with httpx.AsyncClient(base_url=urls[0]) as client:
        r = await client.options("/x", headers={"Origin": "https://ok.example"})
        assert r.headers["access-control-allow-origin"] == "https://ok.example"
        r = await client.options("/x", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers
    stop.set()


class FakeAuthenticator:
    """Accepts exactly one token."""

    async def authenticate(self, access_token, *, client_ip):
        from homeserver.errors import UnknownToken
        from homeserver.services.requester import Requester

        if access_token != "good":
            raise UnknownToken()
        return Requester(user_id="@alice:test", device_id="DEV")


class WhoamiApi:
    @route("GET", "/_matrix/client/v3/account/whoami", auth="user")
    async def whoami(self, requester):
        return {"user_id": requester.user_id, "device_id": requester.device_id}

    @route("POST", "/_matrix/client/v3/limited", rate_limit="login")
    async def limited(self):
        return {}


@pytest.fixture
async def gated(nursery):
    from homeserver.api._http import RequestGate
    from homeserver.clock import FakeClock
    from homeserver.config import RateLimit
    from homeserver.services.ratelimit import RateLimiter

    limiter = RateLimiter({"login": RateLimit(per_second=0.5, burst_count=2)}, FakeClock())
    gate = RequestGate(FakeAuthenticator(), limiter)
    app = ObservedApp(
        build_asgi_app([WhoamiApi()], max_body_bytes=LIMIT, gate=gate), HttpMetrics(), ("*",)
    )
    hc = HypercornConfig()
    hc.bind = ["127.0.0.1:0"]
    stop = trio.Event()
    urls = await nursery.start(partial(hypercorn.trio.serve, app, hc, shutdown_trigger=stop.wait))
    async with httpx.AsyncClient(base_url=urls[0]) as client:
        yield client
    stop.set()


async def test_auth_header_query_missing_and_unknown(gated):
    r = await gated.get("/_matrix/client/v3/account/whoami")
    assert (r.status_code, r.json()["errcode"]) == (401, "M_MISSING_TOKEN")
    r = await gated.get(
        "/_matrix/client/v3/account/whoami", headers={"Authorization": "Bearer bad"}
    )
    assert (r.status_code, r.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    r = await gated.get(
        "/_matrix/client/v3/account/whoami", headers={"Authorization": "Bearer good"}
    )
    assert r.json() == {"user_id": "@alice:test", "device_id": "DEV"}
    r = await gated.get("/_matrix/client/v3/account/whoami?access_token=good")
    assert r.status_code == 200


async def test_rate_limited_route_answers_429_with_retry_after(gated):
    assert (await gated.post("/_matrix/client/v3/limited", json={})).status_code == 200
    assert (await gated.post("/_matrix/client/v3/limited", json={})).status_code == 200
    r = await gated.post("/_matrix/client/v3/limited", json={})
    assert r.status_code == 429
    assert r.json()["errcode"] == "M_LIMIT_EXCEEDED"
    assert r.json()["retry_after_ms"] == 2000
    assert r.headers["Retry-After"] == "2"

"""RawRoutes: the framework-free path for hot endpoints, driven with hand-made ASGI messages."""

from __future__ import annotations

from typing import Any

import orjson
import trio
import trio.testing

from homeserver.api.raw import RawRequest, RawRoutes
from homeserver.errors import Forbidden, UnknownToken
from homeserver.services.requester import Requester


class FakeAuth:
    async def authenticate(self, access_token: str, *, client_ip: str) -> Requester:
        if access_token != "good":
            raise UnknownToken()
        return Requester("@alice:test", "DEV")


class Endpoint:
    method = "GET"
    path = "/hot"
    rate_limit: str | None = None
    json_body_limit = 0

    def __init__(self) -> None:
        self.seen: list[RawRequest] = []
        self.behaviour = "ok"
        self.cancelled = False

    async def __call__(self, request: RawRequest) -> Any:
        self.seen.append(request)
        if self.behaviour == "forbidden":
            raise Forbidden("no")
        if self.behaviour == "crash":
            raise RuntimeError("boom")
        if self.behaviour == "hang":
            assert request.until_disconnect is not None
            try:
                await request.until_disconnect()
            finally:
                self.cancelled = True
        return {"user": request.requester.user_id, "q": dict(request.query)}


async def _call(
    routes: RawRoutes, path: str, headers: list[tuple[bytes, bytes]], query: bytes = b""
) -> tuple[list[dict[str, Any]], trio.Event]:
    sent: list[dict[str, Any]] = []
    disconnect = trio.Event()
    first = True

    async def receive() -> dict[str, Any]:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": b"", "more_body": False}
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "query_string": query,
        "headers": headers,
        "client": ("127.0.0.1", 1234),
    }
    await routes(scope, receive, send)
    return sent, disconnect


def _routes(endpoint: Endpoint, errors: list[Any], inner_calls: list[str]) -> RawRoutes:
    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        inner_calls.append(scope["path"])

    return RawRoutes(inner, [endpoint], FakeAuth(), lambda rid, exc: errors.append(exc))


def _json(sent: list[dict[str, Any]]) -> tuple[int, Any]:
    return sent[0]["status"], orjson.loads(sent[1]["body"])


async def test_other_paths_go_to_the_app() -> None:
    inner: list[str] = []
    routes = _routes(Endpoint(), [], inner)
    sent, _ = await _call(routes, "/other", [])
    assert inner == ["/other"] and sent == []


async def test_answer_with_query_and_requester() -> None:
    endpoint = Endpoint()
    routes = _routes(endpoint, [], [])
    sent, _ = await _call(
        routes, "/hot", [(b"authorization", b"Bearer good")], b"since=s1&timeout=5"
    )
    assert _json(sent) == (200, {"user": "@alice:test", "q": {"since": "s1", "timeout": "5"}})


async def test_token_from_query_parameter() -> None:
    routes = _routes(Endpoint(), [], [])
    sent, _ = await _call(routes, "/hot", [], b"access_token=good")
    assert _json(sent)[0] == 200


async def test_missing_and_unknown_tokens() -> None:
    routes = _routes(Endpoint(), [], [])
    sent, _ = await _call(routes, "/hot", [])
    assert _json(sent) == (401, {"errcode": "M_MISSING_TOKEN", "error": "Missing access token"})
    sent, _ = await _call(routes, "/hot", [(b"authorization", b"Bearer bad")])
    status, body = _json(sent)
    assert status == 401 and body["errcode"] == "M_UNKNOWN_TOKEN"


async def test_matrix_error_and_crash() -> None:
    endpoint = Endpoint()
    errors: list[Any] = []
    routes = _routes(endpoint, errors, [])
    endpoint.behaviour = "forbidden"
    sent, _ = await _call(routes, "/hot", [(b"authorization", b"Bearer good")])
    assert _json(sent)[0] == 403 and _json(sent)[1]["errcode"] == "M_FORBIDDEN"
    endpoint.behaviour = "crash"
    sent, _ = await _call(routes, "/hot", [(b"authorization", b"Bearer good")])
    assert _json(sent)[0] == 500 and _json(sent)[1]["errcode"] == "M_UNKNOWN"
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError)


async def test_a_waiting_endpoint_stops_when_the_client_disconnects() -> None:
    endpoint = Endpoint()
    endpoint.behaviour = "hang"
    routes = _routes(endpoint, [], [])
    sent: list[dict[str, Any]] = []
    disconnect = trio.Event()

    async def receive() -> dict[str, Any]:
        if not sent and not endpoint.seen:
            sent.append({"type": "noted"})
            return {"type": "http.request", "body": b"", "more_body": False}
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/hot",
        "query_string": b"",
        "headers": [(b"authorization", b"Bearer good")],
        "client": ("127.0.0.1", 1),
    }
    async with trio.open_nursery() as nursery:
        nursery.start_soon(routes, scope, receive, send)
        await trio.testing.wait_all_tasks_blocked()
        assert endpoint.seen and not endpoint.cancelled
        disconnect.set()
    assert endpoint.cancelled
    assert [m for m in sent if m["type"].startswith("http.response")] == []

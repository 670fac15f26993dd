"""Hot endpoints served as plain ASGI, in front of the quart app.

The framework costs about as much per request as the work of a delivered message (see
``docs/discussion/architecture.md``, "Hot paths"): quart's request context, werkzeug routing and
response objects are ~0.8 ms of CPU per request on this kind of machine. ``/sync`` is the request
every client makes most, and a long-poll is held open for its whole timeout, so it is answered
here: :class:`RawRoutes` matches (method, exact path) and calls a :class:`RawEndpoint`, passing
everything else to the wrapped app. ``ObservedApp`` still wraps both (CORS, request id, access
log, metrics), so the outside behaviour is the same.

A raw endpoint gets the parsed query, the authenticated requester and a cancel scope that fires
when the client disconnects (a long-poll whose client went away stops at once).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl

import orjson
import trio

from homeserver.errors import MatrixError, MissingToken, UnknownError
from homeserver.services.requester import Authenticator, Requester

__all__ = ["RawEndpoint", "RawRequest", "RawRoutes"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_JSON_HEADERS = [(b"content-type", b"application/json")]


@dataclass(frozen=True, slots=True)
class RawRequest:
    """What a raw endpoint sees of its request."""

    query: Mapping[str, str]
    requester: Requester


class RawEndpoint(Protocol):
    """An endpoint served without the framework. Raise :class:`MatrixError` for errors."""

    method: str
    path: str

    async def __call__(self, request: RawRequest) -> Any:
        """Return the JSON body of a 200 answer."""
        ...


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _access_token(scope: Scope, query: Mapping[str, str]) -> str | None:
    """Spec: client-server-api › Using access tokens (the header, else the query parameter)."""
    header = _header(scope, b"authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return None
    return query.get("access_token") or None


def _client_ip(scope: Scope) -> str:
    client = scope.get("client")
    peer = str(client[0]) if client else "unknown"
    if peer in ("127.0.0.1", "::1"):
        fwd = _header(scope, b"x-forwarded-for")
        if fwd:
            return fwd.split(",")[0].strip() or peer
    return peer


class RawRoutes:
    """ASGI: the raw endpoints by (method, path), everything else to ``app``.

    Args:
        app: the framework app for every other request.
        endpoints: the raw endpoints.
        authenticator: checks access tokens (every raw endpoint requires one).
        on_error: logs an unexpected exception (the client gets a 500 ``M_UNKNOWN``).
    """

    def __init__(
        self,
        app: ASGIApp,
        endpoints: list[RawEndpoint],
        authenticator: Authenticator,
        on_error: Callable[[str, BaseException], None],
    ) -> None:
        self._app = app
        self._routes = {(e.method, e.path): e for e in endpoints}
        self._auth = authenticator
        self._on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        endpoint = self._routes.get((scope["method"], scope["path"]))
        if endpoint is None:
            await self._app(scope, receive, send)
            return
        scope["hs.route"] = endpoint.path
        status, body, headers = await self._serve(endpoint, scope, receive)
        if status is None:
            return  # the client went away: nothing to answer
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _serve(
        self, endpoint: RawEndpoint, scope: Scope, receive: Receive
    ) -> tuple[int | None, bytes, list[tuple[bytes, bytes]]]:
        result: tuple[int | None, bytes, list[tuple[bytes, bytes]]] = (None, b"", [])
        async with trio.open_nursery() as nursery:

            async def watch_disconnect() -> None:
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        nursery.cancel_scope.cancel()
                        return

            nursery.start_soon(watch_disconnect)
            try:
                query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
                token = _access_token(scope, query)
                if token is None:
                    raise MissingToken()
                requester = await self._auth.authenticate(token, client_ip=_client_ip(scope))
                answer = await endpoint(RawRequest(query, requester))
                result = (200, orjson.dumps(answer), _JSON_HEADERS)
            except MatrixError as err:
                extra = [(k.lower().encode(), str(v).encode()) for k, v in err.headers.items()]
                result = (err.status, orjson.dumps(err.to_json()), [*_JSON_HEADERS, *extra])
            except Exception as exc:
                rid = str(scope.get("hs.request_id", "-"))
                self._on_error(rid, exc)
                unknown = UnknownError(f"Internal server error (request {rid})")
                result = (unknown.status, orjson.dumps(unknown.to_json()), _JSON_HEADERS)
            nursery.cancel_scope.cancel()
        return result

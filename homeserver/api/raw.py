"""Hot endpoints served as plain ASGI, in front of the quart app.

The framework costs about as much per request as the work of a delivered message
(``docs/discussion/sync.md``, "Serving it without the framework"): quart's request context,
werkzeug routing and response objects are ~0.8 ms of CPU per request on this kind of machine.
The requests every client repeats most (``GET /sync``, which is also held open for its whole
timeout, and ``PUT /send``) are answered here: :class:`RawRoutes` matches (method, path
template) and calls a :class:`RawEndpoint`, passing everything else to the wrapped app.
``ObservedApp`` still wraps both (CORS, request id, access log, metrics), and the gate's rules
are the same (access token, rate limit, presence activity), so the outside behaviour does not
change.

A raw endpoint gets the path parameters, the parsed query, the JSON body (when it declares
one), the authenticated requester, and ``until_disconnect``: an endpoint that waits (a ``/sync``
long-poll) awaits it *in the same task* while it waits, so a poll whose client went away stops
at once without a second task per open request (memory per idle long-poll, bench/README.md).
Endpoints that do not wait ignore it: their work finishes even if the client has gone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote

import orjson

from homeserver.api._http import decode_json_object
from homeserver.errors import ClientGone, MatrixError, MissingToken, TooLarge, UnknownError
from homeserver.services.ratelimit import RateLimiter
from homeserver.services.requester import Authenticator, Requester

__all__ = ["RawEndpoint", "RawRequest", "RawRoutes"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

_JSON_HEADERS: Headers = [(b"content-type", b"application/json")]


@dataclass(frozen=True, slots=True)
class RawRequest:
    """What a raw endpoint sees of its request."""

    requester: Requester
    query: Mapping[str, str]
    params: Mapping[str, str]
    body: dict[str, Any] | None = None
    #: raises :class:`ClientGone` once the client disconnects (never returns otherwise)
    until_disconnect: Callable[[], Awaitable[None]] | None = None


class RawEndpoint(Protocol):
    """An endpoint served without the framework. Raise :class:`MatrixError` for errors.

    ``path`` is a template: ``{name}`` matches one path segment (percent-decoded into
    ``RawRequest.params``). ``json_body_limit`` > 0 means the endpoint takes a JSON object
    body of at most that many bytes. ``rate_limit`` names a rate limiter action (or None).
    """

    method: str
    path: str
    rate_limit: str | None
    json_body_limit: int

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


class _Template:
    """A path template split into segments; ``None`` segments are parameters."""

    def __init__(self, path: str) -> None:
        self.segments: list[str | None] = []
        self.names: list[str] = []
        for part in path.split("/"):
            if part.startswith("{") and part.endswith("}"):
                self.segments.append(None)
                self.names.append(part[1:-1])
            else:
                self.segments.append(part)

    def match(self, raw_segments: list[str]) -> dict[str, str] | None:
        if len(raw_segments) != len(self.segments):
            return None
        params: dict[str, str] = {}
        names = iter(self.names)
        for want, got in zip(self.segments, raw_segments, strict=True):
            if want is None:
                if not got:
                    return None
                params[next(names)] = unquote(got)
            elif want != got:
                return None
        return params


async def _read_json(receive: Receive, scope: Scope, limit: int) -> dict[str, Any]:
    """The body as a JSON object (the same rules and errors as ``read_json_body``)."""
    declared = _header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge()
    data = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        data += message.get("body", b"")
        if len(data) > limit:
            raise TooLarge()
        if not message.get("more_body", False):
            break
    return decode_json_object(data)


class RawRoutes:
    """ASGI: the raw endpoints, everything else to ``app``.

    Args:
        app: the framework app for every other request.
        endpoints: the raw endpoints.
        authenticator: checks access tokens (every raw endpoint requires one).
        rate_limiter: the shared token buckets (None: no limits).
        on_activity: told the user ID of each request except ``/sync`` (presence).
        on_error: logs an unexpected exception (the client gets a 500 ``M_UNKNOWN``).
    """

    def __init__(
        self,
        app: ASGIApp,
        endpoints: list[RawEndpoint],
        authenticator: Authenticator,
        on_error: Callable[[str, BaseException], None],
        *,
        rate_limiter: RateLimiter | None = None,
        on_activity: Callable[[str], None] | None = None,
    ) -> None:
        self._app = app
        self._routes: dict[str, list[tuple[_Template, RawEndpoint]]] = {}
        for e in endpoints:
            self._routes.setdefault(e.method, []).append((_Template(e.path), e))
        self._auth = authenticator
        self._on_error = on_error
        self._limiter = rate_limiter
        self._on_activity = on_activity

    def _match(self, scope: Scope) -> tuple[RawEndpoint, dict[str, str]] | None:
        candidates = self._routes.get(scope["method"])
        if not candidates:
            return None
        raw_path = scope.get("raw_path") or scope["path"].encode()
        segments = bytes(raw_path).decode("latin-1").split("?", 1)[0].split("/")
        for template, endpoint in candidates:
            params = template.match(segments)
            if params is not None:
                return endpoint, params
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        matched = self._match(scope)
        if matched is None:
            await self._app(scope, receive, send)
            return
        endpoint, params = matched
        scope["hs.route"] = endpoint.path
        status, body, headers = await self._serve(endpoint, params, scope, receive)
        if status is None:
            return  # the client went away: nothing to answer
        headers = [*headers, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _handle(
        self,
        endpoint: RawEndpoint,
        params: dict[str, str],
        scope: Scope,
        receive: Receive,
        until_disconnect: Callable[[], Awaitable[None]],
    ) -> Any:
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        token = _access_token(scope, query)
        if token is None:
            raise MissingToken()
        requester = await self._auth.authenticate(token, client_ip=_client_ip(scope))
        if self._on_activity is not None and not endpoint.path.endswith("/sync"):
            self._on_activity(requester.user_id)
        if endpoint.rate_limit is not None and self._limiter is not None:
            self._limiter.check(endpoint.rate_limit, requester.user_id)
        body = None
        if endpoint.json_body_limit > 0:
            body = await _read_json(receive, scope, endpoint.json_body_limit)
        return await endpoint(RawRequest(requester, query, params, body, until_disconnect))

    async def _serve(
        self, endpoint: RawEndpoint, params: dict[str, str], scope: Scope, receive: Receive
    ) -> tuple[int | None, bytes, Headers]:
        body_read = endpoint.json_body_limit <= 0

        async def own_receive() -> dict[str, Any]:
            nonlocal body_read
            message = await receive()
            if not message.get("more_body", False):
                body_read = True
            return message

        async def until_disconnect() -> None:
            while True:  # past the request body, the only message left is the disconnect
                if (await receive())["type"] == "http.disconnect":
                    raise ClientGone()

        try:
            answer = await self._handle(endpoint, params, scope, own_receive, until_disconnect)
            result: tuple[int | None, bytes, Headers] = (200, orjson.dumps(answer), _JSON_HEADERS)
        except ClientGone:
            return (None, b"", [])
        except MatrixError as err:
            extra = [(k.lower().encode(), str(v).encode()) for k, v in err.headers.items()]
            result = (err.status, orjson.dumps(err.to_json()), [*_JSON_HEADERS, *extra])
        except Exception as exc:
            rid = str(scope.get("hs.request_id", "-"))
            self._on_error(rid, exc)
            unknown = UnknownError(f"Internal server error (request {rid})")
            result = (unknown.status, orjson.dumps(unknown.to_json()), _JSON_HEADERS)
        if not body_read:
            # answered without reading the body (e.g. a bad token): do not leave the rest of
            # it in front of the next request on this connection
            result = (result[0], result[1], [*result[2], (b"connection", b"close")])
        return result

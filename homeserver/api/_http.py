"""The HTTP layer: routes, request bodies, Matrix errors, CORS, request logging and metrics.

Design: handlers are methods of small API classes that get their services through
``__init__`` (constructor injection); ``@route`` marks them, and :func:`build_asgi_app` mounts
every marked method of the given API objects on one quart-trio app. Quart's per-request cost is
large (see ``shared/notes/stack-measurements.md``), so everything that wraps every request —
CORS, the request id, the access log line, metrics, ``OPTIONS`` preflights — lives in one thin
ASGI wrapper (:class:`ObservedApp`) instead of Quart hooks, and handlers return plain data that
is serialised once with orjson.

Errors: a handler raises :class:`~homeserver.errors.MatrixError`; Quart's own HTTP errors are
mapped (404/405 → ``M_UNRECOGNIZED``, 413 → ``M_TOO_LARGE``); anything else is logged with the
request id and answered ``500 M_UNKNOWN`` without internals.
"""

from __future__ import annotations

import inspect
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import orjson
import trio
from quart import Response, request
from quart_trio import QuartTrio
from quart_trio.asgi import TrioASGIHTTPConnection
from quart_trio.wrappers.request import EventWrapper, TrioBody, TrioRequest
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from homeserver.api.metrics import HttpMetrics
from homeserver.errors import (
    BadJson,
    MatrixError,
    MissingToken,
    NotJson,
    TooLarge,
    UnknownError,
    UnknownToken,
    Unrecognized,
)
from homeserver.services.ratelimit import RateLimiter
from homeserver.services.requester import Authenticator, Requester

logger = logging.getLogger("homeserver.access")
error_logger = logging.getLogger("homeserver.api")

JsonDict = dict[str, Any]
Handler = Callable[..., Awaitable[Any]]
F = TypeVar("F", bound=Handler)

Auth = Literal["none", "user", "optional"]


@dataclass(frozen=True)
class RouteSpec:
    """What ``@route`` records on a handler."""

    method: str
    path: str
    auth: Auth
    rate_limit: str | None


def route(
    method: str, path: str, *, auth: Auth = "none", rate_limit: str | None = None
) -> Callable[[F], F]:
    """Mark an API method as the handler of ``method path``.

    Args:
        method: HTTP method.
        path: the spec's path, with ``{param}`` placeholders; ``{param:path}`` matches slashes.
        auth: whether an access token is required (``user``), optional, or not looked at.
        rate_limit: the name of the rate limit (``rate_limits.<name>`` in the config) to apply.
    """

    def mark(fn: F) -> F:
        specs: list[RouteSpec] = list(getattr(fn, "__routes__", []))
        specs.append(RouteSpec(method.upper(), path, auth, rate_limit))
        fn.__routes__ = specs  # type: ignore[attr-defined]
        return fn

    return mark


def _werkzeug_path(path: str) -> str:
    out = []
    for part in path.split("/"):
        if part.startswith("{") and part.endswith("}"):
            name, _, conv = part[1:-1].partition(":")
            out.append(f"<{conv}:{name}>" if conv else f"<{name}>")
        else:
            out.append(part)
    return "/".join(out)


class JsonResponse:
    """A JSON answer with a status other than 200, or extra headers."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, body: Any, status: int = 200, headers: Mapping[str, str] | None = None):
        self.body = body
        self.status = status
        self.headers = dict(headers or {})


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    resp = Response(orjson.dumps(body), status=status, content_type="application/json")
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


async def read_json_body(max_bytes: int) -> JsonDict:
    """The request body as a JSON object.

    Raises:
        TooLarge: the body is over ``max_bytes``.
        NotJson: the body is not UTF-8 JSON.
        BadJson: the JSON is not an object.
    """
    length = request.content_length
    if length is not None and length > max_bytes:
        raise TooLarge()
    try:
        data = await request.get_data(cache=True, as_text=False)
    except RequestEntityTooLarge:
        raise TooLarge() from None
    if len(data) > max_bytes:
        raise TooLarge()
    return decode_json_object(data)


def decode_json_object(data: str | bytes | bytearray) -> JsonDict:
    """A request body that must be a JSON object (also used by ``api/raw.py``).

    Raises:
        NotJson: empty, or not UTF-8 JSON.
        BadJson: JSON, but not an object.
    """
    if not data:
        raise NotJson("Request body is empty; a JSON object was expected.")
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise NotJson() from None
    if not isinstance(body, dict):
        raise BadJson("The request body must be a JSON object.")
    return body


def _matrix_error_response(err: MatrixError) -> Response:
    return json_response(err.to_json(), err.status, err.headers)


def access_token_of_request() -> str | None:
    """The access token: ``Authorization: Bearer`` header, else the deprecated query parameter.

    Spec: client-server-api/_index.md › Using access tokens.
    """
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return None
    return request.args.get("access_token") or None


def client_ip() -> str:
    """The peer address (a reverse proxy's ``X-Forwarded-For`` is trusted only from loopback)."""
    client = request.scope.get("client")
    peer = str(client[0]) if client else "unknown"
    if peer in ("127.0.0.1", "::1"):
        fwd = request.headers.get("X-Forwarded-For")
        if fwd:
            return fwd.split(",")[0].strip() or peer
    return peer


class RequestGate:
    """What runs before a handler: authentication and rate limiting.

    Args:
        authenticator: checks access tokens; None while no accounts exist (``auth="user"``
            routes then answer ``401 M_UNKNOWN_TOKEN``).
        rate_limiter: the shared token buckets.
        on_activity: told the user ID of every authenticated request except ``/sync``
            (presence: last active; must be cheap).
    """

    def __init__(
        self,
        authenticator: Authenticator | None,
        rate_limiter: RateLimiter | None,
        *,
        on_activity: Callable[[str], None] | None = None,
    ) -> None:
        self._auth = authenticator
        self._limiter = rate_limiter
        self._on_activity = on_activity

    async def __call__(self, spec: RouteSpec) -> Requester | None:
        requester: Requester | None = None
        ip = client_ip()
        if spec.auth != "none":
            token = access_token_of_request()
            if token is None:
                if spec.auth == "user":
                    raise MissingToken()
            elif self._auth is None:
                raise UnknownToken()
            else:
                requester = await self._auth.authenticate(token, client_ip=ip)
                if self._on_activity is not None and not spec.path.endswith("/sync"):
                    self._on_activity(requester.user_id)
        if spec.rate_limit is not None and self._limiter is not None:
            self._limiter.check(spec.rate_limit, requester.user_id if requester else ip)
        return requester


def build_asgi_app(
    apis: Iterable[object],
    *,
    max_body_bytes: int,
    gate: RequestGate | None = None,
) -> QuartTrio:
    """Mount every ``@route`` method of ``apis`` on a new quart-trio app.

    A handler that declares a ``requester`` parameter receives the :class:`Requester` of the
    request (None on routes with ``auth="none"`` or an absent optional token).

    Args:
        apis: API objects whose methods carry ``@route``.
        max_body_bytes: the request body limit (``413 M_TOO_LARGE`` above it).
        gate: authentication and rate limiting before each handler.
    """
    before_handler = gate
    app = QuartTrio("homeserver")
    app.request_class = _StreamingRequest
    app.asgi_http_class = _FlowControlledConnection  # type: ignore[assignment]
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False

    seen: dict[tuple[str, str], str] = {}
    for api in apis:
        for attr in dir(api):
            fn = getattr(api, attr)
            specs: list[RouteSpec] | None = getattr(fn, "__routes__", None)
            if not specs:
                continue
            for spec in specs:
                key = (spec.method, spec.path)
                if key in seen:
                    raise ValueError(f"route {key} defined twice ({seen[key]} and {attr})")
                seen[key] = attr
                endpoint = f"{type(api).__name__}.{attr}.{spec.method}.{spec.path}"
                app.add_url_rule(
                    _werkzeug_path(spec.path),
                    endpoint,
                    _make_view(fn, spec, before_handler),
                    methods=[spec.method],
                )

    @app.errorhandler(MatrixError)
    async def _on_matrix_error(err: MatrixError) -> Response:
        return _matrix_error_response(err)

    @app.errorhandler(HTTPException)
    async def _on_http_error(err: HTTPException) -> Response:
        code = err.code or 500
        if code == 404:
            return _matrix_error_response(Unrecognized(404))
        if code == 405:
            return _matrix_error_response(Unrecognized(405))
        if code == 413:
            return _matrix_error_response(TooLarge())
        if code == 400:
            return _matrix_error_response(NotJson("Malformed request."))
        return _matrix_error_response(MatrixError(code, "M_UNKNOWN", err.name))

    @app.errorhandler(Exception)
    async def _on_exception(err: Exception) -> Response:
        rid = request.scope.get("hs.request_id", "-")
        error_logger.exception("request %s failed: %s %s", rid, request.method, request.path)
        return _matrix_error_response(UnknownError(f"Internal server error (request {rid})"))

    return app


def _make_view(fn: Handler, spec: RouteSpec, gate: RequestGate | None) -> Handler:
    wants_requester = "requester" in inspect.signature(fn).parameters

    async def view(**kwargs: Any) -> Response:
        scope: dict[str, Any] = request.scope  # type: ignore[assignment]
        scope["hs.route"] = spec.path
        requester = await gate(spec) if gate is not None else None
        if wants_requester:
            kwargs["requester"] = requester
        result = await fn(**kwargs)
        if isinstance(result, Response):
            return result
        if isinstance(result, JsonResponse):
            return json_response(result.body, result.status, result.headers)
        return json_response(result)

    view.__name__ = fn.__name__
    return view


# --- request bodies: whole or streamed, with backpressure -------------------------------------

#: Bytes of a request body held in memory before the socket is no longer read (a handler that
#: streams the body, e.g. a media upload, keeps at most this much buffered).
STREAM_HIGH_WATER = 256 * 1024


class _StreamingBody(TrioBody):
    """A request body that is either awaited whole or iterated with backpressure.

    Quart's body buffers whatever arrives, as fast as it arrives, and applies the app-wide
    ``MAX_CONTENT_LENGTH`` to every request. Here the handler decides: ``await request.body``
    (what :func:`read_json_body` does) keeps that limit; ``async for chunk in request.body``
    (a media upload) takes the body in chunks, enforces its own limit, and while it is slower
    than the client at most :data:`STREAM_HIGH_WATER` bytes are buffered: the connection stops
    reading the socket until the handler catches up. Until the handler decides, the same
    backpressure applies.
    """

    def __init__(self, expected_content_length: int | None, max_content_length: int | None):
        super().__init__(expected_content_length, None)
        self._expected = expected_content_length
        self._limit = max_content_length
        self._whole = False
        self._streaming = False
        self._abandoned = False
        self._room = EventWrapper()

    def __aiter__(self) -> _StreamingBody:
        self._streaming = True
        self._room.set()
        return self

    async def __anext__(self) -> bytes:
        data = await super().__anext__()
        self._room.set()
        return data

    def __await__(self) -> Any:
        self._whole = True
        self._room.set()
        too_large = self._limit is not None and (
            (self._expected is not None and self._expected > self._limit)
            or len(self._data) > self._limit
        )
        if too_large:
            self._must_raise = RequestEntityTooLarge()
        return (yield from super().__await__())

    def append(self, data: bytes) -> None:
        if data == b"" or self._must_raise is not None or self._abandoned:
            return
        self._data.extend(data)
        self._has_data.set()
        if self._whole and self._limit is not None and len(self._data) > self._limit:
            self._must_raise = RequestEntityTooLarge()
            self.set_complete()

    @property
    def complete(self) -> bool:
        """Whether the whole body has arrived."""
        return self._complete.is_set()

    def abandon(self) -> None:
        """The handler is done: drop the rest of the body as it arrives, without backpressure."""
        self._abandoned = True
        self._data.clear()
        self._room.set()

    async def wait_for_room(self) -> None:
        """Return once the handler has taken enough of the buffered body (or wants it whole)."""
        while (
            not self._whole
            and not self._abandoned
            and self._must_raise is None
            and not self._complete.is_set()
            and len(self._data) >= STREAM_HIGH_WATER
        ):
            self._room = EventWrapper()
            await self._room.wait()


class _StreamingRequest(TrioRequest):
    body_class = _StreamingBody


class _FlowControlledConnection(TrioASGIHTTPConnection):
    """Feeds the request body to :class:`_StreamingBody`, waiting while its buffer is full.

    Two departures from quart-trio's connection, both needed once the body reader can wait:

    - once the app has produced its response the body is abandoned, so a handler that answered
      without reading it (an error, ``413``) cannot leave the connection waiting for room; if
      part of the body had not arrived yet, the response says ``Connection: close``;
    - ``http.disconnect`` arriving while the last response message is being sent is the normal
      end of the exchange (hypercorn delivers it from inside that send), so it does not cancel
      the request: cancelling there would abort hypercorn's connection recycling half-way and
      leave a keep-alive connection hanging. A disconnect before that still cancels the handler
      (the client went away: stop streaming a download, drop a half upload).
    """

    _finishing = False

    async def handle_request(  # type: ignore[override]
        self, nursery: Any, request: Any, send: Any
    ) -> None:
        unread = False
        try:
            response = await self.app.handle_request(request)
        finally:
            if isinstance(request.body, _StreamingBody):
                unread = not request.body.complete
                request.body.abandon()
        if unread and isinstance(response, Response):
            # the rest of the body will be discarded: tell the client not to reuse the
            # connection rather than letting it race hypercorn closing it
            response.headers["Connection"] = "close"

        async def tracked_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self._finishing = True
            await send(message)

        timeout = getattr(response, "timeout", Ellipsis)
        if timeout is Ellipsis:
            timeout = self.app.config["RESPONSE_TIMEOUT"]
        with trio.move_on_after(float("inf") if timeout is None else timeout):
            await self._send_response(tracked_send, response)  # type: ignore[arg-type]
        nursery.cancel_scope.cancel()

    async def handle_messages(  # type: ignore[override]
        self, nursery: Any, request: Any, receive: Any
    ) -> None:
        body = request.body
        while True:
            message = await receive()
            if message["type"] == "http.request":
                body.append(message.get("body", b""))
                if not message.get("more_body", False):
                    body.set_complete()
                elif isinstance(body, _StreamingBody):
                    await body.wait_for_room()
            elif message["type"] == "http.disconnect":
                break
        if not self._finishing:
            nursery.cancel_scope.cancel()


# --- the thin ASGI wrapper ---------------------------------------------------------------------

CORS_HEADERS: list[tuple[bytes, bytes]] = [
    (b"access-control-allow-methods", b"GET, HEAD, POST, PUT, DELETE, OPTIONS"),
    (
        b"access-control-allow-headers",
        b"X-Requested-With, Content-Type, Authorization, Date",
    ),
    (b"access-control-expose-headers", b"Synapse-Trace-Id, Server"),
]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ObservedApp:
    """ASGI wrapper: request id, CORS, OPTIONS preflight, one access-log line, metrics.

    Spec (CORS): client-server-api/_index.md › Web Browser Clients: servers MUST expect clients
    to approach them with OPTIONS requests and answer with the CORS headers.
    """

    def __init__(self, app: ASGIApp, metrics: HttpMetrics, allowed_origins: tuple[str, ...]):
        self._app = app
        self._metrics = metrics
        self._any_origin = "*" in allowed_origins
        self._origins = {o.encode() for o in allowed_origins}

    def _cors(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        if self._any_origin:
            return [(b"access-control-allow-origin", b"*"), *CORS_HEADERS]
        for name, value in scope.get("headers", ()):
            if name == b"origin" and value in self._origins:
                return [
                    (b"access-control-allow-origin", value),
                    (b"vary", b"Origin"),
                    *CORS_HEADERS,
                ]
        return []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._app(scope, receive, send)
            return
        if kind == "websocket":
            self._metrics.open_connections.inc()
            try:
                await self._app(scope, receive, send)
            finally:
                self._metrics.open_connections.dec()
            return

        rid = secrets.token_hex(6)
        scope["hs.request_id"] = rid
        method: str = scope["method"]
        start = time.perf_counter()
        status = 0
        cors = self._cors(scope)

        if method == "OPTIONS":
            status = 204
            await send(
                {
                    "type": "http.response.start",
                    "status": 204,
                    "headers": [*cors, (b"content-length", b"0")],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            self._finish(scope, method, "OPTIONS *", status, start, rid)
            return

        async def observed_send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *cors]
            await send(message)

        self._metrics.open_connections.inc()
        try:
            await self._app(scope, receive, observed_send)
        finally:
            self._metrics.open_connections.dec()
            self._finish(scope, method, scope.get("hs.route", "<unmatched>"), status, start, rid)

    def _finish(
        self, scope: Scope, method: str, route_name: str, status: int, start: float, rid: str
    ) -> None:
        duration = time.perf_counter() - start
        self._metrics.observe(method, route_name, status, duration)
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "%s %s %s %d %.1fms",
                rid,
                method,
                route_name,
                status,
                duration * 1000,
                extra={
                    "request_id": rid,
                    "method": method,
                    "route": route_name,
                    "path": scope.get("path", ""),
                    "status": status,
                    "duration_ms": round(duration * 1000, 2),
                },
            )

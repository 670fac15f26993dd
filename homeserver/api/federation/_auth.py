"""Authenticating requests from other servers: the ``X-Matrix`` Authorization header.

Spec: server-server-api.md › Authentication › Request Authentication
(https://spec.matrix.org/v1.19/server-server-api/#request-authentication):

    Every HTTP request made by a homeserver is authenticated using public key digital
    signatures. The request method, target and body are signed by wrapping them in a JSON
    object and signing it using the JSON signing algorithm. The resulting signatures are added
    as an Authorization header with an auth scheme of X-Matrix.

How a federation route uses it (every ``/_matrix/federation/*`` route except ``/version`` and
the OpenID userinfo)::

    class TransactionsApi:
        def __init__(self, auth: FederationAuthenticator, ...) -> None:
            self.federation_auth = auth

        @route("PUT", "/_matrix/federation/v1/send/{txn_id}")
        @signed
        async def send(self, txn_id: str, origin: str) -> JsonDict: ...

``@signed`` (under ``@route``) authenticates the request before the handler runs and passes
the verified origin server name as ``origin``. Or call ``await auth.authenticate(request)``
first in the handler. Errors, in the order checked:

- federation disabled: 403 ``M_FORBIDDEN``;
- no or malformed ``X-Matrix`` header, or a ``destination`` that is not us: 401
  ``M_UNAUTHORIZED`` (before any key is fetched); an ``origin`` that is not a server name
  (``localhost:http``): 400 ``M_UNAUTHORIZED``, as Synapse;
- origin denied by ``domain_denylist`` / not in ``domain_allowlist``: 403 ``M_FORBIDDEN``;
- body not JSON: 400 ``M_NOT_JSON``;
- key unknown (not fetchable, or not valid now) or signature bad: 401 ``M_UNAUTHORIZED``.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import orjson
from quart import Request, request
from werkzeug.exceptions import RequestEntityTooLarge

from federation.core.errors import SignatureError
from federation.core.ids import is_valid_server_name
from federation.core.xmatrix import XMatrixParseError, parse_authorization, verify_request_with_keys
from homeserver.clock import Clock
from homeserver.errors import Codes, Forbidden, MatrixError, NotJson, TooLarge
from homeserver.services.server_keys import ServerKeys, ServerPolicy

__all__ = ["FederationAuthenticator", "Unauthorized", "signed"]


class Unauthorized(MatrixError):
    """401 ``M_UNAUTHORIZED``: the request is not (validly) signed by its origin, or not for us."""

    def __init__(self, msg: str) -> None:
        super().__init__(401, Codes.UNAUTHORIZED, msg)


class FederationAuthenticator:
    """Checks the ``X-Matrix`` signature of an incoming request; returns the origin.

    Args:
        keys: the key ring (fetches the origin's keys when needed).
        policy: which servers may talk to us.
        clock: "now", at which the origin's key must be valid.
        enabled: ``federation.enabled``.
        max_body_bytes: request body limit.
    """

    def __init__(
        self,
        keys: ServerKeys,
        policy: ServerPolicy,
        clock: Clock,
        *,
        enabled: bool = True,
        max_body_bytes: int,
    ) -> None:
        self._keys = keys
        self._policy = policy
        self._clock = clock
        self._enabled = enabled
        self._max_body = max_body_bytes
        self._origin_listeners: list[Callable[[str], None]] = []

    def add_origin_listener(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(origin)`` after each request whose signature verified (the
        federation sender ends its back-off for a server that is evidently up). Must be cheap
        and must not raise."""
        self._origin_listeners.append(listener)

    async def authenticate(self, req: Request | None = None) -> str:
        """Verify the current (or given) request's ``X-Matrix`` header; the origin's name.

        Raises:
            MatrixError: see the module docstring.
        """
        req = req if req is not None else request
        if not self._enabled:
            raise Forbidden("Federation is disabled on this server")
        auth = None
        for header in req.headers.getlist("Authorization"):
            try:
                auth = parse_authorization(header)
                break
            except XMatrixParseError:
                continue
        if auth is None:
            raise Unauthorized("Missing or malformed X-Matrix Authorization header")
        ours = self._keys.server_name
        if auth.destination is not None and auth.destination != ours:
            raise Unauthorized(f"Request is for {auth.destination}, this is {ours}")
        if not is_valid_server_name(auth.origin):
            # a malformed header, not a bad signature: 400, as Synapse answers (SyTest
            # "Non-numeric ports in server names are rejected")
            raise MatrixError(400, Codes.UNAUTHORIZED, "Origin is not a valid server name")
        if not self._policy.allows(auth.origin):
            raise Forbidden(f"Federation with {auth.origin} is not allowed")
        content = await self._body(req)
        uri = _request_target(req)
        keys = await self._keys.verify_keys(auth.origin, [auth.key_id], at_ts=self._clock.time_ms())
        try:
            verify_request_with_keys(auth, keys, req.method, uri, ours, content)
        except SignatureError as e:
            raise Unauthorized(f"Invalid X-Matrix signature: {e}") from None
        for listener in self._origin_listeners:
            listener(auth.origin)
        return auth.origin

    async def _body(self, req: Request) -> Any:
        length = req.content_length
        if length is not None and length > self._max_body:
            raise TooLarge()
        try:
            data = await req.get_data(cache=True, as_text=False)
        except RequestEntityTooLarge:
            raise TooLarge() from None
        if not data:
            return None
        if len(data) > self._max_body:
            raise TooLarge()
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            raise NotJson() from None


def _request_target(req: Request) -> str:
    """The path and query exactly as the client sent them (what the origin signed)."""
    raw = req.scope.get("raw_path")
    path = raw.decode("latin-1") if isinstance(raw, bytes) and raw else req.path
    query = req.scope.get("query_string") or b""
    return f"{path}?{query.decode('latin-1')}" if query else path


class _HasFederationAuth(Protocol):
    federation_auth: FederationAuthenticator


F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def signed(fn: F) -> F:
    """Authenticate the request before the handler; pass the origin as ``origin``.

    Put it under ``@route``; the API object needs a ``federation_auth`` attribute.
    """

    @functools.wraps(fn)
    async def wrapper(self: _HasFederationAuth, *args: Any, **kwargs: Any) -> Any:
        kwargs["origin"] = await self.federation_auth.authenticate()
        return await fn(self, *args, **kwargs)

    # The view passes path parameters only; ``origin`` is filled in here.
    wrapper.__signature__ = _without_origin(fn)  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def _without_origin(fn: Callable[..., Any]) -> Any:
    import inspect

    sig = inspect.signature(fn)
    return sig.replace(parameters=[p for n, p in sig.parameters.items() if n != "origin"])

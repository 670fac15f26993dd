"""The outbound federation transport: signed JSON requests to other homeservers over HTTPS.

Layers, each small, each with its errors translated at its edge (the httpx/httpcore shape)::

    FederationTransport.request(destination, method, path, ...)
        domain allow/deny list            → DestinationBlocked (nothing resolved, nothing sent)
        ServerResolver.resolve            → targets, Host header, certificate name (discovery.py)
        X-Matrix Authorization            (federation.core.xmatrix.sign_request)
        httpx.AsyncClient (one per transport: connection pool, keep-alive, timeouts)
            GuardedTransport              hostname → addresses (DnsResolver); every address is
                                          checked against the policy; the request goes to a
                                          checked *address*, with the original Host header and
                                          the certificate name as SNI (``sni_hostname``)
                httpx.AsyncHTTPTransport  TLS verified against our CA bundle

Resolving first and connecting to the checked address (rather than letting the connection layer
resolve the name again) closes the DNS-rebinding gap: the address that was checked is the one
used. ``.well-known`` fetches go through the same guarded client, so a delegation cannot point
us at a loopback web server either.

TLS: a custom CA bundle, when given, *replaces* the default trust store (as Synapse's
``federation_custom_ca_list`` does); otherwise the system store is used, with certifi's bundle
added (httpx's default). Certificates are always verified; TLS 1.2 is the minimum.

Connection reuse: httpx pools connections per (address, port). Two server names served from
one address and port share connections; the certificate was checked for the name that opened
the connection, and the remote checks the ``Host`` and X-Matrix ``destination`` of each request.
"""

from __future__ import annotations

import ipaddress
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import certifi
import httpx
import trio

from federation.client.discovery import (
    DnsResolver,
    HttpWellKnownFetcher,
    ResolvedServer,
    ServerResolver,
    SystemDnsResolver,
    is_ip_literal,
)
from federation.client.errors import (
    DestinationBlocked,
    DestinationUnreachable,
    FederationError,
    InvalidResponse,
    RemoteServerError,
)
from federation.core.canonicaljson import decode_json, encode_canonical_json
from federation.core.errors import CanonicalJSONError
from federation.core.signing import SigningKey
from federation.core.xmatrix import sign_request

__all__ = [
    "DestinationPolicy",
    "FederationTransport",
    "GuardedTransport",
    "make_ssl_context",
]

#: answers larger than this are refused (a whole room's state can be tens of megabytes)
DEFAULT_MAX_RESPONSE_BYTES = 100 * 1024 * 1024
_ADDRESS_CACHE_SECONDS = 60.0
_ADDRESS_CACHE_ENTRIES = 10_000
_USER_AGENT = "trio-homeserver federation"

Query = Mapping[str, str | int | bool | Sequence[str]] | Sequence[tuple[str, str]]


def make_ssl_context(ca_path: str | None) -> ssl.SSLContext:
    """The client TLS context: ``ca_path`` (a PEM bundle) replaces the default trust store.

    Raises:
        OSError / ssl.SSLError: the bundle cannot be read.
    """
    if ca_path is not None:
        ctx = ssl.create_default_context(cafile=ca_path)  # loads only this bundle
    else:
        ctx = ssl.create_default_context()
        ctx.load_verify_locations(cafile=certifi.where())
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


@dataclass(frozen=True)
class DestinationPolicy:
    """Which destinations we may contact.

    Attributes:
        allow_private_destinations: when False, addresses that are not globally routable are
            refused: loopback, private (RFC 1918), shared (100.64/10), link-local, unique-local
            (fc00::/7), multicast, unspecified, reserved and documentation ranges, including
            their IPv4-mapped IPv6 forms.
        domain_allowlist: when not None, only these server names are contacted.
        domain_denylist: these server names are never contacted.

    A list entry names a server exactly (case-insensitively); an entry without a port also
    covers that hostname with any port (``example.org`` covers ``example.org:8448``).
    """

    allow_private_destinations: bool = False
    domain_allowlist: tuple[str, ...] | None = None
    domain_denylist: tuple[str, ...] = ()

    def check_name(self, server_name: str) -> None:
        """Raises: DestinationBlocked: the allow/deny list refuses ``server_name``."""
        name = server_name.lower()
        host = name if name.endswith("]") or ":" not in name else name.rsplit(":", 1)[0]

        def matches(entries: Sequence[str]) -> bool:
            return any(e.lower() in (name, host) for e in entries)

        if matches(self.domain_denylist):
            raise DestinationBlocked(server_name, "server is on the federation deny list")
        if self.domain_allowlist is not None and not matches(self.domain_allowlist):
            raise DestinationBlocked(server_name, "server is not on the federation allow list")

    def address_allowed(self, address: str) -> bool:
        """Whether we may connect to ``address`` (an IP literal, IPv6 with or without brackets)."""
        if self.allow_private_destinations:
            return True
        try:
            ip = ipaddress.ip_address(address.strip("[]").split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address):
            mapped = ip.ipv4_mapped or ip.sixtofour
            if mapped is not None and not _global(mapped):
                return False
        return _global(ip)


def _global(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return ip.is_global and not ip.is_multicast and not ip.is_reserved


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport that resolves the URL's host itself, refuses forbidden addresses and
    sends the request to a checked address (the Host header and SNI keep the name).

    Tries the allowed addresses in order until one accepts the connection.

    Args:
        inner: the transport that connects (``httpx.AsyncHTTPTransport``; a MockTransport in tests).
        dns: address lookups.
        policy: which addresses are allowed.
        clock: monotonic seconds, for the short address cache.
    """

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        dns: DnsResolver,
        policy: DestinationPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inner = inner
        self._dns = dns
        self._policy = policy
        self._clock = clock
        self._addresses: dict[str, tuple[float, list[str]]] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if is_ip_literal(host):
            candidates = [host]
        else:
            candidates = await self._lookup(host)
        allowed = [a for a in candidates if self._policy.address_allowed(a)]
        if not allowed:
            raise DestinationBlocked(host, f"refusing to connect to {', '.join(candidates)}")
        extensions = dict(request.extensions)
        if not is_ip_literal(host):
            extensions.setdefault("sni_hostname", host)
        last: httpx.ConnectError | None = None
        for address in allowed:
            routed = httpx.Request(
                request.method,
                request.url.copy_with(host=address),
                headers=request.headers,  # Host was set from the name when the request was made
                stream=request.stream,
                extensions=extensions,
            )
            try:
                return await self._inner.handle_async_request(routed)
            except httpx.ConnectError as exc:
                last = exc
        assert last is not None
        raise last

    async def _lookup(self, host: str) -> list[str]:
        now = self._clock()
        cached = self._addresses.get(host)
        if cached is not None and cached[0] > now:
            return cached[1]
        addresses = await self._dns.addresses(host)
        if len(self._addresses) >= _ADDRESS_CACHE_ENTRIES:
            self._addresses.clear()
        self._addresses[host] = (now + _ADDRESS_CACHE_SECONDS, addresses)
        return addresses

    async def aclose(self) -> None:
        await self._inner.aclose()


class FederationTransport:
    """Signed JSON requests to other homeservers (one instance per process, shared by all).

    Args:
        server_name: our server name (the X-Matrix ``origin``).
        signing_key: our server's signing key.
        ca_path: a PEM CA bundle that replaces the default trust store, or ``None``.
        allow_private_destinations: allow loopback/private addresses (tests, private networks).
        domain_allowlist: only these server-name patterns, when not None.
        domain_denylist: never these server-name patterns.
        connect_timeout: seconds to open a connection (TCP and TLS).
        request_timeout: seconds for a whole call (discovery, connection, request, answer)
            unless the call gives its own.
        dns: DNS lookups (defaults to the system's; a fake in tests).
        inner_transport: the connecting transport (defaults to httpx's over TLS; a
            ``MockTransport`` in tests). The destination guard always wraps it.
        resolver: server discovery (defaults to one over ``dns`` and this transport's client).
        clock: monotonic seconds, for the caches.
    """

    def __init__(
        self,
        *,
        server_name: str,
        signing_key: SigningKey,
        ca_path: str | None = None,
        allow_private_destinations: bool = False,
        domain_allowlist: Sequence[str] | None = None,
        domain_denylist: Sequence[str] = (),
        connect_timeout: float = 10.0,
        request_timeout: float = 60.0,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        dns: DnsResolver | None = None,
        inner_transport: httpx.AsyncBaseTransport | None = None,
        resolver: ServerResolver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.server_name = server_name
        self._key = signing_key
        self._request_timeout = request_timeout
        self._max_response_bytes = max_response_bytes
        self.policy = DestinationPolicy(
            allow_private_destinations,
            tuple(domain_allowlist) if domain_allowlist is not None else None,
            tuple(domain_denylist),
        )
        dns = dns or SystemDnsResolver()
        if inner_transport is None:
            inner_transport = httpx.AsyncHTTPTransport(
                verify=make_ssl_context(ca_path),
                http1=True,
                http2=False,
                trust_env=False,
                limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200),
            )
        self._client = httpx.AsyncClient(
            transport=GuardedTransport(inner_transport, dns, self.policy, clock=clock),
            timeout=httpx.Timeout(request_timeout, connect=connect_timeout),
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": _USER_AGENT},
        )
        self.resolver = resolver or ServerResolver(
            dns, HttpWellKnownFetcher(self._client, timeout=min(10.0, request_timeout)), clock=clock
        )

    async def aclose(self) -> None:
        """Close pooled connections."""
        await self._client.aclose()

    async def request(
        self,
        destination: str,
        method: str,
        path: str,
        *,
        query: Query | None = None,
        content: Any = None,
        signed: bool = True,
        timeout: float | None = None,
        max_response_bytes: int | None = None,
    ) -> Any:
        """Send one request and return the parsed JSON body of a 2xx answer.

        Args:
            destination: the server name to talk to.
            method: ``GET``, ``PUT``, ``POST``.
            path: the percent-encoded path, from ``/_matrix/...``.
            query: query parameters (a list value repeats the parameter).
            content: the JSON body, or None.
            signed: send an X-Matrix ``Authorization`` header (everything but key fetches).
            timeout: seconds for this call instead of the transport's default.
            max_response_bytes: refuse a larger answer (default 100 MiB).

        Raises:
            DestinationBlocked: refused by policy; no connection was made.
            DestinationUnreachable: DNS, connection, TLS failure or timeout.
            RemoteServerError: a non-2xx answer.
            InvalidResponse: a 2xx answer whose body is not JSON (or too large).
        """
        self.policy.check_name(destination)
        uri = path
        if query:
            uri += "?" + urlencode(query, doseq=True)
        method = method.upper()
        try:
            body = encode_canonical_json(content, strict=False) if content is not None else None
        except CanonicalJSONError as exc:
            raise ValueError(f"request body is not JSON: {exc}") from None
        limit = max_response_bytes or self._max_response_bytes
        try:
            with trio.fail_after(timeout or self._request_timeout):
                resolved = await self.resolver.resolve(destination)
                headers = {"Host": resolved.host_header}
                if body is not None:
                    headers["Content-Type"] = "application/json"
                if signed:
                    headers["Authorization"] = sign_request(
                        self._key, method, uri, self.server_name, destination, content
                    )
                status, raw = await self._send(resolved, method, uri, headers, body, limit)
        except trio.TooSlowError:
            raise DestinationUnreachable(destination, "timed out") from None
        if 200 <= status < 300:
            try:
                return decode_json(raw, strict=False)
            except CanonicalJSONError as exc:
                raise InvalidResponse(destination, f"answer is not JSON: {exc}") from None
        raise _remote_error(destination, status, raw)

    async def _send(
        self,
        resolved: ResolvedServer,
        method: str,
        uri: str,
        headers: dict[str, str],
        body: bytes | None,
        limit: int,
    ) -> tuple[int, bytes]:
        destination = resolved.server_name
        extensions = {} if resolved.sni is None else {"sni_hostname": resolved.sni}
        failure: FederationError = DestinationUnreachable(destination, "no address to try")
        for target in resolved.targets:
            host = f"[{target.host}]" if ":" in target.host else target.host
            url = f"https://{host}:{target.port}{uri}"
            try:
                async with self._client.stream(
                    method, url, headers=headers, content=body, extensions=extensions
                ) as response:
                    raw = bytearray()
                    async for chunk in response.aiter_bytes():  # decoded: limits zip bombs too
                        raw += chunk
                        if len(raw) > limit:
                            raise InvalidResponse(destination, f"answer over {limit} bytes")
                    return response.status_code, bytes(raw)
            except DestinationBlocked as exc:
                failure = DestinationBlocked(destination, exc.message)
            except DestinationUnreachable as exc:
                failure = DestinationUnreachable(destination, exc.message)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                failure = DestinationUnreachable(destination, f"cannot connect: {exc}")
            except httpx.TimeoutException:
                raise DestinationUnreachable(destination, "timed out") from None
            except httpx.HTTPError as exc:
                # the request may have reached the server: do not try another target
                raise DestinationUnreachable(destination, f"{type(exc).__name__}: {exc}") from None
        raise failure


def _remote_error(destination: str, status: int, raw: bytes) -> RemoteServerError:
    errcode: str | None = None
    error = ""
    room_version: str | None = None
    try:
        obj = decode_json(raw, strict=False)
    except CanonicalJSONError:
        obj = None
    if isinstance(obj, dict):
        if isinstance(obj.get("errcode"), str):
            errcode = obj["errcode"]
        if isinstance(obj.get("error"), str):
            error = obj["error"][:1000]
        if isinstance(obj.get("room_version"), str):
            room_version = obj["room_version"][:100]
    return RemoteServerError(destination, status, errcode, error, room_version)

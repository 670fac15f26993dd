"""Server discovery: which address, port, ``Host`` header and certificate name a server name means.

Spec: server-server-api.md › Server discovery › Resolving server names
(https://spec.matrix.org/v1.19/server-server-api/#resolving-server-names), steps 1-6:

1. IP literal: that address, the given port or 8448; ``Host`` = the server name; the
   certificate must be valid for the IP address.
2. Hostname with an explicit port: the hostname's addresses and that port; ``Host`` = the server
   name; the certificate must be valid for the hostname.
3. ``https://<hostname>/.well-known/matrix/server``: when valid, its ``m.server`` is
   ``<delegated_hostname>[:<delegated_port>]`` and is processed as 3.1 IP literal, 3.2 explicit
   port, 3.3 SRV ``_matrix-fed._tcp.<delegated_hostname>``, 3.4 (deprecated) SRV
   ``_matrix._tcp.<delegated_hostname>``, 3.5 its addresses on 8448; ``Host`` and the
   certificate name are the delegated hostname (with the port when one was given).
4. No valid ``.well-known``: SRV ``_matrix-fed._tcp.<hostname>``, 5. then (deprecated)
   ``_matrix._tcp.<hostname>``, 6. then the hostname's addresses on 8448; ``Host`` and the
   certificate name are ``<hostname>`` (never the SRV target).

This module decides *where* to connect and *as whom*; it does not turn hostnames into addresses
for the connection: the transport does that, so it can check every address against the
destination policy first (:mod:`federation.client.transport`).

``.well-known`` caching (the spec's recommendations, and Synapse's figures where it leaves room):
a valid answer is kept for its ``Cache-Control: max-age`` or ``Expires``, 24 h when neither is
given, always between 5 minutes and 48 hours, with up to 10 % random jitter so a fleet of
delegations does not expire at once. A definite failure (non-2xx, bad JSON, missing or malformed
``m.server``) is kept 1 hour. A transient failure (connection error, timeout, 5xx) is kept 2
minutes, doubling with each consecutive one up to 1 hour; during it a delegation that was valid
before stays in use (stale-if-error), so a flapping web server does not move the destination.

One ``.well-known`` fetch per hostname runs at a time; concurrent resolutions wait for it.

In-memory state: the ``.well-known`` and SRV caches are caches of remote facts with expiry
times, private to one process; nothing needs to invalidate them, and two processes holding
different copies only differ for at most the cache period, as two servers would.
"""

from __future__ import annotations

import ipaddress
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Protocol, TypeVar

import dns.asyncbackend
import dns.asyncresolver
import dns.exception
import dns.rdtypes.IN.SRV
import dns.resolver
import httpx
import trio

from federation.client.errors import DestinationBlocked, DestinationUnreachable
from federation.core.errors import InvalidIdentifier
from federation.core.ids import parse_server_name

__all__ = [
    "DEFAULT_PORT",
    "DnsResolver",
    "HttpWellKnownFetcher",
    "ResolvedServer",
    "ServerResolver",
    "SrvAnswer",
    "SrvRecord",
    "SystemDnsResolver",
    "Target",
    "WellKnownFetcher",
    "WellKnownResult",
    "is_ip_literal",
]

DEFAULT_PORT = 8448

WELL_KNOWN_DEFAULT_CACHE = 24 * 3600.0
WELL_KNOWN_MIN_CACHE = 5 * 60.0
WELL_KNOWN_MAX_CACHE = 48 * 3600.0
WELL_KNOWN_INVALID_CACHE = 3600.0
WELL_KNOWN_DOWN_CACHE = 2 * 60.0
WELL_KNOWN_DOWN_MAX_CACHE = 3600.0
WELL_KNOWN_JITTER = 0.1
#: a .well-known body larger than this is not a delegation
WELL_KNOWN_MAX_BYTES = 50 * 1024
SRV_MIN_CACHE = 60.0
SRV_MAX_CACHE = 3600.0
#: an empty SRV answer (no record) is kept this long
SRV_NEGATIVE_CACHE = 600.0
_CACHE_ENTRIES = 10_000

_K = TypeVar("_K")
_V = TypeVar("_V")


def is_ip_literal(host: str) -> bool:
    """True for an IPv4 literal or an IPv6 literal (with or without brackets)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Target:
    """One place to connect: ``host`` is a hostname still to be resolved, or an IP literal
    (IPv6 without brackets)."""

    host: str
    port: int


@dataclass(frozen=True, slots=True)
class ResolvedServer:
    """Where and how to reach a server name.

    Attributes:
        server_name: the name that was resolved (the X-Matrix ``destination``).
        targets: where to connect, in order of preference (several for SRV answers).
        host_header: the ``Host`` header to send.
        tls_name: the name (hostname or IP address) the certificate must be valid for.
    """

    server_name: str
    targets: tuple[Target, ...]
    host_header: str
    tls_name: str

    @property
    def sni(self) -> str | None:
        """The TLS SNI to send: the certificate name, or none for an IP address (RFC 6066)."""
        return None if is_ip_literal(self.tls_name) else self.tls_name


@dataclass(frozen=True, slots=True)
class SrvRecord:
    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True, slots=True)
class SrvAnswer:
    """The records of one SRV lookup (empty: no such record) and how long they may be kept."""

    records: tuple[SrvRecord, ...]
    ttl: float


class DnsResolver(Protocol):
    """The DNS lookups discovery and the transport need (a fake one in unit tests)."""

    async def srv(self, name: str) -> SrvAnswer:
        """The SRV records of ``name``; an empty answer when there are none.

        Raises:
            DestinationUnreachable: the lookup itself failed (no name server answered).
        """
        ...

    async def addresses(self, host: str) -> list[str]:
        """The IPv6 and IPv4 addresses of ``host`` (CNAMEs followed), as strings.

        Raises:
            DestinationUnreachable: the name does not resolve.
        """
        ...


class SystemDnsResolver:
    """SRV through dnspython on Trio; addresses through the system resolver (``getaddrinfo``,
    so ``/etc/hosts`` counts, as for any other program on the machine).

    Args:
        lifetime: seconds one SRV lookup may take in total.
    """

    def __init__(self, *, lifetime: float = 10.0) -> None:
        self._lifetime = lifetime
        self._resolver: dns.asyncresolver.Resolver | None = None

    async def srv(self, name: str) -> SrvAnswer:
        if self._resolver is None:
            self._resolver = dns.asyncresolver.Resolver()
        try:
            answer = await self._resolver.resolve(
                name, "SRV", lifetime=self._lifetime, backend=dns.asyncbackend.get_backend("trio")
            )
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return SrvAnswer((), SRV_NEGATIVE_CACHE)
        except dns.exception.DNSException as exc:
            raise DestinationUnreachable(name, f"SRV lookup failed: {exc}") from None
        records = []
        for rr in answer:
            if isinstance(rr, dns.rdtypes.IN.SRV.SRV):
                records.append(
                    SrvRecord(
                        rr.priority, rr.weight, rr.port, rr.target.to_text(omit_final_dot=True)
                    )
                )
        ttl = float(answer.rrset.ttl) if answer.rrset is not None else SRV_MIN_CACHE
        return SrvAnswer(tuple(records), ttl)

    async def addresses(self, host: str) -> list[str]:
        try:
            infos = await trio.socket.getaddrinfo(host, None, type=trio.socket.SOCK_STREAM)
        except OSError as exc:
            raise DestinationUnreachable(host, f"cannot resolve: {exc}") from None
        seen: dict[str, None] = {}
        for _family, _type, _proto, _canon, sockaddr in infos:
            seen.setdefault(str(sockaddr[0]), None)
        return list(seen)


@dataclass(frozen=True, slots=True)
class WellKnownResult:
    """The outcome of one ``.well-known/matrix/server`` fetch.

    Attributes:
        server: the ``m.server`` value, or ``None`` when the answer was not a valid delegation.
        cache_seconds: how long to keep a valid answer, from its headers (``None``: no header).
        transient: the failure may go away soon (network error, timeout, 5xx).
    """

    server: str | None
    cache_seconds: float | None = None
    transient: bool = False


class WellKnownFetcher(Protocol):
    async def fetch(self, hostname: str) -> WellKnownResult:
        """Fetch and validate ``https://<hostname>/.well-known/matrix/server``; never raises
        for what the remote does (that is a result)."""
        ...


class HttpWellKnownFetcher:
    """Fetches ``.well-known/matrix/server`` with an httpx client.

    The client should be the federation transport's guarded one (so the destination policy
    applies to the web server too) or, in tests, one over ``httpx.MockTransport``. Redirects are
    followed (at most ``max_redirects``, which also ends redirect loops).

    Args:
        client: the HTTP client.
        timeout: seconds for the whole fetch.
        now: wall clock in seconds, to read ``Expires``.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        timeout: float = 10.0,
        max_redirects: int = 5,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._timeout = timeout
        self._max_redirects = max_redirects
        self._now = now

    async def fetch(self, hostname: str) -> WellKnownResult:
        url = f"https://{hostname}/.well-known/matrix/server"
        body = bytearray()
        try:
            with trio.fail_after(self._timeout):
                for _hop in range(self._max_redirects + 1):
                    async with self._client.stream("GET", url) as response:
                        if response.is_redirect and response.next_request is not None:
                            url = str(response.next_request.url)
                            continue
                        status = response.status_code
                        headers = response.headers
                        if status != 200:
                            return WellKnownResult(None, transient=status >= 500)
                        async for chunk in response.aiter_bytes():
                            body += chunk
                            if len(body) > WELL_KNOWN_MAX_BYTES:
                                return WellKnownResult(None)
                        break
                else:
                    return WellKnownResult(None)  # too many redirects, or a loop
        except trio.TooSlowError:
            return WellKnownResult(None, transient=True)
        except DestinationBlocked:
            return WellKnownResult(None)  # the web server's address is refused: no delegation
        except (httpx.HTTPError, DestinationUnreachable, OSError):
            return WellKnownResult(None, transient=True)
        server = _parse_well_known(bytes(body))
        if server is None:
            return WellKnownResult(None)
        return WellKnownResult(server, cache_seconds=_cache_period(headers, self._now()))


def _parse_well_known(body: bytes) -> str | None:
    try:
        obj = json.loads(body)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    server = obj.get("m.server")
    if not isinstance(server, str):
        return None
    try:
        parse_server_name(server)
    except InvalidIdentifier:
        return None
    return server


def _cache_period(headers: httpx.Headers, now: float) -> float | None:
    """Seconds from ``Cache-Control`` (``max-age``, ``no-store``/``no-cache`` → 0) or
    ``Expires``; ``None`` when neither says anything usable."""
    cache_control = headers.get("cache-control")
    if cache_control:
        for directive in cache_control.split(","):
            name, _, value = directive.strip().partition("=")
            name = name.strip().lower()
            if name in ("no-store", "no-cache"):
                return 0.0
            if name == "max-age":
                try:
                    return float(int(value.strip().strip('"')))
                except ValueError:
                    pass
    expires = headers.get("expires")
    if expires:
        try:
            return parsedate_to_datetime(expires).timestamp() - now
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return None


@dataclass(slots=True)
class _WellKnownEntry:
    server: str | None
    expires: float
    #: consecutive transient failures (for the back-off)
    failures: int = 0
    #: the last valid delegation, kept through transient failures
    last_valid: str | None = None


def _srv_order(records: Sequence[SrvRecord], rng: random.Random) -> list[Target]:
    """RFC 2782 order: ascending priority; within one priority a weighted random order."""
    targets: list[Target] = []
    for priority in sorted({r.priority for r in records}):
        group = [r for r in records if r.priority == priority]
        while group:
            total = sum(r.weight for r in group)
            if total == 0:
                pick = group[0]
            else:
                point = rng.uniform(0, total)
                acc = 0
                pick = group[-1]
                for r in group:
                    acc += r.weight
                    if acc >= point:
                        pick = r
                        break
            group.remove(pick)
            targets.append(Target(pick.target.rstrip("."), pick.port))
    return targets


class ServerResolver:
    """Resolves server names by the spec's steps, with the ``.well-known`` and SRV caches.

    Args:
        dns: SRV lookups.
        well_known: ``.well-known/matrix/server`` fetches.
        clock: monotonic seconds, for cache expiry (injected in tests).
        rng: for SRV weights and cache jitter.
    """

    def __init__(
        self,
        dns: DnsResolver,
        well_known: WellKnownFetcher,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._dns = dns
        self._well_known = well_known
        self._clock = clock
        self._rng = rng or random.Random()
        self._wk_cache: dict[str, _WellKnownEntry] = {}
        #: hostname → set when its running .well-known fetch ends (one fetch per host at a time)
        self._wk_inflight: dict[str, trio.Event] = {}
        self._srv_cache: dict[str, tuple[float, tuple[SrvRecord, ...]]] = {}

    async def resolve(self, server_name: str) -> ResolvedServer:
        """Where to connect for ``server_name`` and with which ``Host`` and certificate name.

        Raises:
            DestinationUnreachable: the name is not a valid server name, an SRV lookup failed,
                or the SRV record says the service is not available (target ``.``).
        """
        try:
            parsed = parse_server_name(server_name)
        except InvalidIdentifier:
            raise DestinationUnreachable(server_name, "not a valid server name") from None
        host = parsed.host.strip("[]")
        if is_ip_literal(host):  # step 1
            return ResolvedServer(
                server_name, (Target(host, parsed.port or DEFAULT_PORT),), server_name, host
            )
        if parsed.port is not None:  # step 2
            return ResolvedServer(server_name, (Target(host, parsed.port),), server_name, host)
        delegated = await self._delegation(host)  # step 3
        if delegated is not None:
            d = parse_server_name(delegated)  # validated when it was fetched
            dhost = d.host.strip("[]")
            if is_ip_literal(dhost):  # 3.1
                return ResolvedServer(
                    server_name, (Target(dhost, d.port or DEFAULT_PORT),), delegated, dhost
                )
            if d.port is not None:  # 3.2
                return ResolvedServer(server_name, (Target(dhost, d.port),), delegated, dhost)
            return await self._srv_or_default(server_name, dhost)  # 3.3-3.5
        return await self._srv_or_default(server_name, host)  # steps 4-6

    async def _srv_or_default(self, server_name: str, hostname: str) -> ResolvedServer:
        for service in ("_matrix-fed._tcp.", "_matrix._tcp."):
            records = await self._srv(service + hostname)
            if records:
                if len(records) == 1 and records[0].target in (".", ""):
                    raise DestinationUnreachable(server_name, "SRV says no service here")
                targets = tuple(
                    t for t in _srv_order(records, self._rng) if t.host not in (".", "")
                )
                return ResolvedServer(server_name, targets, hostname, hostname)
        return ResolvedServer(server_name, (Target(hostname, DEFAULT_PORT),), hostname, hostname)

    async def _srv(self, name: str) -> tuple[SrvRecord, ...]:
        now = self._clock()
        cached = self._srv_cache.get(name)
        if cached is not None and cached[0] > now:
            return cached[1]
        answer = await self._dns.srv(name)
        ttl = min(max(answer.ttl, SRV_MIN_CACHE), SRV_MAX_CACHE)
        _bounded_put(self._srv_cache, name, (now + ttl, answer.records))
        return answer.records

    async def _delegation(self, hostname: str) -> str | None:
        while True:
            entry = self._wk_cache.get(hostname)
            if entry is not None and entry.expires > self._clock():
                return entry.server
            running = self._wk_inflight.get(hostname)
            if running is None:
                break
            await running.wait()  # someone else is fetching it: use their answer
        done = self._wk_inflight[hostname] = trio.Event()
        try:
            return await self._fetch_delegation(hostname, entry)
        finally:
            del self._wk_inflight[hostname]
            done.set()

    async def _fetch_delegation(self, hostname: str, entry: _WellKnownEntry | None) -> str | None:
        result = await self._well_known.fetch(hostname)
        now = self._clock()
        last_valid = entry.last_valid if entry is not None else None
        if result.server is not None:
            period = result.cache_seconds
            if period is None:
                period = WELL_KNOWN_DEFAULT_CACHE
            period = min(max(period, WELL_KNOWN_MIN_CACHE), WELL_KNOWN_MAX_CACHE)
            period *= 1 - self._rng.uniform(0, WELL_KNOWN_JITTER)
            new = _WellKnownEntry(result.server, now + period, 0, result.server)
        elif result.transient:
            failures = (entry.failures if entry is not None else 0) + 1
            period = min(WELL_KNOWN_DOWN_CACHE * 2 ** (failures - 1), WELL_KNOWN_DOWN_MAX_CACHE)
            new = _WellKnownEntry(last_valid, now + period, failures, last_valid)
        else:
            new = _WellKnownEntry(None, now + WELL_KNOWN_INVALID_CACHE, 0, None)
        _bounded_put(self._wk_cache, hostname, new)
        return new.server


def _bounded_put(cache: dict[_K, _V], key: _K, value: _V) -> None:
    cache.pop(key, None)
    if len(cache) >= _CACHE_ENTRIES:
        del cache[next(iter(cache))]  # the oldest insertion
    cache[key] = value

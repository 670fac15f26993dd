"""Server discovery: every step of the spec's "Resolving server names", with fake DNS and a
MockTransport web server, and the .well-known cache rules."""

from __future__ import annotations

import random
from email.utils import formatdate

import httpx
import pytest

from federation.client.discovery import (
    WELL_KNOWN_DEFAULT_CACHE,
    WELL_KNOWN_INVALID_CACHE,
    WELL_KNOWN_MAX_CACHE,
    WELL_KNOWN_MIN_CACHE,
    HttpWellKnownFetcher,
    ResolvedServer,
    ServerResolver,
    SrvRecord,
    Target,
)
from federation.client.errors import DestinationUnreachable

from ._fakes import FakeDns, ManualClock


class WebServer:
    """.well-known answers per hostname: (status, body, headers), or an exception."""

    def __init__(self) -> None:
        self.answers: dict[str, object] = {}
        self.requests: list[str] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(str(request.url))
        answer = self.answers.get(request.url.host, (404, b"", {}))
        if isinstance(answer, Exception):
            raise answer
        status, body, headers = answer  # type: ignore[misc]
        if isinstance(body, dict):
            return httpx.Response(status, json=body, headers=headers)
        return httpx.Response(status, content=body, headers=headers)


def make(
    dns: FakeDns | None = None, web: WebServer | None = None, clock: ManualClock | None = None
):
    dns = dns or FakeDns()
    web = web or WebServer()
    clock = clock or ManualClock()
    client = httpx.AsyncClient(transport=httpx.MockTransport(web.handler))
    fetcher = HttpWellKnownFetcher(client, now=lambda: 1_700_000_000.0)
    resolver = ServerResolver(dns, fetcher, clock=clock, rng=random.Random(4))
    return resolver, dns, web, clock


async def test_ip_literal_with_and_without_port():
    resolver, dns, web, _ = make()
    assert await resolver.resolve("1.2.3.4") == ResolvedServer(
        "1.2.3.4", (Target("1.2.3.4", 8448),), "1.2.3.4", "1.2.3.4"
    )
    r = await resolver.resolve("[2001:db8::1]:8000")
    assert r == ResolvedServer(
        "[2001:db8::1]:8000", (Target("2001:db8::1", 8000),), "[2001:db8::1]:8000", "2001:db8::1"
    )
    assert r.sni is None  # no SNI for an IP address
    assert dns.lookups == [] and web.requests == []


async def test_explicit_port_skips_well_known_and_srv():
    resolver, dns, web, _ = make()
    r = await resolver.resolve("example.org:1234")
    assert r == ResolvedServer(
        "example.org:1234", (Target("example.org", 1234),), "example.org:1234", "example.org"
    )
    assert r.sni == "example.org"
    assert dns.lookups == [] and web.requests == []


async def test_well_known_delegation_to_ip_literal():
    resolver, _, web, _ = make()
    web.answers["example.org"] = (200, {"m.server": "5.6.7.8"}, {})
    r = await resolver.resolve("example.org")
    assert r == ResolvedServer("example.org", (Target("5.6.7.8", 8448),), "5.6.7.8", "5.6.7.8")
    web.answers["b.org"] = (200, {"m.server": "[2001:db8::2]:99"}, {})
    r = await resolver.resolve("b.org")
    assert r == ResolvedServer(
        "b.org", (Target("2001:db8::2", 99),), "[2001:db8::2]:99", "2001:db8::2"
    )
    assert web.requests == [
        "https://example.org/.well-known/matrix/server",
        "https://b.org/.well-known/matrix/server",
    ]


async def test_well_known_delegation_with_port():
    resolver, dns, web, _ = make()
    web.answers["example.org"] = (200, {"m.server": "matrix.example.org:443"}, {})
    r = await resolver.resolve("example.org")
    assert r == ResolvedServer(
        "example.org",
        (Target("matrix.example.org", 443),),
        "matrix.example.org:443",
        "matrix.example.org",
    )
    assert dns.lookups == []  # no SRV when the delegation has a port


async def test_well_known_delegation_then_srv_matrix_fed():
    dns = FakeDns(
        srv={
            "_matrix-fed._tcp.matrix.example.org": [SrvRecord(10, 0, 8449, "fed1.example.net.")],
            "_matrix._tcp.matrix.example.org": [SrvRecord(10, 0, 1, "old.example.net")],
        }
    )
    resolver, dns, web, _ = make(dns)
    web.answers["example.org"] = (200, {"m.server": "matrix.example.org"}, {})
    r = await resolver.resolve("example.org")
    # Host and certificate: the delegated hostname, never the SRV target
    assert r == ResolvedServer(
        "example.org",
        (Target("fed1.example.net", 8449),),
        "matrix.example.org",
        "matrix.example.org",
    )
    assert dns.lookups == [("SRV", "_matrix-fed._tcp.matrix.example.org")]


async def test_well_known_delegation_then_deprecated_srv():
    dns = FakeDns(
        srv={"_matrix._tcp.matrix.example.org": [SrvRecord(10, 0, 8450, "old.example.net")]}
    )
    resolver, dns, web, _ = make(dns)
    web.answers["example.org"] = (200, {"m.server": "matrix.example.org"}, {})
    r = await resolver.resolve("example.org")
    assert r.targets == (Target("old.example.net", 8450),)
    assert (r.host_header, r.tls_name) == ("matrix.example.org", "matrix.example.org")
    assert dns.lookups == [
        ("SRV", "_matrix-fed._tcp.matrix.example.org"),
        ("SRV", "_matrix._tcp.matrix.example.org"),
    ]


async def test_well_known_delegation_without_srv_uses_8448():
    resolver, _, web, _ = make()
    web.answers["example.org"] = (200, {"m.server": "matrix.example.org"}, {})
    r = await resolver.resolve("example.org")
    assert r == ResolvedServer(
        "example.org",
        (Target("matrix.example.org", 8448),),
        "matrix.example.org",
        "matrix.example.org",
    )


async def test_no_well_known_srv_matrix_fed_then_deprecated_then_default():
    dns = FakeDns(
        srv={
            "_matrix-fed._tcp.a.org": [SrvRecord(5, 0, 1111, "x.a.org")],
            "_matrix._tcp.b.org": [SrvRecord(5, 0, 2222, "y.b.org")],
        }
    )
    resolver, dns, _, _ = make(dns)
    a = await resolver.resolve("a.org")
    assert a == ResolvedServer("a.org", (Target("x.a.org", 1111),), "a.org", "a.org")
    b = await resolver.resolve("b.org")
    assert b == ResolvedServer("b.org", (Target("y.b.org", 2222),), "b.org", "b.org")
    c = await resolver.resolve("c.org")
    assert c == ResolvedServer("c.org", (Target("c.org", 8448),), "c.org", "c.org")
    assert ("SRV", "_matrix._tcp.a.org") not in dns.lookups


async def test_srv_priority_and_weight_order():
    records = [
        SrvRecord(20, 0, 3, "low.org"),
        SrvRecord(10, 100, 1, "heavy.org"),
        SrvRecord(10, 0, 2, "light.org"),
    ]
    resolver, _, _, _ = make(FakeDns(srv={"_matrix-fed._tcp.a.org": records}))
    r = await resolver.resolve("a.org")
    assert [t.host for t in r.targets][-1] == "low.org"
    assert {t.host for t in r.targets[:2]} == {"heavy.org", "light.org"}


async def test_srv_dot_target_means_no_service():
    resolver, _, _, _ = make(FakeDns(srv={"_matrix-fed._tcp.a.org": [SrvRecord(0, 0, 0, ".")]}))
    with pytest.raises(DestinationUnreachable):
        await resolver.resolve("a.org")


@pytest.mark.parametrize(
    "answer",
    [
        (200, b"not json", {}),
        (200, b"[]", {}),
        (200, {"m.server": 42}, {}),
        (200, {"m.server": "bad name!"}, {}),
        (200, {}, {}),
        (404, b"", {}),
        (200, b"{" + b" " * 60_000 + b"}", {}),
    ],
)
async def test_invalid_well_known_falls_back_and_is_cached_an_hour(answer):
    resolver, _, web, clock = make()
    web.answers["example.org"] = answer
    r = await resolver.resolve("example.org")
    assert r.targets == (Target("example.org", 8448),)
    web.answers["example.org"] = (200, {"m.server": "m.example.org:1"}, {})
    clock.now += WELL_KNOWN_INVALID_CACHE - 1
    assert (await resolver.resolve("example.org")).targets == (Target("example.org", 8448),)
    clock.now += 2
    assert (await resolver.resolve("example.org")).targets == (Target("m.example.org", 1),)
    assert len(web.requests) == 2


async def test_invalid_server_name_is_unreachable():
    resolver, _, _, _ = make()
    with pytest.raises(DestinationUnreachable):
        await resolver.resolve("bad name")


async def test_redirect_is_followed_and_loop_ends():
    resolver, _, web, _ = make()
    web.answers["example.org"] = (301, b"", {"Location": "https://www.example.org/wk"})
    web.answers["www.example.org"] = (200, {"m.server": "m.example.org:8"}, {})
    assert (await resolver.resolve("example.org")).targets == (Target("m.example.org", 8),)
    web.answers["loop.org"] = (302, b"", {"Location": "https://loop.org/.well-known/matrix/server"})
    assert (await resolver.resolve("loop.org")).targets == (Target("loop.org", 8448),)


async def test_cache_default_24h_and_bounds():
    resolver, _, web, clock = make()
    web.answers["a.org"] = (200, {"m.server": "m.a.org:1"}, {})
    await resolver.resolve("a.org")
    web.answers["a.org"] = (200, {"m.server": "m.a.org:2"}, {})
    clock.now += WELL_KNOWN_DEFAULT_CACHE * 0.89  # jitter takes at most 10 %
    assert (await resolver.resolve("a.org")).targets == (Target("m.a.org", 1),)
    clock.now += WELL_KNOWN_DEFAULT_CACHE * 0.12
    assert (await resolver.resolve("a.org")).targets == (Target("m.a.org", 2),)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Cache-Control": "public, max-age=7200"}, 7200),
        ({"Cache-Control": "max-age=10"}, WELL_KNOWN_MIN_CACHE),
        ({"Cache-Control": "no-store"}, WELL_KNOWN_MIN_CACHE),
        ({"Cache-Control": "max-age=99999999"}, WELL_KNOWN_MAX_CACHE),
        ({"Expires": formatdate(1_700_000_000.0 + 3 * 3600, usegmt=True)}, 3 * 3600),
        ({"Expires": "garbage"}, WELL_KNOWN_DEFAULT_CACHE),
    ],
)
async def test_cache_headers_honoured_within_bounds(headers, expected):
    resolver, _, web, clock = make()
    web.answers["a.org"] = (200, {"m.server": "m.a.org:1"}, headers)
    start = clock.now
    await resolver.resolve("a.org")
    web.answers["a.org"] = (200, {"m.server": "m.a.org:2"}, {})
    clock.now = start + expected * 0.89
    assert (await resolver.resolve("a.org")).targets == (Target("m.a.org", 1),)
    clock.now = start + expected + 1
    assert (await resolver.resolve("a.org")).targets == (Target("m.a.org", 2),)


async def test_transient_errors_back_off_and_keep_last_valid_delegation():
    resolver, _, web, clock = make()
    web.answers["a.org"] = (200, {"m.server": "m.a.org:1"}, {"Cache-Control": "max-age=600"})
    await resolver.resolve("a.org")
    clock.now += 601
    web.answers["a.org"] = httpx.ConnectError("down")
    fetches = len(web.requests)
    # stale-if-error: the old delegation stays in use during the outage
    assert (await resolver.resolve("a.org")).targets == (Target("m.a.org", 1),)
    assert len(web.requests) == fetches + 1
    # back-off: 2 min, then 4 min between fetches
    clock.now += 119
    await resolver.resolve("a.org")
    assert len(web.requests) == fetches + 1
    clock.now += 2
    await resolver.resolve("a.org")
    assert len(web.requests) == fetches + 2
    clock.now += 239
    await resolver.resolve("a.org")
    assert len(web.requests) == fetches + 2
    clock.now += 2
    web.answers["a.org"] = (503, b"", {})
    assert (await resolver.resolve("a.org")).targets == (Target("m.a.org", 1),)
    assert len(web.requests) == fetches + 3


async def test_transient_error_back_off_is_capped_at_an_hour():
    resolver, _, web, clock = make()
    web.answers["a.org"] = httpx.ConnectTimeout("slow")
    for _ in range(10):
        await resolver.resolve("a.org")
        clock.now += 3601
    assert len(web.requests) == 10


async def test_srv_answers_are_cached_by_ttl():
    dns = FakeDns(srv={"_matrix-fed._tcp.a.org": [SrvRecord(0, 0, 1, "x.a.org")]}, srv_ttl=300)
    resolver, dns, _, clock = make(dns)
    await resolver.resolve("a.org")
    await resolver.resolve("a.org")
    assert dns.lookups.count(("SRV", "_matrix-fed._tcp.a.org")) == 1
    clock.now += 7200  # past both caches
    await resolver.resolve("a.org")
    assert dns.lookups.count(("SRV", "_matrix-fed._tcp.a.org")) == 2


async def test_system_resolver_uses_the_hosts_file():
    from federation.client.discovery import SystemDnsResolver

    assert "127.0.0.1" in await SystemDnsResolver().addresses("localhost")


async def test_concurrent_resolves_share_one_well_known_fetch(autojump_clock):
    import trio

    fetches = []

    async def slow(request: httpx.Request) -> httpx.Response:
        fetches.append(request.url.host)
        await trio.sleep(1)
        return httpx.Response(200, json={"m.server": "m.a.org:9"})

    client = httpx.AsyncClient(transport=httpx.MockTransport(slow))
    resolver = ServerResolver(FakeDns(), HttpWellKnownFetcher(client), clock=ManualClock())
    results = []

    async def resolve() -> None:
        results.append(await resolver.resolve("a.org"))

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(resolve)
    assert fetches == ["a.org"]
    assert {r.targets for r in results} == {(Target("m.a.org", 9),)}
    assert len(results) == 5

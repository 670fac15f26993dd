"""The federation transport with fake DNS and httpx.MockTransport: the destination guard (no
connection to a refused address), routing to the checked address with Host and SNI, X-Matrix
signing, and the translation of every failure into the package's own errors."""

from __future__ import annotations

import httpx
import pytest
import trio

from federation.client.discovery import SrvRecord
from federation.client.errors import (
    DestinationBlocked,
    DestinationUnreachable,
    InvalidResponse,
    RemoteServerError,
)
from federation.client.transport import DestinationPolicy, FederationTransport
from federation.core.signing import SigningKey
from federation.core.xmatrix import parse_authorization, verify_request

from ._fakes import FakeDns

KEY = SigningKey.generate("t1")


class Remote:
    """Records requests; answers with ``respond`` (default: 200 {})."""

    def __init__(self, respond=None) -> None:
        self.requests: list[httpx.Request] = []
        self.respond = respond or (lambda request: httpx.Response(200, json={}))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.respond(request)


def transport(remote: Remote, dns: FakeDns | None = None, **kwargs) -> FederationTransport:
    return FederationTransport(
        server_name="origin.test",
        signing_key=KEY,
        dns=dns or FakeDns(),
        inner_transport=httpx.MockTransport(remote),
        **kwargs,
    )


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "::1",
        "::",
        "fe80::1",
        "fd00::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "2002:7f00:1::1",
        "192.0.2.1",
    ],
)
def test_policy_refuses_non_global_addresses(address):
    assert not DestinationPolicy().address_allowed(address)
    assert DestinationPolicy(allow_private_destinations=True).address_allowed(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700:4700::1111", "[2001:4860::8888]"])
def test_policy_allows_global_addresses(address):
    assert DestinationPolicy().address_allowed(address)


@pytest.mark.parametrize(
    "server_name",
    ["127.0.0.1", "127.0.0.1:8448", "[::1]:8448", "10.0.0.1:1", "[fe80::1]", "[::ffff:10.0.0.1]"],
)
async def test_ip_literal_to_private_address_is_blocked_without_connecting(server_name):
    remote = Remote()
    dns = FakeDns()
    t = transport(remote, dns)
    with pytest.raises(DestinationBlocked):
        await t.request(server_name, "GET", "/_matrix/federation/v1/version")
    assert remote.requests == [] and dns.lookups == []


async def test_name_resolving_to_loopback_is_blocked_after_dns():
    remote = Remote()
    dns = FakeDns(addresses={"evil.example": ["127.0.0.1"]})
    t = transport(remote, dns)
    with pytest.raises(DestinationBlocked):
        await t.request("evil.example:8448", "GET", "/_matrix/federation/v1/version")
    assert remote.requests == []
    assert ("A", "evil.example") in dns.lookups


async def test_srv_target_resolving_to_private_address_is_blocked():
    remote = Remote()
    dns = FakeDns(
        addresses={"internal.example": ["10.0.0.5", "fd12::5"]},
        srv={"_matrix-fed._tcp.example.org": [SrvRecord(0, 0, 8448, "internal.example")]},
    )
    t = transport(remote, dns)
    with pytest.raises(DestinationBlocked):
        await t.request("example.org", "GET", "/_matrix/federation/v1/version")
    # neither the .well-known web server (example.org does not resolve) nor the target
    assert remote.requests == []


async def test_well_known_on_loopback_is_not_fetched():
    remote = Remote()
    dns = FakeDns(addresses={"example.org": ["127.0.0.1", "8.8.8.8"], "ok.example": ["8.8.4.4"]})
    t = transport(remote, dns)
    await t.request("example.org", "GET", "/x")
    # the .well-known request went to the public address only, then 8448 of the same
    assert [(r.url.host, r.url.port) for r in remote.requests] == [
        ("8.8.8.8", None),
        ("8.8.8.8", 8448),
    ]


async def test_mixed_answer_connects_only_to_checked_address_with_host_and_sni():
    remote = Remote()
    dns = FakeDns(addresses={"example.org": ["127.0.0.1", "93.184.216.34"]})
    t = transport(remote, dns)
    await t.request("example.org:8448", "GET", "/_matrix/federation/v1/version")
    (request,) = remote.requests
    assert request.url.host == "93.184.216.34" and request.url.port == 8448
    assert request.headers["Host"] == "example.org:8448"
    assert request.extensions["sni_hostname"] == "example.org"


async def test_private_destinations_allowed_when_configured():
    remote = Remote()
    t = transport(remote, allow_private_destinations=True)
    assert await t.request("127.0.0.1:8448", "GET", "/_matrix/federation/v1/version") == {}
    (request,) = remote.requests
    assert request.url.host == "127.0.0.1"
    assert "sni_hostname" not in request.extensions
    assert request.headers["Host"] == "127.0.0.1:8448"


@pytest.mark.parametrize(
    ("allow", "deny", "name", "blocked"),
    [
        (None, ["bad.org"], "bad.org", True),
        (None, ["Bad.org"], "bad.org:8448", True),
        (None, ["bad.org:8448"], "bad.org:8449", False),
        (None, ["[::1]:8448"], "[::1]:8448", True),
        (None, ["bad.org"], "good.org", False),
        (["good.org"], [], "good.org", False),
        (["good.org"], [], "other.org", True),
        (["good.org"], [], "a.good.org", True),
        (["good.org"], ["good.org"], "good.org", True),
    ],
)
async def test_domain_allow_and_deny_lists(allow, deny, name, blocked):
    remote = Remote()
    dns = FakeDns(addresses={name.rsplit(":", 1)[0]: ["8.8.8.8"]})
    t = transport(remote, dns, domain_allowlist=allow, domain_denylist=deny)
    if blocked:
        with pytest.raises(DestinationBlocked):
            await t.request(name, "GET", "/x")
        assert remote.requests == [] and dns.lookups == []
    else:
        await t.request(name, "GET", "/x")


async def test_request_is_signed_with_x_matrix():
    remote = Remote()
    dns = FakeDns(addresses={"remote.example": ["8.8.8.8"]})
    t = transport(remote, dns)
    body = {"pdus": [], "edus": [{"edu_type": "m.typing", "content": {"a": "é"}}]}
    path = "/_matrix/federation/v1/send/t%2F1"
    await t.request("remote.example:443", "PUT", path, query={"a": "b c"}, content=body)
    (request,) = remote.requests
    uri = request.url.raw_path.decode()
    assert uri == path + "?a=b+c"
    auth = parse_authorization(request.headers["Authorization"])
    assert (auth.origin, auth.destination, auth.key_id) == (
        "origin.test",
        "remote.example:443",
        "ed25519:t1",
    )
    verify_request(auth, KEY.verify_key, "PUT", uri, "remote.example:443", body)
    assert request.headers["Content-Type"] == "application/json"


async def test_unsigned_request_has_no_authorization():
    remote = Remote()
    t = transport(remote, FakeDns(addresses={"r.example": ["8.8.8.8"]}))
    await t.request("r.example:1", "GET", "/_matrix/key/v2/server", signed=False)
    assert "Authorization" not in remote.requests[0].headers


async def test_remote_matrix_error_is_mapped():
    remote = Remote(lambda r: httpx.Response(403, json={"errcode": "M_FORBIDDEN", "error": "no"}))
    t = transport(remote, FakeDns(addresses={"r.example": ["8.8.8.8"]}))
    with pytest.raises(RemoteServerError) as info:
        await t.request("r.example:1", "GET", "/x")
    assert (info.value.status, info.value.errcode, info.value.error) == (403, "M_FORBIDDEN", "no")


@pytest.mark.parametrize("body", [b"<html>bad gateway</html>", b'{"errcode": 5}', b"[1]"])
async def test_remote_non_matrix_error_is_mapped(body):
    remote = Remote(lambda r: httpx.Response(502, content=body))
    t = transport(remote, FakeDns(addresses={"r.example": ["8.8.8.8"]}))
    with pytest.raises(RemoteServerError) as info:
        await t.request("r.example:1", "GET", "/x")
    assert info.value.status == 502 and info.value.errcode is None


@pytest.mark.parametrize("body", [b"not json", b"{", b"\xff\xfe", b'{"a": NaN}'])
async def test_invalid_json_answer(body):
    remote = Remote(lambda r: httpx.Response(200, content=body))
    t = transport(remote, FakeDns(addresses={"r.example": ["8.8.8.8"]}))
    with pytest.raises(InvalidResponse):
        await t.request("r.example:1", "GET", "/x")


async def test_oversized_answer_is_refused():
    remote = Remote(lambda r: httpx.Response(200, content=b"[" + b"1," * 1000 + b"1]"))
    t = transport(remote, FakeDns(addresses={"r.example": ["8.8.8.8"]}))
    with pytest.raises(InvalidResponse):
        await t.request("r.example:1", "GET", "/x", max_response_bytes=100)


@pytest.mark.parametrize(
    "exc",
    [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("bad")],
)
async def test_httpx_errors_become_unreachable(exc):
    def fail(request):
        raise exc

    t = transport(Remote(fail), FakeDns(addresses={"r.example": ["8.8.8.8"]}))
    with pytest.raises(DestinationUnreachable):
        await t.request("r.example:1", "GET", "/x")


async def test_dns_failure_is_unreachable():
    t = transport(Remote(), FakeDns())
    with pytest.raises(DestinationUnreachable):
        await t.request("nowhere.example:1", "GET", "/x")


async def test_next_address_and_next_srv_target_are_tried_on_connect_error():
    def respond(request):
        if request.url.host in ("8.8.8.8", "1.1.1.1"):
            raise httpx.ConnectError("refused")
        return httpx.Response(200, json={"ok": True})

    remote = Remote(respond)
    dns = FakeDns(
        addresses={"a.example": ["8.8.8.8"], "b.example": ["1.1.1.1", "9.9.9.9"]},
        srv={
            "_matrix-fed._tcp.example.org": [
                SrvRecord(1, 0, 1000, "a.example"),
                SrvRecord(2, 0, 2000, "b.example"),
            ]
        },
    )
    t = transport(remote, dns)
    assert await t.request("example.org", "GET", "/x") == {"ok": True}
    hits = [(r.url.host, r.url.port) for r in remote.requests if r.url.path == "/x"]
    assert hits == [("8.8.8.8", 1000), ("1.1.1.1", 2000), ("9.9.9.9", 2000)]
    last = remote.requests[-1]
    assert last.headers["Host"] == "example.org"
    assert last.extensions["sni_hostname"] == "example.org"  # not the SRV target


async def test_timeout_covers_the_whole_call(autojump_clock):
    async def slow(request):
        await trio.sleep(1000)
        return httpx.Response(200, json={})

    class Slow(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request):
            return await slow(request)

    t = FederationTransport(
        server_name="o.test",
        signing_key=KEY,
        dns=FakeDns(addresses={"r.example": ["8.8.8.8"]}),
        inner_transport=Slow(),
        request_timeout=5,
    )
    start = trio.current_time()
    with pytest.raises(DestinationUnreachable):
        await t.request("r.example:1", "GET", "/x")
    assert trio.current_time() - start == pytest.approx(5)
    with pytest.raises(DestinationUnreachable):
        await t.request("r.example:1", "GET", "/x", timeout=1)

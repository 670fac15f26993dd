"""The transport against a real TLS server on 127.0.0.1 with a certificate from a test CA:
the custom CA bundle is used and replaces the default store, SNI and Host follow the spec, the
X-Matrix signature verifies on the bytes the server received, and connections are reused."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import h11
import pytest
import trio
import trustme

from federation.client.errors import DestinationBlocked, DestinationUnreachable
from federation.client.transport import FederationTransport
from federation.core.canonicaljson import decode_json
from federation.core.signing import SigningKey
from federation.core.xmatrix import parse_authorization, verify_request

from ._fakes import FakeDns

KEY = SigningKey.generate("tls")


@dataclass
class Seen:
    sni: list[str | None] = field(default_factory=list)
    connections: int = 0
    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)


async def _serve_connection(stream: trio.SSLStream, seen: Seen) -> None:
    seen.connections += 1
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            request = None
            body = b""
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    conn.receive_data(data)
                    continue
                if isinstance(event, h11.Request):
                    request = event
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    return
            assert request is not None
            headers = {k.decode().lower(): v.decode() for k, v in request.headers}
            seen.requests.append((request.method.decode(), request.target.decode(), headers, body))
            payload = b'{"server": {"name": "test"}}'
            await stream.send_all(
                conn.send(
                    h11.Response(
                        status_code=200,
                        headers=[
                            ("Content-Type", "application/json"),
                            ("Content-Length", str(len(payload))),
                        ],
                    )
                )
            )
            await stream.send_all(conn.send(h11.Data(data=payload)))
            await stream.send_all(conn.send(h11.EndOfMessage()))
            conn.start_next_cycle()
    except (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError):
        return
    finally:
        await stream.aclose()


@pytest.fixture
async def tls_server(nursery) -> AsyncIterator:
    """Starts a TLS server with a leaf for ``names``; returns (port, seen)."""

    async def start(ca: trustme.CA, *names: str) -> tuple[int, Seen]:
        seen = Seen()
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(*names).configure_cert(ctx)

        def sni_callback(sock, server_name, context):
            seen.sni.append(server_name)

        ctx.sni_callback = sni_callback
        listeners = await nursery.start(
            trio.serve_ssl_over_tcp, lambda s: _serve_connection(s, seen), 0, ctx
        )
        port = listeners[0].transport_listener.socket.getsockname()[1]
        return port, seen

    yield start


@pytest.fixture
def ca(tmp_path):
    authority = trustme.CA()
    path = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(path))
    return authority, str(path)


def client(ca_path, dns=None) -> FederationTransport:
    return FederationTransport(
        server_name="origin.test",
        signing_key=KEY,
        ca_path=ca_path,
        allow_private_destinations=True,
        dns=dns or FakeDns(),
        request_timeout=10,
    )


async def test_ip_literal_no_sni_ip_certificate_and_signature(tls_server, ca):
    authority, ca_path = ca
    port, seen = await tls_server(authority, "127.0.0.1")
    t = client(ca_path)
    name = f"127.0.0.1:{port}"
    path = "/_matrix/federation/v1/send/txn%2F1"
    body = {"pdus": [], "origin": "origin.test"}
    assert await t.request(name, "PUT", path, query={"x": "é"}, content=body) == {
        "server": {"name": "test"}
    }
    assert await t.request(name, "GET", "/_matrix/federation/v1/version") == {
        "server": {"name": "test"}
    }
    await t.aclose()
    assert seen.sni == [None]  # no SNI for an IP address
    assert seen.connections == 1  # the second request reused the connection
    method, target, headers, raw = seen.requests[0]
    assert headers["host"] == name
    auth = parse_authorization(headers["authorization"])
    assert auth.destination == name and auth.origin == "origin.test"
    verify_request(auth, KEY.verify_key, method, target, name, decode_json(raw))


async def test_hostname_sends_sni_and_host(tls_server, ca):
    authority, ca_path = ca
    port, seen = await tls_server(authority, "fed.test")
    t = client(ca_path, FakeDns(addresses={"fed.test": ["127.0.0.1"]}))
    await t.request(f"fed.test:{port}", "GET", "/_matrix/federation/v1/version")
    await t.aclose()
    assert seen.sni == ["fed.test"]
    assert seen.requests[0][2]["host"] == f"fed.test:{port}"


async def test_certificate_for_another_name_is_refused(tls_server, ca):
    authority, ca_path = ca
    port, seen = await tls_server(authority, "other.test")
    t = client(ca_path, FakeDns(addresses={"fed.test": ["127.0.0.1"]}))
    with pytest.raises(DestinationUnreachable):
        await t.request(f"fed.test:{port}", "GET", "/_matrix/federation/v1/version")
    await t.aclose()
    assert seen.requests == []


async def test_custom_ca_replaces_the_default_store(tls_server, ca, tmp_path, monkeypatch):
    authority, ca_path = ca
    port, seen = await tls_server(authority, "127.0.0.1")
    # the server's CA is what OpenSSL's default paths would load ...
    monkeypatch.setenv("SSL_CERT_FILE", ca_path)
    other = tmp_path / "other.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    t = client(None)
    await t.request(f"127.0.0.1:{port}", "GET", "/_matrix/federation/v1/version")
    await t.aclose()
    assert len(seen.requests) == 1  # (the environment is effective without a bundle)
    # ... but a configured bundle replaces them
    t = client(str(other))
    with pytest.raises(DestinationUnreachable):
        await t.request(f"127.0.0.1:{port}", "GET", "/_matrix/federation/v1/version")
    await t.aclose()
    assert len(seen.requests) == 1


async def test_default_store_does_not_trust_a_private_ca(tls_server, ca):
    authority, _ = ca
    port, seen = await tls_server(authority, "127.0.0.1")
    t = client(None)
    with pytest.raises(DestinationUnreachable):
        await t.request(f"127.0.0.1:{port}", "GET", "/_matrix/federation/v1/version")
    await t.aclose()
    assert seen.requests == []


async def test_loopback_refused_by_default_before_connecting(tls_server, ca):
    authority, ca_path = ca
    port, seen = await tls_server(authority, "127.0.0.1")
    t = FederationTransport(server_name="o.test", signing_key=KEY, ca_path=ca_path)
    with pytest.raises(DestinationBlocked):
        await t.request(f"127.0.0.1:{port}", "GET", "/_matrix/federation/v1/version")
    await t.aclose()
    assert seen.connections == 0

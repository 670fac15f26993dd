"""Server keys and request authentication between our servers over TLS on loopback.

Server keys (our own, directly from another server, through a notary), X-Matrix requests
(accepted; wrong destination, bad signature, unknown key, denied origin refused), key rotation
with the CLI. The authenticated route used is ``PUT /_matrix/federation/v1/send/{txnId}`` with an
empty transaction.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
import trio

from federation.core.signing import SigningKey, verify_signed_json
from homeserver.__main__ import main
from homeserver.keys import load_or_create_signing_key
from homeserver.storage import Database
from homeserver.storage.server_keys import ServerKeyStore
from tests.integration.federation.conftest import FederatedServer, FederatedServerFactory

pytestmark = pytest.mark.usefixtures("nursery")

EMPTY_TXN = {"pdus": [], "edus": []}


def _txn_path() -> str:
    return f"/_matrix/federation/v1/send/{secrets.token_hex(4)}"


async def _cached_keys(server: FederatedServer, of: str) -> dict[str, str]:
    """What ``server`` has in its key cache about ``of``: key ID → where it came from."""
    async with Database.open(server.config.database_url, pool_size=1) as db:
        rows = await ServerKeyStore(db).keys_of(of)
    return {r.key_id: r.fetched_from for r in rows}


async def test_own_keys_and_version_over_tls(two_servers) -> None:
    a, _ = two_servers
    async with a.federation_client() as c:
        r = await c.get("/_matrix/key/v2/server")
        v = await c.get("/_matrix/federation/v1/version")
    assert r.status_code == 200, r.text
    body = r.json()
    key = a.signing_key
    assert body["server_name"] == a.server_name
    assert body["verify_keys"] == {key.key_id: {"key": key.verify_key.to_base64()}}
    assert body["old_verify_keys"] == {}
    verify_signed_json(body, a.server_name, key.verify_key)
    assert v.status_code == 200
    assert v.json()["server"]["name"] == "trio-homeserver"


async def test_notary_fetches_directly_from_the_origin(two_servers) -> None:
    a, b = two_servers
    async with a.federation_client() as c:
        r = await c.post("/_matrix/key/v2/query", json={"server_keys": {b.server_name: {}}})
        g = await c.get(f"/_matrix/key/v2/query/{b.server_name}")
    assert r.status_code == 200, r.text
    [answer] = r.json()["server_keys"]
    verify_signed_json(answer, b.server_name, b.signing_key.verify_key)
    verify_signed_json(answer, a.server_name, a.signing_key.verify_key)
    assert g.json()["server_keys"] == r.json()["server_keys"]
    assert await _cached_keys(a, b.server_name) == {b.signing_key.key_id: b.server_name}


async def test_signed_request_verifies(two_servers) -> None:
    a, b = two_servers
    r = await a.signed_request(b, "PUT", _txn_path(), EMPTY_TXN)
    assert r.status_code == 200, r.text
    # B fetched A's keys from A to check the signature
    assert await _cached_keys(b, a.server_name) == {a.signing_key.key_id: a.server_name}
    # the request target is signed exactly as sent: percent-encoding and query included
    path = _txn_path() + "?x=%2Fa&y=1"
    r = await a.signed_request(b, "PUT", path, EMPTY_TXN)
    assert r.status_code == 200, r.text
    header = await _header(a, b, "PUT", path.replace("%2F", "/"), EMPTY_TXN)
    async with b.federation_client() as c:
        r = await c.put(path, json=EMPTY_TXN, headers={"Authorization": header})
    assert (r.status_code, r.json()["errcode"]) == (401, "M_UNAUTHORIZED")


async def test_refused_requests(two_servers) -> None:
    a, b = two_servers
    path = _txn_path()
    # no header
    async with b.federation_client() as c:
        r = await c.put(path, json=EMPTY_TXN)
        assert (r.status_code, r.json()["errcode"]) == (401, "M_UNAUTHORIZED")
        r = await c.put(path, json=EMPTY_TXN, headers={"Authorization": "X-Matrix origin=x"})
        assert (r.status_code, r.json()["errcode"]) == (401, "M_UNAUTHORIZED")
    # signed for another destination
    r = await a.signed_request(b, "PUT", path, EMPTY_TXN, signed_destination="other.example")
    assert (r.status_code, r.json()["errcode"]) == (401, "M_UNAUTHORIZED")
    # bad signature: a key with A's key ID but another secret
    forged = SigningKey.generate(a.signing_key.version)
    r = await a.signed_request(b, "PUT", path, EMPTY_TXN, key=forged)
    assert (r.status_code, r.json()["errcode"]) == (401, "M_UNAUTHORIZED")
    # a body other than the one signed
    header = await _header(a, b, "PUT", path, {"pdus": [], "edus": [{"edu_type": "x"}]})
    async with b.federation_client() as c:
        r = await c.put(path, json=EMPTY_TXN, headers={"Authorization": header})
    assert (r.status_code, r.json()["errcode"]) == (401, "M_UNAUTHORIZED")
    # a key A does not have
    r = await a.signed_request(b, "PUT", path, EMPTY_TXN, key=SigningKey.generate("nope"))
    assert (r.status_code, r.json()["errcode"]) == (401, "M_UNAUTHORIZED")
    # an origin that cannot be reached
    r = await a.signed_request(b, "PUT", path, EMPTY_TXN, origin="127.0.0.1:1")
    assert (r.status_code, r.json()["errcode"]) == (401, "M_UNAUTHORIZED")


async def _header(a: FederatedServer, b: FederatedServer, method: str, path: str, body) -> str:
    from federation.core.xmatrix import sign_request

    return sign_request(a.signing_key, method, path, a.server_name, b.server_name, body)


async def test_denied_and_not_allowed_servers(
    federated_server_factory: FederatedServerFactory,
) -> None:
    a = await federated_server_factory()
    denying = await federated_server_factory(federation={"domain_denylist": [a.server_name]})
    allowing = await federated_server_factory(federation={"domain_allowlist": ["x.example"]})
    for b in (denying, allowing):
        r = await a.signed_request(b, "PUT", _txn_path(), EMPTY_TXN)
        assert (r.status_code, r.json()["errcode"]) == (403, "M_FORBIDDEN"), r.text
    assert await _cached_keys(denying, a.server_name) == {}
    disabled = await federated_server_factory(federation={"enabled": False})
    r = await a.signed_request(disabled, "PUT", _txn_path(), EMPTY_TXN)
    assert (r.status_code, r.json()["errcode"]) == (403, "M_FORBIDDEN")


async def test_keys_through_a_notary(federated_server_factory: FederatedServerFactory) -> None:
    notary = await federated_server_factory()
    a = await federated_server_factory(
        federation={"trusted_key_servers": [{"server_name": notary.server_name}]}
    )
    b = await federated_server_factory()
    r = await b.signed_request(a, "PUT", _txn_path(), EMPTY_TXN)
    assert r.status_code == 200, r.text
    # A learnt B's key from the notary (which fetched it from B), and the notary's own key
    # from the notary itself
    assert await _cached_keys(a, b.server_name) == {b.signing_key.key_id: notary.server_name}
    assert await _cached_keys(notary, b.server_name) == {b.signing_key.key_id: b.server_name}
    assert await _cached_keys(a, notary.server_name) == {
        notary.signing_key.key_id: notary.server_name
    }


async def test_rotation_publishes_the_old_key(
    federated_server_factory: FederatedServerFactory, tmp_path: Path
) -> None:
    key_file = tmp_path / "rotated" / "signing.key"
    old = load_or_create_signing_key(key_file, "unused")
    config_file = tmp_path / "rotated" / "homeserver.yaml"
    config_file.write_text("server_name: a.example\nsigning_key_path: signing.key\n")
    assert await trio.to_thread.run_sync(main, ["rotate-signing-key", "-c", str(config_file)]) == 0
    server = await federated_server_factory(signing_key_path=str(key_file))
    async with server.federation_client() as c:
        body = (await c.get("/_matrix/key/v2/server")).json()
    new = server.signing_key
    assert new.key_id != old.key_id
    assert set(body["verify_keys"]) == {new.key_id}
    assert body["old_verify_keys"][old.key_id]["key"] == old.verify_key.to_base64()
    assert isinstance(body["old_verify_keys"][old.key_id]["expired_ts"], int)
    verify_signed_json(body, server.server_name, new.verify_key)
    # another server sees the old key as old, through its notary API
    other = await federated_server_factory()
    async with other.federation_client() as c:
        r = await c.post(
            "/_matrix/key/v2/query",
            json={"server_keys": {server.server_name: {old.key_id: {}}}},
        )
    [answer] = r.json()["server_keys"]
    assert old.key_id in answer["old_verify_keys"]


async def test_fixture_servers_have_client_apis(two_servers) -> None:
    a, b = two_servers
    alice = await a.register("alice")
    bob = await b.register("bob")
    assert alice["user_id"] == f"@alice:{a.server_name}"
    assert bob["user_id"] == f"@bob:{b.server_name}"


async def test_listeners_serve_their_resources_only(two_servers) -> None:
    a, _ = two_servers
    async with a.client() as c:  # client listener: no federation resource
        r = await c.get("/_matrix/key/v2/server")
        assert (r.status_code, r.json()["errcode"]) == (404, "M_UNRECOGNIZED")
        assert (await c.get("/_matrix/federation/v1/version")).status_code == 404
    async with a.federation_client() as c:  # TLS federation listener: no client API
        r = await c.get("/_matrix/client/versions")
        assert (r.status_code, r.json()["errcode"]) == (404, "M_UNRECOGNIZED")

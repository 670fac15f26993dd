"""E2EE over real HTTP: keys, claims, cross-signing, signatures, key backup, to-device,
device-list changes; on SQLite and PostgreSQL. Keys are made and checked the way a client
does (tests/e2ee/_keys.py: pynacl over canonical JSON computed independently of the server).
"""

from __future__ import annotations

from typing import Any

import trio

from homeserver.storage import Database
from homeserver.storage.to_device import ToDeviceStore
from tests.e2ee._keys import ClientDevice, CrossSigning, sign, verifies

V3 = "/_matrix/client/v3"
ALG = "signed_curve25519"


def auth(user: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {user['access_token']}"}


async def post(server: Any, path: str, user: dict[str, Any], body: Any, status: int = 200) -> Any:
    async with server.client() as c:
        r = await c.post(V3 + path, json=body, headers=auth(user))
    assert r.status_code == status, r.text
    return r.json()


async def upload_device(server: Any, user: dict[str, Any], **body: Any) -> ClientDevice:
    device = ClientDevice(user["user_id"], user["device_id"])
    await post(server, "/keys/upload", user, {"device_keys": device.device_keys(), **body})
    return device


# --- /keys/upload, /keys/query, /keys/claim ------------------------------------------------------


async def test_uploaded_keys_come_back_verifiable_and_claimable(server):
    alice = await server.register("alice")
    bob = await server.register("bob")
    device = ClientDevice(alice["user_id"], alice["device_id"])
    answer = await post(
        server,
        "/keys/upload",
        alice,
        {
            "device_keys": device.device_keys(),
            "one_time_keys": device.one_time_keys(3),
            "fallback_keys": device.fallback_key(),
        },
    )
    assert answer == {"one_time_key_counts": {ALG: 3}}
    # no keys yet: the count is still reported for signed_curve25519
    assert (await post(server, "/keys/upload", bob, {})) == {"one_time_key_counts": {ALG: 0}}

    got = await post(server, "/keys/query", bob, {"device_keys": {alice["user_id"]: []}})
    keys = got["device_keys"][alice["user_id"]][alice["device_id"]]
    assert verifies(keys, alice["user_id"], device.key_id, device.ed25519_public)
    sent = device.device_keys()
    assert {k: v for k, v in keys.items() if k != "unsigned"} == sent
    assert isinstance(keys["unsigned"], dict)  # always there, as Synapse
    assert got["failures"] == {}
    # asking for a device without keys, or an unknown user, just finds nothing
    got = await post(
        server,
        "/keys/query",
        bob,
        {"device_keys": {alice["user_id"]: ["NOPE"], "@nobody:test.local": []}},
    )
    assert got["device_keys"][alice["user_id"]] == {}

    claimed = await post(
        server, "/keys/claim", bob, {"one_time_keys": {alice["user_id"]: {alice["device_id"]: ALG}}}
    )
    ((key_id, key),) = claimed["one_time_keys"][alice["user_id"]][alice["device_id"]].items()
    assert key_id.startswith(f"{ALG}:AAAA")
    assert verifies(key, alice["user_id"], device.key_id, device.ed25519_public)
    counts = await post(server, "/keys/upload", alice, {})
    assert counts["one_time_key_counts"][ALG] == 2


async def test_device_keys_are_stored_as_uploaded_without_checking_signatures(server):
    """As Synapse: the server checks the shape of device keys, not their self-signature
    (clients verify it), so placeholder keys as SyTest uploads them are stored and served."""
    alice = await server.register("alice")
    bob = await server.register("bob")
    user_id, device_id = alice["user_id"], alice["device_id"]
    placeholder = {
        "user_id": user_id,
        "device_id": device_id,
        "algorithms": ["m.olm.curve25519-aes-sha256", "m.megolm.v1.aes-sha"],
        "keys": {
            f"curve25519:{device_id}": "curve25519+key",
            f"ed25519:{device_id}": "ed+key",
            "ed25519:test": "named after no device",
        },
        "signatures": {user_id: {f"ed25519:{device_id}": "self+signature"}},
    }
    answer = await post(
        server,
        "/keys/upload",
        alice,
        {"device_keys": placeholder, "one_time_keys": {"my_algorithm:my_id_1": "KIhHVkAQi8r4"}},
    )
    assert answer["one_time_key_counts"]["my_algorithm"] == 1
    for wanted in ([], [device_id]):
        got = await post(server, "/keys/query", bob, {"device_keys": {user_id: wanted}})
        served = got["device_keys"][user_id][device_id]
        assert {k: v for k, v in served.items() if k != "unsigned"} == placeholder
        assert "device_display_name" not in served["unsigned"]
    # a signature by another key is stored all the same: clients will refuse it
    device = ClientDevice(user_id, device_id)
    unsigned = {k: v for k, v in device.device_keys().items() if k != "signatures"}
    forged = sign(unsigned, user_id, device.key_id, ClientDevice("x", "y").ed25519)
    await post(server, "/keys/upload", alice, {"device_keys": forged})
    got = await post(server, "/keys/query", bob, {"device_keys": {user_id: [device_id]}})
    served = got["device_keys"][user_id][device_id]
    assert served["signatures"] == forged["signatures"]
    assert not verifies(served, user_id, device.key_id, device.ed25519_public)


async def test_remote_users_are_reported_as_failures(server):
    alice = await server.register("alice")
    got = await post(
        server, "/keys/query", alice, {"device_keys": {"@carol:elsewhere.example": []}}
    )
    assert got["failures"]["elsewhere.example"]["status"] == 503
    got = await post(
        server, "/keys/claim", alice, {"one_time_keys": {"@carol:elsewhere.example": {"D": ALG}}}
    )
    assert "elsewhere.example" in got["failures"]


async def test_upload_bad_input(server):
    alice = await server.register("alice")
    bob = await server.register("bob")
    device = ClientDevice(alice["user_id"], alice["device_id"])

    async def upload(body: Any, status: int, errcode: str | None, user: Any = alice) -> None:
        async with server.client() as c:
            r = await c.post(V3 + "/keys/upload", json=body, headers=auth(user))
        assert (r.status_code, r.json()["errcode"]) == (status, errcode), r.text

    keys = device.device_keys()
    await upload({"device_keys": {**keys, "keys": "nope"}}, 400, "M_BAD_JSON")
    await upload({"device_keys": "nope"}, 400, "M_BAD_JSON")
    await upload({"one_time_keys": {"no_colon": "x"}}, 400, "M_BAD_JSON")
    await upload({"one_time_keys": {f"{ALG}:A": 1.5}}, 400, "M_BAD_JSON")
    await upload({"device_keys": {**keys, "signatures": []}}, 400, "M_BAD_JSON")
    await upload({"device_keys": {**keys, "algorithms": "x"}}, 400, "M_BAD_JSON")
    await upload({"device_keys": {**keys, "unsigned": 1}}, 400, "M_BAD_JSON")
    await upload({"device_keys": {**keys, "keys": {"ed25519": "k"}}}, 400, "M_BAD_JSON")
    await upload({"device_keys": {**keys, "keys": {"ed25519:X": 1}}}, 400, "M_BAD_JSON")
    await upload({"device_keys": {**keys, "device_id": "OTHER"}}, 400, "M_INVALID_PARAM")
    # alice's keys uploaded by bob: another user's device
    await upload({"device_keys": keys}, 400, "M_INVALID_PARAM", user=bob)
    # one-time key ID re-used with other content
    await post(server, "/keys/upload", alice, {"one_time_keys": {f"{ALG}:A": {"key": "one"}}})
    await post(server, "/keys/upload", alice, {"one_time_keys": {f"{ALG}:A": {"key": "one"}}})
    await upload({"one_time_keys": {f"{ALG}:A": {"key": "two"}}}, 400, "M_INVALID_PARAM")
    async with server.client() as c:
        r = await c.post(V3 + "/keys/upload", content=b"{nope", headers=auth(alice))
        assert r.json()["errcode"] == "M_NOT_JSON"
        r = await c.post(V3 + "/keys/upload", json={})
        assert r.status_code == 401
        for path, body in (
            ("/keys/query", {}),
            ("/keys/query", {"device_keys": {"@a:test.local": "D"}}),
            ("/keys/query", {"device_keys": {"not a user": []}}),
            ("/keys/claim", {"one_time_keys": {"@a:test.local": {"D": 5}}}),
            ("/keys/claim", {"one_time_keys": [], "timeout": "soon"}),
        ):
            r = await c.post(V3 + path, json=body, headers=auth(alice))
            assert r.status_code == 400, (path, body, r.text)
            assert r.json()["errcode"] in ("M_BAD_JSON", "M_MISSING_PARAM", "M_INVALID_PARAM")


async def test_concurrent_claims_never_return_the_same_key(server):
    alice = await server.register("alice")
    bob = await server.register("bob")
    device = await upload_device(
        server, alice, one_time_keys=ClientDevice("x", "y").one_time_keys(0)
    )
    await post(server, "/keys/upload", alice, {"one_time_keys": device.one_time_keys(8)})
    await post(server, "/keys/upload", alice, {"fallback_keys": device.fallback_key("FB")})
    results: list[str] = []

    async def claim() -> None:
        got = await post(
            server,
            "/keys/claim",
            bob,
            {"one_time_keys": {alice["user_id"]: {alice["device_id"]: ALG}}},
        )
        results.extend(got["one_time_keys"][alice["user_id"]][alice["device_id"]])

    async with trio.open_nursery() as nursery:
        for _ in range(12):
            nursery.start_soon(claim)
    one_time = [k for k in results if k != f"{ALG}:FB"]
    assert len(one_time) == 8 and len(set(one_time)) == 8
    assert results.count(f"{ALG}:FB") == 4


# --- cross-signing -------------------------------------------------------------------------------


async def test_cross_signing_upload_uia_and_visibility(server):
    alice = await server.register("alice")
    bob = await server.register("bob")
    cs = CrossSigning(alice["user_id"])
    await post(server, "/keys/device_signing/upload", alice, cs.upload_body())  # first: no UIA
    await post(server, "/keys/device_signing/upload", alice, cs.upload_body())  # same: no UIA
    new = CrossSigning(alice["user_id"])
    first = await post(server, "/keys/device_signing/upload", alice, new.upload_body(), status=401)
    assert first["flows"] and first["session"]
    body = {
        **new.upload_body(),
        "auth": {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "alice"},
            "password": "correct horse",
            "session": first["session"],
        },
    }
    await post(server, "/keys/device_signing/upload", alice, body)

    for viewer, sees_usk in ((alice, True), (bob, False)):
        got = await post(server, "/keys/query", viewer, {"device_keys": {alice["user_id"]: []}})
        assert got["master_keys"][alice["user_id"]] == new.key_object("master", new.master)
        assert alice["user_id"] in got["self_signing_keys"]
        assert (alice["user_id"] in got["user_signing_keys"]) is sees_usk


async def test_cross_signing_endpoints_under_the_unstable_prefix(server):
    """``/keys/device_signing/upload`` and ``/keys/signatures/upload`` are also served under
    ``/_matrix/client/unstable/`` (as Synapse; SyTest uses it), with the same rules."""
    alice = await server.register("alice")
    unstable = "/_matrix/client/unstable"
    cs = CrossSigning(alice["user_id"])
    async with server.client() as c:
        master_only = {"master_key": cs.upload_body()["master_key"]}
        r = await c.post(
            unstable + "/keys/device_signing/upload", json=master_only, headers=auth(alice)
        )
        assert r.status_code == 200 and r.json() == {}, r.text
        got = await post(server, "/keys/query", alice, {"device_keys": {alice["user_id"]: []}})
        assert got["master_keys"][alice["user_id"]] == master_only["master_key"]
        # replacing the master key needs user-interactive authentication here too
        other = CrossSigning(alice["user_id"])
        body = {"master_key": other.key_object("master", other.master)}
        r = await c.post(unstable + "/keys/device_signing/upload", json=body, headers=auth(alice))
        assert r.status_code == 401 and r.json()["flows"], r.text
        r = await c.post(unstable + "/keys/signatures/upload", json={}, headers=auth(alice))
        assert r.status_code == 200 and r.json() == {"failures": {}}, r.text
        r = await c.post(unstable + "/keys/signatures/upload", content=b"[]", headers=auth(alice))
        assert (r.status_code, r.json()["errcode"]) == (400, "M_BAD_JSON")


async def test_cross_signing_bad_input(server):
    alice = await server.register("alice")
    bob = await server.register("bob")
    cs, other = CrossSigning(alice["user_id"]), CrossSigning(alice["user_id"])

    async def upload(body: Any, status: int, errcode: str | None, user: Any = alice) -> None:
        async with server.client() as c:
            r = await c.post(V3 + "/keys/device_signing/upload", json=body, headers=auth(user))
        assert (r.status_code, r.json().get("errcode")) == (status, errcode), r.text

    body = cs.upload_body()
    await upload(
        {**body, "self_signing_key": other.key_object("self_signing", cs.self_signing)},
        400,
        "M_INVALID_SIGNATURE",
    )
    await upload({"self_signing_key": body["self_signing_key"]}, 400, "M_MISSING_PARAM")
    await upload(body, 400, "M_INVALID_PARAM", user=bob)  # alice's keys uploaded by bob
    await upload(
        {"master_key": {"user_id": alice["user_id"], "usage": ["master"], "keys": {}}},
        400,
        "M_BAD_JSON",
    )
    device_named = CrossSigning(alice["user_id"])
    async with server.client() as c:
        await c.put(V3 + "/devices/" + alice["device_id"], json={}, headers=auth(alice))
    # a public key equal to a device ID
    async with server.client() as c:
        r = await c.post(
            V3 + "/login",
            json={
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": "alice"},
                "password": "correct horse",
                "device_id": device_named.public(device_named.master),
            },
        )
        assert r.status_code == 200, r.text
    await upload(
        {"master_key": device_named.key_object("master", device_named.master)}, 403, "M_FORBIDDEN"
    )


async def test_signatures_upload(server):
    alice = await server.register("alice")
    bob = await server.register("bob")
    alice_dev = await upload_device(server, alice)
    bob_dev = await upload_device(server, bob)
    alice_cs, bob_cs = CrossSigning(alice["user_id"]), CrossSigning(bob["user_id"])
    await post(server, "/keys/device_signing/upload", alice, alice_cs.upload_body())
    await post(server, "/keys/device_signing/upload", bob, bob_cs.upload_body())
    ssk_id = alice_cs.key_id(alice_cs.self_signing)
    usk_id = alice_cs.key_id(alice_cs.user_signing)
    signed_device = sign(alice_dev.device_keys(), alice["user_id"], ssk_id, alice_cs.self_signing)
    signed_master = sign(
        alice_cs.key_object("master", alice_cs.master),
        alice["user_id"],
        alice_dev.key_id,
        alice_dev.ed25519,
    )
    signed_bob = sign(
        bob_cs.key_object("master", bob_cs.master), alice["user_id"], usk_id, alice_cs.user_signing
    )
    forged = sign(alice_dev.device_keys(), alice["user_id"], ssk_id, alice_cs.master)
    got = await post(
        server,
        "/keys/signatures/upload",
        alice,
        {
            alice["user_id"]: {
                alice["device_id"]: signed_device,
                alice_cs.public(alice_cs.master): signed_master,
            },
            bob["user_id"]: {
                bob_cs.public(bob_cs.master): signed_bob,
                bob["device_id"]: bob_dev.device_keys(),
            },
        },
    )
    assert got["failures"] == {
        bob["user_id"]: {
            bob["device_id"]: {
                "errcode": "M_NOT_FOUND",
                "error": got["failures"][bob["user_id"]][bob["device_id"]]["error"],
            }
        }
    }
    got = await post(
        server, "/keys/signatures/upload", alice, {alice["user_id"]: {alice["device_id"]: forged}}
    )
    assert got["failures"][alice["user_id"]][alice["device_id"]]["errcode"] == "M_INVALID_SIGNATURE"

    # bob sees alice's device signed by her self-signing key and her master key by her device
    seen = await post(
        server, "/keys/query", bob, {"device_keys": {alice["user_id"]: [], bob["user_id"]: []}}
    )
    device = seen["device_keys"][alice["user_id"]][alice["device_id"]]
    assert verifies(device, alice["user_id"], ssk_id, alice_cs.public(alice_cs.self_signing))
    assert verifies(device, alice["user_id"], alice_dev.key_id, alice_dev.ed25519_public)
    master = seen["master_keys"][alice["user_id"]]
    assert verifies(master, alice["user_id"], alice_dev.key_id, alice_dev.ed25519_public)
    # alice's user-signing signature on bob's master key is only for alice
    assert usk_id not in seen["master_keys"][bob["user_id"]].get("signatures", {}).get(
        alice["user_id"], {}
    )
    mine = await post(server, "/keys/query", alice, {"device_keys": {bob["user_id"]: []}})
    assert verifies(
        mine["master_keys"][bob["user_id"]],
        alice["user_id"],
        usk_id,
        alice_cs.public(alice_cs.user_signing),
    )


# --- key backup ----------------------------------------------------------------------------------


def backup_key(
    index: int = 0, verified: bool = False, forwarded: int = 0, data: str = "x"
) -> dict[str, Any]:
    return {
        "first_message_index": index,
        "forwarded_count": forwarded,
        "is_verified": verified,
        "session_data": {"ciphertext": data, "mac": "m", "ephemeral": "e"},
    }


async def test_key_backup(server):
    alice = await server.register("alice")
    bob = await server.register("bob")
    algorithm = "m.megolm_backup.v1.curve25519-aes-sha2"
    async with server.client() as c:
        h = auth(alice)
        r = await c.get(V3 + "/room_keys/version", headers=h)
        assert (r.status_code, r.json()["errcode"]) == (404, "M_NOT_FOUND")
        r = await c.post(
            V3 + "/room_keys/version",
            json={"algorithm": algorithm, "auth_data": {"public_key": "pk"}},
            headers=h,
        )
        assert r.status_code == 200 and r.json() == {"version": "1"}
        r = await c.get(V3 + "/room_keys/version", headers=h)
        assert r.json() == {
            "algorithm": algorithm,
            "auth_data": {"public_key": "pk"},
            "count": 0,
            "etag": r.json()["etag"],
            "version": "1",
        }
        # put all / room / session, with the replacement rules
        r = await c.put(
            V3 + "/room_keys/keys?version=1",
            headers=h,
            json={"rooms": {"!r:test.local": {"sessions": {"s/1+": backup_key(index=5)}}}},
        )
        assert r.status_code == 200 and r.json()["count"] == 1
        etag = r.json()["etag"]
        r = await c.put(
            V3 + "/room_keys/keys/!r:test.local?version=1",
            headers=h,
            json={"sessions": {"s/1+": backup_key(index=9, data="worse")}},
        )
        assert r.json() == {"etag": etag, "count": 1}
        r = await c.put(
            V3 + "/room_keys/keys/!r:test.local/s%2F1%2B?version=1",
            headers=h,
            json=backup_key(index=5, verified=True, data="verified"),
        )
        assert r.json()["etag"] != etag
        r = await c.put(
            V3 + "/room_keys/keys/!r:test.local/s2?version=1", headers=h, json=backup_key()
        )
        assert r.json()["count"] == 2
        r = await c.get(V3 + "/room_keys/keys/!r:test.local/s%2F1%2B?version=1", headers=h)
        assert r.json() == backup_key(index=5, verified=True, data="verified")
        r = await c.get(V3 + "/room_keys/keys?version=1", headers=h)
        assert set(r.json()["rooms"]["!r:test.local"]["sessions"]) == {"s/1+", "s2"}
        r = await c.get(V3 + "/room_keys/keys/!other:test.local?version=1", headers=h)
        assert r.json() == {"sessions": {}}
        r = await c.get(V3 + "/room_keys/keys/!r:test.local/none?version=1", headers=h)
        assert r.status_code == 404
        r = await c.delete(V3 + "/room_keys/keys/!r:test.local/s2?version=1", headers=h)
        assert r.json()["count"] == 1
        # update: only auth_data; algorithm and version must match
        r = await c.put(
            V3 + "/room_keys/version/1",
            headers=h,
            json={"algorithm": algorithm, "auth_data": {"public_key": "pk2"}, "version": "1"},
        )
        assert r.status_code == 200
        r = await c.put(
            V3 + "/room_keys/version/1", headers=h, json={"algorithm": "other", "auth_data": {}}
        )
        assert (r.status_code, r.json()["errcode"]) == (400, "M_INVALID_PARAM")
        r = await c.put(
            V3 + "/room_keys/version/1",
            headers=h,
            json={"algorithm": algorithm, "auth_data": {}, "version": "2"},
        )
        assert r.status_code == 400
        # a new version: the old one is no longer writable
        r = await c.post(
            V3 + "/room_keys/version", json={"algorithm": algorithm, "auth_data": {}}, headers=h
        )
        assert r.json() == {"version": "2"}
        r = await c.put(V3 + "/room_keys/keys?version=1", headers=h, json={"rooms": {}})
        assert (r.status_code, r.json()["errcode"], r.json()["current_version"]) == (
            403,
            "M_WRONG_ROOM_KEYS_VERSION",
            "2",
        )
        r = await c.get(V3 + "/room_keys/keys?version=1", headers=h)
        assert r.status_code == 200  # old versions stay readable
        # unknown versions, bad bodies, missing version
        for method, path, body in (
            ("GET", "/room_keys/version/99", None),
            ("GET", "/room_keys/version/abc", None),
            ("DELETE", "/room_keys/version/99", None),
            ("PUT", "/room_keys/version/99", {"algorithm": algorithm, "auth_data": {}}),
            ("GET", "/room_keys/keys?version=99", None),
            ("DELETE", "/room_keys/keys?version=99", None),
        ):
            r = await c.request(method, V3 + path, headers=h, json=body)
            assert (r.status_code, r.json()["errcode"]) == (404, "M_NOT_FOUND"), (method, path)
        r = await c.get(V3 + "/room_keys/keys", headers=h)
        assert r.json()["errcode"] == "M_MISSING_PARAM"
        r = await c.put(
            V3 + "/room_keys/keys?version=2",
            headers=h,
            json={"rooms": {"!r": {"sessions": {"s": {"is_verified": 1}}}}},
        )
        assert r.json()["errcode"] == "M_BAD_JSON"
        r = await c.post(V3 + "/room_keys/version", json={"algorithm": 5}, headers=h)
        assert r.json()["errcode"] == "M_BAD_JSON"
        # another user never sees alice's backup
        r = await c.get(V3 + "/room_keys/version/1", headers=auth(bob))
        assert r.status_code == 404
        r = await c.get(V3 + "/room_keys/keys?version=1", headers=auth(bob))
        assert r.status_code == 404
        # delete
        r = await c.delete(V3 + "/room_keys/version/2", headers=h)
        assert r.status_code == 200
        r = await c.get(V3 + "/room_keys/version", headers=h)
        assert r.json()["version"] == "1"


async def test_key_backup_keeps_opaque_auth_and_session_data_as_uploaded(server):
    """As Synapse: ``auth_data`` and ``session_data`` are the client's, stored and served
    whatever JSON value they are (SyTest uses strings); the body must still be an object."""
    alice = await server.register("alice")
    h = auth(alice)
    algorithm = "m.megolm_backup.v1"
    async with server.client() as c:
        versions = []
        for _ in range(11):
            r = await c.post(
                V3 + "/room_keys/version",
                json={"algorithm": algorithm, "auth_data": "anopaquestring"},
                headers=h,
            )
            assert r.status_code == 200, r.text
            versions.append(r.json()["version"])
        assert versions == [str(n) for n in range(1, 12)]
        r = await c.get(V3 + "/room_keys/version", headers=h)
        assert (r.json()["auth_data"], r.json()["version"]) == ("anopaquestring", "11")
        r = await c.put(
            V3 + "/room_keys/version/11",
            headers=h,
            json={"algorithm": algorithm, "auth_data": ["a", 1], "version": "11"},
        )
        assert r.status_code == 200, r.text
        r = await c.get(V3 + "/room_keys/version/11", headers=h)
        assert r.json()["auth_data"] == ["a", 1]
        # the body's version may be written as a number; another version is refused
        for version, status in ((11, 200), ("11", 200), (10, 400), ("x", 400), (True, 400)):
            r = await c.put(
                V3 + "/room_keys/version/11",
                headers=h,
                json={"algorithm": algorithm, "auth_data": "z", "version": version},
            )
            assert r.status_code == status, (version, r.text)
        session = {
            "first_message_index": 3,
            "forwarded_count": 0,
            "is_verified": False,
            "session_data": "anopaquestring",
        }
        r = await c.put(V3 + "/room_keys/keys/!abcd/1234?version=11", headers=h, json=session)
        assert r.status_code == 200, r.text
        r = await c.get(V3 + "/room_keys/keys/!abcd/1234?version=11", headers=h)
        assert r.json() == session
        for body in (
            {"algorithm": algorithm},
            {"algorithm": algorithm, "auth_data": {"x": 1.5}},
            {"auth_data": {}},
        ):
            r = await c.post(V3 + "/room_keys/version", json=body, headers=h)
            assert (r.status_code, r.json()["errcode"]) == (400, "M_BAD_JSON"), body
        r = await c.post(V3 + "/room_keys/version", content=b"[1]", headers=h)
        assert (r.status_code, r.json()["errcode"]) == (400, "M_BAD_JSON")
        bad_session = {k: v for k, v in session.items() if k != "session_data"}
        r = await c.put(V3 + "/room_keys/keys/!abcd/1234?version=11", headers=h, json=bad_session)
        assert (r.status_code, r.json()["errcode"]) == (400, "M_BAD_JSON")


# --- to-device -----------------------------------------------------------------------------------


async def pending(database_url: str, user_id: str, device_id: str) -> list[dict[str, Any]]:
    async with Database.open(database_url, pool_size=1) as db:
        messages, _ = await ToDeviceStore(db).messages(user_id, device_id, 0, 2**62, 1000)
    return messages


async def test_to_device_idempotent_star_bounded_and_dropped_with_device(
    homeserver_factory, database_url
):
    server = await homeserver_factory(e2ee={"to_device_queue_limit": 3})
    alice = await server.register("alice")
    bob = await server.register("bob")
    async with server.client() as c:
        r = await c.post(
            V3 + "/login",
            json={
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": "alice"},
                "password": "correct horse",
                "device_id": "SECOND",
            },
        )
        assert r.status_code == 200

        async def send(txn: str, messages: Any, event_type: str = "m.room_key_request") -> None:
            r = await c.put(
                f"{V3}/sendToDevice/{event_type}/{txn}",
                json={"messages": messages},
                headers=auth(bob),
            )
            assert r.status_code == 200, r.text

        await send("t1", {alice["user_id"]: {"*": {"n": 1}}})
        await send("t1", {alice["user_id"]: {"*": {"n": 1}}})  # retried: stored once
        await send("t2", {alice["user_id"]: {alice["device_id"]: {"n": 2}, "UNKNOWN": {"n": 0}}})
        await send("t3", {alice["user_id"]: {alice["device_id"]: {"n": 3}}})
        await send("t4", {alice["user_id"]: {alice["device_id"]: {"n": 4}, "SECOND": {"n": 4}}})
        first = await pending(database_url, alice["user_id"], alice["device_id"])
        assert [m["content"]["n"] for m in first] == [1, 2, 3]  # bounded at 3
        assert first[0] == {
            "type": "m.room_key_request",
            "sender": bob["user_id"],
            "content": {"n": 1},
        }
        second = await pending(database_url, alice["user_id"], "SECOND")
        assert [m["content"]["n"] for m in second] == [1, 4]
        # bad input
        body: Any
        for body in (
            {},
            {"messages": []},
            {"messages": {alice["user_id"]: {"D": "x"}}},
            {"messages": {"not-a-user": {"D": {}}}},
        ):
            r = await c.put(f"{V3}/sendToDevice/m.x/bad", json=body, headers=auth(bob))
            assert r.status_code == 400, body
        # deleting the device drops its queue
        r = await c.post(
            V3 + "/delete_devices",
            headers=auth(alice),
            json={
                "devices": ["SECOND"],
                "auth": {
                    "type": "m.login.password",
                    "password": "correct horse",
                    "identifier": {"type": "m.id.user", "user": "alice"},
                },
            },
        )
        if r.status_code == 401:
            r = await c.post(
                V3 + "/delete_devices",
                headers=auth(alice),
                json={
                    "devices": ["SECOND"],
                    "auth": {
                        "type": "m.login.password",
                        "password": "correct horse",
                        "session": r.json()["session"],
                        "identifier": {"type": "m.id.user", "user": "alice"},
                    },
                },
            )
        assert r.status_code == 200, r.text
    assert await pending(database_url, alice["user_id"], "SECOND") == []


async def test_to_device_rate_limit_per_sender(homeserver_factory):
    server = await homeserver_factory(
        rate_limits={"enabled": True, "registration": {"per_second": 1, "burst_count": 10}},
        e2ee={"to_device_rate_limit": {"per_second": 0.001, "burst_count": 2}},
    )
    alice = await server.register("alice")
    bob = await server.register("bob")
    async with server.client() as c:
        statuses = []
        for i in range(3):
            r = await c.put(
                f"{V3}/sendToDevice/m.x/t{i}",
                json={"messages": {alice["user_id"]: {"*": {}}}},
                headers=auth(bob),
            )
            statuses.append(r.status_code)
        assert statuses == [200, 200, 429]
        assert r.json()["errcode"] == "M_LIMIT_EXCEEDED"
        # another sender has its own budget
        r = await c.put(
            f"{V3}/sendToDevice/m.x/t0",
            json={"messages": {bob["user_id"]: {"*": {}}}},
            headers=auth(alice),
        )
        assert r.status_code == 200


# --- /keys/changes -------------------------------------------------------------------------------


async def sync_token(server: Any, user: dict[str, Any]) -> str:
    async with server.client() as c:
        r = await c.get(V3 + "/sync?timeout=0", headers=auth(user))
    assert r.status_code == 200, r.text
    token: str = r.json()["next_batch"]
    return token


async def changes(server: Any, user: dict[str, Any], since: str, to: str | None = None) -> Any:
    async with server.client() as c:
        params = {"from": since, **({"to": to} if to else {})}
        r = await c.get(V3 + "/keys/changes", params=params, headers=auth(user))
    assert r.status_code == 200, r.text
    return r.json()


async def test_keys_changes_follow_shared_rooms(server):
    alice = await server.register("alice")
    bob = await server.register("bob")
    carol = await server.register("carol")
    room = (await post(server, "/createRoom", alice, {}))["room_id"]
    await post(server, f"/rooms/{room}/invite", alice, {"user_id": bob["user_id"]})
    start = await sync_token(server, alice)
    await post(server, f"/rooms/{room}/join", bob, {})
    await upload_device(server, bob)
    await upload_device(server, carol)  # shares no room with alice
    got = await changes(server, alice, start)
    assert got == {"changed": [bob["user_id"]], "left": []}
    mid = await sync_token(server, alice)
    assert await changes(server, alice, mid) == {"changed": [], "left": []}
    await post(server, f"/rooms/{room}/leave", bob, {})
    got = await changes(server, alice, mid)
    assert got == {"changed": [], "left": [bob["user_id"]]}
    # cross-signing keys count as a device change
    cs = CrossSigning(alice["user_id"])
    before = await sync_token(server, alice)
    await post(server, "/keys/device_signing/upload", alice, cs.upload_body())
    assert alice["user_id"] in (await changes(server, alice, before))["changed"]
    async with server.client() as c:
        r = await c.get(V3 + "/keys/changes", headers=auth(alice))
        assert r.json()["errcode"] == "M_MISSING_PARAM"
        r = await c.get(V3 + "/keys/changes", params={"from": "garbage"}, headers=auth(alice))
        assert r.json()["errcode"] == "M_INVALID_PARAM"


async def test_a_new_user_signing_key_is_a_change_for_its_owner_only(server):
    """The user-signing key is shown to no one but its owner, so only the owner's devices are
    told it changed (as Synapse); a new master or self-signing key is everyone's news."""
    alice = await server.register("alice")
    bob = await server.register("bob")
    room = (await post(server, "/createRoom", alice, {"preset": "public_chat"}))["room_id"]
    await post(server, f"/rooms/{room}/join", bob, {})
    cs = CrossSigning(alice["user_id"])
    before = await sync_token(server, bob)
    await post(server, "/keys/device_signing/upload", alice, cs.upload_body())
    assert alice["user_id"] in (await changes(server, bob, before))["changed"]
    # a new user-signing key only (signed by the same master key), with UIA
    new = CrossSigning(alice["user_id"])
    new.master = cs.master
    body = {"user_signing_key": new.key_object("user_signing", new.user_signing)}
    mid_alice, mid_bob = await sync_token(server, alice), await sync_token(server, bob)
    first = await post(server, "/keys/device_signing/upload", alice, body, status=401)
    body["auth"] = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": "alice"},
        "password": "correct horse",
        "session": first["session"],
    }
    await post(server, "/keys/device_signing/upload", alice, body)
    assert alice["user_id"] in (await changes(server, alice, mid_alice))["changed"]
    assert alice["user_id"] not in (await changes(server, bob, mid_bob))["changed"]

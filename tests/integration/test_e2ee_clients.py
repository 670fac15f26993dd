"""A real client library's E2EE calls against the server: mautrix-python uploads, queries and
claims keys and uploads cross-signing keys and signatures, parsing every answer with its own
models. Olm itself (libolm) is not installed, so the device keys are made and signed as a
client makes them (pynacl, tests/e2ee/_keys.py) and checked byte-for-byte after the round trip.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import trio
from mautrix.api import HTTPAPI, Method
from mautrix.client.api import ClientAPI  # type: ignore[attr-defined]
from mautrix.types import CrossSigningKeys, CrossSigningUsage, EncryptionKeyAlgorithm

from tests.e2ee._keys import ClientDevice, CrossSigning, sign, verifies

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


async def in_asyncio(fn: Any) -> Any:
    return await trio.to_thread.run_sync(lambda: asyncio.run(fn()))


async def test_mautrix_keys_round_trip(server):
    alice = await server.register("alice")
    bob = await server.register("bob")
    device = ClientDevice(alice["user_id"], alice["device_id"])
    cs = CrossSigning(alice["user_id"])

    async def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        a_api = HTTPAPI(base_url=server.base_url, token=alice["access_token"])
        b_api = HTTPAPI(base_url=server.base_url, token=bob["access_token"])
        a, b = ClientAPI(api=a_api), ClientAPI(api=b_api)
        try:
            counts = await a.upload_keys(
                one_time_keys=device.one_time_keys(2), device_keys=device.device_keys()
            )
            out["counts"] = {str(k): v for k, v in counts.items()}
            await a.upload_cross_signing_keys(
                {
                    CrossSigningUsage(usage): CrossSigningKeys.deserialize(obj)  # type: ignore[arg-type]
                    for usage, obj in (
                        ("master", cs.key_object("master", cs.master)),
                        ("self_signing", cs.key_object("self_signing", cs.self_signing)),
                        ("user_signing", cs.key_object("user_signing", cs.user_signing)),
                    )
                }
            )
            signed = sign(
                device.device_keys(),
                alice["user_id"],
                cs.key_id(cs.self_signing),
                cs.self_signing,
            )
            answer = await a.api.request(
                Method.POST,
                "/_matrix/client/v3/keys/signatures/upload",
                {alice["user_id"]: {alice["device_id"]: signed}},
            )
            out["sig_failures"] = answer["failures"]
            query = await b.query_keys([alice["user_id"]])
            keys = query.device_keys[alice["user_id"]][alice["device_id"]]
            out["device"] = keys.serialize()
            out["master"] = query.master_keys[alice["user_id"]].serialize()
            out["usk_visible_to_bob"] = alice["user_id"] in (query.user_signing_keys or {})
            claim = await b.claim_keys(
                {alice["user_id"]: {alice["device_id"]: EncryptionKeyAlgorithm.SIGNED_CURVE25519}}
            )
            out["claimed"] = {
                str(k): v if isinstance(v, dict) else v.serialize()
                for k, v in claim.one_time_keys[alice["user_id"]][alice["device_id"]].items()
            }
        finally:
            await a_api.session.close()
            await b_api.session.close()
        return out

    out = await in_asyncio(scenario)
    assert out["counts"] == {"signed_curve25519": 2}
    assert out["sig_failures"] == {}
    # what the client library parsed still verifies with the device's own key and the
    # self-signing key (the server changed no signed byte)
    assert verifies(out["device"], alice["user_id"], device.key_id, device.ed25519_public)
    assert verifies(
        out["device"], alice["user_id"], cs.key_id(cs.self_signing), cs.public(cs.self_signing)
    )
    assert out["master"]["keys"] == {cs.key_id(cs.master): cs.public(cs.master)}
    assert out["usk_visible_to_bob"] is False
    ((key_id, key),) = out["claimed"].items()
    assert key_id.startswith("signed_curve25519:")
    assert verifies(key, alice["user_id"], device.key_id, device.ed25519_public)

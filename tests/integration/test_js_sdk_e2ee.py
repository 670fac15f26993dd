"""Two matrix-js-sdk 37.5.0 clients with real Olm/Megolm (Rust crypto, WebAssembly) talk
end-to-end encrypted through the server (issue 8), on SQLite and PostgreSQL.

``tests/js/e2ee.mjs`` registers alice and bob, starts both clients (``/sync``, key upload,
``/keys/query``, ``/keys/claim``, to-device), exchanges messages in a room with
``m.room.encryption``, verifies the two devices with SAS over to-device messages, bootstraps
cross-signing on both and verifies the two users with SAS in the room, then exchanges messages
again. This test checks what the clients decrypted and trusted, and then what the server kept:
the messages as ``m.room.encrypted`` ciphertext, and the plaintext nowhere in any table.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from homeserver.storage import Database
from homeserver.storage.db import Conn
from homeserver.storage.schema import metadata
from tests.integration.conftest import RunningServer
from tests.integration.js_sdk import requires_node, run_js

pytestmark = [requires_node, pytest.mark.slow]

V3 = "/_matrix/client/v3"
MEGOLM = "m.megolm.v1.aes-sha2"
# crypto-api enums of matrix-js-sdk 37.5.0
PHASE_DONE = 6
SHIELD_NONE = 0

#: Every table, read whole after the scenario (statements built once: the DB layer caches them).
_DUMPS = [(table.name, select(table)) for table in metadata.sorted_tables]

#: The only non-2xx answers the clients should get: the 401s opening the UIA of registration
#: and of replacing cross-signing keys, and "no key backup" (the SDK asks at start-up and after
#: cross-signing changes).
EXPECTED_HTTP_ERRORS = {
    ("POST", f"{V3}/register", 401, None),
    ("POST", f"{V3}/keys/device_signing/upload", 401, None),
    ("GET", f"{V3}/room_keys/version", 404, "M_NOT_FOUND"),
}


async def dump_database(database_url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, as the server stored it."""

    async def work(conn: Conn) -> dict[str, list[tuple[Any, ...]]]:
        return {name: await conn.fetch_all(stmt) for name, stmt in _DUMPS}

    async with Database.open(database_url, pool_size=1) as db:
        return await db.read(work, name="test_dump_all_tables")


def assert_decrypted(exchange: dict[str, Any], sender: str) -> None:
    received = exchange["received"]
    assert received["sender"] == sender
    # what travelled: a Megolm-encrypted event ...
    assert received["encrypted"] is True
    assert received["wireType"] == "m.room.encrypted"
    assert received["wireAlgorithm"] == MEGOLM
    assert received["wireHasCiphertext"] is True
    # ... that the other side's client decrypted to the very message sent
    assert received["type"] == "m.room.message"
    assert received["content"] == {"msgtype": "m.text", "body": exchange["sent"]}


def assert_sas_done(verification: dict[str, Any]) -> None:
    assert verification["match"] is True
    mine, theirs = verification["initiatorSas"], verification["responderSas"]
    assert mine == theirs
    assert len(mine["emoji"]) == 7
    assert len(mine["decimal"]) == 3 and all(1000 <= n <= 9191 for n in mine["decimal"])
    assert verification["phases"] == {"initiator": PHASE_DONE, "responder": PHASE_DONE}


async def test_js_sdk_olm_megolm_messages_and_sas_verification(server: RunningServer) -> None:
    out = await run_js("e2ee", server.base_url, "e2e", timeout=90)
    alice, bob = out["alice"], out["bob"]
    room_id = out["roomId"]
    assert alice["userId"] == "@alice-e2e:test.local" and bob["userId"] == "@bob-e2e:test.local"
    assert out["encryptionEnabled"] == {"alice": True, "bob": True}

    # 1. Messages both ways, decrypted by the other client, before and after verification.
    exchanges = out["messages"] + out["messagesAfterVerification"]
    assert len(exchanges) == 4
    for i, exchange in enumerate(exchanges):
        assert_decrypted(exchange, alice["userId"] if i % 2 == 0 else bob["userId"])
    # Once the users verified each other, their messages carry no warning shield.
    for exchange in out["messagesAfterVerification"]:
        assert exchange["received"]["shieldColour"] == SHIELD_NONE

    # 2. SAS between the devices over to-device messages: both devices locally verified.
    device_sas = out["deviceVerification"]
    assert_sas_done(device_sas)
    assert device_sas["roomId"] is None
    for status in out["deviceStatusAfterDeviceVerification"].values():
        assert status["isVerified"] is True and status["localVerified"] is True

    # 3. Cross-signing (the first upload of a user's keys needs no UIA: spec v1.11, POST
    # /keys/device_signing/upload), then SAS in the room.
    cross_signing = out["crossSigning"]
    assert cross_signing["aliceReady"] is True and cross_signing["bobReady"] is True
    assert cross_signing["uia"] == {"alice": [{"uia": False}], "bob": [{"uia": False}]}
    for status in out["userStatusBefore"].values():
        assert status["isCrossSigningVerified"] is False
    user_sas = out["userVerification"]
    assert_sas_done(user_sas)
    assert user_sas["roomId"] == room_id
    assert user_sas["initiatorSas"] != device_sas["initiatorSas"]
    for status in out["userStatusAfter"].values():
        assert status["isVerified"] is True and status["isCrossSigningVerified"] is True
        assert status["needsUserApproval"] is False
    for status in out["deviceStatusAfter"].values():
        assert status["crossSigningVerified"] is True and status["signedByOwner"] is True

    # Megolm room keys went device to device Olm-encrypted (one session per sender); the
    # to-device SAS messages themselves are plaintext by design.
    to_device = out["toDeviceTypesSent"]
    assert to_device.get("m.room.encrypted", 0) >= 2
    assert not {"m.room_key", "m.forwarded_room_key"} & set(to_device)
    assert to_device.get("m.key.verification.mac") == 2

    # 4. alice replaces her cross-signing keys: UIA with the password, and bob's client learns
    # of the new, unverified identity through the server (device_lists.changed, /keys/query).
    reset = out["crossSigningReset"]
    [answered] = reset["uia"]
    assert answered["uia"] is True and {"stages": ["m.login.password"]} in answered["flows"]
    assert reset["bobSeesAlice"]["isCrossSigningVerified"] is False
    assert reset["bobSeesAlice"]["wasCrossSigningVerified"] is True
    assert reset["bobSeesAlice"]["needsUserApproval"] is True

    # 5. The server answered every call the two clients made, except the expected refusals.
    errors = {(e["method"], e["path"], e["status"], e["errcode"]) for e in out["httpErrors"]}
    assert errors <= EXPECTED_HTTP_ERRORS, out["httpErrors"]

    # 6. What the server serves: the messages as the ciphertext the senders uploaded.
    message_ids = [exchange["received"]["eventId"] for exchange in exchanges]
    async with server.client() as c:
        r = await c.get(
            f"{V3}/rooms/{room_id}/messages",
            params={"dir": "b", "limit": "100"},
            headers={"Authorization": f"Bearer {bob['accessToken']}"},
        )
    assert r.status_code == 200, r.text
    served = {event["event_id"]: event for event in r.json()["chunk"]}
    for event_id in message_ids:
        assert served[event_id]["type"] == "m.room.encrypted"

    # 7. What the server stored: ciphertext only, and no plaintext anywhere.
    tables = await dump_database(server.config.database_url)
    columns = [c.name for c in metadata.tables["events"].columns]
    stored = {
        row[columns.index("event_id")]: (row[columns.index("type")], row[columns.index("json")])
        for row in tables["events"]
    }
    for event_id in message_ids:
        event_type, pdu_json = stored[event_id]
        assert event_type == "m.room.encrypted"
        content = json.loads(pdu_json)["content"]
        assert content["algorithm"] == MEGOLM
        assert isinstance(content["ciphertext"], str) and len(content["ciphertext"]) > 40
        assert content == served[event_id]["content"]
    encryption = [
        json.loads(pdu_json)["content"]
        for event_type, pdu_json in stored.values()
        if event_type == "m.room.encryption"
    ]
    assert encryption == [{"algorithm": MEGOLM}]
    # The only cleartext m.room.message is the in-room verification request (matrix-js-sdk's
    # Rust crypto sends in-room verification events unencrypted, even in encrypted rooms).
    cleartext = [
        json.loads(pdu_json)["content"]
        for event_type, pdu_json in stored.values()
        if event_type == "m.room.message"
    ]
    assert [content["msgtype"] for content in cleartext] == ["m.key.verification.request"]

    # each whole message, and its random last word (in case a store escaped the spaces)
    plaintexts = [exchange["sent"] for exchange in exchanges]
    plaintexts += [text.rsplit(" ", 1)[1] for text in plaintexts]
    rows_as_text = [(name, repr(row)) for name, rows in tables.items() for row in rows]
    # the search sees stored content: the first message's ciphertext is found the same way
    first_ciphertext = served[message_ids[0]]["content"]["ciphertext"]
    assert any(first_ciphertext in text for name, text in rows_as_text if name == "events")
    assert "to_device_messages" in tables and "e2e_room_keys" in tables
    for name, text in rows_as_text:
        for plaintext in plaintexts:
            assert plaintext not in text, f"plaintext stored in {name}: {text}"

"""matrix-js-sdk 37.5.0 (from npm, ``tests/js``) against a started server, over real HTTP.

Each test runs one scenario script with Node (``tests/integration/js_sdk.py``) and checks what
the SDK got back. They cover what works without ``/sync``: registration through the SDK's
generic interactive auth, password login in both forms the SDK sends, whoami, profile,
devices, logout, rooms, sending, state, ``/messages`` pagination and filters.
"""

from __future__ import annotations

import pytest

from tests.integration.js_sdk import JsScenarioFailed, requires_node, run_js, start_js

pytestmark = [requires_node, pytest.mark.slow]

SERVER_NAME = "test.local"


async def test_js_sdk_accounts(server):
    out = await run_js("account", server.base_url, "alice")
    user_id = f"@alice:{SERVER_NAME}"

    # InteractiveAuth: a first request without auth, then m.login.dummy in the server's session.
    register = out["register"]
    assert register["requests"][0] is None
    assert len(register["requests"]) == 2
    assert register["requests"][1]["type"] == "m.login.dummy"
    assert register["requests"][1]["session"]
    creds = register["response"]
    assert creds["user_id"] == user_id and creds["access_token"] and creds["device_id"]
    assert out["whoamiAfterRegister"] == {
        "user_id": user_id,
        "device_id": creds["device_id"],
        "is_guest": False,
    }
    assert out["registerAgain"]["errcode"] == "M_USER_IN_USE"
    assert out["registerAgain"]["httpStatus"] == 400

    login = out["login"]
    assert login["user_id"] == user_id and login["device_id"] != creds["device_id"]
    assert out["whoamiAfterLogin"]["device_id"] == login["device_id"]
    # loginWithPassword sends the deprecated top-level "user" (a full user ID here).
    assert out["legacyLogin"]["user_id"] == user_id
    assert out["legacyClientState"]["userId"] == user_id
    assert out["legacyClientState"]["hasToken"] is True
    assert out["wrongPassword"]["errcode"] == "M_FORBIDDEN"
    assert out["wrongPassword"]["httpStatus"] == 403

    assert out["profile"]["displayname"] == "Alice from js-sdk"
    assert out["displayname"] == {"displayname": "Alice from js-sdk"}

    devices = {d["device_id"]: d for d in out["devices"]["devices"]}
    assert set(devices) == {
        creds["device_id"],
        login["device_id"],
        out["legacyLogin"]["device_id"],
    }
    assert devices[creds["device_id"]]["display_name"] == "js-sdk register"
    assert devices[login["device_id"]]["display_name"] == "js-sdk login"
    assert out["device"]["display_name"] == "renamed by js-sdk"

    assert out["logout"] == {}
    assert out["whoamiAfterLogout"]["errcode"] == "M_UNKNOWN_TOKEN"
    assert out["whoamiAfterLogout"]["httpStatus"] == 401
    remaining = {d["device_id"] for d in out["devicesAfterLogout"]["devices"]}
    assert login["device_id"] not in remaining and creds["device_id"] in remaining


async def test_js_sdk_rooms_send_state_and_messages(server):
    out = await run_js("rooms", server.base_url, "roomie")
    user_id = out["userId"]
    assert out["roomId"].startswith("!")
    assert len(set(out["sent"])) == 4 and all(e.startswith("$") for e in out["sent"])
    assert out["idempotentTxn"] is True

    assert out["name"] == {"name": "js-sdk room"}
    assert out["topic"] == {"topic": "made by matrix-js-sdk"}
    assert out["create"]["room_version"]
    assert out["member"]["membership"] == "join"
    assert out["missingState"]["errcode"] == "M_NOT_FOUND"

    events = [e for page in out["pages"] for e in page["chunk"]]
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids)), "pagination returned an event twice"
    # Newest first: the four sent events, then the room's creation state, ending at m.room.create.
    assert ids[:4] == list(reversed(out["sent"]))
    assert [e["content"].get("body") for e in events[1:4]] == ["three", "two", "one"]
    assert events[-1]["type"] == "m.room.create"
    assert {e["sender"] for e in events} == {user_id}
    assert all(len(page["chunk"]) <= 2 for page in out["pages"])
    # Each page starts where the previous one ended.
    for before, after in zip(out["pages"], out["pages"][1:], strict=False):
        assert after["start"] == before["end"]
    assert out["forwardFromNewest"] == 0
    assert out["messagesUnknownRoom"]["httpStatus"] == 403


async def test_js_sdk_filters(server):
    out = await run_js("filters", server.base_url, "filterer")
    user_id = out["userId"]
    assert out["created"]["filterId"] and not out["created"]["filterId"].startswith("{")
    assert out["created"]["userId"] == user_id
    # GET gives back the definition as uploaded; the same upload gets the same ID.
    assert out["fetched"]["definition"] == out["definition"]
    assert out["fetched"]["timelineLimit"] == 7
    assert out["sameIdForSameFilter"] is True
    assert out["named"]["first"] == out["named"]["second"] == out["created"]["filterId"]
    assert out["unknown"]["errcode"] == "M_NOT_FOUND"
    assert out["unknown"]["httpStatus"] == 404
    assert out["bad"]["errcode"] == "M_INVALID_PARAM"
    assert out["bad"]["httpStatus"] == 400
    assert out["otherUser"]["errcode"] == "M_FORBIDDEN"
    assert out["otherUser"]["httpStatus"] == 403


async def test_js_harness_step_by_step(server):
    """start_js: the scenario keeps running while the test sends it work (as a /sync test will)."""
    creds = await server.register("stepper")
    async with start_js("interactive", server.base_url) as js:
        ready = await js.next_message()
        assert ready["ready"] is True and ready["versions"]
        for _ in range(2):
            await js.send({"whoami": creds})
            answer = await js.next_message()
            assert answer["whoami"]["user_id"] == creds["user_id"]
        await js.send(None)
        done = await js.next_message()
    assert done == {"ok": True, "result": {"answered": 2}}


async def test_js_harness_reports_failures(server):
    """A scenario that fails raises with the SDK's error, not a silent pass."""
    with pytest.raises(JsScenarioFailed, match="M_UNKNOWN_TOKEN"):
        await run_js("whoami", server.base_url, "not-a-token")


async def test_js_sdk_sync_loops_see_each_other(server):
    """Two clients with ``startClient`` running: invite, join, message, typing and a read
    receipt each reach the other client through its /sync loop."""
    out = await run_js("sync", server.base_url)
    assert out["invitedRoomName"] == "js sync room"
    assert out["messageBody"] == "hello from alice" and out["messageIdMatches"] is True
    assert out["members"] == [f"@jsalice:{SERVER_NAME}", f"@jsbob:{SERVER_NAME}"]
    assert out["sawTyping"] is True
    assert out["receiptEventId"] == out["sentEventId"]
    assert out["unreadAfterMessage"] == 1
    assert out["unreadAfterReceiptAndOneMore"] == 1

"""Push rules on the real server (``serve_homeserver``): over HTTP with ``/sync``, and through
matrix-js-sdk (whose ``startClient`` needs ``GET /pushrules/``) and matrix-nio."""

from __future__ import annotations

import asyncio
from typing import Any

import trio
import trio.testing
from nio import AsyncClient, PushRulesEvent, SyncResponse  # type: ignore[import-untyped]

from homeserver.services.push_ruleset import PushRuleset
from tests.integration.conftest import RunningServer
from tests.integration.js_sdk import requires_node, run_js

P = "/_matrix/client/v3/pushrules"
G = f"{P}/global"


def _push_rules_of(sync_body: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        e["content"]
        for e in sync_body.get("account_data", {}).get("events", [])
        if e["type"] == "m.push_rules"
    ]


async def test_push_rules_reach_sync(server: RunningServer) -> None:
    creds = await server.register("pushy")
    user_id = creds["user_id"]
    h = {"Authorization": f"Bearer {creds['access_token']}"}
    async with server.client() as c:
        r = await c.get(f"{P}/", headers=h)
        assert r.status_code == 200, r.text
        assert r.json() == {"global": PushRuleset.defaults(user_id).to_json()}

        first = (await c.get("/_matrix/client/v3/sync", headers=h)).json()
        r = await c.put(
            f"{G}/content/cake", headers=h, json={"pattern": "cake", "actions": ["notify"]}
        )
        assert r.status_code == 200, r.text
        params = {"since": first["next_batch"], "timeout": "0"}
        second = (await c.get("/_matrix/client/v3/sync", headers=h, params=params)).json()
        [content] = _push_rules_of(second)
        assert content == {"global": (await c.get(f"{G}/", headers=h)).json()}
        assert [x["rule_id"] for x in content["global"]["content"]] == ["cake"]

        # a long-polling /sync wakes for the change
        params = {"since": second["next_batch"], "timeout": "20000"}
        async with server.client() as other:
            async with trio.open_nursery() as nursery:
                results: list[dict[str, Any]] = []

                async def poll() -> None:
                    r = await other.get("/_matrix/client/v3/sync", headers=h, params=params)
                    results.append(r.json())

                nursery.start_soon(poll)
                await trio.testing.wait_all_tasks_blocked()
                with trio.fail_after(10):
                    await c.put(
                        f"{G}/override/.m.rule.master/enabled", headers=h, json={"enabled": True}
                    )
        [woken] = _push_rules_of(results[0])
        assert woken["global"]["override"][0]["enabled"] is True


async def test_matrix_nio_sees_push_rules_in_sync(server: RunningServer) -> None:
    creds = await server.register("niopush")
    async with server.client() as c:
        r = await c.put(
            f"{G}/override/tea",
            headers={"Authorization": f"Bearer {creds['access_token']}"},
            json={
                "conditions": [{"kind": "event_match", "key": "content.body", "pattern": "tea"}],
                "actions": ["notify", {"set_tweak": "sound", "value": "kettle"}],
            },
        )
        assert r.status_code == 200, r.text

    async def scenario() -> Any:
        client = AsyncClient(server.base_url, creds["user_id"], device_id=creds["device_id"])
        client.access_token = creds["access_token"]
        client.user_id = creds["user_id"]
        try:
            return await client.sync(timeout=0, full_state=True)
        finally:
            await client.close()

    response = await trio.to_thread.run_sync(lambda: asyncio.run(scenario()))
    assert isinstance(response, SyncResponse), response
    [event] = [e for e in response.account_data_events if isinstance(e, PushRulesEvent)]
    overrides = event.global_rules.override
    assert [r.id for r in overrides[:3]] == [".m.rule.master", "tea", ".m.rule.suppress_notices"]
    assert overrides[1].actions[1].value == "kettle"


@requires_node
async def test_js_sdk_push_rules(server: RunningServer) -> None:
    out = await run_js("push_rules", server.base_url, "jspush")
    raw = out["raw"]["global"]
    user_id = raw["override"][2]["conditions"][2]["pattern"]
    assert raw == PushRuleset.defaults(user_id).to_json()
    # startClient fetched the rules; the SDK keeps every rule we send, in our order
    ours = [r["rule_id"] for r in raw["override"]]
    assert [i for i in out["sdkOverride"] if i in ours] == ours
    ours = [r["rule_id"] for r in raw["underride"]]
    assert [i for i in out["sdkUnderride"] if i in ours] == ours
    # the change came to the running client through /sync
    assert [r["rule_id"] for r in out["syncedContent"]] == ["cake"]
    assert out["syncedContent"][0]["actions"][1] == {"set_tweak": "sound", "value": "cakealarm.wav"}
    assert [r["rule_id"] for r in out["clientContent"]] == ["cake"]
    edits = out["afterEdits"]
    assert edits["content"] == ["lie", "cake"]
    assert edits["master"]["enabled"] is True
    assert edits["message"]["actions"] == []
    assert edits["room"] == [
        {"rule_id": "!quiet:test.local", "default": False, "enabled": True, "actions": []}
    ]
    assert out["afterDelete"] == ["lie"]
    errors = out["errors"]
    assert (errors["reserved"]["httpStatus"], errors["reserved"]["errcode"]) == (
        400,
        "M_INVALID_PARAM",
    )
    assert (errors["unknownRule"]["httpStatus"], errors["unknownRule"]["errcode"]) == (
        404,
        "M_NOT_FOUND",
    )
    assert errors["unknownKind"]["errcode"] == "M_INVALID_PARAM"
    assert errors["noPattern"]["errcode"] == "M_MISSING_PARAM"

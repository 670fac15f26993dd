"""The push rules API over real sockets, and mautrix-python / matrix-nio calling it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, cast
from urllib.parse import quote

import httpx
import hypercorn.trio
import pytest
import trio
from hypercorn.config import Config as HypercornConfig
from mautrix.client import ClientAPI
from mautrix.errors import MNotFound
from mautrix.types import (
    PushActionDict,
    PushActionType,
    PushCondition,
    PushConditionKind,
    PushRuleKind,
    PushRuleScope,
)
from nio import (  # type: ignore[import-untyped]
    AsyncClient,
    PushAction,
    PushEventMatch,
    PushNotify,
    PushRulesEvent,
    PushSetTweak,
)
from nio import PushCondition as NioCondition  # type: ignore[import-untyped]
from nio.api import PushRuleKind as NioKind  # type: ignore[import-untyped]
from nio.responses import (  # type: ignore[import-untyped]
    DeletePushRuleResponse,
    EnablePushRuleResponse,
    SetPushRuleActionsResponse,
    SetPushRuleResponse,
)

from homeserver.api._http import ObservedApp, RequestGate, build_asgi_app
from homeserver.api.client.account_data import AccountDataApi
from homeserver.api.client.push_rules import PushRulesApi
from homeserver.api.metrics import HttpMetrics
from homeserver.clock import FakeClock
from homeserver.services.account_data import AccountDataService
from homeserver.services.passwords import PasswordHasher
from homeserver.services.push_rules import PushRulesService
from homeserver.services.push_ruleset import PushRuleset
from homeserver.streams import StreamName
from tests.homeserver.api._account_surface import MAX_BODY, Harness, TokenAuthenticator

P = "/_matrix/client/v3/pushrules"
G = f"{P}/global"


@asynccontextmanager
async def serve(db, stores) -> AsyncIterator[Harness]:
    """The push rules and account data APIs on 127.0.0.1:0."""
    apis = [
        PushRulesApi(PushRulesService(stores.account_data), MAX_BODY),
        AccountDataApi(AccountDataService(stores.account_data), MAX_BODY),
    ]
    app = build_asgi_app(
        apis, max_body_bytes=MAX_BODY, gate=RequestGate(TokenAuthenticator(db), None)
    )
    observed = ObservedApp(app, HttpMetrics(pool_usage=lambda: (0, 1)), ("*",))  # type: ignore[arg-type]
    hc = HypercornConfig()
    hc.bind = ["127.0.0.1:0"]
    hc.accesslog = None
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        urls = await nursery.start(
            partial(hypercorn.trio.serve, observed, hc, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
        )
        async with httpx.AsyncClient(base_url=urls[0], timeout=10) as client:
            yield Harness(
                client, db, stores, FakeClock(), PasswordHasher(time_cost=1, memory_cost=1024)
            )
        stop.set()


@pytest.fixture
async def hs(db, stores):
    async with serve(db, stores) as harness:
        yield harness


@pytest.fixture
async def alice(hs: Harness) -> tuple[str, dict[str, str]]:
    user_id = await hs.user("alice")
    return user_id, hs.auth(await hs.login(user_id))


def err(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, r.json().get("errcode")


async def test_ruleset_of_a_new_user(hs: Harness, alice) -> None:
    user_id, h = alice
    expected = PushRuleset.defaults(user_id).to_json()
    r = await hs.client.get(f"{P}/", headers=h)
    assert r.status_code == 200, r.text
    assert r.json() == {"global": expected}
    assert (await hs.client.get(f"{G}/", headers=h)).json() == expected
    for kind, rules in expected.items():
        assert (await hs.client.get(f"{G}/{kind}/", headers=h)).json() == rules
    master = (await hs.client.get(f"{G}/override/.m.rule.master", headers=h)).json()
    assert master == {
        "rule_id": ".m.rule.master",
        "default": True,
        "enabled": False,
        "conditions": [],
        "actions": [],
    }
    invite = (await hs.client.get(f"{G}/override/.m.rule.invite_for_me", headers=h)).json()
    assert invite["conditions"][2] == {
        "kind": "event_match",
        "key": "state_key",
        "pattern": user_id,
    }
    r = await hs.client.get(f"{G}/underride/.m.rule.message/actions", headers=h)
    assert r.json() == {"actions": ["notify"]}
    r = await hs.client.get(f"{G}/override/.m.rule.master/enabled", headers=h)
    assert r.json() == {"enabled": False}
    # access token in the query string works as well (nio sends it there)
    token = h["Authorization"].split()[1]
    assert (await hs.client.get(f"{P}/?access_token={token}")).status_code == 200


async def test_create_order_update_and_delete(hs: Harness, alice) -> None:
    user_id, h = alice
    c = hs.client
    start = await hs.stores.streams.current_position(StreamName.ACCOUNT_DATA)
    cake = {
        "pattern": "cake",
        "actions": ["notify", {"set_tweak": "sound", "value": "cakealarm.wav"}],
    }
    rule_id = "SSByZWFsbHkgbGlrZSBjYWtl"
    assert (await c.put(f"{G}/content/{rule_id}", headers=h, json=cake)).json() == {}
    lie = {"pattern": "cake*lie", "actions": ["notify"]}
    r = await c.put(f"{G}/content/nocake", headers=h, json=lie, params={"before": rule_id})
    assert r.status_code == 200, r.text
    r = await c.put(f"{G}/content/last", headers=h, json=lie, params={"after": rule_id})
    assert r.status_code == 200, r.text
    content = (await c.get(f"{G}/", headers=h)).json()["content"]
    assert [x["rule_id"] for x in content] == ["nocake", rule_id, "last"]
    assert (await c.get(f"{G}/content/nocake", headers=h)).json() == {
        "rule_id": "nocake",
        "default": False,
        "enabled": True,
        "pattern": "cake*lie",
        "actions": ["notify"],
    }

    # override rules go after .m.rule.master and before the other defaults
    beer = {
        "conditions": [
            {"kind": "event_match", "key": "content.body", "pattern": "beer"},
            {"kind": "room_member_count", "is": "<=10"},
        ],
        "actions": ["notify", {"set_tweak": "sound", "value": "beeroclock.wav"}],
    }
    assert (
        await c.put(f"{G}/override/U2VlIHlvdSBpbiBUaGUgRHVrZQ", headers=h, json=beer)
    ).json() == {}
    overrides = (await c.get(f"{G}/", headers=h)).json()["override"]
    assert [x["rule_id"] for x in overrides[:3]] == [
        ".m.rule.master",
        "U2VlIHlvdSBpbiBUaGUgRHVrZQ",
        ".m.rule.suppress_notices",
    ]
    assert overrides[1]["conditions"] == beer["conditions"]

    # room and sender rules, with the IDs URL-encoded as the spec's examples do
    room = "!dj234r78wl45Gh4D:matrix.org"
    assert (
        await c.put(f"{G}/room/%21dj234r78wl45Gh4D%3Amatrix.org", headers=h, json={"actions": []})
    ).status_code == 200
    assert (
        await c.put(
            f"{G}/sender/%40spambot%3Amatrix.org", headers=h, json={"actions": ["dont_notify"]}
        )
    ).status_code == 200
    ruleset = (await c.get(f"{G}/", headers=h)).json()
    assert ruleset["room"] == [{"rule_id": room, "default": False, "enabled": True, "actions": []}]
    # dont_notify is historical: kept as written (evaluation ignores it)
    assert ruleset["sender"][0]["actions"] == ["dont_notify"]

    # disable, then update: stays disabled and in place
    r = await c.put(f"{G}/content/nocake/enabled", headers=h, json={"enabled": False})
    assert r.json() == {}
    assert (
        await c.put(f"{G}/content/nocake", headers=h, json={"pattern": "pie", "actions": []})
    ).status_code == 200
    got = (await c.get(f"{G}/content/nocake", headers=h)).json()
    assert (got["enabled"], got["pattern"], got["actions"]) == (False, "pie", [])
    content = (await c.get(f"{G}/", headers=h)).json()["content"]
    assert [x["rule_id"] for x in content] == ["nocake", rule_id, "last"]

    assert (await c.delete(f"{G}/content/nocake", headers=h)).json() == {}
    assert err(await c.get(f"{G}/content/nocake", headers=h)) == (404, "M_NOT_FOUND")
    assert err(await c.delete(f"{G}/content/nocake", headers=h)) == (404, "M_NOT_FOUND")

    # what is stored is what GET shows, as the m.push_rules account data /sync delivers
    stored = (
        await c.get(f"/_matrix/client/v3/user/{user_id}/account_data/m.push_rules", headers=h)
    ).json()
    assert stored == {"global": (await c.get(f"{G}/", headers=h)).json()}
    assert await hs.stores.streams.current_position(StreamName.ACCOUNT_DATA) == start + 9


async def test_room_rules_named_otherwise_and_ordering(hs: Harness, alice) -> None:
    """Room and sender rule IDs need not be room and user IDs (as Synapse; SyTest uses aliases),
    new rules go first, ``before``/``after`` place them, and they can be disabled and deleted."""
    _, h = alice
    c = hs.client
    for rule_id in ("%23a:example.com", "%23b:example.com"):
        r = await c.put(f"{G}/room/{rule_id}", headers=h, json={"actions": ["notify"]})
        assert r.status_code == 200, r.text
    r = await c.put(
        f"{G}/room/%23c:example.com",
        headers=h,
        json={"actions": ["dont_notify"]},
        params={"before": "#a:example.com"},
    )
    assert r.status_code == 200, r.text
    r = await c.put(
        f"{G}/room/%23d:example.com",
        headers=h,
        json={"actions": ["coalesce"]},
        params={"after": "#b:example.com"},
    )
    assert r.status_code == 200, r.text
    rooms = (await c.get(f"{G}/room/", headers=h)).json()
    assert [x["rule_id"] for x in rooms] == [
        "#b:example.com",
        "#d:example.com",
        "#c:example.com",
        "#a:example.com",
    ]
    assert (await c.get(f"{G}/room/%23c:example.com/actions", headers=h)).json() == {
        "actions": ["dont_notify"]
    }
    assert (await c.get(f"{G}/room/%23a:example.com/enabled", headers=h)).json() == {
        "enabled": True
    }
    r = await c.put(f"{G}/room/%23a:example.com/enabled", headers=h, json={"enabled": False})
    assert r.status_code == 200, r.text
    assert (await c.get(f"{G}/room/%23a:example.com", headers=h)).json() == {
        "rule_id": "#a:example.com",
        "default": False,
        "enabled": False,
        "actions": ["notify"],
    }
    r = await c.put(f"{G}/sender/bob", headers=h, json={"actions": ["notify"]})
    assert r.status_code == 200, r.text
    assert (await c.delete(f"{G}/room/%23b:example.com", headers=h)).json() == {}
    assert [x["rule_id"] for x in (await c.get(f"{G}/", headers=h)).json()["room"]] == [
        "#d:example.com",
        "#c:example.com",
        "#a:example.com",
    ]
    assert (await c.get(f"{G}/sender/", headers=h)).json()[0]["rule_id"] == "bob"
    # every default rule takes dont_notify as its actions, and shows it back
    ruleset = (await c.get(f"{G}/", headers=h)).json()
    for kind, rules in ruleset.items():
        for rule in rules:
            path = f"{G}/{kind}/{quote(rule['rule_id'], safe='')}/actions"
            r = await c.put(path, headers=h, json={"actions": ["dont_notify"]})
            assert r.status_code == 200, (path, r.text)
            assert (await c.get(path, headers=h)).json() == {"actions": ["dont_notify"]}


async def test_default_rules_enabled_and_actions(hs: Harness, alice) -> None:
    _, h = alice
    c = hs.client
    assert (
        await c.put(f"{G}/override/.m.rule.master/enabled", headers=h, json={"enabled": True})
    ).json() == {}
    assert (await c.get(f"{G}/override/.m.rule.master/enabled", headers=h)).json() == {
        "enabled": True
    }
    actions = ["notify", {"set_tweak": "highlight"}]
    r = await c.put(f"{G}/underride/.m.rule.message/actions", headers=h, json={"actions": actions})
    assert r.json() == {}
    assert (await c.get(f"{G}/underride/.m.rule.message/actions", headers=h)).json() == {
        "actions": actions
    }
    rule = (await c.get(f"{G}/underride/.m.rule.message", headers=h)).json()
    assert (rule["default"], rule["enabled"], rule["actions"]) == (True, True, actions)
    assert (await c.get(f"{G}/", headers=h)).json()["override"][0]["enabled"] is True
    # user rules too
    await c.put(f"{G}/sender/@bob:test.local", headers=h, json={"actions": ["notify"]})
    await c.put(f"{G}/sender/@bob:test.local/actions", headers=h, json={"actions": []})
    await c.put(f"{G}/sender/@bob:test.local/enabled", headers=h, json={"enabled": False})
    got = (await c.get(f"{G}/sender/@bob:test.local", headers=h)).json()
    assert (got["actions"], got["enabled"]) == ([], False)


async def test_errors(hs: Harness, alice) -> None:
    user_id, h = alice
    c = hs.client
    await c.put(f"{G}/content/mine", headers=h, json={"pattern": "x", "actions": []})
    start = await hs.stores.streams.current_position(StreamName.ACCOUNT_DATA)
    ok_body = {"actions": ["notify"]}
    cases: list[tuple[str, str, Any, tuple[int, str]]] = [
        # unknown rules
        ("GET", f"{G}/override/nope", None, (404, "M_NOT_FOUND")),
        ("GET", f"{G}/content/.m.rule.master", None, (404, "M_NOT_FOUND")),
        ("GET", f"{G}/override/nope/enabled", None, (404, "M_NOT_FOUND")),
        ("GET", f"{G}/override/nope/actions", None, (404, "M_NOT_FOUND")),
        ("PUT", f"{G}/override/nope/enabled", {"enabled": True}, (404, "M_NOT_FOUND")),
        ("PUT", f"{G}/override/nope/actions", ok_body, (404, "M_NOT_FOUND")),
        ("DELETE", f"{G}/override/nope", None, (404, "M_NOT_FOUND")),
        ("DELETE", f"{G}/override/.m.rule.master", None, (404, "M_NOT_FOUND")),
        # unknown kinds
        ("GET", f"{G}/device/x", None, (400, "M_INVALID_PARAM")),
        ("PUT", f"{G}/device/x", ok_body, (400, "M_INVALID_PARAM")),
        ("DELETE", f"{G}/device/x", None, (400, "M_INVALID_PARAM")),
        ("GET", f"{G}/device/x/enabled", None, (400, "M_INVALID_PARAM")),
        ("PUT", f"{G}/device/x/enabled", {"enabled": True}, (400, "M_INVALID_PARAM")),
        ("GET", f"{G}/device/x/actions", None, (400, "M_INVALID_PARAM")),
        ("PUT", f"{G}/device/x/actions", ok_body, (400, "M_INVALID_PARAM")),
        # reserved and malformed rule IDs
        ("PUT", f"{G}/override/.m.rule.master", ok_body, (400, "M_INVALID_PARAM")),
        ("PUT", f"{G}/override/.mine", ok_body, (400, "M_INVALID_PARAM")),
        ("PUT", f"{G}/override/a%5Cb", ok_body, (400, "M_INVALID_PARAM")),
        ("PUT", f"{G}/override/a%2Fb", ok_body, (400, "M_INVALID_PARAM")),
        ("PUT", f"{G}/override/a/b", ok_body, (400, "M_UNRECOGNIZED")),
        ("GET", f"{G}/override/a/b", None, (404, "M_NOT_FOUND")),
        # before/after
        (
            "PUT",
            f"{G}/content/new?before=nope",
            {"pattern": "x", "actions": []},
            (400, "M_UNKNOWN"),
        ),
        ("PUT", f"{G}/content/new?after=nope", {"pattern": "x", "actions": []}, (400, "M_UNKNOWN")),
        ("PUT", f"{G}/override/new?before=.m.rule.master", ok_body, (400, "M_UNKNOWN")),
        ("PUT", f"{G}/override/new?after=mine", ok_body, (400, "M_UNKNOWN")),
        # bodies
        ("PUT", f"{G}/override/new", b"{not json", (400, "M_NOT_JSON")),
        ("PUT", f"{G}/override/new", b"", (400, "M_NOT_JSON")),
        ("PUT", f"{G}/override/new", [], (400, "M_BAD_JSON")),
        ("PUT", f"{G}/override/new", {}, (400, "M_MISSING_PARAM")),
        ("PUT", f"{G}/override/new", {"actions": "notify"}, (400, "M_BAD_JSON")),
        ("PUT", f"{G}/override/new", {"actions": ["sing"]}, (400, "M_INVALID_PARAM")),
        ("PUT", f"{G}/override/new", {"actions": [], "conditions": {}}, (400, "M_BAD_JSON")),
        (
            "PUT",
            f"{G}/override/new",
            {"actions": [], "conditions": [{"key": "x"}]},
            (400, "M_BAD_JSON"),
        ),
        (
            "PUT",
            f"{G}/underride/new",
            {"actions": [], "conditions": [{"kind": "room_member_count", "is": "~2"}]},
            (400, "M_INVALID_PARAM"),
        ),
        ("PUT", f"{G}/content/new", {"actions": []}, (400, "M_MISSING_PARAM")),
        ("PUT", f"{G}/content/new", {"actions": [], "pattern": 1}, (400, "M_BAD_JSON")),
        ("PUT", f"{G}/content/mine/enabled", {}, (400, "M_MISSING_PARAM")),
        ("PUT", f"{G}/content/mine/enabled", {"enabled": "true"}, (400, "M_BAD_JSON")),
        ("PUT", f"{G}/content/mine/enabled", b"nope", (400, "M_NOT_JSON")),
        ("PUT", f"{G}/content/mine/actions", {}, (400, "M_MISSING_PARAM")),
        ("PUT", f"{G}/content/mine/actions", {"actions": [{"value": 1}]}, (400, "M_BAD_JSON")),
        # other scopes do not exist
        ("GET", f"{P}/device/", None, (400, "M_INVALID_PARAM")),
        ("PUT", f"{P}/device/room/x", ok_body, (400, "M_INVALID_PARAM")),
        ("DELETE", f"{P}/device/room/x", None, (400, "M_INVALID_PARAM")),
        # malformed paths: no slash, missing parts, unknown attributes
        ("GET", P, None, (404, "M_UNRECOGNIZED")),
        ("GET", G, None, (400, "M_UNRECOGNIZED")),
        ("GET", f"{G}/room", None, (400, "M_UNRECOGNIZED")),
        ("GET", f"{G}/nokind/", None, (400, "M_INVALID_PARAM")),
        ("GET", f"{G}/override/.m.rule.master/pattern", None, (400, "M_UNRECOGNIZED")),
        ("GET", f"{G}/override/.m.rule.master/enabled/x", None, (400, "M_UNRECOGNIZED")),
        ("PUT", f"{P}/", ok_body, (400, "M_UNRECOGNIZED")),
        ("PUT", G, ok_body, (400, "M_UNRECOGNIZED")),
        ("PUT", f"{G}/room", ok_body, (400, "M_UNRECOGNIZED")),
        ("PUT", f"{G}/room/", ok_body, (400, "M_UNRECOGNIZED")),
        ("PUT", f"{G}/nokind/x", ok_body, (400, "M_INVALID_PARAM")),
        (
            "PUT",
            f"{G}/override/.m.rule.master/not_an_attr",
            {"enabled": True},
            (400, "M_UNRECOGNIZED"),
        ),
        ("PUT", f"{G}/override/.m.rule.master/enabled", {"enabled": "no"}, (400, "M_BAD_JSON")),
        ("PUT", f"{G}/room/%FF", ok_body, (400, "M_INVALID_PARAM")),
        ("DELETE", f"{P}/", None, (400, "M_UNRECOGNIZED")),
        ("DELETE", f"{G}/room/", None, (400, "M_UNRECOGNIZED")),
        ("DELETE", f"{G}/content/mine/enabled", None, (400, "M_UNRECOGNIZED")),
    ]
    for method, path, body, expected in cases:
        kwargs: dict[str, Any] = {"headers": h}
        if isinstance(body, bytes):
            kwargs["content"] = body
        elif body is not None:
            kwargs["json"] = body
        r = await c.request(method, path, **kwargs)
        assert err(r) == expected, (method, path, body, r.text)
    # nothing was written by any of them
    assert await hs.stores.streams.current_position(StreamName.ACCOUNT_DATA) == start
    # clients cannot write m.push_rules as account data
    r = await c.put(
        f"/_matrix/client/v3/user/{user_id}/account_data/m.push_rules",
        headers=h,
        json={"global": {}},
    )
    assert err(r) == (405, "M_BAD_JSON")
    # no token
    assert err(await c.get(f"{P}/")) == (401, "M_MISSING_TOKEN")
    assert err(await c.put(f"{G}/content/x", json={"pattern": "x", "actions": []})) == (
        401,
        "M_MISSING_TOKEN",
    )


async def test_users_see_only_their_own_rules(hs: Harness, alice) -> None:
    _, h = alice
    bob = await hs.user("bob")
    bob_h = hs.auth(await hs.login(bob))
    await hs.client.put(f"{G}/content/alices", headers=h, json={"pattern": "x", "actions": []})
    assert (await hs.client.get(f"{G}/", headers=bob_h)).json()["content"] == []
    assert err(await hs.client.get(f"{G}/content/alices", headers=bob_h)) == (404, "M_NOT_FOUND")
    bob_invite = (await hs.client.get(f"{G}/override/.m.rule.invite_for_me", headers=bob_h)).json()
    assert bob_invite["conditions"][2]["pattern"] == bob


# --- client libraries (each runs its own asyncio loop in a worker thread) ------------------------


async def in_asyncio(fn: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return await trio.to_thread.run_sync(lambda: asyncio.run(fn()))


async def test_mautrix_reads_and_writes_push_rules(hs: Harness, alice) -> None:
    user_id, h = alice
    base_url, token = str(hs.client.base_url), h["Authorization"].split()[1]
    # mautrix's ExtensibleEnum members read as plain str to mypy
    g, o, c, u, notify, match_kind = cast(
        tuple[Any, ...],
        (
            PushRuleScope.GLOBAL,
            PushRuleKind.OVERRIDE,
            PushRuleKind.CONTENT,
            PushRuleKind.UNDERRIDE,
            PushActionType.NOTIFY,
            PushConditionKind.EVENT_MATCH,
        ),
    )

    async def scenario() -> dict[str, Any]:
        client = ClientAPI(user_id, base_url=base_url, token=token)
        try:
            out: dict[str, Any] = {}
            out["master"] = await client.get_push_rule(g, o, ".m.rule.master")
            out["message"] = await client.get_push_rule(g, u, ".m.rule.message")
            sound = PushActionDict(set_tweak="sound", value="beer.wav")
            match = PushCondition(kind=match_kind, key="content.body", pattern="beer")
            await client.set_push_rule(g, o, "beer", actions=[notify, sound], conditions=[match])
            await client.set_push_rule(g, c, "cake", actions=[], pattern="cake")
            await client.set_push_rule(g, c, "pie", actions=[], pattern="pie", after="cake")
            out["beer"] = await client.get_push_rule(g, o, "beer")
            await client.remove_push_rule(g, c, "cake")
            try:
                await client.get_push_rule(g, c, "cake")
            except MNotFound:
                out["removed"] = True
            return out
        finally:
            await client.api.session.close()

    out = await in_asyncio(scenario)
    master, message, beer = out["master"], out["message"], out["beer"]
    assert (master.rule_id, master.default, master.enabled) == (".m.rule.master", True, False)
    assert message.actions == [PushActionType.NOTIFY]
    assert beer.conditions[0].pattern == "beer"
    assert beer.actions[1].value == "beer.wav"
    assert out["removed"] is True
    content = (await hs.client.get(f"{G}/", headers=h)).json()["content"]
    assert [x["rule_id"] for x in content] == ["pie"]


async def test_matrix_nio_edits_push_rules_and_parses_the_ruleset(hs: Harness, alice) -> None:
    user_id, h = alice
    base_url, token = str(hs.client.base_url), h["Authorization"].split()[1]

    async def scenario() -> list[Any]:
        client = AsyncClient(base_url, user_id)
        client.access_token = token
        client.user_id = user_id
        try:
            conditions: list[NioCondition] = [PushEventMatch("content.body", "tea")]
            actions: list[PushAction] = [PushNotify(), PushSetTweak("sound", "kettle")]
            return [
                await client.set_pushrule(
                    "global", NioKind.override, "tea", actions=actions, conditions=conditions
                ),
                await client.set_pushrule(
                    "global", NioKind.override, "time", before="tea", actions=[PushNotify()]
                ),
                await client.enable_pushrule("global", NioKind.override, ".m.rule.master", True),
                await client.set_pushrule_actions(
                    "global", NioKind.underride, ".m.rule.message", []
                ),
                await client.delete_pushrule("global", NioKind.override, "time"),
            ]
        finally:
            await client.close()

    answers = await in_asyncio(scenario)
    expected = [
        SetPushRuleResponse,
        SetPushRuleResponse,
        EnablePushRuleResponse,
        SetPushRuleActionsResponse,
        DeletePushRuleResponse,
    ]
    for answer, kind in zip(answers, expected, strict=True):
        assert isinstance(answer, kind), answer

    path = f"/_matrix/client/v3/user/{user_id}/account_data/m.push_rules"
    content = (await hs.client.get(path, headers=h)).json()
    event = PushRulesEvent.from_dict({"type": "m.push_rules", "content": content})
    assert isinstance(event, PushRulesEvent), event
    overrides = event.global_rules.override
    assert [r.id for r in overrides[:3]] == [".m.rule.master", "tea", ".m.rule.suppress_notices"]
    assert overrides[0].enabled is True
    tea = overrides[1]
    assert tea.conditions[0].key == "content.body" and tea.conditions[0].pattern == "tea"
    assert tea.actions[1].tweak == "sound" and tea.actions[1].value == "kettle"
    message = next(r for r in event.global_rules.underride if r.id == ".m.rule.message")
    assert message.actions == [] and message.default is True
    # nio drops rules that fail its schema: none did
    for kind, rules in content["global"].items():
        assert len(getattr(event.global_rules, kind)) == len(rules), kind

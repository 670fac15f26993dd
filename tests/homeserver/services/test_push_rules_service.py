"""PushRulesService over the real account data store (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
import trio

from homeserver.errors import MatrixError
from homeserver.services.push_rules import PushRulesService
from homeserver.services.push_ruleset import PushRule, PushRuleset
from homeserver.services.requester import Requester
from homeserver.storage.account_data import GLOBAL
from homeserver.streams import StreamName

ALICE = Requester("@alice:test.local", "DEV")
BOB = Requester("@bob:test.local", "DEV")


class RecordingNotifier:
    def __init__(self) -> None:
        self.calls: list[tuple[StreamName, int, tuple[str, ...]]] = []

    def notify(self, stream, position, *, room_ids=(), user_ids=()) -> None:
        self.calls.append((stream, position, tuple(user_ids)))


@pytest.fixture
def notifier() -> RecordingNotifier:
    return RecordingNotifier()


@pytest.fixture
async def service(stores, notifier) -> PushRulesService:
    for user in (ALICE, BOB):
        await stores.users.create_user(user.user_id, password_hash=None, created_ts=1)
    return PushRulesService(stores.account_data, notifier)


async def stored(stores, user_id: str):
    return await stores.account_data.get(user_id, GLOBAL, "m.push_rules")


async def test_defaults_are_computed_and_nothing_is_stored(service, stores, notifier) -> None:
    assert await service.ruleset(ALICE) == PushRuleset.defaults(ALICE.user_id).to_json()
    rule = await service.get_rule(ALICE, "override", ".m.rule.master")
    assert rule.enabled is False
    assert await stored(stores, ALICE.user_id) is None
    # changes that change nothing write nothing
    await service.set_enabled(ALICE, "override", ".m.rule.master", False)
    await service.set_actions(ALICE, "underride", ".m.rule.message", ("notify",))
    assert await stored(stores, ALICE.user_id) is None
    assert notifier.calls == []


async def test_each_change_stores_the_ruleset_and_notifies(service, stores, notifier) -> None:
    start = await stores.streams.current_position(StreamName.ACCOUNT_DATA)
    await service.put_rule(ALICE, "room", PushRule.create("room", "!r:test.local", []))
    await service.set_enabled(ALICE, "override", ".m.rule.master", True)
    await service.set_actions(ALICE, "room", "!r:test.local", ("notify",))
    content = await stored(stores, ALICE.user_id)
    assert content == {"global": await service.ruleset(ALICE)}
    assert content["global"]["room"][0]["actions"] == ["notify"]
    assert content["global"]["override"][0]["enabled"] is True
    assert notifier.calls == [
        (StreamName.ACCOUNT_DATA, start + 1, (ALICE.user_id,)),
        (StreamName.ACCOUNT_DATA, start + 2, (ALICE.user_id,)),
        (StreamName.ACCOUNT_DATA, start + 3, (ALICE.user_id,)),
    ]
    # /sync reads it as any account data change
    rows = await stores.account_data.changed_since(ALICE.user_id, start)
    assert [(r.data_type, r.stream_id) for r in rows] == [("m.push_rules", start + 3)]
    # the same again writes nothing; other users are untouched
    await service.set_actions(ALICE, "room", "!r:test.local", ("notify",))
    assert len(notifier.calls) == 3
    assert await stored(stores, BOB.user_id) is None
    assert (await service.ruleset(BOB))["room"] == []

    await service.delete_rule(ALICE, "room", "!r:test.local")
    assert (await stored(stores, ALICE.user_id))["global"]["room"] == []
    assert notifier.calls[-1] == (StreamName.ACCOUNT_DATA, start + 4, (ALICE.user_id,))


async def test_failed_edits_write_nothing(service, stores, notifier) -> None:
    await service.put_rule(ALICE, "content", PushRule.create("content", "a", [], pattern="a"))
    before = await stored(stores, ALICE.user_id)
    position = await stores.streams.current_position(StreamName.ACCOUNT_DATA)
    attempts = [
        service.delete_rule(ALICE, "content", "nope"),
        service.delete_rule(ALICE, "override", ".m.rule.master"),
        service.set_enabled(ALICE, "content", "nope", True),
        service.set_actions(ALICE, "underride", ".m.rule.master", ()),
        service.put_rule(
            ALICE, "content", PushRule.create("content", "b", [], pattern="b"), before="nope"
        ),
    ]
    for attempt in attempts:
        with pytest.raises(MatrixError) as caught:
            await attempt
        assert caught.value.errcode in ("M_NOT_FOUND", "M_UNKNOWN")
    assert await stored(stores, ALICE.user_id) == before
    assert await stores.streams.current_position(StreamName.ACCOUNT_DATA) == position
    assert len(notifier.calls) == 1


async def test_concurrent_edits_are_all_kept(service) -> None:
    async with trio.open_nursery() as nursery:
        for i in range(8):
            rule = PushRule.create("content", f"r{i}", ["notify"], pattern=f"w{i}")
            nursery.start_soon(service.put_rule, ALICE, "content", rule)
    names = sorted(r["rule_id"] for r in (await service.ruleset(ALICE))["content"])
    assert names == [f"r{i}" for i in range(8)]


async def test_guests_have_no_push_rules(service) -> None:
    guest = Requester("@123:test.local", "DEV", is_guest=True)
    for attempt in (
        service.ruleset(guest),
        service.get_rule(guest, "override", ".m.rule.master"),
        service.set_enabled(guest, "override", ".m.rule.master", True),
    ):
        with pytest.raises(MatrixError) as caught:
            await attempt
        assert (caught.value.status, caught.value.errcode) == (403, "M_GUEST_ACCESS_FORBIDDEN")

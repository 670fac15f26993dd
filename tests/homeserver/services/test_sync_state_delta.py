"""The pure parts of ``/sync``'s state rules: the state delta, the lazy-member record, the
ignored-users list parsing."""

from __future__ import annotations

from typing import Any

from homeserver.services import sync as sync_module
from homeserver.services.ignored_users import _parse
from homeserver.services.sync import _calculate_state, _LazyMemberRecord, _LazyMembers

NAME = ("m.room.name", "")
TOPIC = ("m.room.topic", "")


def _member(user: str) -> tuple[str, str]:
    return ("m.room.member", user)


def test_full_state_is_the_start_less_the_timeline() -> None:
    start = {NAME: "$n1", _member("@a"): "$a1"}
    end = {NAME: "$n2", _member("@a"): "$a1"}
    # the timeline shows the name change: the start's name is still needed (it applies to the
    # events before the change), the end's is in the timeline
    assert _calculate_state({NAME: "$n2"}, start, end, {}, lazy=False) == start


def test_gap_state_is_what_changed_since() -> None:
    previous = {NAME: "$n1", _member("@a"): "$a1"}
    start = {NAME: "$n2", _member("@a"): "$a1", _member("@b"): "$b1"}
    assert _calculate_state({}, start, start, previous, lazy=False) == {
        NAME: "$n2",
        _member("@b"): "$b1",
    }


def test_state_hidden_by_a_filter_comes_from_the_end() -> None:
    start = {NAME: "$n1"}
    end = {NAME: "$n1", TOPIC: "$t1"}  # the topic was set inside the window, filtered out
    assert _calculate_state({}, start, end, {NAME: "$n1"}, lazy=False) == {TOPIC: "$t1"}
    # where start and end disagree and neither is shown, the end wins
    assert _calculate_state({}, start, {NAME: "$n2"}, {}, lazy=False) == {NAME: "$n2"}


def test_lazy_members_at_the_start_are_sent_even_if_unchanged() -> None:
    previous = {_member("@c"): "$c1", NAME: "$n1"}
    start = {_member("@c"): "$c1", NAME: "$n1"}
    assert _calculate_state({}, start, start, previous, lazy=True) == {_member("@c"): "$c1"}
    assert _calculate_state({}, start, start, previous, lazy=False) == {}


def test_lazy_member_record_is_bounded(monkeypatch: Any) -> None:
    monkeypatch.setattr(sync_module, "_LAZY_MEMBERS_PER_DEVICE", 2)
    record = _LazyMemberRecord()
    record.put("@a", "$a1")
    record.put("@b", "$b1")
    record.put("@a", "$a2")  # refreshed: now the most recent
    record.put("@c", "$c1")  # evicts the least recently sent, @b
    assert (record.get("@a"), record.get("@b"), record.get("@c")) == ("$a2", None, "$c1")
    record.clear()
    assert record.get("@a") is None


def test_lazy_members_per_device(monkeypatch: Any) -> None:
    monkeypatch.setattr(sync_module, "_LAZY_MEMBER_DEVICES", 2)
    members = _LazyMembers()
    members.for_device("@u", "D1").put("@a", "$a1")
    assert members.for_device("@u", "D2").get("@a") is None  # per device
    assert members.for_device("@u", "D1").get("@a") == "$a1"
    members.for_device("@v", "D1")  # full: the record starts over
    assert members.for_device("@u", "D1").get("@a") is None


def test_ignored_user_list_parsing() -> None:
    assert _parse({"ignored_users": {"@a:x": {}, "@b:x": {"reason": 1}}}) == {"@a:x", "@b:x"}
    for bad in (None, [], "x", {}, {"ignored_users": ["@a:x"]}, {"ignored_users": None}):
        assert _parse(bad) == frozenset()

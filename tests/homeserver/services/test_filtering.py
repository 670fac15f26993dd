"""Filters: parsing and checking, matching, event_fields (homeserver.services.filtering)."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homeserver.errors import MatrixError
from homeserver.services.filtering import (
    DEFAULT_SYNC_FILTER,
    DEFAULT_TIMELINE_LIMIT,
    MAX_FILTER_LIMIT,
    MAX_TIMELINE_LIMIT,
    EventFilter,
    RoomEventFilter,
    RoomFilter,
    SyncFilter,
    decode_filter_param,
    parse_event_fields_path,
    parse_room_event_filter,
    parse_sync_filter,
)

SPEC_EXAMPLE: dict[str, Any] = {
    "room": {
        "state": {"types": ["m.room.*"], "not_rooms": ["!726s6s6q:example.com"]},
        "timeline": {
            "limit": 10,
            "types": ["m.room.message"],
            "not_rooms": ["!726s6s6q:example.com"],
            "not_senders": ["@spam:example.com"],
        },
        "ephemeral": {
            "types": ["m.receipt", "m.typing"],
            "not_rooms": ["!726s6s6q:example.com"],
            "not_senders": ["@spam:example.com"],
        },
    },
    "presence": {"types": ["m.presence"], "not_senders": ["@alice:example.com"]},
    "event_format": "client",
    "event_fields": ["type", "content", "sender"],
}


def _error(body: Any, parse=parse_sync_filter) -> MatrixError:
    with pytest.raises(MatrixError) as info:
        parse(body)
    return info.value


# --- parsing ------------------------------------------------------------------------------------


def test_spec_example_parses_into_every_field():
    f = parse_sync_filter(SPEC_EXAMPLE)
    assert f.event_fields == ("type", "content", "sender")
    assert f.event_format == "client"
    assert f.presence == EventFilter(types=("m.presence",), not_senders=("@alice:example.com",))
    assert f.account_data == EventFilter()
    assert f.room.state == RoomEventFilter(
        types=("m.room.*",), not_rooms=("!726s6s6q:example.com",)
    )
    assert f.room.timeline == RoomEventFilter(
        limit=10,
        types=("m.room.message",),
        not_rooms=("!726s6s6q:example.com",),
        not_senders=("@spam:example.com",),
    )
    assert f.room.ephemeral.types == ("m.receipt", "m.typing")
    assert f.room.account_data == RoomEventFilter()
    assert f.room.rooms is None and f.room.not_rooms == () and f.room.include_leave is False


def test_empty_filter_is_the_default():
    assert parse_sync_filter({}) == DEFAULT_SYNC_FILTER == SyncFilter()
    assert DEFAULT_SYNC_FILTER.timeline_limit == DEFAULT_TIMELINE_LIMIT == 10
    assert DEFAULT_SYNC_FILTER.event_fields is None
    assert DEFAULT_SYNC_FILTER.lazy_load_members is False


def test_every_room_event_filter_field():
    body = {
        "limit": 5,
        "types": ["a"],
        "not_types": ["b"],
        "senders": ["@s:x"],
        "not_senders": ["@n:x"],
        "rooms": ["!r:x"],
        "not_rooms": ["!n:x"],
        "contains_url": False,
        "lazy_load_members": True,
        "include_redundant_members": True,
        "unread_thread_notifications": True,
    }
    assert parse_room_event_filter(body) == RoomEventFilter(
        limit=5,
        types=("a",),
        not_types=("b",),
        senders=("@s:x",),
        not_senders=("@n:x",),
        rooms=("!r:x",),
        not_rooms=("!n:x",),
        contains_url=False,
        lazy_load_members=True,
        include_redundant_members=True,
        unread_thread_notifications=True,
    )


def test_room_filter_fields_and_sync_filter_switches():
    f = parse_sync_filter(
        {
            "room": {
                "rooms": ["!a:x", "!b:x"],
                "not_rooms": ["!b:x"],
                "include_leave": True,
                "state": {"lazy_load_members": True, "include_redundant_members": True},
                "timeline": {"unread_thread_notifications": True, "limit": 3},
                "account_data": {"types": ["m.tag"]},
            },
            "account_data": {"not_types": ["m.push_rules"]},
            "event_format": "federation",
        }
    )
    assert f.room.rooms == ("!a:x", "!b:x") and f.room.not_rooms == ("!b:x",)
    assert f.room.include_leave is True
    assert f.lazy_load_members and f.include_redundant_members
    assert f.unread_thread_notifications
    assert f.timeline_limit == 3
    assert f.room.account_data.types == ("m.tag",)
    assert f.account_data.not_types == ("m.push_rules",)
    assert f.event_format == "federation"


def test_include_redundant_members_needs_lazy_loading():
    f = parse_sync_filter({"room": {"state": {"include_redundant_members": True}}})
    assert f.include_redundant_members is False


def test_unknown_keys_are_ignored_everywhere():
    body = {
        "org.example.future": {"x": 1},
        "room": {
            "org.example": 1,
            "timeline": {"org.matrix.labels": ["x"], "related_by_senders": ["@a:b"]},
        },
        "presence": {"whatever": None},
    }
    assert parse_sync_filter(body) == SyncFilter()


def test_null_reads_as_absent():
    body = {
        "event_fields": None,
        "event_format": None,
        "presence": None,
        "room": {"rooms": None, "timeline": {"limit": None, "types": None}, "state": None},
    }
    assert parse_sync_filter(body) == SyncFilter()


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ([], "the filter must be a JSON object"),
        ("{}", "the filter must be a JSON object"),
        ({"room": []}, "'room' must be a JSON object"),
        ({"room": {"timeline": "x"}}, "'room.timeline' must be a JSON object"),
        ({"room": {"state": 1}}, "'room.state' must be a JSON object"),
        ({"room": {"ephemeral": True}}, "'room.ephemeral'"),
        ({"room": {"account_data": []}}, "'room.account_data'"),
        ({"presence": "all"}, "'presence' must be a JSON object"),
        ({"account_data": 3}, "'account_data' must be a JSON object"),
        ({"event_fields": "content"}, "'event_fields' must be an array of strings"),
        ({"event_fields": ["content", 1]}, "'event_fields' must be an array of strings"),
        ({"event_format": 1}, "'event_format' must be a string"),
        ({"room": {"timeline": {"types": "m.room.message"}}}, "'room.timeline.types'"),
        ({"room": {"timeline": {"not_types": [None]}}}, "'room.timeline.not_types'"),
        ({"presence": {"senders": "@a:b"}}, "'presence.senders'"),
        ({"presence": {"not_senders": [{}]}}, "'presence.not_senders'"),
        ({"room": {"rooms": "!a:b"}}, "'room.rooms'"),
        ({"room": {"not_rooms": [1]}}, "'room.not_rooms'"),
        ({"room": {"include_leave": "true"}}, "'room.include_leave' must be true or false"),
        ({"room": {"include_leave": 1}}, "'room.include_leave'"),
        ({"room": {"state": {"lazy_load_members": "yes"}}}, "'room.state.lazy_load_members'"),
        (
            {"room": {"state": {"include_redundant_members": 0}}},
            "'room.state.include_redundant_members'",
        ),
        (
            {"room": {"timeline": {"unread_thread_notifications": []}}},
            "'room.timeline.unread_thread_notifications'",
        ),
        ({"room": {"timeline": {"contains_url": "no"}}}, "'room.timeline.contains_url'"),
        ({"room": {"timeline": {"limit": "10"}}}, "'room.timeline.limit' must be an integer"),
        ({"room": {"timeline": {"limit": True}}}, "'room.timeline.limit' must be an integer"),
        ({"room": {"timeline": {"limit": 2.5}}}, "'room.timeline.limit' must be an integer"),
        ({"presence": {"limit": [1]}}, "'presence.limit' must be an integer"),
    ],
)
def test_wrong_types_are_bad_json(body, fragment):
    err = _error(body)
    assert (err.status, err.errcode) == (400, "M_BAD_JSON")
    assert fragment in err.msg


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"room": {"timeline": {"limit": -1}}}, "'room.timeline.limit' must not be negative"),
        ({"presence": {"limit": -(2**70)}}, "'presence.limit' must not be negative"),
        ({"room": {"timeline": {"limit": MAX_FILTER_LIMIT + 1}}}, "must be at most"),
        ({"room": {"state": {"limit": 1e300}}}, "'room.state.limit' must be at most"),
        ({"event_format": "raw"}, "'event_format' must be 'client' or 'federation'"),
        ({"event_format": "Client"}, "'event_format'"),
        ({"presence": {"senders": ["alice"]}}, "'presence.senders' must hold user IDs"),
        ({"presence": {"not_senders": ["*"]}}, "'presence.not_senders' must hold user IDs"),
        ({"room": {"rooms": ["#alias:x"]}}, "'room.rooms' must hold room IDs"),
        ({"room": {"timeline": {"not_rooms": ["!"]}}}, "'room.timeline.not_rooms'"),
        ({"room": {"timeline": {"senders": [""]}}}, "'room.timeline.senders'"),
    ],
)
def test_bad_values_are_invalid_param(body, fragment):
    err = _error(body)
    assert (err.status, err.errcode) == (400, "M_INVALID_PARAM")
    assert fragment in err.msg


def test_limits_clients_really_send_are_accepted():
    # nheko: {"presence": {"limit": 0}}; "all of it": Number.MAX_SAFE_INTEGER; Synapse: number.
    f = parse_sync_filter(
        {
            "presence": {"limit": 0},
            "room": {"state": {"limit": MAX_FILTER_LIMIT}, "timeline": {"limit": 20.0}},
        }
    )
    assert f.presence.limit == 0
    assert f.room.state.limit == MAX_FILTER_LIMIT
    assert f.room.timeline.limit == 20 and isinstance(f.room.timeline.limit, int)


@pytest.mark.parametrize(
    ("limit", "expected"),
    [(None, 10), (0, 0), (1, 1), (10, 10), (100, 100), (101, 100), (MAX_FILTER_LIMIT, 100)],
)
def test_timeline_limit_defaults_and_caps(limit, expected):
    body = {} if limit is None else {"room": {"timeline": {"limit": limit}}}
    assert parse_sync_filter(body).timeline_limit == expected
    assert MAX_TIMELINE_LIMIT == 100


def test_limit_or():
    assert EventFilter().limit_or(30, 50) == 30
    assert EventFilter(limit=70).limit_or(30, 50) == 50
    assert EventFilter(limit=0).limit_or(30, 50) == 0


def test_parse_room_event_filter_errors_name_the_field():
    err = _error({"types": "x"}, parse_room_event_filter)
    assert err.errcode == "M_BAD_JSON" and "'types'" in err.msg
    err = _error({"limit": -5}, parse_room_event_filter)
    assert err.errcode == "M_INVALID_PARAM" and "'limit'" in err.msg
    err = _error(["not", "an", "object"], parse_room_event_filter)
    assert err.errcode == "M_BAD_JSON"
    assert parse_room_event_filter({}) == RoomEventFilter()


def test_decode_filter_param():
    assert decode_filter_param('{"room": {"timeline": {"limit": 1}}}') == {
        "room": {"timeline": {"limit": 1}}
    }
    with pytest.raises(MatrixError) as info:
        decode_filter_param("{not json")
    assert (info.value.status, info.value.errcode) == (400, "M_NOT_JSON")


# --- matching -----------------------------------------------------------------------------------


def _event(type_: str = "m.room.message", sender: str = "@a:x", **extra: Any) -> dict[str, Any]:
    return {"type": type_, "sender": sender, "room_id": "!r:x", "content": {}, **extra}


def test_types_with_wildcards():
    f = EventFilter(types=("m.room.*",))
    assert f.matches(_event("m.room.message"))
    assert f.matches(_event("m.room."))
    assert not f.matches(_event("m.roomy"))
    assert not f.matches(_event("org.m.room.x"))
    # '*' anywhere, as the spec says (not only at the end)
    mid = EventFilter(types=("m.*.member",))
    assert mid.matches(_event("m.room.member")) and mid.matches(_event("m.x.y.member"))
    assert not mid.matches(_event("m.room.members"))
    assert EventFilter(types=("*",)).matches(_event("anything"))
    # other characters are literal, regex syntax included
    assert EventFilter(types=("a.b",)).matches(_event("a.b"))
    assert not EventFilter(types=("a.b",)).matches(_event("axb"))
    assert EventFilter(types=("a+[x]*",)).matches(_event("a+[x]yz"))


def test_not_types_wins_over_types():
    f = EventFilter(types=("m.room.*",), not_types=("m.room.member",))
    assert f.matches(_event("m.room.message"))
    assert not f.matches(_event("m.room.member"))
    assert not EventFilter(not_types=("*",)).matches(_event("x"))


def test_empty_lists_include_nothing_absent_lists_everything():
    assert not EventFilter(types=()).matches(_event())
    assert not EventFilter(senders=()).matches(_event())
    assert EventFilter(not_types=(), not_senders=()).matches(_event())
    assert not RoomEventFilter(rooms=()).matches(_event())


def test_senders():
    f = EventFilter(senders=("@a:x", "@b:x"), not_senders=("@b:x",))
    assert f.matches(_event(sender="@a:x"))
    assert not f.matches(_event(sender="@b:x"))
    assert not f.matches(_event(sender="@c:x"))
    # no sender (account data): fine unless senders is set
    no_sender = {"type": "m.tag", "content": {}}
    assert EventFilter().matches(no_sender)
    assert EventFilter(not_senders=("@a:x",)).matches(no_sender)
    assert not f.matches(no_sender)


def test_missing_type_only_matches_without_types():
    assert EventFilter().matches({"sender": "@a:x"})
    assert not EventFilter(types=("*",)).matches({"sender": "@a:x"})
    assert EventFilter(not_types=("x",)).matches({"type": 5})


def test_rooms_and_room_id_override():
    f = RoomEventFilter(rooms=("!r:x", "!s:x"), not_rooms=("!s:x",))
    assert f.matches(_event())
    assert not f.matches({**_event(), "room_id": "!s:x"})
    assert not f.matches({**_event(), "room_id": "!t:x"})
    # ephemeral events in the /sync shape have no room_id: the caller names the room
    typing = {"type": "m.typing", "content": {"user_ids": []}}
    assert not f.matches(typing)
    assert f.matches(typing, room_id="!r:x")
    assert not f.matches(typing, room_id="!s:x")
    assert RoomEventFilter().matches(typing)
    assert RoomEventFilter(not_rooms=("!s:x",)).matches(typing)
    assert f.includes_room("!r:x") and not f.includes_room("!s:x")


def test_room_event_filter_still_checks_types_and_senders():
    f = RoomEventFilter(types=("m.room.message",), not_senders=("@spam:x",))
    assert f.matches(_event())
    assert not f.matches(_event("m.room.member"))
    assert not f.matches(_event(sender="@spam:x"))


@pytest.mark.parametrize(
    ("content", "expect_true", "expect_false"),
    [
        ({"url": "mxc://x/y"}, True, False),
        ({"url": 5}, False, True),
        ({"body": "hi"}, False, True),
        ("not an object", False, True),
    ],
)
def test_contains_url(content, expect_true, expect_false):
    ev = {**_event(), "content": content}
    assert RoomEventFilter(contains_url=True).matches(ev) is expect_true
    assert RoomEventFilter(contains_url=False).matches(ev) is expect_false
    assert RoomEventFilter().matches(ev)
    no_content = {k: v for k, v in _event().items() if k != "content"}
    assert RoomEventFilter(contains_url=True).matches(no_content) is False


def test_room_filter_includes_room():
    assert RoomFilter().includes_room("!a:x")
    rf = RoomFilter(rooms=("!a:x", "!b:x"), not_rooms=("!b:x",))
    assert rf.includes_room("!a:x")
    assert not rf.includes_room("!b:x") and not rf.includes_room("!c:x")
    assert not RoomFilter(rooms=()).includes_room("!a:x")
    assert parse_sync_filter({"room": {"not_rooms": ["!a:x"]}}).room.includes_room("!b:x")


def test_blocks_all():
    assert not EventFilter().blocks_all()
    assert EventFilter(types=()).blocks_all()
    assert EventFilter(senders=()).blocks_all()
    assert EventFilter(not_types=("*",)).blocks_all()
    assert RoomEventFilter(rooms=()).blocks_all()
    assert not RoomEventFilter(not_rooms=("!a:x",)).blocks_all()


def test_presence_events():
    presence = {"type": "m.presence", "sender": "@alice:example.com", "content": {}}
    f = parse_sync_filter(SPEC_EXAMPLE)
    assert not f.presence.matches(presence)
    assert f.presence.matches({**presence, "sender": "@bob:example.com"})


def test_spec_example_timeline_and_ephemeral():
    f = parse_sync_filter(SPEC_EXAMPLE)
    msg = _event(sender="@bob:example.com", room_id="!other:example.com")
    assert f.room.timeline.matches(msg)
    assert not f.room.timeline.matches({**msg, "sender": "@spam:example.com"})
    assert not f.room.timeline.matches({**msg, "room_id": "!726s6s6q:example.com"})
    assert not f.room.timeline.matches({**msg, "type": "m.room.member"})
    assert f.room.ephemeral.matches({"type": "m.typing", "content": {}}, room_id="!o:x")
    assert not f.room.ephemeral.matches(
        {"type": "m.typing", "content": {}}, room_id="!726s6s6q:example.com"
    )
    assert f.room.state.matches({**msg, "type": "m.room.member", "state_key": "@bob:x"})


# --- event_fields -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "keys"),
    [
        ("type", ("type",)),
        ("content.body", ("content", "body")),
        (r"content.m\.relates_to", ("content", "m.relates_to")),
        (r"content.m\\foo", ("content", "m\\foo")),
        (r"content.a\\.b", ("content", "a\\", "b")),
        (r"content.\x", ("content", "\\x")),
        ("content.", ("content", "")),
        ("a\\", ("a\\",)),
        ("", ("",)),
    ],
)
def test_event_fields_path_escaping(path, keys):
    assert parse_event_fields_path(path) == keys


EVENT: dict[str, Any] = {
    "type": "m.room.message",
    "sender": "@a:x",
    "event_id": "$e",
    "origin_server_ts": 1,
    "content": {
        "body": "hi",
        "msgtype": "m.text",
        "m.relates_to": {"rel_type": "m.thread", "event_id": "$t"},
        "m\\foo": 1,
        "nested": {"deep": {"x": 1, "y": 2}},
    },
    "unsigned": {"age": 5},
}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (["type", "content", "sender"], {k: EVENT[k] for k in ("type", "content", "sender")}),
        (["content.body"], {"content": {"body": "hi"}}),
        (
            [r"content.m\.relates_to.rel_type", "type"],
            {"content": {"m.relates_to": {"rel_type": "m.thread"}}, "type": "m.room.message"},
        ),
        ([r"content.m\\foo"], {"content": {"m\\foo": 1}}),
        (
            ["content.nested.deep.y", "content.body"],
            {"content": {"nested": {"deep": {"y": 2}}, "body": "hi"}},
        ),
        (["content.missing", "nope", "content.body.too_deep"], {}),
        (["content", "content.body"], {"content": EVENT["content"]}),
        (["content.body", "content"], {"content": EVENT["content"]}),
        (["unsigned.age", "event_id"], {"unsigned": {"age": 5}, "event_id": "$e"}),
    ],
)
def test_format_event(fields, expected):
    before = copy.deepcopy(EVENT)
    out = SyncFilter(event_fields=tuple(fields)).format_event(EVENT)
    assert out == expected
    assert EVENT == before, "format_event must not modify its input"


def test_format_event_without_fields_returns_the_event():
    assert SyncFilter().format_event(EVENT) is EVENT
    # an empty list means every field, as in Synapse
    assert SyncFilter(event_fields=()).format_event(EVENT) is EVENT
    assert parse_sync_filter({"event_fields": []}).format_event(EVENT) is EVENT


# --- properties (hypothesis) --------------------------------------------------------------------

_name = st.text(alphabet="abm.*_\\", min_size=0, max_size=8)
_types = st.none() | st.lists(_name, max_size=4).map(tuple)


@settings(max_examples=300, deadline=None)
@given(types=_types, not_types=st.lists(_name, max_size=3).map(tuple), event_type=_name)
def test_type_matching_agrees_with_a_reference(types, not_types, event_type):
    def glob(pattern: str, value: str) -> bool:
        return re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), value, re.S) is not None

    expected = not any(glob(p, event_type) for p in not_types) and (
        types is None or any(glob(p, event_type) for p in types)
    )
    assert EventFilter(types=types, not_types=not_types).matches(_event(event_type)) is expected


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=3),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(alphabet="ab.\\", max_size=3), children, max_size=3)
    ),
    max_leaves=12,
)


def _escape(key: str) -> str:
    return key.replace("\\", "\\\\").replace(".", "\\.")


@settings(max_examples=300, deadline=None)
@given(event=st.dictionaries(st.text(alphabet="ab.\\", max_size=3), _json, max_size=4))
def test_event_fields_of_every_top_level_key_is_the_event(event):
    fields = tuple(_escape(k) for k in event) or ("absent",)
    assert SyncFilter(event_fields=fields).format_event(event) == event


@settings(max_examples=300, deadline=None)
@given(keys=st.lists(st.text(alphabet="ab.\\x", max_size=4), min_size=1, max_size=4))
def test_escaped_paths_round_trip(keys):
    assert parse_event_fields_path(".".join(_escape(k) for k in keys)) == tuple(keys)


@settings(max_examples=200, deadline=None)
@given(body=_json)
def test_parse_never_fails_with_anything_but_a_matrix_error(body):
    for candidate in (body, {"room": {"timeline": body}}, {"presence": body}, {"room": body}):
        try:
            parse_sync_filter(candidate)
        except MatrixError as e:
            assert e.status == 400 and e.errcode in ("M_BAD_JSON", "M_INVALID_PARAM")

"""Redaction: rooms/fragments/v1-, v6-, v9-, v11-redactions.md, rooms/v8.md."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from federation.core.redaction import redact
from federation.core.room_versions import KNOWN_ROOM_VERSIONS, get_room_version
from tests.federation._vectors import load

EVENT_VECTORS = load("event-signing.json")["vectors"]
VERSIONS: list[str] = sorted(map(str, KNOWN_ROOM_VERSIONS), key=len)  # "1".."9", "10".."12"


@pytest.mark.parametrize("index", range(len(EVENT_VECTORS)))
@pytest.mark.parametrize("version", VERSIONS)
def test_vector_redacted_events(index, version):
    vector = EVENT_VECTORS[index]
    hashed = {**vector["input"], "hashes": {"sha256": vector["derived"]["content_hash_sha256"]}}
    key = "redacted_v11_plus" if int(version) >= 11 else "redacted_v1_to_v10"
    assert redact(get_room_version(version), hashed) == vector["derived"][key]


BASE = {
    "event_id": "$e:x",
    "room_id": "!r:x",
    "sender": "@u:x",
    "state_key": "",
    "depth": 1,
    "prev_events": [],
    "auth_events": [],
    "origin": "x",
    "origin_server_ts": 1,
    "membership": "join",
    "prev_state": [],
    "hashes": {"sha256": "h"},
    "signatures": {"x": {}},
    "unsigned": {"age": 1},
    "redacts": "$other:x",
    "extra": 1,
}


def content_after(version: str, event_type: str, content: dict[str, Any]) -> Any:
    pdu = {**BASE, "type": event_type, "content": content}
    before = copy.deepcopy(pdu)
    out = redact(get_room_version(version), pdu)
    assert pdu == before  # input not modified
    return out["content"]


def test_top_level_keys():
    old = redact(get_room_version("10"), {**BASE, "type": "m.room.message", "content": {}})
    assert set(old) == set(BASE) - {"unsigned", "redacts", "extra"} | {"type", "content"}
    new = redact(get_room_version("11"), {**BASE, "type": "m.room.message", "content": {}})
    assert set(new) == set(old) - {"origin", "membership", "prev_state"}


POWER = {
    "ban": 50,
    "events": {},
    "events_default": 0,
    "invite": 0,
    "kick": 50,
    "redact": 50,
    "state_default": 50,
    "users": {},
    "users_default": 0,
    "notifications": {"room": 50},
}


@pytest.mark.parametrize(
    ("event_type", "content", "expected"),
    [
        # type, content, {rules: kept content} for versions 1, 6, 8, 9, 11
        (
            "m.room.member",
            {
                "membership": "join",
                "join_authorised_via_users_server": "@a:x",
                "displayname": "A",
                "third_party_invite": {"signed": {"token": "t"}, "display_name": "d"},
            },
            {
                "1": {"membership": "join"},
                "8": {"membership": "join"},
                "9": {"membership": "join", "join_authorised_via_users_server": "@a:x"},
                "11": {
                    "membership": "join",
                    "join_authorised_via_users_server": "@a:x",
                    "third_party_invite": {"signed": {"token": "t"}},
                },
            },
        ),
        (
            "m.room.create",
            {"creator": "@u:x", "room_version": "1", "m.federate": False},
            {
                "1": {"creator": "@u:x"},
                "10": {"creator": "@u:x"},
                "11": {"creator": "@u:x", "room_version": "1", "m.federate": False},
            },
        ),
        (
            "m.room.join_rules",
            {"join_rule": "restricted", "allow": [{"type": "m.room_membership"}], "x": 1},
            {
                "1": {"join_rule": "restricted"},
                "7": {"join_rule": "restricted"},
                "8": {"join_rule": "restricted", "allow": [{"type": "m.room_membership"}]},
                "12": {"join_rule": "restricted", "allow": [{"type": "m.room_membership"}]},
            },
        ),
        (
            "m.room.power_levels",
            POWER,
            {
                "1": {k: v for k, v in POWER.items() if k not in ("invite", "notifications")},
                "10": {k: v for k, v in POWER.items() if k not in ("invite", "notifications")},
                "11": {k: v for k, v in POWER.items() if k != "notifications"},
            },
        ),
        (
            "m.room.aliases",
            {"aliases": ["#a:x"]},
            {"1": {"aliases": ["#a:x"]}, "5": {"aliases": ["#a:x"]}, "6": {}, "11": {}},
        ),
        (
            "m.room.history_visibility",
            {"history_visibility": "shared", "x": 1},
            {"1": {"history_visibility": "shared"}, "11": {"history_visibility": "shared"}},
        ),
        (
            "m.room.redaction",
            {"redacts": "$a", "reason": "spam"},
            {"1": {}, "10": {}, "11": {"redacts": "$a"}},
        ),
        ("m.room.message", {"body": "hi"}, {"1": {}, "11": {}}),
        ("m.room.topic", {"topic": "t"}, {"1": {}, "12": {}}),
    ],
)
def test_content_rules(event_type, content, expected):
    for version, kept in expected.items():
        assert content_after(version, event_type, content) == kept, version


def test_third_party_invite_without_signed_and_odd_content():
    content = {"membership": "invite", "third_party_invite": {"display_name": "d"}}
    assert content_after("11", "m.room.member", content) == {"membership": "invite"}
    pdu = {**BASE, "type": "m.room.member", "content": "not an object"}
    assert redact(get_room_version("11"), pdu)["content"] == {}
    pdu.pop("content")
    assert redact(get_room_version("1"), pdu)["content"] == {}

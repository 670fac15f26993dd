"""Identifier grammar: appendices.md › Identifier Grammar (and grammar-examples.json)."""

from __future__ import annotations

import pytest

from federation.core.errors import InvalidIdentifier
from federation.core.ids import (
    EventID,
    RoomID,
    ServerName,
    UserID,
    check_new_localpart,
    is_valid_event_id,
    is_valid_room_version_id,
    is_valid_server_name,
    map_to_localpart,
    parse_event_id,
    parse_room_alias,
    parse_room_id,
    parse_server_name,
    parse_user_id,
    split_property_path,
)
from federation.core.room_versions import get_room_version
from tests.federation._vectors import load

GRAMMAR = load("grammar-examples.json")
HASH = "Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ"  # 43 chars, URL-safe


@pytest.mark.parametrize("name", GRAMMAR["valid_server_names"]["examples"])
def test_vector_server_names_valid(name):
    assert is_valid_server_name(name)
    assert str(parse_server_name(name)) == name


def test_server_name_parts():
    assert parse_server_name("matrix.org:8888") == ServerName("matrix.org", 8888)
    assert parse_server_name("[1234:5678::abcd]:5678") == ServerName("[1234:5678::abcd]", 5678)
    assert parse_server_name("1.2.3.4") == ServerName("1.2.3.4", None)


@pytest.mark.parametrize(
    "name",
    [
        "",
        ":8448",
        "matrix.org:",
        "matrix.org:123456",
        "matrix.org:80a",
        "matrix_org",
        "mätrix.org",
        "[1234:5678::abcd",
        "[not:an:ipv6:zz]",
        "[1:2:3:4:5:6:7:8:9]",
        "1234:5678::abcd",
        "a" * 256,
        "matrix.org/x",
    ],
)
def test_server_names_invalid(name):
    assert not is_valid_server_name(name)
    with pytest.raises(InvalidIdentifier):
        parse_server_name(name)


def test_server_name_length_limit():
    assert is_valid_server_name("a" * 255)
    assert is_valid_server_name("a" * 255 + ":8448")


@pytest.mark.parametrize("vector", GRAMMAR["user_id_localpart_mapping"]["examples"])
def test_vector_localpart_mapping(vector):
    # `A` -> `_a` is the case-preserving variant (bridges); the others are the same either way.
    preserve = vector["input"] == "A"
    assert map_to_localpart(vector["input"], preserve_case=preserve) == vector["expected"]


def test_localpart_mapping_details():
    assert map_to_localpart("Alice_B=") == "alice_b=3d"
    assert map_to_localpart("Alice_B", preserve_case=True) == "_alice___b"
    assert map_to_localpart("a/b+c.d-e") == "a/b+c.d-e"


@pytest.mark.parametrize("version", GRAMMAR["valid_room_versions"]["examples"])
def test_vector_room_versions(version):
    assert is_valid_room_version_id(version)


@pytest.mark.parametrize("version", ["", "A", "1_2", "x" * 33, "1 2"])
def test_room_versions_invalid(version):
    assert not is_valid_room_version_id(version)


@pytest.mark.parametrize("vector", GRAMMAR["dot_separated_property_paths"]["examples"])
def test_vector_property_paths(vector):
    assert split_property_path(vector["path"]) == vector["keys"]


def test_user_ids():
    assert parse_user_id("@alice:example.org") == UserID("alice", "example.org")
    assert str(parse_user_id("@a:[::1]:8448")) == "@a:[::1]:8448"
    assert parse_user_id("@a:[::1]:8448").server_name == "[::1]:8448"
    # Historical grammar: upper case, unicode, empty localparts are accepted from remotes.
    historical = parse_user_id("@Ällo Wörld:example.org")
    assert historical.localpart == "Ällo Wörld" and not historical.is_compliant
    assert parse_user_id("@:example.org").localpart == ""
    assert parse_user_id("@alice:example.org").is_compliant


@pytest.mark.parametrize(
    "value",
    [
        "alice:example.org",
        "@alice",
        "@alice:",
        "@al\x00ice:example.org",
        "@alice:bad_server",
        "@\ud800:example.org",
        "@" + "a" * 243 + ":example.org",  # 256 bytes
        "@" + "é" * 122 + ":example.org",  # 256 bytes in UTF-8
    ],
)
def test_user_ids_invalid(value):
    with pytest.raises(InvalidIdentifier):
        parse_user_id(value)


def test_user_id_length_limit_is_bytes():
    assert parse_user_id("@" + "a" * 242 + ":example.org")  # exactly 255 bytes


def test_new_localpart_is_strict():
    assert check_new_localpart("alice.b_c=d-e/f+g", "example.org").localpart == "alice.b_c=d-e/f+g"
    for bad in ["Alice", "", "a b", "ä", "a:b", "a#b"]:
        with pytest.raises(InvalidIdentifier):
            check_new_localpart(bad, "example.org")
    with pytest.raises(InvalidIdentifier):
        check_new_localpart("a" * 250, "example.org")


def test_room_ids():
    assert parse_room_id("!abc:example.org") == RoomID("abc", "example.org")
    assert parse_room_id("!" + HASH) == RoomID(HASH, None)
    assert str(parse_room_id("!" + HASH)) == "!" + HASH
    v11, v12 = get_room_version("11"), get_room_version("12")
    assert parse_room_id("!abc:example.org", v11).server_name == "example.org"
    assert parse_room_id("!" + HASH, v12).server_name is None
    for value, version in [
        ("!" + HASH, v11),
        ("!abc:example.org", v12),
        ("!" + HASH[:-1], v12),
        ("!" + HASH.replace("-", "+"), v12),
        ("$" + HASH, None),
        ("!abc", None),
        ("!a\x00:example.org", None),
        ("!" + "a" * 250 + ":example.org", None),
    ]:
        with pytest.raises(InvalidIdentifier):
            parse_room_id(value, version)


def test_event_ids():
    v1, v3, v4 = (get_room_version(v) for v in ("1", "3", "4"))
    assert parse_event_id("$abc:example.org", v1) == EventID("abc", "example.org")
    std = "$8yif6p8EqgoSten2BLje9ntKm720NyFLWQv9tn8memc"
    assert parse_event_id(std, v3).server_name is None
    assert parse_event_id("$" + HASH, v4) == EventID(HASH, None)
    assert parse_event_id("$a+b/" + "c" * 39).server_name is None  # any format when no version
    for value, version in [
        ("$abc", v1),
        ("$" + HASH, v3),  # '-' is not standard base64
        ("$a+b/" + "c" * 39, v4),
        ("$abc:example.org", v4),
        ("!" + HASH, v4),
        ("$" + HASH + "A", v4),
    ]:
        with pytest.raises(InvalidIdentifier):
            parse_event_id(value, version)


def test_room_aliases():
    alias = parse_room_alias("#Fun Room ✨:example.org")
    assert (alias.localpart, alias.server_name) == ("Fun Room ✨", "example.org")
    assert str(alias) == "#Fun Room ✨:example.org"
    for bad in ["#room", "room:example.org", "#a\x00:example.org", "#" + "a" * 250 + ":ex.org"]:
        with pytest.raises(InvalidIdentifier):
            parse_room_alias(bad)


def test_is_valid_event_id_matches_parse():
    for version in ("1", "3", "4", "12"):
        rv = get_room_version(version)
        for value in [
            "$abc:example.org",
            "$" + HASH,
            "$a+b/" + "c" * 39,
            "$x",
            "",
            "$" + HASH + "A",
        ]:
            try:
                parse_event_id(value, rv)
                expected = True
            except InvalidIdentifier:
                expected = False
            assert is_valid_event_id(value, rv) is expected, (version, value)

"""Server ACLs: the spec's evaluation order, globs, ports and IP literals."""

from __future__ import annotations

import pytest

from federation.core.acl import server_allowed_by_acl


def test_no_acl_event_allows_everyone() -> None:
    assert server_allowed_by_acl(None, "anything.example")


def test_empty_content_denies_everyone() -> None:
    # "allow defaults to an empty list when not provided, effectively disallowing every server"
    assert not server_allowed_by_acl({}, "good.example")


@pytest.mark.parametrize(
    "server, allowed",
    [
        ("good.example", True),
        ("evil.example", False),
        ("evil.example:8448", False),  # the port is not considered
        ("EVIL.Example", False),  # case-insensitive
        ("sub.evil.example", False),
        ("evil.example.org", True),
        ("1.2.3.4", False),
        ("1.2.3.4:8448", False),
        ("[::1]:8448", False),
        ("[2001:db8::1]", False),
        ("a1.test", False),
        ("ab.test", True),  # ? is exactly one character: a?.test matches "ab" too
    ],
)
def test_deny_before_allow(server: str, allowed: bool) -> None:
    acl = {
        "allow": ["*"],
        "deny": ["evil.example", "*.evil.example", "a1.tes?"],
        "allow_ip_literals": False,
    }
    assert server_allowed_by_acl(acl, server) is allowed


@pytest.mark.parametrize(
    "server, allowed",
    [
        ("matrix.org", True),
        ("chat.matrix.org", True),
        ("matrix.org:1234", True),
        ("example.org", False),
        ("127.0.0.1:8448", False),
    ],
)
def test_allow_list_only(server: str, allowed: bool) -> None:
    assert server_allowed_by_acl({"allow": ["matrix.org", "*.matrix.org"]}, server) is allowed


def test_ip_literals_allowed_unless_false() -> None:
    acl = {"allow": ["*"]}
    assert server_allowed_by_acl(acl, "127.0.0.1:8448")
    assert server_allowed_by_acl({**acl, "allow_ip_literals": True}, "[::1]")
    # not a boolean: counts as true
    assert server_allowed_by_acl({**acl, "allow_ip_literals": "false"}, "10.0.0.1")
    assert not server_allowed_by_acl({**acl, "allow_ip_literals": False}, "10.0.0.1")
    # a DNS name that looks numeric-ish is not an IP literal
    assert server_allowed_by_acl({**acl, "allow_ip_literals": False}, "1.2.3.example")


def test_malformed_entries_are_ignored() -> None:
    assert not server_allowed_by_acl({"allow": "*"}, "x.example")  # not a list
    assert server_allowed_by_acl({"allow": [1, None, "*"], "deny": "x.example"}, "x.example")
    assert not server_allowed_by_acl({"allow": [{"*": 1}]}, "x.example")


def test_glob_metacharacters_are_literal() -> None:
    acl = {"allow": ["a.b"]}
    assert server_allowed_by_acl(acl, "a.b")
    assert not server_allowed_by_acl(acl, "axb")  # '.' is not a regex wildcard
    assert server_allowed_by_acl({"allow": ["*"]}, "")  # '*' matches the empty string

"""The ``email`` configuration section: defaults, and each bad value named."""

from __future__ import annotations

import pytest

from homeserver.config import ConfigError, parse_config
from homeserver.errors import MatrixError
from homeserver.services.identifiers import canonical_email


def test_defaults_are_off_and_valid():
    cfg = parse_config({"server_name": "a"}, "hs.yaml")
    assert cfg.email.enabled is False
    assert "{link}" in cfg.email.body_template and "{token}" in cfg.email.body_template


@pytest.mark.parametrize(
    "email, expected",
    [
        ({"smtp_port": 0}, "email.smtp_port"),
        ({"smtp_port": 70000}, "email.smtp_port"),
        ({"smtp_user": "u"}, "email.smtp_user, smtp_password"),
        ({"smtp_password": "p"}, "email.smtp_user, smtp_password"),
        ({"body_template": "hello"}, "email.body_template"),
        ({"smtp_timeout_s": 0}, "email.smtp_timeout_s"),
        ({"token_ttl_s": 0}, "email.token_ttl_s"),
        ({"notif_from": "nobody"}, "email.notif_from"),
        ({"smtp_port": "25"}, "email.smtp_port"),
        ({"starttls": True}, "email.starttls"),
    ],
)
def test_problems_are_named(email, expected):
    with pytest.raises(ConfigError) as exc:
        parse_config({"server_name": "a", "email": email}, "hs.yaml")
    assert expected in str(exc.value)


@pytest.mark.parametrize(
    "given, canonical",
    [
        ("Alice@Example.COM", "alice@example.com"),
        ("  bob@example.org ", "bob@example.org"),
        ("STRASSE@example.de", "strasse@example.de"),
        ("Straße@example.de", "strasse@example.de"),
        ('"a@b"@example.org', '"a@b"@example.org'),
    ],
)
def test_addresses_are_case_folded(given, canonical):
    assert canonical_email(given) == canonical


@pytest.mark.parametrize("bad", ["", "no-at", "@example.org", "a@", "a b@example.org", "a\n@b.c"])
def test_bad_addresses(bad):
    with pytest.raises(MatrixError) as exc:
        canonical_email(bad)
    assert exc.value.errcode == "M_INVALID_PARAM"

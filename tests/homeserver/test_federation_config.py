"""The ``federation`` configuration section: parsing, defaults and validation."""

from __future__ import annotations

import pytest

from homeserver.config import ConfigError, FederationConfig, TrustedKeyServer, parse_config

KEY = "Noi6WqcDj0QmPxCNQqgezwTlBKrfqehY1u2FyWP9uYw"


def test_defaults() -> None:
    cfg = parse_config({"server_name": "a.example"}, "")
    assert cfg.federation == FederationConfig()
    assert cfg.federation.enabled
    assert cfg.federation.domain_allowlist is None
    assert cfg.federation.trusted_key_servers == ()
    assert not cfg.federation.allow_private_destinations


def test_full_section(tmp_path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    cfg = parse_config(
        {
            "server_name": "a.example",
            "federation": {
                "domain_allowlist": ["b.example", "127.0.0.1:8448"],
                "domain_denylist": ["evil.example"],
                "trusted_key_servers": [
                    {"server_name": "notary.example", "verify_keys": {"ed25519:auto": KEY}},
                    {"server_name": "other.example"},
                ],
                "custom_ca_file": str(ca),
                "allow_private_destinations": True,
                "key_validity_period_s": 3600,
                "request_timeout_s": 5,
            },
        },
        str(tmp_path / "homeserver.yaml"),
    )
    f = cfg.federation
    assert f.domain_allowlist == ("b.example", "127.0.0.1:8448")
    assert f.domain_denylist == ("evil.example",)
    assert f.trusted_key_servers == (
        TrustedKeyServer("notary.example", {"ed25519:auto": KEY}),
        TrustedKeyServer("other.example", None),
    )
    assert f.request_timeout_s == 5.0
    assert f.key_validity_period_s == 3600


@pytest.mark.parametrize(
    "section, expected",
    [
        ({"enabled": "yes"}, "federation.enabled: expected bool"),
        ({"domain_denylist": ["bad name!"]}, "federation.domain_denylist: not a server name"),
        ({"domain_allowlist": "b.example"}, "federation.domain_allowlist: expected"),
        (
            {"trusted_key_servers": [{"server_name": "n.example", "verify_keys": {"k": KEY}}]},
            "trusted_key_servers[0].verify_keys.k: expected ed25519",
        ),
        (
            {
                "trusted_key_servers": [
                    {"server_name": "n.example", "verify_keys": {"ed25519:a": 1}}
                ]
            },
            "verify_keys.ed25519:a: expected str",
        ),
        ({"trusted_key_servers": [{"verify_keys": {}}]}, "server_name: required option"),
        ({"custom_ca_file": "/nonexistent/ca.pem"}, "federation.custom_ca_file: cannot read"),
        ({"key_validity_period_s": 1}, "key_validity_period_s: must be at least 60"),
        ({"request_timeout_s": 0}, "request_timeout_s: must be > 0"),
        ({"bogus": 1}, "federation.bogus: unknown option"),
    ],
)
def test_bad_values(section, expected) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config({"server_name": "a.example", "federation": section}, "")
    assert expected in str(e.value)

"""Configuration loading: the sample parses, every option is documented, problems are named."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from homeserver import config as config_mod
from homeserver.__main__ import main
from homeserver.config import (
    Config,
    ConfigError,
    RegistrationPolicy,
    load_config,
    sample_config_text,
)


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "hs.yaml"
    p.write_text(text)
    return p


def test_sample_config_loads_with_defaults(tmp_path):
    p = write(tmp_path, sample_config_text("example.org"))
    cfg = load_config(p)
    defaults = Config(server_name="example.org")
    # The documented file states exactly the defaults (apart from where it was loaded from).
    assert dataclasses.replace(cfg, config_path="") == dataclasses.replace(
        defaults, rate_limits=cfg.rate_limits
    )
    assert cfg.server_name == "example.org"
    assert cfg.registration.policy is RegistrationPolicy.CLOSED
    assert cfg.database_url == "sqlite:///" + str(tmp_path / "data" / "homeserver.db")


def _option_paths(cls, prefix=""):
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        yield prefix + f.name
        tp = cls.__dataclass_fields__[f.name].type
        hint = __import__("typing").get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(hint):
            yield from _option_paths(hint, prefix + f.name + ".")
        _ = tp


def test_every_option_is_in_the_sample_and_the_reference_doc():
    sample = yaml.safe_load(sample_config_text("x"))
    doc = (Path(__file__).parents[2] / "docs" / "reference" / "configuration.md").read_text()
    for path in _option_paths(Config):
        node = sample
        for part in path.split("."):
            assert part in node, f"{path} missing from sample_config.yaml"
            node = node[part]
        assert f"`{path.split('.')[-1]}`" in doc, (
            f"{path} missing from docs/reference/configuration.md"
        )


@pytest.mark.parametrize(
    "text, expected",
    [
        ("server_name: a\nbogus: 1\n", "bogus: unknown option"),
        ("server_name: a\ndatabase: {pool_size: many}\n", "database.pool_size: expected int"),
        ("server_name: a\ndatabase: {url: 'mysql://x/y'}\n", "database.url: must be sqlite"),
        ("server_name: a\nlisteners: [{port: 99999}]\n", "listeners[0].port: must be 0-65535"),
        ("server_name: a\nlogging: {level: LOUD}\n", "logging.level: expected"),
        ("server_name: a\nregistration: {policy: maybe}\n", "registration.policy: expected"),
        (
            "server_name: a\nlisteners: [{tls_certificate: nope.pem, tls_key: nope.key}]\n",
            "listeners[0].tls_certificate: cannot read",
        ),
        ("listeners: []\n", "server_name: required option is missing"),
        ("server_name: 'bad name!'\n", "server_name: not a valid server name"),
        ("- a\n- b\n", "must contain a mapping"),
        ("server_name: [\n", "not valid YAML"),
        (
            "server_name: a\ndefault_room_version: '99'\n",
            "default_room_version: unknown room version",
        ),
        (
            "server_name: a\nrate_limits: {login: {per_second: 0, burst_count: 1}}\n",
            "rate_limits.login: per_second must be > 0",
        ),
    ],
)
def test_problems_name_file_key_and_problem(tmp_path, text, expected):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    assert str(p) in str(exc.value)
    assert expected in str(exc.value)


def test_all_problems_reported_at_once(tmp_path):
    p = write(tmp_path, "server_name: a\nfoo: 1\nbar: 2\ndatabase: {url: 'x://'}\n")
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    assert len(exc.value.problems) == 3


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config(tmp_path / "nope.yaml")


def test_cli_check_config_exit_codes(tmp_path, capsys):
    good = write(tmp_path, sample_config_text("example.org"))
    assert main(["check-config", "-c", str(good)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("server_name: a\nunknown_key: 1\n")
    assert main(["check-config", "-c", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: unknown_key: unknown option" in err


def test_cli_generate_config_refuses_to_overwrite(tmp_path):
    p = tmp_path / "gen.yaml"
    assert main(["generate-config", "-c", str(p), "--server-name", "example.com"]) == 0
    assert load_config(p).server_name == "example.com"
    assert main(["generate-config", "-c", str(p), "--server-name", "other"]) == 1
    assert load_config(p).server_name == "example.com"


def test_postgres_url_accepted(tmp_path):
    p = write(tmp_path, "server_name: a\ndatabase: {url: 'postgresql://u:p@127.0.0.1:5432/db'}\n")
    assert load_config(p).database_url == "postgresql://u:p@127.0.0.1:5432/db"
    assert config_mod.resolve_database_url("sqlite:////abs/x.db", Path) == "sqlite:////abs/x.db"

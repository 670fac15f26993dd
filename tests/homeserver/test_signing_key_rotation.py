"""Our signing key file, its old keys, and ``homeserver rotate-signing-key``."""

from __future__ import annotations

from pathlib import Path

import pytest

from federation.core.signing import read_signing_keys
from homeserver.__main__ import main
from homeserver.keys import (
    load_old_verify_keys,
    load_or_create_signing_key,
    old_keys_path,
    rotate_signing_key,
)


def test_rotation_keeps_old_public_keys(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    first = load_or_create_signing_key(path, "a.example")
    assert load_old_verify_keys(path) == {}
    second, previous = rotate_signing_key(path, now_ms=1000)
    assert previous.key_id == first.key_id
    assert load_or_create_signing_key(path, "a.example").key_id == second.key_id
    third, _ = rotate_signing_key(path, now_ms=2000)
    old = load_old_verify_keys(path)
    assert {k: o.expired_ts for k, o in old.items()} == {first.key_id: 1000, second.key_id: 2000}
    assert old[first.key_id].verify_key == first.verify_key
    # only public halves are kept as old keys; the key file holds only the active key
    assert first.verify_key.to_base64() in old_keys_path(path).read_text()
    assert [k.key_id for k in read_signing_keys(path.read_text())] == [third.key_id]
    assert oct(old_keys_path(path).stat().st_mode & 0o777) == "0o600"


def test_rotation_without_a_key_file_fails(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no signing key file"):
        rotate_signing_key(tmp_path / "missing.key", now_ms=1)
    (tmp_path / "empty.key").write_text("")
    with pytest.raises(ValueError, match="no signing key in the file"):
        rotate_signing_key(tmp_path / "empty.key", now_ms=1)


@pytest.mark.parametrize(
    "line",
    ["ed25519 a1 notbase64!! 12", "ed25519 a1 AAAA", "rsa a1 AAAA 12", "ed25519 a1 AAAA soon"],
)
def test_malformed_old_keys_file(tmp_path: Path, line: str) -> None:
    path = tmp_path / "signing.key"
    old_keys_path(path).write_text(line + "\n")
    with pytest.raises(ValueError):
        load_old_verify_keys(path)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "homeserver.yaml"
    config.write_text("server_name: a.example\nsigning_key_path: data/signing.key\n")
    key_path = tmp_path / "data" / "signing.key"
    first = load_or_create_signing_key(key_path, "a.example")
    assert main(["rotate-signing-key", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    new = load_or_create_signing_key(key_path, "a.example")
    assert new.key_id != first.key_id
    assert new.key_id in out and first.key_id in out
    assert first.key_id in load_old_verify_keys(key_path)
    # no key file yet: an error, not a traceback
    (tmp_path / "b.yaml").write_text("server_name: a.example\nsigning_key_path: nope/k.key\n")
    assert main(["rotate-signing-key", "-c", str(tmp_path / "b.yaml")]) == 1

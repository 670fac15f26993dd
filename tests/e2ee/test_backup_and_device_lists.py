"""e2ee.backup (replacement rule) and e2ee.device_lists (changed/left)."""

from __future__ import annotations

from typing import Any

import pytest

from e2ee.backup import should_replace
from e2ee.device_lists import MembershipChange, device_list_delta
from e2ee.errors import KeyFormatError
from e2ee.models import KeyBackupData, parse_backup_version_info, parse_key_backup_data


def data(verified: bool = False, index: int = 0, forwarded: int = 0) -> KeyBackupData:
    return KeyBackupData(index, forwarded, verified, {"ciphertext": "x"})


@pytest.mark.parametrize(
    "existing, new, replace",
    [
        (None, data(), True),
        (data(verified=False, index=0), data(verified=True, index=9), True),
        (data(verified=True, index=9), data(verified=False, index=0), False),
        (data(index=5), data(index=3), True),
        (data(index=3), data(index=5), False),
        (data(index=3, forwarded=2), data(index=3, forwarded=1), True),
        (data(index=3, forwarded=1), data(index=3, forwarded=2), False),
        (data(index=3, forwarded=1), data(index=3, forwarded=1), False),
    ],
)
def test_replacement_rule(existing, new, replace):
    assert should_replace(existing, new) is replace


def test_key_backup_data_parsing():
    parsed = parse_key_backup_data(
        {
            "first_message_index": 1,
            "forwarded_count": 0,
            "is_verified": True,
            "session_data": {"a": "b"},
        }
    )
    assert parsed.to_json()["session_data"] == {"a": "b"}
    bad: Any
    for bad in (
        {"first_message_index": -1, "forwarded_count": 0, "is_verified": True, "session_data": {}},
        {"first_message_index": 1, "forwarded_count": 0, "is_verified": "yes", "session_data": {}},
        {"first_message_index": 1, "forwarded_count": 0, "is_verified": True},
        {"first_message_index": 1, "forwarded_count": 0, "is_verified": True, "session_data": 1.5},
        {"forwarded_count": 0, "is_verified": True, "session_data": {}},
        [],
    ):
        with pytest.raises(KeyFormatError):
            parse_key_backup_data(bad)
    parse_backup_version_info(
        {"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": {}}
    )
    # the server never reads auth_data or session_data: any JSON value is kept (as Synapse)
    assert parse_backup_version_info({"algorithm": "x", "auth_data": "y"}).auth_data == "y"
    opaque = {"first_message_index": 1, "forwarded_count": 0, "is_verified": True}
    assert parse_key_backup_data({**opaque, "session_data": "x"}).to_json()["session_data"] == "x"
    for bad in (
        {"algorithm": "x"},
        {"algorithm": "x", "auth_data": {"f": 1.5}},
        {"algorithm": 1, "auth_data": {}},
        "x",
    ):
        with pytest.raises(KeyFormatError):
            parse_backup_version_info(bad)


ME = "@me:x"


def delta(**kw: Any) -> tuple[set[str], set[str]]:
    defaults: dict[str, Any] = dict(
        devices_changed=(),
        membership_changes=(),
        rooms_now=set(),
        members_now={},
        sharing_now=set(),
    )
    defaults.update(kw)
    return device_list_delta(ME, **defaults)


def test_device_changes_of_users_sharing_a_room_and_of_myself():
    changed, left = delta(devices_changed=["@a:x", "@stranger:x", ME], sharing_now={ME, "@a:x"})
    assert changed == {"@a:x", ME} and left == set()


def test_someone_joining_my_room_is_changed():
    changed, _ = delta(
        membership_changes=[MembershipChange("!r", "@b:x", "join")],
        rooms_now={"!r"},
        members_now={"!r": {ME, "@b:x"}},
        sharing_now={ME, "@b:x"},
    )
    assert changed == {"@b:x"}


def test_me_joining_a_room_makes_its_members_changed_but_not_me():
    changed, _ = delta(
        membership_changes=[MembershipChange("!r", ME, "join")],
        rooms_now={"!r"},
        members_now={"!r": {ME, "@b:x", "@c:x"}},
        sharing_now={ME, "@b:x", "@c:x"},
    )
    assert changed == {"@b:x", "@c:x"}


def test_leaving_the_last_shared_room_is_left_but_not_when_another_is_shared():
    changes = [MembershipChange("!r", "@b:x", "leave"), MembershipChange("!r", "@c:x", "ban")]
    changed, left = delta(
        membership_changes=changes,
        rooms_now={"!r", "!other"},
        members_now={"!r": {ME}},
        sharing_now={ME, "@c:x"},
    )
    assert left == {"@b:x"} and changed == set()


def test_me_leaving_makes_members_left_unless_still_shared():
    changed, left = delta(
        membership_changes=[MembershipChange("!r", ME, "leave")],
        rooms_now={"!other"},
        members_now={"!r": {"@b:x", "@c:x"}},
        sharing_now={ME, "@c:x"},
    )
    assert left == {"@b:x"} and changed == set()


def test_invites_are_ignored():
    changed, left = delta(
        membership_changes=[MembershipChange("!r", "@b:x", "invite")],
        rooms_now={"!r"},
        members_now={"!r": {ME}},
        sharing_now={ME},
    )
    assert changed == set() and left == set()

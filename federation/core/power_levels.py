"""Power levels and room creators, as the authorisation rules read them.

Spec: server-server-api.md › Checks performed on receipt of a PDU › Definitions
("Required Power Level", "Invite Level, Kick Level, Ban Level, Redact Level"); the
``m.room.power_levels`` and ``m.room.create`` event schemas; rooms/v12.md › Authorisation
rules ("The power level of room creators is infinitely high"); rooms/fragments
``v1-stringy-power-levels.md`` and ``v1-floaty-power-levels.md``.

Defaults, when a key is absent from ``m.room.power_levels`` or there is no such event:
``users_default`` 0, ``events_default`` 0, ``state_default`` 50, ``invite`` 0, ``kick``,
``ban``, ``redact`` 50, ``notifications.room`` 50. Without a power levels event the room's
creator has 100 and everyone else 0.

Value formats differ by room version:

* v1-5: an integer, a string holding one (``" +0100 "``), or a finite float, truncated
  towards zero (``50.57`` → 50).
* v6-9: an integer or such a string (floats cannot pass canonical JSON).
* v10+: integers only.

Booleans are never power levels, although Python's ``bool`` is an ``int``. A value that does
not parse is treated as absent when *reading* levels from room state (the auth rules never
let such an event in, but another server may have), and makes a *new* power levels event fail
``power_levels.invalid_level`` / ``invalid_level_map`` / ``invalid_users``.

Room creators (v12, ``privileged_creators``) have power :data:`CREATOR_POWER_LEVEL`,
``math.inf``: it compares above every integer, equal to itself, and is never written into an
event.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from federation.core.errors import AuthError, InvalidIdentifier
from federation.core.events import Event, StateKey
from federation.core.ids import parse_user_id
from federation.core.room_versions import RoomVersion

#: Power level of a room creator in room versions with ``privileged_creators`` (v12+).
CREATOR_POWER_LEVEL: float = math.inf

CREATE_KEY: StateKey = ("m.room.create", "")
POWER_LEVELS_KEY: StateKey = ("m.room.power_levels", "")

#: The integer-valued top-level keys of ``m.room.power_levels`` and their defaults.
NAMED_LEVEL_DEFAULTS: Mapping[str, int] = {
    "users_default": 0,
    "events_default": 0,
    "state_default": 50,
    "ban": 50,
    "kick": 50,
    "redact": 50,
    "invite": 0,
}

#: The mapping-valued keys of ``m.room.power_levels`` whose values are levels.
LEVEL_MAP_KEYS = ("events", "notifications")

# v1-stringy-power-levels: optional whitespace, optional sign, base-10 digits (leading zeroes
# allowed), optional whitespace. Only ASCII digits: Python's int() also takes "1_0" and "١٠".
_STRINGY_INT_RE = re.compile(r"\s*[+-]?[0-9]+\s*")


def parse_int_power_level(room_version: RoomVersion, value: Any) -> int | None:
    """Parse one power level value as the room version allows.

    Args:
        room_version: decides whether strings (v1-9) and floats (v1-5) are accepted.
        value: the JSON value.

    Returns:
        The level, or None when ``value`` is not a valid power level in this room version.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if room_version.enforce_int_power_levels:
        return None
    if isinstance(value, str):
        return int(value) if _STRINGY_INT_RE.fullmatch(value) else None
    if isinstance(value, float) and not room_version.strict_canonical_json:
        return int(value) if math.isfinite(value) else None
    return None


def get_creators(room_version: RoomVersion, create_event: Event | None) -> frozenset[str]:
    """The room's creators.

    v1-10: ``content.creator``; v11: the create event's ``sender``; v12: the ``sender`` plus
    every string in ``content.additional_creators``.

    Args:
        room_version: the room's version.
        create_event: the room's ``m.room.create`` event; None gives no creators.
    """
    if create_event is None:
        return frozenset()
    if not room_version.implicit_room_creator:
        creator = create_event.content.get("creator")
        return frozenset((creator,)) if isinstance(creator, str) else frozenset()
    creators = {create_event.sender}
    if room_version.privileged_creators:
        extra = create_event.content.get("additional_creators")
        if isinstance(extra, list):
            creators.update(u for u in extra if isinstance(u, str))
    return frozenset(creators)


def _power_levels_content(auth_state: Mapping[StateKey, Event]) -> Mapping[str, Any] | None:
    pl = auth_state.get(POWER_LEVELS_KEY)
    return None if pl is None else pl.content


def get_power_level(
    room_version: RoomVersion, auth_state: Mapping[StateKey, Event], user_id: str
) -> int | float:
    """A user's power level.

    Args:
        room_version: the room's version.
        auth_state: room state keyed by (type, state_key); reads the create and power levels
            events.
        user_id: the user.

    Returns:
        An ``int``, or :data:`CREATOR_POWER_LEVEL` (``math.inf``) for a creator in room
        versions with privileged creators. Compare it, never serialise it.
    """
    create_event = auth_state.get(CREATE_KEY)
    if room_version.privileged_creators and user_id in get_creators(room_version, create_event):
        return CREATOR_POWER_LEVEL
    content = _power_levels_content(auth_state)
    if content is None:
        return 100 if user_id in get_creators(room_version, create_event) else 0
    users = content.get("users")
    if isinstance(users, Mapping) and user_id in users:
        level = parse_int_power_level(room_version, users[user_id])
        if level is not None:
            return level
    default = parse_int_power_level(room_version, content.get("users_default", 0))
    return 0 if default is None else default


def get_named_level(
    room_version: RoomVersion,
    auth_state: Mapping[StateKey, Event],
    name: str,
    default: int | None = None,
) -> int:
    """A top-level level of the power levels event: ``invite``, ``kick``, ``ban``, ...

    Args:
        room_version: the room's version.
        auth_state: room state keyed by (type, state_key).
        name: the key in ``m.room.power_levels`` content.
        default: the level when the key (or the event) is absent; by default the spec's
            default from :data:`NAMED_LEVEL_DEFAULTS`.
    """
    if default is None:
        default = NAMED_LEVEL_DEFAULTS[name]
    content = _power_levels_content(auth_state)
    if content is None or name not in content:
        return default
    level = parse_int_power_level(room_version, content[name])
    return default if level is None else level


def get_required_power_level(
    room_version: RoomVersion,
    auth_state: Mapping[StateKey, Event],
    event_type: str,
    state_key: str | None,
) -> int:
    """The *required power level* to send an event: ``events[type]``, else ``state_default``
    for state events or ``events_default`` for the others."""
    content = _power_levels_content(auth_state)
    if content is not None:
        events = content.get("events")
        if isinstance(events, Mapping) and event_type in events:
            level = parse_int_power_level(room_version, events[event_type])
            if level is not None:
                return level
    name = "events_default" if state_key is None else "state_default"
    return get_named_level(room_version, auth_state, name)


def get_notification_level(
    room_version: RoomVersion, auth_state: Mapping[StateKey, Event], key: str = "room"
) -> int:
    """The level needed to trigger a notification such as ``@room`` (``notifications.room``,
    default 50)."""
    content = _power_levels_content(auth_state)
    if content is not None:
        notifications = content.get("notifications")
        if isinstance(notifications, Mapping) and key in notifications:
            level = parse_int_power_level(room_version, notifications[key])
            if level is not None:
                return level
    return 50


def _is_user_id(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parse_user_id(value)
    except InvalidIdentifier:
        return False
    return True


def check_additional_creators(value: Any) -> None:
    """Create rule 1.4 (v12): ``additional_creators`` must be an array of valid user IDs.

    Raises:
        AuthError: ``create.invalid_additional_creators``.
    """
    if not isinstance(value, list) or not all(_is_user_id(u) for u in value):
        raise AuthError(
            "create.invalid_additional_creators",
            "additional_creators must be an array of user IDs",
        )


def check_power_levels_content(
    room_version: RoomVersion, content: Mapping[str, Any], creators: frozenset[str]
) -> None:
    """Power levels rules 10.1-10.4: the shape of a new ``m.room.power_levels`` content.

    From v10 the spec demands integers for the named levels, ``events``, ``notifications``
    and ``users``. Before v10 it only spells out ``users`` (integers or integer strings);
    we hold the other keys to the same per-version value format, because an event whose
    levels cannot be read cannot be authorised against later (Synapse errors on them too).

    Raises:
        AuthError: ``power_levels.invalid_level``, ``power_levels.invalid_level_map``,
            ``power_levels.invalid_users`` or ``power_levels.creator_in_users``.
    """
    for name in NAMED_LEVEL_DEFAULTS:
        if name in content and parse_int_power_level(room_version, content[name]) is None:
            raise AuthError("power_levels.invalid_level", f"{name} is not an integer")
    for name in LEVEL_MAP_KEYS:
        if name not in content:
            continue
        levels = content[name]
        if not isinstance(levels, Mapping) or any(
            parse_int_power_level(room_version, v) is None for v in levels.values()
        ):
            raise AuthError(
                "power_levels.invalid_level_map", f"{name} is not an object of integers"
            )
    users = content.get("users", {})
    if not isinstance(users, Mapping):
        raise AuthError("power_levels.invalid_users", "users is not an object")
    for user_id, level in users.items():
        if not _is_user_id(user_id):
            raise AuthError("power_levels.invalid_users", f"{user_id!r} is not a user ID")
        if parse_int_power_level(room_version, level) is None:
            raise AuthError("power_levels.invalid_users", f"level of {user_id} is not an integer")
    if room_version.privileged_creators:
        listed = creators.intersection(users)
        if listed:
            raise AuthError(
                "power_levels.creator_in_users",
                f"room creators may not be listed in users: {sorted(listed)}",
            )


def _levels(room_version: RoomVersion, raw: Any) -> dict[str, int]:
    """The parseable entries of a level map (unparseable ones count as absent)."""
    if not isinstance(raw, Mapping):
        return {}
    out: dict[str, int] = {}
    for key, value in raw.items():
        level = parse_int_power_level(room_version, value)
        if level is not None:
            out[key] = level
    return out


def check_power_levels_change(
    room_version: RoomVersion,
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    sender: str,
    sender_level: int | float,
) -> None:
    """Power levels rules 10.6-10.10: what the sender may change.

    Args:
        room_version: the room's version (value formats; ``notifications`` is only checked
            with ``limit_notifications_power_levels``, v6+).
        old: content of the current power levels event.
        new: content of the new one (already passed :func:`check_power_levels_content`).
        sender: the new event's sender.
        sender_level: the sender's current power level.

    Raises:
        AuthError: ``power_levels.named_level_above_sender``,
            ``power_levels.event_level_above_sender``,
            ``power_levels.notification_level_above_sender``,
            ``power_levels.user_at_or_above_sender`` or
            ``power_levels.user_level_above_sender``.
    """
    old_named = _levels(room_version, {k: old[k] for k in NAMED_LEVEL_DEFAULTS if k in old})
    new_named = _levels(room_version, {k: new[k] for k in NAMED_LEVEL_DEFAULTS if k in new})
    # 10.6: added, changed or removed named levels: neither side may exceed the sender.
    for name in NAMED_LEVEL_DEFAULTS:
        before, after = old_named.get(name), new_named.get(name)
        if before == after:
            continue
        if (before is not None and before > sender_level) or (
            after is not None and after > sender_level
        ):
            raise AuthError(
                "power_levels.named_level_above_sender",
                f"cannot change {name} from {before} to {after} with level {sender_level}",
            )

    maps = [("events", "power_levels.event_level_above_sender")]
    if room_version.limit_notifications_power_levels:
        maps.append(("notifications", "power_levels.notification_level_above_sender"))
    for name, rule in maps:
        before_map = _levels(room_version, old.get(name))
        after_map = _levels(room_version, new.get(name))
        # 10.7: entries changed or removed: the current value may not exceed the sender.
        for key, before in before_map.items():
            if after_map.get(key) != before and before > sender_level:
                raise AuthError(rule, f"cannot change {name}[{key!r}] from {before}")
        # 10.8: entries added or changed: the new value may not exceed the sender.
        for key, after in after_map.items():
            if before_map.get(key) != after and after > sender_level:
                raise AuthError(rule, f"cannot set {name}[{key!r}] to {after}")

    old_users = _levels(room_version, old.get("users"))
    new_users = _levels(room_version, new.get("users"))
    # 10.9: others' entries changed or removed: the current value must be below the sender.
    for user_id, before in old_users.items():
        if user_id == sender or new_users.get(user_id) == before:
            continue
        if before >= sender_level:
            raise AuthError(
                "power_levels.user_at_or_above_sender",
                f"cannot change the level of {user_id} ({before}) with level {sender_level}",
            )
    # 10.10: entries added or changed: the new value may not exceed the sender.
    for user_id, after in new_users.items():
        if old_users.get(user_id) != after and after > sender_level:
            raise AuthError(
                "power_levels.user_level_above_sender",
                f"cannot give {user_id} level {after} with level {sender_level}",
            )

"""A tiny room simulator for the auth rules tests.

Events are built directly as PDU dicts with made-up event IDs (no hashing, no signing):
``$N:server`` in room versions 1-2, ``$`` + 43 characters from v3. In v12 the room ID is
the create event's ID with ``!`` for ``$`` and the create event is not an auth event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from federation.core.auth_rules import (
    auth_types_for_event,
    check_auth_rules,
    check_state_independent_auth_rules,
)
from federation.core.errors import AuthError
from federation.core.events import Event, StateKey
from federation.core.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion

ALICE = "@alice:a.example"  # the creator
MOD = "@mod:b.example"  # power level 50
BOB = "@bob:b.example"  # power level 0, joined
CAROL = "@carol:c.example"  # not in the room
DAVE = "@dave:d.example"  # not in the room

CREATE: StateKey = ("m.room.create", "")

#: Room versions every membership and power levels path is run against.
VERSIONS = ["1", "6", "8", "10", "11", "12"]
KNOCK_VERSIONS = [v for v in VERSIONS if KNOWN_ROOM_VERSIONS[v].knock_join_rule]
RESTRICTED_VERSIONS = [v for v in VERSIONS if KNOWN_ROOM_VERSIONS[v].restricted_join_rule]
KNOCK_RESTRICTED_VERSIONS = [
    v for v in VERSIONS if KNOWN_ROOM_VERSIONS[v].knock_restricted_join_rule
]


def domain(identifier: str) -> str:
    return identifier.partition(":")[2]


class Room:
    """A room's events and current state, built step by step.

    Args:
        version: the room version identifier.
        setup: when True, create the standard room: ALICE creates and joins, power levels
            give MOD 50 (and ALICE 100 before v12, where she is a creator), the join rule
            is ``join_rule``, MOD and BOB join.
    """

    def __init__(
        self,
        version: str,
        *,
        setup: bool = True,
        join_rule: str = "public",
        create_content: Mapping[str, Any] | None = None,
        create_sender: str = ALICE,
    ) -> None:
        self.rv: RoomVersion = KNOWN_ROOM_VERSIONS[version]
        self.counter = 0
        self.events: dict[str, Event] = {}
        self.state: dict[StateKey, Event] = {}
        self.last: list[str] = []
        content: dict[str, Any] = {"room_version": version}
        if not self.rv.implicit_room_creator:
            content["creator"] = create_sender
        content.update(create_content or {})
        # v12: set from the create event's ID below.
        self.room_id = f"!room:{domain(create_sender)}"
        self.create = self.add(self.build("m.room.create", create_sender, content, ""))
        if not self.rv.create_event_in_auth_events:
            self.room_id = "!" + self.create.event_id[1:]
        if setup:
            self.send("m.room.member", ALICE, {"membership": "join"}, ALICE)
            self.send("m.room.power_levels", ALICE, self.power_levels(), "")
            self.send("m.room.join_rules", ALICE, {"join_rule": "public"}, "")
            self.send("m.room.member", MOD, {"membership": "join"}, MOD)
            self.send("m.room.member", BOB, {"membership": "join"}, BOB)
            if join_rule != "public":
                self.send("m.room.join_rules", ALICE, {"join_rule": join_rule}, "")

    def power_levels(self, **overrides: Any) -> dict[str, Any]:
        """The standard power levels content, with ``overrides`` (``users`` is merged)."""
        users: dict[str, Any] = {MOD: 50}
        if not self.rv.privileged_creators:
            users[ALICE] = 100
        users.update(overrides.pop("users", {}))
        return {"users": users, **overrides}

    # ------------------------------------------------------------------ building

    def new_event_id(self, sender: str) -> str:
        self.counter += 1
        if self.rv.event_ids_in_event:
            return f"${self.counter}:{domain(sender)}"
        return "$" + f"ev{self.counter}".rjust(43, "A")

    def _refs(self, ids: list[str]) -> list[Any]:
        if self.rv.event_ids_in_event:
            return [[i, {"sha256": "aGFzaA"}] for i in ids]
        return list(ids)

    def build(
        self,
        type: str,
        sender: str,
        content: Mapping[str, Any],
        state_key: str | None = None,
        *,
        prev: list[str] | None = None,
        auth: list[str] | None = None,
        event_id: str | None = None,
        signers: list[str] | None = None,
        **extra: Any,
    ) -> Event:
        """Build an event on top of the current state.

        Args:
            prev: prev event IDs (default: the last event added).
            auth: auth event IDs (default: the auth events selection on the current state).
            event_id: force an event ID (v1-2 redaction tests).
            signers: servers with a signature (default: the sender's server).
            extra: more top-level PDU fields (``room_id=None`` removes the room ID).
        """
        event_id = event_id or self.new_event_id(sender)
        if auth is None:
            if type == "m.room.create":
                auth = []
            else:
                keys = auth_types_for_event(self.rv, type, state_key, sender, content)
                auth = [self.state[k].event_id for k in keys if k in self.state]
        pdu: dict[str, Any] = {
            "type": type,
            "sender": sender,
            "content": dict(content),
            "prev_events": self._refs(self.last if prev is None else prev),
            "auth_events": self._refs(auth),
            "depth": self.counter,
            "origin_server_ts": 1_000 + self.counter,
            "hashes": {"sha256": "aGFzaA"},
            "signatures": {d: {"ed25519:k": "c2ln"} for d in (signers or [domain(sender)])},
        }
        if not (type == "m.room.create" and not self.rv.create_event_in_auth_events):
            pdu["room_id"] = self.room_id
        if state_key is not None:
            pdu["state_key"] = state_key
        if self.rv.event_ids_in_event:
            pdu["event_id"] = event_id
        for key, value in extra.items():
            if value is None:
                pdu.pop(key, None)
            else:
                pdu[key] = value
        return Event(self.rv, pdu, event_id)

    def add(self, event: Event) -> Event:
        """Append ``event`` to the room without checking it."""
        self.events[event.event_id] = event
        if event.state_tuple is not None:
            self.state[event.state_tuple] = event
        self.last = [event.event_id]
        return event

    # ------------------------------------------------------------------ checking

    def auth_state(self, event: Event) -> dict[StateKey, Event]:
        """The state the event's auth events describe, plus the create event."""
        state = {CREATE: self.create}
        for event_id in event.auth_event_ids:
            auth_event = self.events[event_id]
            assert auth_event.state_tuple is not None
            state[auth_event.state_tuple] = auth_event
        return state

    def check(self, event: Event) -> None:
        """Run every rule: state-independent with the auth events by ID, then the rest
        against the auth events."""
        check_state_independent_auth_rules(self.rv, event, self.events)
        check_auth_rules(self.rv, event, self.auth_state(event))

    def send(
        self,
        type: str,
        sender: str,
        content: Mapping[str, Any],
        state_key: str | None = None,
        **kwargs: Any,
    ) -> Event:
        """Build, check (must pass) and add an event."""
        event = self.build(type, sender, content, state_key, **kwargs)
        self.check(event)
        return self.add(event)

    def allowed(
        self,
        type: str,
        sender: str,
        content: Mapping[str, Any],
        state_key: str | None = None,
        **kwargs: Any,
    ) -> Event:
        """Build an event and assert it passes (it is not added)."""
        event = self.build(type, sender, content, state_key, **kwargs)
        self.check(event)
        return event

    def rejected(
        self,
        rule: str,
        type: str,
        sender: str,
        content: Mapping[str, Any],
        state_key: str | None = None,
        **kwargs: Any,
    ) -> AuthError:
        """Build an event and assert it fails exactly ``rule``."""
        event = self.build(type, sender, content, state_key, **kwargs)
        with pytest.raises(AuthError) as info:
            self.check(event)
        assert info.value.rule == rule, str(info.value)
        return info.value

    # ------------------------------------------------------------------ shortcuts

    def member(self, sender: str, target: str, membership: str, **content: Any) -> Event:
        return self.send("m.room.member", sender, {"membership": membership, **content}, target)

    def set_power_levels(self, **overrides: Any) -> Event:
        return self.send("m.room.power_levels", ALICE, self.power_levels(**overrides), "")

    def set_join_rule(self, join_rule: str) -> Event:
        return self.send("m.room.join_rules", ALICE, {"join_rule": join_rule}, "")

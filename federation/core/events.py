"""The PDU model.

Spec: server-server-api.md › PDUs; rooms/v*.md › Event format.

An :class:`Event` is a read-only view over the PDU JSON exactly as it was built or received
(``pdu``), plus its room version and event ID. The JSON is kept as-is so it can be re-hashed,
re-signed or sent on without changing a byte; the properties give typed access to the fields
the protocol uses. Server-local metadata (rejection, outlier, stream position) is not part of
an event: storage keeps it beside.

Building events, computing event IDs and checking received events live in ``hashing`` and
``builder`` style functions elsewhere in this package; this module only has the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from federation.core.room_versions import EventIdFormat, RoomVersion

#: Key of a state entry: (event type, state key).
StateKey = tuple[str, str]


class Event:
    """A PDU of a known room version.

    Args:
        room_version: the version of the room the event belongs to.
        pdu: the event JSON (as sent over federation: no ``unsigned`` added by us).
        event_id: the event ID. For v1-2 it is ``pdu["event_id"]``; for v3+ it is computed from
            the reference hash by the caller (see ``federation.core.hashing``).
    """

    __slots__ = ("_pdu", "event_id", "room_version")

    def __init__(self, room_version: RoomVersion, pdu: Mapping[str, Any], event_id: str) -> None:
        self.room_version = room_version
        self._pdu = pdu
        self.event_id = event_id

    def __repr__(self) -> str:
        return f"<Event {self.event_id} {self.type} {self.state_key!r} by {self.sender}>"

    @property
    def pdu(self) -> Mapping[str, Any]:
        """The event JSON. Treat as read-only."""
        return self._pdu

    @property
    def type(self) -> str:
        return str(self._pdu["type"])

    @property
    def room_id(self) -> str:
        return str(self._pdu["room_id"])

    @property
    def sender(self) -> str:
        return str(self._pdu["sender"])

    @property
    def state_key(self) -> str | None:
        sk = self._pdu.get("state_key")
        return sk if isinstance(sk, str) else None

    @property
    def is_state(self) -> bool:
        return isinstance(self._pdu.get("state_key"), str)

    @property
    def content(self) -> Mapping[str, Any]:
        c = self._pdu.get("content")
        return c if isinstance(c, Mapping) else {}

    @property
    def depth(self) -> int:
        return int(self._pdu.get("depth", 0))

    @property
    def origin_server_ts(self) -> int:
        return int(self._pdu.get("origin_server_ts", 0))

    @property
    def membership(self) -> str | None:
        """``content.membership`` of an ``m.room.member`` event, else None."""
        m = self.content.get("membership")
        return m if isinstance(m, str) else None

    @property
    def redacts(self) -> str | None:
        """The event this redaction redacts (top level before v11, in content from v11)."""
        r = self._pdu.get("redacts")
        if r is None:
            r = self.content.get("redacts")
        return r if isinstance(r, str) else None

    @property
    def prev_event_ids(self) -> Sequence[str]:
        return _event_id_list(self.room_version, self._pdu.get("prev_events", []))

    @property
    def auth_event_ids(self) -> Sequence[str]:
        return _event_id_list(self.room_version, self._pdu.get("auth_events", []))

    @property
    def state_tuple(self) -> StateKey | None:
        sk = self.state_key
        return None if sk is None else (self.type, sk)


def _event_id_list(room_version: RoomVersion, raw: Any) -> list[str]:
    """``prev_events`` and ``auth_events``: v1-2 ``[[event_id, {hashes}], …]``, v3+ ``[id]``."""
    if not isinstance(raw, list):
        return []
    if room_version.event_id_format is EventIdFormat.V1_ORIGIN:
        return [str(item[0]) for item in raw if isinstance(item, list) and item]
    return [str(item) for item in raw if isinstance(item, str)]

"""Streams and stream tokens.

A stream is a monotonically increasing position per kind of update. Every write that a client
must later learn about through ``/sync`` takes the next position of its stream in the same
transaction as the write, so "everything after position N" is a range query.

A :class:`StreamToken` is one position per stream; its string form is what ``/sync`` hands out
as ``next_batch`` and takes back as ``since``. The form is opaque to clients and stable across
restarts (positions come from the database).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace


class StreamName(enum.Enum):
    """The kinds of update that have a stream. The value is the stored name."""

    EVENTS = "events"
    TYPING = "typing"
    RECEIPTS = "receipts"
    ACCOUNT_DATA = "account_data"
    TO_DEVICE = "to_device"
    DEVICE_LISTS = "device_lists"
    PRESENCE = "presence"


#: Order of the positions in a token's string form. Append only: never reorder.
_TOKEN_ORDER: tuple[StreamName, ...] = (
    StreamName.EVENTS,
    StreamName.TYPING,
    StreamName.RECEIPTS,
    StreamName.ACCOUNT_DATA,
    StreamName.TO_DEVICE,
    StreamName.DEVICE_LISTS,
    StreamName.PRESENCE,
)


class InvalidStreamToken(ValueError):
    """A token string does not parse."""


def _zero() -> dict[StreamName, int]:
    return {name: 0 for name in _TOKEN_ORDER}


@dataclass(frozen=True)
class StreamToken:
    """One position per stream.

    The string form is ``s`` followed by the positions joined with ``_`` in ``_TOKEN_ORDER``;
    positions missing at the end (a token from an older server) read as 0.
    """

    positions: dict[StreamName, int] = field(default_factory=_zero)

    def get(self, name: StreamName) -> int:
        return self.positions.get(name, 0)

    def advance(self, name: StreamName, position: int) -> StreamToken:
        """Return a token whose ``name`` position is at least ``position``."""
        if position <= self.get(name):
            return self
        positions = dict(self.positions)
        positions[name] = position
        return replace(self, positions=positions)

    def to_string(self) -> str:
        return "s" + "_".join(str(self.get(name)) for name in _TOKEN_ORDER)

    @classmethod
    def parse(cls, text: str) -> StreamToken:
        """Parse a token string.

        Raises:
            InvalidStreamToken: the string is not a token this server made.
        """
        if not text.startswith("s") or len(text) > 200:
            raise InvalidStreamToken(text)
        parts = text[1:].split("_")
        if len(parts) > len(_TOKEN_ORDER):
            raise InvalidStreamToken(text)
        positions = _zero()
        for name, part in zip(_TOKEN_ORDER, parts, strict=False):
            if not part.isdigit() or len(part) > 19:
                raise InvalidStreamToken(text)
            positions[name] = int(part)
        return cls(positions)

    def __str__(self) -> str:
        return self.to_string()

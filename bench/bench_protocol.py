"""Protocol core micro-benchmarks: canonical JSON, building and verifying one event.

Run from the repository root::

    .venv/bin/python bench/bench_protocol.py

Prints µs/op (best of several repeats, so noise on a shared machine shows less).
"""

from __future__ import annotations

import json
import platform
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from federation.core.builder import (
    build_event,
    check_content_hash,
    check_event_format,
    check_received_event,
    key_lookup,
    verify_event_signatures,
)
from federation.core.canonicaljson import (
    encode_canonical_json,
    encode_canonical_json_reference,
)
from federation.core.room_versions import get_room_version
from federation.core.signing import KnownKey, SigningKey

ROOM_VERSION = get_room_version("11")
KEY = SigningKey(bytes(range(32)), "a_bcde")
ORIGIN = "matrix.example.org"
TS = 1_764_000_000_000
LOOKUP = key_lookup(
    ROOM_VERSION, {ORIGIN: {KEY.key_id: KnownKey(KEY.verify_key, valid_until_ts=TS + 10**9)}}
)


def build() -> Any:
    """A typical message event: formatted body, reply relation, 3 prev and 4 auth events."""
    return build_event(
        ROOM_VERSION,
        room_id="!OGEhHVWSdvArJzumhm:matrix.example.org",
        sender="@alice.liddell:matrix.example.org",
        type="m.room.message",
        content={
            "body": "Yes, 10:00 at the usual place — I'll bring the slides 📊",
            "format": "org.matrix.custom.html",
            "formatted_body": "Yes, <b>10:00</b> at the usual place — I'll bring the slides 📊",
            "msgtype": "m.text",
            "m.relates_to": {
                "m.in_reply_to": {"event_id": "$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg"}
            },
        },
        prev_event_ids=[
            "$W8Q1i0X5l0aPXyZ1h3pY0hQZp3o5B2sRk4dLqzN9v7c",
            "$pJ0lOQ3Pp4gTb5bXk7V5wQ0c3yZ8nE2dF6hR1sT9uYw",
        ],
        auth_event_ids=[
            "$Aq1w2e3r4t5y6u7i8o9p0aSdFgHjKlZxCvBnM1234ab",
            "$Bq1w2e3r4t5y6u7i8o9p0aSdFgHjKlZxCvBnM1234ab",
            "$Cq1w2e3r4t5y6u7i8o9p0aSdFgHjKlZxCvBnM1234ab",
        ],
        depth=48213,
        origin_server_ts=TS,
        origin=ORIGIN,
        signing_key=KEY,
    )


PDU = dict(build().pdu)
MSG = encode_canonical_json(PDU)
SIG = KEY.sign(MSG)


def verify() -> None:
    check_event_format(ROOM_VERSION, PDU)
    verify_event_signatures(ROOM_VERSION, PDU, LOOKUP)
    check_content_hash(PDU)


def verify_and_id() -> None:
    check_received_event(ROOM_VERSION, PDU, LOOKUP)


def per_op_us(fn: Callable[[], Any], number: int) -> float:
    return min(timeit.repeat(fn, number=max(1, number // 4), repeat=25)) / max(1, number // 4) * 1e6


def main() -> None:
    size = len(encode_canonical_json(PDU))
    assert encode_canonical_json(PDU) == encode_canonical_json_reference(PDU)
    rows = [
        ("canonical JSON, fast (orjson + guard walk)", lambda: encode_canonical_json(PDU), 20000),
        (
            "canonical JSON, pure-Python reference",
            lambda: encode_canonical_json_reference(PDU),
            2000,
        ),
        (
            "json.dumps (the spec's snippet, no checks)",
            lambda: json.dumps(PDU, ensure_ascii=False, separators=(",", ":"), sort_keys=True),
            5000,
        ),
        ("build + hash + sign one event (v11)", build, 2000),
        ("verify one received event: format + signature + hash", verify, 2000),
        ("  check_received_event: the same plus the event ID", verify_and_id, 2000),
        (
            "  of which: ed25519 verify alone (PyNaCl)",
            lambda: KEY.verify_key.verify(MSG, SIG),
            2000,
        ),
        ("  of which: ed25519 sign alone (PyNaCl)", lambda: KEY.sign(MSG), 2000),
    ]
    print(f"Python {platform.python_version()} on {platform.machine()}, PDU {size} bytes canonical")
    for name, fn, number in rows:
        print(f"{per_op_us(fn, number):9.1f} µs/op  {name}")


if __name__ == "__main__":
    main()

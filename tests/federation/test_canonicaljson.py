"""Canonical JSON: appendices.md › Signing JSON › Canonical JSON (and canonical-json.json)."""

from __future__ import annotations

import datetime
import enum
import json
import uuid
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from federation.core.canonicaljson import (
    MAX_NESTING,
    MAX_SAFE_INT,
    decode_json,
    encode_canonical_json,
    encode_canonical_json_reference,
)
from federation.core.errors import CanonicalJSONError
from tests.federation._vectors import load

VECTORS = load("canonical-json.json")["vectors"]


def spec_snippet(value: Any) -> bytes:
    """The Python snippet printed in the spec."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


@pytest.mark.parametrize("vector", VECTORS, ids=range(len(VECTORS)))
def test_vectors(vector):
    value = decode_json(vector["input_text"])
    expected = vector["expected"].encode("utf-8")
    assert encode_canonical_json(value) == expected
    assert encode_canonical_json_reference(value) == expected
    assert decode_json(vector["input_text"].encode("utf-8")) == value


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-MAX_SAFE_INT, max_value=MAX_SAFE_INT)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5)
    ),
    max_leaves=30,
)


@given(json_values)
def test_fast_equals_reference_and_spec_snippet(value):
    fast = encode_canonical_json(value)
    assert fast == encode_canonical_json_reference(value)
    assert fast == spec_snippet(value)


@given(json_values)
def test_round_trip(value):
    encoded = encode_canonical_json(value)
    assert decode_json(encoded) == value
    assert encode_canonical_json(decode_json(encoded)) == encoded


@given(st.dictionaries(st.text(), st.integers(-5, 5), min_size=1, max_size=20))
def test_keys_sorted_by_code_point(obj):
    pairs = json.loads(encode_canonical_json(obj), object_pairs_hook=lambda p: p)
    keys = [k for k, _ in pairs]
    assert keys == sorted(obj)
    # Python sorts str by code point; UTF-8 byte order agrees (no surrogates involved).
    assert keys == sorted(obj, key=lambda k: k.encode("utf-8"))


@given(st.text())
def test_strings_are_shortest_utf8(s):
    out = encode_canonical_json(s).decode("utf-8")
    for ch in s:
        if ord(ch) >= 0x20 and ch not in '"\\':
            assert ch in out  # raw, never \u-escaped (incl. U+007F, U+2028, U+2029)


def test_escapes_match_grammar():
    s = "".join(chr(i) for i in range(0x20)) + '"\\\x7f\u2028\u2029'
    expected = (
        '"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r'
        "\\u000e\\u000f\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018"
        '\\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f\\"\\\\\x7f\u2028\u2029"'
    ).encode("utf-8")
    assert encode_canonical_json(s) == expected
    assert encode_canonical_json_reference(s) == expected


class Colour(enum.Enum):
    RED = "red"


@dataclass
class Point:
    x: int


BAD_VALUES = [
    1.0,
    0.5,
    float("nan"),
    float("inf"),
    MAX_SAFE_INT + 1,
    -MAX_SAFE_INT - 1,
    2**64,
    {1: "a"},
    {("a",): 1},
    "\ud800",
    {"\udfff": 1},
    b"bytes",
    {1, 2},
    datetime.datetime(2020, 1, 1),
    uuid.UUID(int=0),
    Colour.RED,
    Point(1),
    object(),
]


@pytest.mark.parametrize("bad", BAD_VALUES, ids=repr)
def test_rejected_values(bad):
    for wrap in (lambda v: v, lambda v: {"a": [1, {"b": v}]}, lambda v: [v]):
        with pytest.raises(CanonicalJSONError):
            encode_canonical_json(wrap(bad))
        with pytest.raises(CanonicalJSONError):
            encode_canonical_json_reference(wrap(bad))


@given(
    st.floats(allow_nan=True, allow_infinity=True)
    | st.integers().filter(lambda i: abs(i) > MAX_SAFE_INT)
)
def test_rejected_numbers_property(bad):
    with pytest.raises(CanonicalJSONError):
        encode_canonical_json({"k": [bad]})
    with pytest.raises(CanonicalJSONError):
        encode_canonical_json_reference({"k": [bad]})


def test_range_limits_accepted():
    assert encode_canonical_json([MAX_SAFE_INT, -MAX_SAFE_INT, 0, True, False, None]) == (
        b"[9007199254740991,-9007199254740991,0,true,false,null]"
    )


def test_mappings_tuples_and_subclasses():
    value = {"b": (1, 2), "a": MappingProxyType({"y": 1, "x": 2})}
    assert encode_canonical_json(value) == b'{"a":{"x":2,"y":1},"b":[1,2]}'
    assert encode_canonical_json_reference(value) == b'{"a":{"x":2,"y":1},"b":[1,2]}'

    class Level(enum.IntEnum):
        HIGH = 100

    assert encode_canonical_json({"l": Level.HIGH}) == b'{"l":100}'
    assert encode_canonical_json_reference({"l": Level.HIGH}) == b'{"l":100}'


@given(
    st.recursive(
        json_scalars | st.floats(allow_nan=False, allow_infinity=False) | st.integers(),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(), c, max_size=4),
        max_leaves=15,
    )
)
def test_lax_mode_matches_python_json(value):
    # Room versions 1-5: big integers and floats are written as Python's json writes them.
    assert encode_canonical_json(value, strict=False) == spec_snippet(value)


def test_lax_mode_still_rejects_nan_and_bad_keys():
    for bad in (float("nan"), {1: 2}, "\ud800", datetime.date(2020, 1, 1)):
        with pytest.raises(CanonicalJSONError):
            encode_canonical_json([bad], strict=False)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("[-0, 1e10, -0.0, 2.0, 1E2, 9007199254740991]", [0, 10**10, 0, 2, 100, MAX_SAFE_INT]),
        ('{"a": {"b": [1.0e3]}}', {"a": {"b": [1000]}}),
    ],
)
def test_decode_integral_numbers(text, value):
    decoded = decode_json(text)
    assert decoded == value
    assert all(type(v) is int for v in decoded) if isinstance(decoded, list) else True


@pytest.mark.parametrize(
    "text",
    [
        "1.5",
        '{"a": [0.1]}',
        "9007199254740992",
        "-9007199254740992",
        "1e16",
        "1e400",
        "NaN",
        "Infinity",
        '"\\ud800"',
        b'"\xff"',
        "[1,]",
        "",
    ],
)
def test_decode_strict_rejects(text):
    with pytest.raises(CanonicalJSONError):
        decode_json(text)


def test_decode_lax_keeps_legacy_numbers():
    big = 2**70
    assert decode_json(f"[{big}, 1.5, 1e16, 18446744073709551616]", strict=False) == [
        big,
        1.5,
        10**16,
        2**64,
    ]
    with pytest.raises(CanonicalJSONError):
        decode_json("NaN", strict=False)


def nested(depth: int) -> Any:
    value: Any = []
    for i in range(depth - 1):
        value = [value] if i % 2 else {"k": value}
    return value


def test_nesting_limit_is_the_same_everywhere():
    ok, too_deep = nested(MAX_NESTING), nested(MAX_NESTING + 1)
    encoded = encode_canonical_json(ok)
    assert encoded == encode_canonical_json_reference(ok)
    assert decode_json(encoded) == ok
    for bad in (too_deep, nested(5000)):
        for encode in (encode_canonical_json, encode_canonical_json_reference):
            with pytest.raises(CanonicalJSONError):
                encode(bad)
        with pytest.raises(CanonicalJSONError):
            encode_canonical_json(bad, strict=False)
    for depth in (MAX_NESTING + 1, 1000, 5000):
        with pytest.raises(CanonicalJSONError):
            decode_json("[" * depth + "]" * depth)

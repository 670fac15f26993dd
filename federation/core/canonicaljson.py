"""Canonical JSON.

Spec: appendices.md › Signing JSON › Canonical JSON:

    "the shortest UTF-8 JSON encoding with dictionary keys lexicographically sorted by
    Unicode codepoint. Numbers in the JSON must be integers in the range
    [-(2**53)+1, (2**53)-1], represented without exponents or decimal places, and
    negative zero -0 MUST NOT appear." (Float values are not permitted.)

Design: :func:`encode_canonical_json` runs orjson with ``OPT_SORT_KEYS | OPT_STRICT_INTEGER``
(orjson sorts by UTF-8 bytes, which is code point order, escapes exactly the control
characters the grammar escapes, lower-case ``\\u00XX``, writes U+2028/2029 and all other
non-ASCII as raw UTF-8, rejects lone surrogates and non-``str`` keys, and with
``OPT_STRICT_INTEGER`` rejects integers outside ±(2**53-1)). orjson also writes floats,
dataclasses, datetimes, UUIDs and enums, so a guard walk first rejects every value that is not
``dict``/``Mapping``, ``list``/``tuple``, ``str``, ``int``, ``bool`` or ``None``.
:func:`encode_canonical_json_reference` is an independent pure-Python encoder written from the
grammar; the tests check the two agree byte for byte.

:func:`decode_json` parses PDU JSON: integral numbers such as ``1e10`` become integers
(test-vectors README, canonical JSON vector 9), and with ``strict`` (room versions 6+)
non-integral numbers and integers outside the range are rejected.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson

from federation.core.errors import CanonicalJSONError

#: The largest magnitude canonical JSON allows for an integer.
MAX_SAFE_INT = 2**53 - 1
#: The deepest nesting of arrays/objects accepted: orjson's encoding limit. Not in the spec;
#: decoding enforces it too, so whatever :func:`decode_json` returns can be encoded.
MAX_NESTING = 254

_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER
_SCALARS = (str, int, bool, type(None))


def _default(obj: Any) -> Any:
    """orjson fallback: a non-dict Mapping is encoded as a dict (the walk vetted it)."""
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(f"cannot encode {type(obj).__name__}")


def _check(obj: Any) -> None:
    """Reject every value canonical JSON cannot hold (floats, unknown types) — not ints' range."""
    t = type(obj)
    if t is dict:
        values: Any = obj.values()
    elif t is list or t is tuple:
        values = obj
    elif t is str or t is int or t is bool or obj is None:
        return
    elif isinstance(obj, Mapping):
        values = obj.values()
    elif isinstance(obj, (str, int)):  # str/int subclasses such as enums: their value
        return
    else:
        raise CanonicalJSONError(f"canonical JSON cannot encode {t.__name__}")
    for v in values:
        tv = type(v)
        if tv is str or tv is int or tv is bool or v is None:
            continue
        _check(v)


def encode_canonical_json(obj: Any, *, strict: bool = True) -> bytes:
    """Encode ``obj`` as canonical JSON bytes.

    Args:
        obj: a JSON value made of dicts (or Mappings) with str keys, lists/tuples, str, int,
            bool and None.
        strict: when False (events of room versions 1-5, which "might not be fully compliant"),
            integers of any size and finite floats are written as Python's ``json`` writes
            them, as Synapse does; everything else is unchanged.

    Returns:
        The canonical UTF-8 encoding.

    Raises:
        CanonicalJSONError: a float, an integer outside ±(2**53-1), a non-str key, a lone
            surrogate, nesting deeper than :data:`MAX_NESTING`, or a value of another type.
    """
    try:
        _check(obj)
        return orjson.dumps(obj, default=_default, option=_OPTIONS)
    except (orjson.JSONEncodeError, TypeError, RecursionError, CanonicalJSONError) as e:
        if not strict:
            return encode_canonical_json_reference(obj, strict=False)
        raise CanonicalJSONError(str(e)) from None


def _encode_trusted(obj: Any) -> bytes:
    """Encode a value already vetted by :func:`encode_canonical_json` (or a part of one)."""
    try:
        return orjson.dumps(obj, default=_default, option=_OPTIONS)
    except (orjson.JSONEncodeError, TypeError) as e:
        raise CanonicalJSONError(str(e)) from None


_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def _ref_string(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        elif 0xD800 <= ord(ch) <= 0xDFFF:
            raise CanonicalJSONError("lone surrogate in string")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _ref_value(obj: Any, strict: bool = True, depth: int = 0) -> str:
    if obj is None:
        return "null"
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    if isinstance(obj, float):
        if strict or obj != obj or obj in (float("inf"), float("-inf")):
            raise CanonicalJSONError(f"floats are not allowed: {obj!r}")
        return float.__repr__(obj)  # lax: as Python's json (and Synapse) write it
    if isinstance(obj, int):
        if strict and not -MAX_SAFE_INT <= obj <= MAX_SAFE_INT:
            raise CanonicalJSONError(f"integer out of range: {obj}")
        return str(int(obj))
    if isinstance(obj, str):
        return _ref_string(obj)
    if isinstance(obj, (list, tuple, Mapping)) and depth >= MAX_NESTING:
        raise CanonicalJSONError(f"nested deeper than {MAX_NESTING}")
    if isinstance(obj, (list, tuple)):
        return "[" + ",".join(_ref_value(v, strict, depth + 1) for v in obj) + "]"
    if isinstance(obj, Mapping):
        if not all(type(k) is str for k in obj):  # as orjson: no str subclasses either
            raise CanonicalJSONError("object keys must be str")
        items = sorted(obj.items())
        return (
            "{"
            + ",".join(_ref_string(k) + ":" + _ref_value(v, strict, depth + 1) for k, v in items)
            + "}"
        )
    raise CanonicalJSONError(f"canonical JSON cannot encode {type(obj).__name__}")


def encode_canonical_json_reference(obj: Any, *, strict: bool = True) -> bytes:
    """Pure-Python canonical JSON written from the spec's grammar (slow; for tests and checks).

    Args:
        obj: the value to encode.
        strict: as for :func:`encode_canonical_json`.

    Raises:
        CanonicalJSONError: as :func:`encode_canonical_json`.
    """
    return _ref_value(obj, strict).encode("utf-8")


def _normalise(obj: Any, strict: bool, exact: bool = False, depth: int = 0) -> Any:
    """Turn integral floats into ints; in strict mode reject other floats and big integers."""
    t = type(obj)
    if (t is dict or t is list) and depth >= MAX_NESTING:
        raise CanonicalJSONError(f"nested deeper than {MAX_NESTING}")
    if t is dict:
        for k, v in obj.items():
            tv = type(v)
            if tv is str or tv is bool or v is None:
                continue
            obj[k] = _normalise(v, strict, exact, depth + 1)
        return obj
    if t is list:
        for i, v in enumerate(obj):
            tv = type(v)
            if tv is str or tv is bool or v is None:
                continue
            obj[i] = _normalise(v, strict, exact, depth + 1)
        return obj
    if t is int:
        if strict and not -MAX_SAFE_INT <= obj <= MAX_SAFE_INT:
            raise CanonicalJSONError(f"integer out of range: {obj}")
        return obj
    if t is float:
        if obj.is_integer() and -MAX_SAFE_INT <= obj <= MAX_SAFE_INT:
            return int(obj)
        if strict:
            raise CanonicalJSONError(f"number is not an integer in range: {obj!r}")
        if obj.is_integer() and not exact:
            raise _Reparse
        return obj
    return obj


def decode_json(data: bytes | str, *, strict: bool = True) -> Any:
    """Parse JSON text received over federation or from a client.

    Integral numbers (``1e10``, ``-0``, ``2.0``) become ints. With ``strict`` (room versions
    6+ and anything signed), a number that is not an integer within ±(2**53-1) is rejected;
    without it such numbers are kept (as float, or int) for room versions 1-5.

    Raises:
        CanonicalJSONError: the text is not valid JSON (including invalid UTF-8, lone
            surrogate escapes, NaN/Infinity) or, when strict, has a disallowed number.
    """
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise CanonicalJSONError(f"invalid JSON: {e}") from None
    try:
        return _normalise(obj, strict, False)
    except _Reparse:
        # orjson reads integers beyond 64 bits as floats; the stdlib keeps them exact.
        return _normalise(json.loads(data, parse_constant=_reject_constant), strict, True)


class _Reparse(Exception):
    """Lax mode met a float that may stand for an exact big integer."""


def _reject_constant(name: str) -> Any:
    raise CanonicalJSONError(f"invalid JSON: {name}")

"""Reading typed fields out of a JSON body at the edge (``400 M_BAD_JSON`` when mistyped)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeserver.errors import BadJson, MissingParam

__all__ = ["opt_bool", "opt_int", "opt_str", "req_str"]


def opt_str(body: Mapping[str, Any], key: str, *, max_len: int = 65536) -> str | None:
    """``body[key]`` if a string, None if absent or null."""
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadJson(f"{key} must be a string")
    if len(value) > max_len:
        raise BadJson(f"{key} is too long")
    return value


def req_str(body: Mapping[str, Any], key: str, *, max_len: int = 65536) -> str:
    """``body[key]``, which must be a string."""
    value = opt_str(body, key, max_len=max_len)
    if value is None:
        raise MissingParam(f"{key} is required")
    return value


def opt_bool(body: Mapping[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise BadJson(f"{key} must be a boolean")
    return value


def opt_int(body: Mapping[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadJson(f"{key} must be an integer")
    return value

"""Small helpers for turning request bodies into typed values at the API edge."""

from __future__ import annotations

from typing import Any

from quart import request

from homeserver.api._http import JsonDict, read_json_body
from homeserver.errors import BadJson, MissingParam, TooLarge

__all__ = ["optional_json_body", "optional_string", "required_string"]


async def optional_json_body(max_bytes: int) -> JsonDict:
    """The body as a JSON object, or ``{}`` when the request has no body.

    Some endpoints take a body the spec calls required but clients leave out (``DELETE
    /devices/{deviceId}`` before user-interactive auth, ``POST .../openid/request_token``).
    """
    data = await request.get_data(cache=True, as_text=False)
    if len(data) > max_bytes:
        raise TooLarge()
    if not data.strip():
        return {}
    return await read_json_body(max_bytes)


def required_string(body: JsonDict, key: str) -> str:
    """``body[key]``, which must be a string.

    Raises:
        MissingParam: absent.
        BadJson: not a string.
    """
    if key not in body:
        raise MissingParam(f"Missing {key!r}")
    return _string(body[key], key)


def optional_string(body: JsonDict, key: str) -> str | None:
    """``body[key]`` if present, which must then be a string (``null`` reads as absent)."""
    value = body.get(key)
    return None if value is None else _string(value, key)


def _string(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise BadJson(f"{key!r} must be a string")
    return value

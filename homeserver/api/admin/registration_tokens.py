"""Admin API for registration tokens, shaped like Synapse's.

Synapse: ``/_synapse/admin/v1/registration_tokens`` (docs/usage/administration/admin_api/
registration_tokens.md). Server admins only (``users.is_admin``); everyone else gets
``403 M_FORBIDDEN``. ``pending`` counts UIA sessions that completed the token stage but have
not registered yet; ``completed`` counts accounts created with the token.
"""

from __future__ import annotations

from typing import Any

from quart import request

from homeserver.api._http import read_json_body, route
from homeserver.api.client._fields import opt_int, opt_str
from homeserver.errors import Forbidden, InvalidParam
from homeserver.services.registration import RegistrationService, RegistrationToken, TokenLimits
from homeserver.services.requester import Requester

__all__ = ["RegistrationTokensAdminApi"]

PREFIX = "/_synapse/admin/v1/registration_tokens"


def _render(row: RegistrationToken) -> dict[str, Any]:
    return {
        "token": row.token,
        "uses_allowed": row.uses_allowed,
        "pending": row.pending,
        "completed": row.completed,
        "expiry_time": row.expiry_time,
    }


def _admin(requester: Requester) -> None:
    if not requester.is_admin:
        raise Forbidden("You are not a server admin")


class RegistrationTokensAdminApi:
    """Create, list, read, update and delete registration tokens."""

    def __init__(self, registration: RegistrationService, *, max_body_bytes: int) -> None:
        self._reg = registration
        self._max = max_body_bytes

    @route("GET", PREFIX, auth="user")
    async def list_tokens(self, requester: Requester) -> Any:
        """GET /_synapse/admin/v1/registration_tokens (``?valid=true|false``)."""
        _admin(requester)
        valid_arg = request.args.get("valid")
        if valid_arg not in (None, "true", "false"):
            raise InvalidParam("valid must be true or false")
        valid = None if valid_arg is None else valid_arg == "true"
        rows = await self._reg.list_tokens(valid=valid)
        return {"registration_tokens": [_render(r) for r in rows]}

    @route("POST", PREFIX + "/new", auth="user")
    async def create_token(self, requester: Requester) -> Any:
        """POST /_synapse/admin/v1/registration_tokens/new.

        Body: ``token`` (else random of ``length``, default 16), ``uses_allowed``,
        ``expiry_time`` (ms since the epoch); all optional.
        """
        _admin(requester)
        body = await read_json_body(self._max)
        length = opt_int(body, "length")
        row = await self._reg.create_token(
            opt_str(body, "token", max_len=64),
            length=16 if length is None else length,
            limits=TokenLimits(opt_int(body, "uses_allowed"), opt_int(body, "expiry_time")),
        )
        return _render(row)

    @route("GET", PREFIX + "/{token}", auth="user")
    async def get_token(self, requester: Requester, token: str) -> Any:
        """GET /_synapse/admin/v1/registration_tokens/<token>."""
        _admin(requester)
        return _render(await self._reg.get_token(token))

    @route("PUT", PREFIX + "/{token}", auth="user")
    async def update_token(self, requester: Requester, token: str) -> Any:
        """PUT /_synapse/admin/v1/registration_tokens/<token>: ``uses_allowed`` and
        ``expiry_time`` (a key left out keeps its value; null removes the limit)."""
        _admin(requester)
        body = await read_json_body(self._max)
        current = await self._reg.get_token(token)
        limits = TokenLimits(
            opt_int(body, "uses_allowed") if "uses_allowed" in body else current.uses_allowed,
            opt_int(body, "expiry_time") if "expiry_time" in body else current.expiry_time,
        )
        return _render(await self._reg.update_token(token, limits))

    @route("DELETE", PREFIX + "/{token}", auth="user")
    async def delete_token(self, requester: Requester, token: str) -> Any:
        """DELETE /_synapse/admin/v1/registration_tokens/<token>."""
        _admin(requester)
        await self._reg.delete_token(token)
        return {}

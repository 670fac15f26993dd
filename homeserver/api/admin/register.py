"""Shared-secret registration, shaped exactly like Synapse's.

Synapse: ``/_synapse/admin/v1/register`` (docs/admin_api/register_api.md); the rules are in
:mod:`homeserver.services.shared_secret_registration`. No access token: the HMAC under
``registration_shared_secret`` is the authentication.
"""

from __future__ import annotations

from typing import Any

from homeserver.api._http import read_json_body, route
from homeserver.api.client._fields import opt_bool, opt_str, req_str
from homeserver.api.client.register import session_body
from homeserver.services.shared_secret_registration import (
    SharedSecretRegistration,
    SharedSecretRequest,
)

__all__ = ["SharedSecretRegisterApi"]

PATH = "/_synapse/admin/v1/register"


class SharedSecretRegisterApi:
    """``GET`` (nonce) and ``POST`` (register) ``/_synapse/admin/v1/register``."""

    def __init__(
        self, registrar: SharedSecretRegistration, *, server_name: str, max_body_bytes: int
    ) -> None:
        self._registrar = registrar
        self._server_name = server_name
        self._max = max_body_bytes

    @route("GET", PATH)
    async def get_nonce(self) -> Any:
        """GET /_synapse/admin/v1/register — Synapse admin API, Shared-Secret Registration.

        "To fetch the nonce, you need to request one from the API": ``{"nonce": "..."}``.
        400 when no ``registration_shared_secret`` is configured.
        """
        return {"nonce": self._registrar.new_nonce()}

    @route("POST", PATH)
    async def register(self) -> Any:
        """POST /_synapse/admin/v1/register — Synapse admin API, Shared-Secret Registration.

        "Make a POST to the same URL with a JSON body containing the nonce, username, password,
        whether they are an admin (optional, False by default), and a HMAC digest of the
        content." Answers ``{access_token, user_id, home_server, device_id}``. Unknown or used
        nonce: 400 ``M_INVALID_PARAM``; wrong MAC: 403 ``M_FORBIDDEN``.
        """
        body = await read_json_body(self._max)
        session = await self._registrar.register(
            SharedSecretRequest(
                nonce=req_str(body, "nonce", max_len=255),
                username=req_str(body, "username", max_len=4096),
                password=req_str(body, "password", max_len=4096),
                admin=opt_bool(body, "admin", False),
                user_type=opt_str(body, "user_type", max_len=255),
                displayname=opt_str(body, "displayname", max_len=4096),
                mac=req_str(body, "mac", max_len=255),
            )
        )
        return session_body(session, self._server_name)

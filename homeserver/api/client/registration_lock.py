"""Registration lock and login with an SMS code: extension ``org.example.reglock``.

Not in the Matrix spec; modelled on Signal's registration lock. The API is documented for client
authors in ``docs/reference/registration_lock.md``; the rules are in
:mod:`homeserver.services.registration_lock`.

- ``GET    /_matrix/client/unstable/org.example.reglock/pin``  whether a PIN is set
- ``PUT    /_matrix/client/unstable/org.example.reglock/pin``  ``{"pin": "...", "auth": {...}}``
- ``DELETE /_matrix/client/unstable/org.example.reglock/pin``  ``{"auth": {...}}``
- ``POST   /_matrix/client/unstable/org.example.reglock/login/msisdn/requestToken``: an SMS code
  for ``POST /login`` with ``type: m.login.msisdn`` (the number must belong to an account).

Setting and removing the PIN use user-interactive auth (``m.login.password``, or
``m.login.msisdn`` with the account's own number) as the spec's password change does.
"""

from __future__ import annotations

from typing import Any

from quart import request

from homeserver.api._http import read_json_body, route
from homeserver.api.client._body import optional_json_body
from homeserver.api.client._fields import req_str
from homeserver.api.client.register import request_msisdn_token
from homeserver.errors import Unrecognized
from homeserver.services.otp import PhoneVerificationService
from homeserver.services.registration_lock import RegistrationLockService
from homeserver.services.requester import Requester
from homeserver.services.uia import MSISDN, PASSWORD, UiaService, request_key

__all__ = ["PREFIX", "RegistrationLockApi"]

PREFIX = "/_matrix/client/unstable/org.example.reglock"


class RegistrationLockApi:
    """The PIN of the registration lock, and SMS codes for logging in.

    Args:
        locks: the registration lock service.
        uia: user-interactive auth for setting and removing the PIN.
        phones: SMS codes.
        max_body_bytes: the request body limit.
        public_baseurl: this server's client URL for ``submit_url`` (None: the Host header).
    """

    def __init__(
        self,
        locks: RegistrationLockService,
        uia: UiaService,
        phones: PhoneVerificationService,
        *,
        max_body_bytes: int,
        public_baseurl: str | None = None,
    ) -> None:
        self._locks = locks
        self._uia = uia
        self._phones = phones
        self._max = max_body_bytes
        self._public_baseurl = public_baseurl

    def _check_enabled(self) -> None:
        if not self._locks.enabled:
            raise Unrecognized(404, "The registration lock is not enabled on this server")

    def _flows(self) -> list[list[str]]:
        return [[PASSWORD], *([[MSISDN]] if self._phones.enabled else [])]

    @route("GET", PREFIX + "/pin", auth="user")
    async def get_pin(self, requester: Requester) -> Any:
        """GET /_matrix/client/unstable/org.example.reglock/pin — extension org.example.reglock.

        Whether the requester's account has a registration lock PIN:
        ``{"enabled": true, "set_ts": ..., "lapses_ts": ...}`` (``lapses_ts``: when the lock
        stops applying unless the account is active again) or ``{"enabled": false}``.
        """
        self._check_enabled()
        status = await self._locks.status(requester.user_id)
        body: dict[str, Any] = {"enabled": status.enabled}
        if status.enabled:
            body["set_ts"] = status.set_ts
            body["lapses_ts"] = status.lapses_ts
        return body

    @route("PUT", PREFIX + "/pin", auth="user", rate_limit="client_default")
    async def put_pin(self, requester: Requester) -> Any:
        """PUT /_matrix/client/unstable/org.example.reglock/pin — extension org.example.reglock.

        Sets or replaces the PIN (``{"pin": "..."}``, 4-64 printable characters by default) with
        user-interactive auth (401 with flows first). Bad PIN: 400 ``M_INVALID_PARAM``.
        """
        self._check_enabled()
        body = await read_json_body(self._max)
        pin = req_str(body, "pin", max_len=1024)
        self._locks.check_pin_format(pin)
        proof = await self._uia.check(
            requester=requester,
            body=body,
            request_key=request_key("PUT", request.path),
            flows=self._flows(),
            description="set registration lock PIN",
        )
        await self._locks.set_pin(requester.user_id, pin)
        await self._uia.finish(proof)
        return {}

    @route("DELETE", PREFIX + "/pin", auth="user", rate_limit="client_default")
    async def delete_pin(self, requester: Requester) -> Any:
        """DELETE /_matrix/client/unstable/org.example.reglock/pin — extension org.example.reglock.

        Removes the PIN, with user-interactive auth. Removing when none is set is not an error.
        """
        self._check_enabled()
        body = await optional_json_body(self._max)
        proof = await self._uia.check(
            requester=requester,
            body=body,
            request_key=request_key("DELETE", request.path),
            flows=self._flows(),
            description="remove registration lock PIN",
        )
        await self._locks.remove_pin(requester.user_id)
        await self._uia.finish(proof)
        return {}

    @route("POST", PREFIX + "/login/msisdn/requestToken", rate_limit="login")
    async def login_request_token(self) -> Any:
        """POST /_matrix/client/unstable/org.example.reglock/login/msisdn/requestToken.

        Extension org.example.reglock. The body and answer of the spec's
        ``POST /register/msisdn/requestToken`` (``client_secret``, ``country``,
        ``phone_number``, ``send_attempt`` → ``sid``, ``submit_url``), but the number must
        belong to an account (400 ``M_THREEPID_NOT_FOUND`` otherwise). The validated session is
        then used once with ``POST /login`` ``{"type": "m.login.msisdn", "threepid_creds":
        {"sid", "client_secret"}}``.
        """
        body = await read_json_body(self._max)
        return await request_msisdn_token(
            self._phones, body, public_baseurl=self._public_baseurl, for_login=True
        )

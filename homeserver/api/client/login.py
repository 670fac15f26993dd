"""Login, token refresh and logout.

Spec: client-server-api/_index.md › Login {id="legacy-login"} (data/api/client-server/login.yaml),
Refreshing access tokens (refresh.yaml), Logout (logout.yaml).

Extension ``org.example.reglock`` (``docs/reference/registration_lock.md``): login type
``m.login.msisdn`` (the auth type the spec defines for UIA, with its ``threepid_creds``) logs in
with an SMS code, and a phone login carries the registration lock PIN as
``org.example.reglock.pin``.

Single sign-on (CAS, ``homeserver/services/sso.py``): ``m.login.sso`` (with its one identity
provider), Synapse's legacy ``m.login.cas`` and ``m.login.token`` are listed when CAS is on;
``m.login.token`` logs in with a login token.
"""

from __future__ import annotations

from typing import Any

from homeserver.api._http import read_json_body, route
from homeserver.api.client._fields import opt_bool, opt_str, req_str
from homeserver.api.client.register import session_body
from homeserver.errors import BadJson, Codes, MatrixError
from homeserver.services.auth import AuthService
from homeserver.services.identifiers import parse_identifier
from homeserver.services.requester import Requester
from homeserver.services.sso import CasService

__all__ = ["LoginApi"]

PASSWORD = "m.login.password"
MSISDN = "m.login.msisdn"
#: The login body field that carries the registration lock PIN.
PIN_FIELD = "org.example.reglock.pin"
# single sign-on
SSO = "m.login.sso"
CAS = "m.login.cas"
TOKEN = "m.login.token"


class LoginApi:
    """``/login``, ``/refresh``, ``/logout``."""

    def __init__(
        self,
        auth: AuthService,
        *,
        server_name: str,
        max_body_bytes: int,
        sso: CasService | None = None,
        get_login_token: bool = False,
    ) -> None:
        self._auth = auth
        self._server_name = server_name
        self._max = max_body_bytes
        self._sso = sso
        self._get_login_token = get_login_token

    @property
    def _tokens_enabled(self) -> bool:
        return self._sso is not None and (self._sso.enabled or self._get_login_token)

    @route("GET", "/_matrix/client/v3/login")
    async def login_flows(self) -> Any:
        """GET /_matrix/client/v3/login — spec: Login.

        "Gets the homeserver's supported login types to authenticate users." ``m.login.msisdn``
        is listed when login with an SMS code is enabled (extension ``org.example.reglock``).
        """
        flows: list[dict[str, Any]] = [{"type": PASSWORD}]
        if self._auth.msisdn_login_enabled:
            flows.append({"type": MSISDN})
        # single sign-on
        if self._sso is not None and self._sso.enabled:
            flows.append({"type": SSO, "identity_providers": [{"id": "cas", "name": "CAS"}]})
            flows.append({"type": CAS})
        if self._tokens_enabled:
            flows.append({"type": TOKEN, "get_login_token": self._get_login_token})
        return {"flows": flows}

    @route("POST", "/_matrix/client/v3/login", rate_limit="login")
    async def login(self) -> Any:
        """POST /_matrix/client/v3/login — spec: Login.

        "Authenticates the user, and issues an access token they can use to authorize
        themself in subsequent requests." Wrong credentials: 403 ``M_FORBIDDEN``; a
        deactivated account: 403 ``M_USER_DEACTIVATED``. Rate limited per IP (route) and per
        user (service). A phone login of a registration-locked account without the right PIN:
        423 (extension ``org.example.reglock``).
        """
        body = await read_json_body(self._max)
        kind = body.get("type")
        if not isinstance(kind, str):
            raise BadJson("type must be a string")
        device_id = opt_str(body, "device_id", max_len=255)
        display_name = opt_str(body, "initial_device_display_name", max_len=512)
        want_refresh = opt_bool(body, "refresh_token", False)
        pin = opt_str(body, PIN_FIELD, max_len=1024)
        if kind == PASSWORD:
            identifier = parse_identifier(body)
            session = await self._auth.login_with_password(
                identifier,
                req_str(body, "password", max_len=512),
                device_id=device_id,
                display_name=display_name,
                want_refresh=want_refresh,
                pin=pin,
            )
        elif kind == MSISDN and self._auth.msisdn_login_enabled:
            creds = body.get("threepid_creds", body.get("threepidCreds"))
            if not isinstance(creds, dict):
                raise BadJson("threepid_creds must be an object")
            session = await self._auth.login_with_msisdn(
                sid=req_str(creds, "sid", max_len=255),
                client_secret=req_str(creds, "client_secret", max_len=255),
                device_id=device_id,
                display_name=display_name,
                want_refresh=want_refresh,
                pin=pin,
            )
        elif kind == TOKEN and self._sso is not None and self._tokens_enabled:
            session = await self._sso.login_with_token(
                req_str(body, "token", max_len=2048),
                device_id=device_id,
                display_name=display_name,
                want_refresh=want_refresh,
            )
        else:
            raise MatrixError(400, Codes.UNKNOWN, f"Unknown login type {kind!r}")
        return session_body(session, self._server_name)

    @route("POST", "/_matrix/client/v3/refresh", rate_limit="login")
    async def refresh(self) -> Any:
        """POST /_matrix/client/v3/refresh — spec: Refreshing access tokens.

        "Refresh an access token. Clients should use the returned access token when making
        subsequent API calls, and store the returned refresh token (if given) in order to
        refresh the new access token when necessary." An unknown or already used refresh token:
        401 ``M_UNKNOWN_TOKEN`` (as the spec says; Synapse answers 403).
        """
        body = await read_json_body(self._max)
        session = await self._auth.refresh(req_str(body, "refresh_token", max_len=512))
        out: dict[str, Any] = {"access_token": session.access_token}
        if session.refresh_token is not None:
            out["refresh_token"] = session.refresh_token
        if session.expires_in_ms is not None:
            out["expires_in_ms"] = session.expires_in_ms
        return out

    @route("POST", "/_matrix/client/v3/logout", auth="user")
    async def logout(self, requester: Requester) -> Any:
        """POST /_matrix/client/v3/logout — spec: Logout.

        "Invalidates an existing access token, so that it can no longer be used for
        authorization. The device associated with the access token is also deleted."
        """
        await self._auth.logout(requester)
        return {}

    @route("POST", "/_matrix/client/v3/logout/all", auth="user")
    async def logout_all(self, requester: Requester) -> Any:
        """POST /_matrix/client/v3/logout/all — spec: Logout.

        "Invalidates all access tokens for a user, so that they can no longer be used for
        authorization. This includes the access token that made this request. All devices for
        the user are also deleted."
        """
        await self._auth.logout_all(requester.user_id)
        return {}

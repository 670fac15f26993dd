"""Account registration.

Spec: client-server-api/_index.md › Account registration {id="legacy-account-registration"}
(data/api/client-server/registration.yaml), Token-authenticated registration
(registration_tokens.yaml), and ``POST /register/msisdn/requestToken`` (registration.yaml).
"""

from __future__ import annotations

from typing import Any

from quart import request

from homeserver.api._http import JsonResponse, client_ip, read_json_body, route
from homeserver.api.client._fields import opt_bool, opt_int, opt_str, req_str
from homeserver.errors import BadJson, Codes, InvalidParam, MatrixError, MissingParam
from homeserver.services.auth import Session
from homeserver.services.email_threepids import EmailPurpose, EmailVerificationService
from homeserver.services.otp import PhoneVerificationService
from homeserver.services.registration import RegisterRequest, RegistrationService
from homeserver.services.uia import UiaService, request_key

__all__ = [
    "EMAIL_SUBMIT_TOKEN_PATH",
    "SUBMIT_TOKEN_PATH",
    "RegisterApi",
    "base_url",
    "request_email_token",
    "request_msisdn_token",
    "session_body",
]

#: Where clients submit SMS codes (the ``submit_url`` of ``requestToken``); not a spec path.
SUBMIT_TOKEN_PATH = "/_homeserver/client/v1/msisdn/submit_token"
#: Where clients submit mailed tokens, and where the link in the mail points; not a spec path.
EMAIL_SUBMIT_TOKEN_PATH = "/_homeserver/client/v1/email/submit_token"


def session_body(session: Session, server_name: str) -> dict[str, Any]:
    """The login/registration answer for a new session."""
    body: dict[str, Any] = {
        "user_id": session.user_id,
        "access_token": session.access_token,
        "device_id": session.device_id,
        "home_server": server_name,
    }
    if session.refresh_token is not None:
        body["refresh_token"] = session.refresh_token
    if session.expires_in_ms is not None:
        body["expires_in_ms"] = session.expires_in_ms
    return body


def base_url(public_baseurl: str | None) -> str:
    """This server's client URL: ``public_baseurl`` if configured, else from the Host header."""
    return (public_baseurl or request.host_url).rstrip("/")


async def request_msisdn_token(
    phones: PhoneVerificationService,
    body: dict[str, Any],
    *,
    public_baseurl: str | None,
    for_login: bool = False,
) -> dict[str, Any]:
    """The shared body of the ``msisdn/requestToken`` endpoints."""
    if opt_str(body, "id_server") is not None and not phones.enabled:
        raise MatrixError(400, Codes.SERVER_NOT_TRUSTED, "Identity servers are not supported")
    send_attempt = opt_int(body, "send_attempt")
    if send_attempt is None:
        raise MissingParam("send_attempt is required")
    answer = await phones.request_token(
        client_secret=req_str(body, "client_secret", max_len=255),
        country=req_str(body, "country", max_len=8),
        phone_number=req_str(body, "phone_number", max_len=64),
        send_attempt=send_attempt,
        client_ip=client_ip(),
        for_login=for_login,
    )
    return {
        "sid": answer.sid,
        "submit_url": base_url(public_baseurl) + SUBMIT_TOKEN_PATH,
        "msisdn": answer.phone.lstrip("+"),
        "intl_fmt": answer.phone,
        "success": True,
    }


async def request_email_token(
    emails: EmailVerificationService | None,
    body: dict[str, Any],
    *,
    public_baseurl: str | None,
    purpose: EmailPurpose,
) -> dict[str, Any]:
    """The shared body of the ``email/requestToken`` endpoints (``id_server`` is ignored:
    this server sends the mail itself)."""
    if emails is None or not emails.enabled:
        raise MatrixError(400, Codes.THREEPID_DENIED, "Email validation is not enabled")
    send_attempt = opt_int(body, "send_attempt")
    if send_attempt is None:
        raise MissingParam("send_attempt is required")
    submit_url = base_url(public_baseurl) + EMAIL_SUBMIT_TOKEN_PATH
    sid = await emails.request_token(
        client_secret=req_str(body, "client_secret", max_len=255),
        email=req_str(body, "email", max_len=512),
        send_attempt=send_attempt,
        purpose=purpose,
        submit_url=submit_url,
        client_ip=client_ip(),
    )
    return {"sid": sid, "submit_url": submit_url}


def _opt_bool(body: dict[str, Any], key: str) -> bool | None:
    return opt_bool(body, key, False) if body.get(key) is not None else None


def _parse_register(body: dict[str, Any], kind: str) -> RegisterRequest:
    if kind not in ("user", "guest"):
        raise InvalidParam("kind must be 'user' or 'guest'")
    return RegisterRequest(
        kind="guest" if kind == "guest" else "user",
        username=opt_str(body, "username", max_len=4096),
        password=opt_str(body, "password", max_len=512),
        device_id=opt_str(body, "device_id", max_len=255),
        initial_device_display_name=opt_str(body, "initial_device_display_name", max_len=512),
        inhibit_login=_opt_bool(body, "inhibit_login"),
        refresh_token=_opt_bool(body, "refresh_token"),
        guest_access_token=opt_str(body, "guest_access_token", max_len=4096),
    )


class RegisterApi:
    """``/register`` and friends."""

    def __init__(
        self,
        registration: RegistrationService,
        uia: UiaService,
        phones: PhoneVerificationService,
        *,
        server_name: str,
        max_body_bytes: int,
        public_baseurl: str | None = None,
        emails: EmailVerificationService | None = None,
    ) -> None:
        self._emails = emails
        self._reg = registration
        self._uia = uia
        self._phones = phones
        self._server_name = server_name
        self._max = max_body_bytes
        self._public_baseurl = public_baseurl

    @route("POST", "/_matrix/client/v3/register", rate_limit="registration")
    async def register(self) -> Any:
        """POST /_matrix/client/v3/register — spec: Account registration.

        "Register for an account on this homeserver. ... This API endpoint uses the
        User-Interactive Authentication API, except in the cases where a guest account is being
        registered." Accepts a first request without ``auth``, with ``auth`` lacking ``type``,
        or with a one-shot ``m.login.dummy`` without ``session`` (matrix-nio), as Synapse does.
        The session remembers the parameters, so later requests may send only ``auth``; a
        replay of a completed session gives the same account. Spec (Guest Access): "Guest users
        can also upgrade their account by going through the ordinary register flow, but
        specifying the additional POST parameter ``guest_access_token``".
        """
        body = await read_json_body(self._max)
        req = _parse_register(body, request.args.get("kind", "user"))
        if req.kind == "guest":
            registered = await self._reg.register_guest(req)
        else:
            registered = await self._reg.register_interactive(
                req,
                body,
                request_key=request_key("POST", "/_matrix/client/v3/register"),
                client_ip=client_ip(),
            )
        if registered.session is None:
            return {"user_id": registered.user_id, "home_server": self._server_name}
        return session_body(registered.session, self._server_name)

    @route("GET", "/_matrix/client/v3/register/available", rate_limit="registration")
    async def available(self) -> Any:
        """GET /_matrix/client/v3/register/available — spec: Account registration.

        "Checks to see if a username is available, and valid, for the server." 400
        ``M_USER_IN_USE`` / ``M_INVALID_USERNAME`` otherwise.
        """
        username = request.args.get("username")
        if not username:
            raise MissingParam("username is required")
        await self._reg.check_available(username)
        return {"available": True}

    @route(
        "GET",
        "/_matrix/client/v1/register/m.login.registration_token/validity",
        rate_limit="registration",
    )
    async def token_validity(self) -> Any:
        """GET /_matrix/client/v1/register/m.login.registration_token/validity — spec:
        Token-authenticated registration.

        "Queries the server to determine if a given registration token is still valid at the
        time of request." 403 when the server does not use registration tokens.
        """
        token = request.args.get("token")
        if token is None:
            raise MissingParam("token is required")
        return {"valid": await self._reg.token_is_valid(token)}

    @route("POST", "/_matrix/client/v3/register/msisdn/requestToken")
    async def msisdn_request_token(self) -> Any:
        """POST /_matrix/client/v3/register/msisdn/requestToken — spec: Account registration.

        "The homeserver must check that the given phone number is not already associated with
        an account on this homeserver." This server sends the code itself and answers with a
        ``submit_url``.
        """
        body = await read_json_body(self._max)
        return await request_msisdn_token(self._phones, body, public_baseurl=self._public_baseurl)

    @route("POST", SUBMIT_TOKEN_PATH)
    async def msisdn_submit_token(self) -> Any:
        """POST /_homeserver/client/v1/msisdn/submit_token — the ``submit_url`` of
        ``requestToken``.

        Spec (registration.yaml, ``submit_url``): "the client must submit the validation token
        to [it], with identical parameters to the Identity Service API's
        ``POST /validate/msisdn/submitToken`` endpoint (without the requirement for an access
        token)": ``{sid, client_secret, token}`` → ``{"success": true}``.
        """
        body = await read_json_body(self._max)
        token = body.get("token")
        if isinstance(token, int) and not isinstance(token, bool):
            token = str(token)
        if not isinstance(token, str):
            raise BadJson("token must be a string")
        await self._phones.submit_code(
            sid=req_str(body, "sid", max_len=255),
            client_secret=req_str(body, "client_secret", max_len=255),
            code=token,
        )
        return JsonResponse({"success": True})

    @route("POST", "/_matrix/client/v3/register/email/requestToken")
    async def email_request_token(self) -> Any:
        """POST /_matrix/client/v3/register/email/requestToken — spec: Account registration.

        "The homeserver must check that the given email address is not already associated
        with an account on this homeserver." (``M_THREEPID_IN_USE``). This server mails the
        token itself and answers with a ``submit_url``.
        """
        body = await read_json_body(self._max)
        return await request_email_token(
            self._emails, body, public_baseurl=self._public_baseurl, purpose=EmailPurpose.REGISTER
        )

    @route("POST", EMAIL_SUBMIT_TOKEN_PATH)
    async def email_submit_token(self) -> Any:
        """POST /_homeserver/client/v1/email/submit_token — the ``submit_url`` of the
        ``email/requestToken`` endpoints.

        Spec (registration.yaml, ``submit_url``): the client submits ``{sid, client_secret,
        token}`` "with identical parameters to the Identity Service API's
        ``POST /validate/email/submitToken`` endpoint" → ``{"success": true}``.
        """
        if self._emails is None:
            raise MatrixError(400, Codes.THREEPID_DENIED, "Email validation is not enabled")
        body = await read_json_body(self._max)
        await self._emails.submit_token(
            sid=req_str(body, "sid", max_len=255),
            client_secret=req_str(body, "client_secret", max_len=255),
            token=req_str(body, "token", max_len=255),
        )
        return JsonResponse({"success": True})

    @route("GET", EMAIL_SUBMIT_TOKEN_PATH)
    async def email_validation_link(self) -> Any:
        """GET /_homeserver/client/v1/email/submit_token — the link in the validation mail.

        Spec (Identity Service API › ``GET /validate/email/submitToken``, which this mirrors):
        validates the session from the ``sid``, ``client_secret`` and ``token`` query
        parameters. Answers with a short text for the person who opened the link.
        """
        if self._emails is None:
            raise MatrixError(400, Codes.THREEPID_DENIED, "Email validation is not enabled")
        args = request.args
        sid, secret, token = args.get("sid"), args.get("client_secret"), args.get("token")
        if not sid or not secret or not token:
            raise MissingParam("sid, client_secret and token are required")
        await self._emails.submit_token(sid=sid, client_secret=secret, token=token)
        return JsonResponse({"success": True})

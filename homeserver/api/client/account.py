"""Account management: whoami, password, deactivation, phone numbers (3PIDs).

Spec: client-server-api/_index.md › Password management (password_management.yaml), Account
deactivation (account_deactivation.yaml), Adding account administrative contact information
(administrative_contact.yaml), ``GET /account/whoami`` (whoami.yaml).
"""

from __future__ import annotations

from typing import Any

from quart import request

from homeserver.api._http import read_json_body, route
from homeserver.api.client._fields import opt_bool, req_str
from homeserver.api.client.register import request_email_token, request_msisdn_token
from homeserver.errors import BadJson, Codes, InvalidParam, MatrixError, NotFound
from homeserver.services.account import AccountService
from homeserver.services.email_threepids import EmailPurpose, EmailVerificationService
from homeserver.services.identifiers import e164_from_msisdn, msisdn_address
from homeserver.services.identity_server import check_id_server
from homeserver.services.otp import PhoneVerificationService
from homeserver.services.requester import Requester
from homeserver.services.third_party_invites import ThirdPartyInviteService
from homeserver.services.uia import EMAIL_IDENTITY, MSISDN, PASSWORD, UiaService, request_key

__all__ = ["AccountApi"]


class AccountApi:
    """``/account/...``."""

    def __init__(
        self,
        account: AccountService,
        uia: UiaService,
        phones: PhoneVerificationService,
        *,
        max_body_bytes: int,
        public_baseurl: str | None = None,
        emails: EmailVerificationService | None = None,
    ) -> None:
        self._emails = emails
        self._account = account
        self._uia = uia
        self._phones = phones
        self._max = max_body_bytes
        self._public_baseurl = public_baseurl
        self._identity: ThirdPartyInviteService | None = None

    def use_identity_servers(self, service: ThirdPartyInviteService) -> None:
        """Unbind at the identity server a client names in ``/account/3pid/delete``."""
        self._identity = service

    def _reauth_flows(self) -> list[list[str]]:
        return [[PASSWORD], *([[MSISDN]] if self._phones.enabled else [])]

    @route("GET", "/_matrix/client/v3/account/whoami", auth="user")
    async def whoami(self, requester: Requester) -> Any:
        """GET /_matrix/client/v3/account/whoami — spec: whoami.

        "Gets information about the owner of a given access token." ``device_id`` and
        ``is_guest`` as the spec has them (v1.1, v1.2).
        """
        body: dict[str, Any] = {"user_id": requester.user_id, "is_guest": requester.is_guest}
        if requester.device_id is not None:
            body["device_id"] = requester.device_id
        return body

    @route("POST", "/_matrix/client/v3/account/password", auth="optional")
    async def change_password(self, requester: Requester | None) -> Any:
        """POST /_matrix/client/v3/account/password — spec: Password management.

        "Changes the password for an account on this homeserver. This API endpoint uses the
        User-Interactive Authentication API to ensure the user changing the password is
        actually the owner of the account." ``logout_devices`` (default true) deletes the
        user's other devices.

        Without an access token this is the password reset: "The homeserver may change the
        flows available depending on whether a valid access token is provided." The one flow
        is then ``m.login.email.identity``, with an address validated through
        ``/account/password/email/requestToken``; every device of the account is logged out
        unless ``logout_devices`` is false.
        """
        body = await read_json_body(self._max)
        new_password = req_str(body, "new_password", max_len=512)
        logout_devices = opt_bool(body, "logout_devices", True)
        if requester is None:
            if self._emails is None or not self._emails.enabled:
                raise MatrixError(401, Codes.MISSING_TOKEN, "Missing access token")
            reset = await self._uia.check(
                requester=None,
                body=body,
                request_key=request_key("POST", request.path),
                flows=[[EMAIL_IDENTITY]],
                description="reset password",
            )
            owner = await self._emails.owner(reset.email) if reset.email is not None else None
            if owner is None:
                raise MatrixError(400, Codes.THREEPID_NOT_FOUND, "No account has this address")
            await self._account.reset_password(owner, new_password, logout_devices=logout_devices)
            await self._uia.finish(reset)
            return {}
        proof = await self._uia.check(
            requester=requester,
            body=body,
            request_key=request_key("POST", request.path),
            flows=self._reauth_flows(),
            description="change password",
        )
        await self._account.change_password(requester, new_password, logout_devices=logout_devices)
        await self._uia.finish(proof)
        return {}

    @route("POST", "/_matrix/client/v3/account/deactivate", auth="user")
    async def deactivate(self, requester: Requester) -> Any:
        """POST /_matrix/client/v3/account/deactivate — spec: Account deactivation.

        "Deactivate the user's account, removing all ability for the user to login again.
        This API endpoint uses the User-Interactive Authentication API." Every device and token
        is deleted and the phone number unbound; login then answers ``M_USER_DEACTIVATED``.
        """
        body = await read_json_body(self._max)
        opt_bool(body, "erase", False)
        proof = await self._uia.check(
            requester=requester,
            body=body,
            request_key=request_key("POST", request.path),
            flows=self._reauth_flows(),
            description="deactivate account",
        )
        await self._account.deactivate(requester.user_id)
        await self._uia.finish(proof)
        return {"id_server_unbind_result": "no-support"}

    @route("GET", "/_matrix/client/v3/account/3pid", auth="user")
    async def threepids(self, requester: Requester) -> Any:
        """GET /_matrix/client/v3/account/3pid — spec: Adding account administrative contact
        information.

        "Gets a list of the third-party identifiers that the homeserver has associated with
        the user's account." Only phone numbers (``msisdn``) are kept here.
        """
        phones = await self._account.phones(requester.user_id)
        emails = await self._emails.addresses(requester.user_id) if self._emails else []
        return {
            "threepids": [
                *(
                    {
                        "medium": "email",
                        "address": e.address,
                        "validated_at": e.validated_at,
                        "added_at": e.added_at,
                    }
                    for e in emails
                ),
                *(
                    {
                        "medium": "msisdn",
                        "address": msisdn_address(p.phone),
                        "validated_at": p.added_at,
                        "added_at": p.added_at,
                    }
                    for p in phones
                ),
            ]
        }

    @route("POST", "/_matrix/client/v3/account/3pid", auth="user")
    async def add_threepid_deprecated(self, requester: Requester) -> Any:
        """POST /_matrix/client/v3/account/3pid — spec: Adding account administrative contact
        information (deprecated).

        "Adds contact information to the user's account." The ``three_pid_creds`` name a
        session this server validated itself (its ``id_server`` is not asked: Synapse does the
        same when it sends the mails); the address is bound as with ``/3pid/add``, without
        user-interactive auth (as the deprecated endpoint has none).
        """
        body = await read_json_body(self._max)
        creds = body.get("three_pid_creds", body.get("threePidCreds"))
        if not isinstance(creds, dict):
            raise BadJson("three_pid_creds must be an object")
        sid = req_str(creds, "sid", max_len=255)
        client_secret = req_str(creds, "client_secret", max_len=255)
        if not await self._bind_email(requester, sid=sid, client_secret=client_secret):
            await self._account.bind_phone(requester, sid=sid, client_secret=client_secret)
        return {}

    @route("POST", "/_matrix/client/v3/account/3pid/add", auth="user")
    async def add_threepid(self, requester: Requester) -> Any:
        """POST /_matrix/client/v3/account/3pid/add — spec: Adding account administrative
        contact information.

        "Adds contact information to the user's account. Homeservers should use 3PIDs added
        through this endpoint for password resets instead of relying on the identity server.
        ... This endpoint uses the User-Interactive Authentication API." The session (``sid``,
        ``client_secret``) must have been validated with the SMS code; a number can belong to
        one account only (``M_THREEPID_IN_USE``).
        """
        body = await read_json_body(self._max)
        sid = req_str(body, "sid", max_len=255)
        client_secret = req_str(body, "client_secret", max_len=255)
        proof = await self._uia.check(
            requester=requester,
            body=body,
            request_key=request_key("POST", request.path, {"sid": sid}),
            flows=[[PASSWORD]],
            description="add phone number",
        )
        if not await self._bind_email(requester, sid=sid, client_secret=client_secret):
            await self._account.bind_phone(requester, sid=sid, client_secret=client_secret)
        await self._uia.finish(proof)
        return {}

    @route("POST", "/_matrix/client/v3/account/3pid/delete", auth="user")
    async def delete_threepid(self, requester: Requester) -> Any:
        """POST /_matrix/client/v3/account/3pid/delete — spec: Adding account administrative
        contact information.

        "Removes a third-party identifier from the user's account. This might not cause an
        unbind of the identifier from the identity server." Removing a number that is not
        bound is not an error. With ``id_server`` the identifier is first unbound there (it
        may have been bound out of band): ``id_server_unbind_result`` is ``success`` if it
        was; no record of bindings is kept, so without ``id_server`` it is ``no-support``.
        """
        body = await read_json_body(self._max)
        medium = req_str(body, "medium", max_len=32)
        address = req_str(body, "address", max_len=512)
        result = "no-support"
        id_server = body.get("id_server")
        if id_server is not None and self._identity is not None:
            result = await self._identity.unbind(
                requester, id_server=check_id_server(id_server), medium=medium, address=address
            )
        if medium == "email" and self._emails is not None:
            await self._emails.unbind(requester.user_id, address)
            return {"id_server_unbind_result": result}
        if medium == "msisdn":
            await self._account.unbind_phone(requester.user_id, e164_from_msisdn(address))
        elif result != "success":
            raise InvalidParam("Only email and msisdn third-party identifiers are supported")
        return {"id_server_unbind_result": result}

    @route("POST", "/_matrix/client/v3/account/3pid/msisdn/requestToken")
    async def msisdn_request_token(self) -> Any:
        """POST /_matrix/client/v3/account/3pid/msisdn/requestToken — spec: Adding account
        administrative contact information.

        "The homeserver must check that the given phone number is not already associated with
        an account on this homeserver." Answers with ``sid`` and ``submit_url``.
        """
        body = await read_json_body(self._max)
        return await request_msisdn_token(self._phones, body, public_baseurl=self._public_baseurl)

    async def _bind_email(self, requester: Requester, *, sid: str, client_secret: str) -> bool:
        """Bind the address of an email validation session; False if ``sid`` is not one."""
        if self._emails is None:
            return False
        try:
            address = await self._emails.validated_address(sid=sid, client_secret=client_secret)
        except NotFound:
            return False
        if requester.is_guest:
            raise MatrixError(403, Codes.FORBIDDEN, "Guests cannot add email addresses")
        await self._emails.bind(requester.user_id, address)
        return True

    @route("POST", "/_matrix/client/v3/account/3pid/email/requestToken")
    async def email_request_token(self) -> Any:
        """POST /_matrix/client/v3/account/3pid/email/requestToken — spec: Adding account
        administrative contact information.

        "The homeserver must check that the given email address is **not** already associated
        with an account on this homeserver." (``M_THREEPID_IN_USE``). Answers with ``sid`` and
        ``submit_url``.
        """
        body = await read_json_body(self._max)
        return await request_email_token(
            self._emails, body, public_baseurl=self._public_baseurl, purpose=EmailPurpose.ADD
        )

    @route("POST", "/_matrix/client/v3/account/password/email/requestToken")
    async def password_email_request_token(self) -> Any:
        """POST /_matrix/client/v3/account/password/email/requestToken — spec: Password
        management.

        "The homeserver should validate the email itself, either by sending a validation email
        itself or by using a service it has control over." ``M_THREEPID_NOT_FOUND`` when no
        account has the address.
        """
        body = await read_json_body(self._max)
        return await request_email_token(
            self._emails,
            body,
            public_baseurl=self._public_baseurl,
            purpose=EmailPurpose.PASSWORD_RESET,
        )

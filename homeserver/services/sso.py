"""Single sign-on through CAS, and login tokens (``m.login.token``).

Spec: client-server-api/_index.md › Client login via SSO (``m.login.sso``, ``m.login.token``),
User-Interactive Authentication API › Single Sign-On (the ``m.login.sso`` stage and its fallback),
``POST /_matrix/client/v1/login/get_token``. CAS is CAS 2.0 (``/login`` and ``/proxyValidate``),
as Synapse's ``cas_config``.

The flow: the client opens ``/login/sso/redirect?redirectUrl=...``; we redirect to
``<cas>/login?service=<our ticket URL>``; CAS sends the browser back to the ticket URL with a
``ticket``; we validate it at ``<cas>/proxyValidate`` (the same ``service``), map the CAS user to a
local account (created on first login, as Synapse: the CAS user name mapped to a localpart, an
existing account of that localpart is logged in) and send the browser to ``redirectUrl`` with a
``loginToken``, which the client exchanges at ``POST /login`` (``m.login.token``).

Login tokens are stateless: ``<payload>.<mac>``, the payload (user ID, expiry, a random nonce)
signed with HMAC-SHA256. Single use is enforced by the ``spent_credentials`` store (kind
``login_token``, the nonce); its retention is far longer than a token's lifetime.

In-memory state: the HMAC secret is owned by the process that issues and checks the tokens. It is
random at start-up unless one is passed in, so a restart invalidates the tokens outstanding (they
live ``login_tokens.lifetime_s``, two minutes by default); a deployment of several processes
passes the same secret to each.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
import ssl
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx

from homeserver.clock import Clock
from homeserver.config import CasConfig
from homeserver.errors import Codes, Forbidden, MatrixError
from homeserver.services.auth import AuthService, Session, UserDeactivated
from homeserver.services.profile import MAX_PROFILE_BYTES
from homeserver.services.uia import UiaService
from homeserver.storage.profile import NoSuchUserError, ProfileStore
from homeserver.storage.spent_credentials import SpentCredentialStore
from homeserver.storage.users import UserIdTaken, UserStore

__all__ = ["CasService", "CasUser", "LoginTokens", "map_username_to_localpart"]

logger = logging.getLogger(__name__)

SPENT_LOGIN_TOKEN = "login_token"
_CAS_NS = "{http://www.yale.edu/tp/cas}"
#: the path CAS sends the browser back to (r0, as Synapse: SyTest checks the service URL)
TICKET_PATH = "/_matrix/client/r0/login/cas/ticket"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LoginTokens:
    """Issue and consume short-lived, single-use login tokens.

    Args:
        spent: remembers the tokens used.
        clock: expiry.
        lifetime_ms: how long a token is valid.
        secret: the HMAC key (random when None; see the module docstring).
    """

    def __init__(
        self,
        spent: SpentCredentialStore,
        clock: Clock,
        *,
        lifetime_ms: int = 120_000,
        secret: bytes | None = None,
    ) -> None:
        self._spent = spent
        self._clock = clock
        self._lifetime_ms = lifetime_ms
        self._secret = secret if secret is not None else secrets.token_bytes(32)

    @property
    def lifetime_ms(self) -> int:
        return self._lifetime_ms

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, b"login_token\0" + payload, hashlib.sha256).digest()

    def issue(self, user_id: str) -> str:
        """A new token that logs ``user_id`` in once, within the lifetime."""
        expiry = self._clock.time_ms() + self._lifetime_ms
        payload = f"{user_id}\n{expiry}\n{secrets.token_urlsafe(16)}".encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    async def consume(self, token: str) -> str:
        """The user a token logs in; the token is used up.

        Raises:
            Forbidden: malformed, forged, expired or used already (403 ``M_FORBIDDEN``).
        """
        bad = Forbidden("Invalid login token")
        payload_b64, sep, mac_b64 = token.partition(".")
        if not sep or len(token) > 2048:
            raise bad
        try:
            payload = _unb64(payload_b64)
            mac = _unb64(mac_b64)
        except ValueError:
            raise bad from None
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise bad
        user_id, expiry, nonce = payload.decode().split("\n")
        if int(expiry) <= self._clock.time_ms():
            raise bad
        if not await self._spent.spend(
            SPENT_LOGIN_TOKEN, nonce, user_id=user_id, device_id=None, now=self._clock.time_ms()
        ):
            raise bad
        return user_id


@dataclass(frozen=True, slots=True)
class CasUser:
    """What a CAS server vouched for."""

    user: str
    attributes: dict[str, list[str]] = field(default_factory=dict)


_ALLOWED = re.compile(r"[a-z0-9._=\-/]")


def map_username_to_localpart(name: str) -> str:
    """A CAS user name as a localpart (Synapse's mapping).

    Lower-cased; characters outside ``a-z 0-9 . _ = - /`` become ``=`` and their hex code (per
    UTF-8 byte); a leading ``_`` (reserved for application services) becomes ``=5f``.
    """
    out = []
    for ch in name.lower():
        if _ALLOWED.fullmatch(ch):
            out.append(ch)
        else:
            out.extend(f"={b:02x}" for b in ch.encode())
    localpart = "".join(out)
    return "=5f" + localpart[1:] if localpart.startswith("_") else localpart


def parse_cas_response(body: bytes) -> CasUser:
    """A CAS 2.0 ``serviceResponse``.

    Raises:
        Forbidden: an ``authenticationFailure`` or a malformed answer.
    """
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        raise Forbidden("The CAS server's answer is not XML") from None
    success = root.find(f"{_CAS_NS}authenticationSuccess")
    if success is None:
        failure = root.find(f"{_CAS_NS}authenticationFailure")
        reason = (failure.get("code") or "") if failure is not None else ""
        raise Forbidden(f"CAS ticket validation failed {reason}".strip())
    user_el = success.find(f"{_CAS_NS}user")
    if user_el is None or not (user_el.text or "").strip():
        raise Forbidden("The CAS server named no user")
    attributes: dict[str, list[str]] = {}
    attrs_el = success.find(f"{_CAS_NS}attributes")
    if attrs_el is not None:
        for child in attrs_el:
            name = child.tag.removeprefix(_CAS_NS)
            attributes.setdefault(name, []).append((child.text or "").strip())
    return CasUser((user_el.text or "").strip(), attributes)


def add_query(url: str, **params: str) -> str:
    """``url`` with ``params`` added to its query string."""
    parts = urlsplit(url)
    extra = urlencode(params)
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


class CasService:
    """CAS single sign-on: redirects, ticket validation, accounts, login tokens, the UIA stage.

    Args:
        verify: TLS verification of the CAS server (an SSL context trusting the configured CA).
            Each validation opens its own connection (one per login: no pool to keep or close).
        users, profiles: accounts and their display names.
        auth: creates the sessions of ``m.login.token`` logins.
        uia: records the ``m.login.sso`` stage.
        tokens: login tokens.
        clock: account creation times.
        server_name: of the user IDs.
        config: the ``cas`` section.
        service_url: this server's base URL as CAS sends browsers back to it.
    """

    def __init__(
        self,
        verify: ssl.SSLContext | bool,
        users: UserStore,
        profiles: ProfileStore | None,
        auth: AuthService,
        uia: UiaService,
        tokens: LoginTokens,
        clock: Clock,
        *,
        server_name: str,
        config: CasConfig,
        service_url: str,
    ) -> None:
        self._verify = verify
        self._users = users
        self._profiles = profiles
        self._auth = auth
        self._uia = uia
        self._tokens = tokens
        self._clock = clock
        self._server_name = server_name
        self._config = config
        self._server_url = (config.server_url or "").rstrip("/")
        self._service_url = service_url.rstrip("/")

    @property
    def enabled(self) -> bool:
        return self._config.enabled

    @property
    def tokens(self) -> LoginTokens:
        return self._tokens

    def service(self, *, redirect_url: str | None = None, session: str | None = None) -> str:
        """The ticket URL CAS sends the browser back to (also the ``service`` to validate)."""
        args = {"redirectUrl": redirect_url} if redirect_url is not None else {}
        if session is not None:
            args = {"session": session}
        return f"{self._service_url}{TICKET_PATH}?{urlencode(args)}"

    def login_redirect(self, *, redirect_url: str | None = None, session: str | None = None) -> str:
        """Where to send the browser to log in at CAS."""
        service = self.service(redirect_url=redirect_url, session=session)
        return f"{self._server_url}/login?{urlencode({'service': service})}"

    async def validate_ticket(self, ticket: str, service: str) -> CasUser:
        """Ask the CAS server who a ticket belongs to.

        Raises:
            Forbidden: the CAS server refused the ticket, or the user lacks a required attribute.
            MatrixError: 502 when the CAS server cannot be reached.
        """
        try:
            async with httpx.AsyncClient(
                verify=self._verify, timeout=self._config.request_timeout_s
            ) as http:
                resp = await http.get(
                    f"{self._server_url}/proxyValidate",
                    params={"ticket": ticket, "service": service},
                )
        except httpx.HTTPError as e:
            logger.warning("CAS ticket validation failed: %s", e)
            raise MatrixError(502, Codes.UNKNOWN, "Could not reach the CAS server") from None
        if resp.status_code != 200:
            raise MatrixError(502, Codes.UNKNOWN, f"The CAS server answered {resp.status_code}")
        user = parse_cas_response(resp.content)
        for name, value in self._config.required_attributes.items():
            if value not in user.attributes.get(name, []):
                raise Forbidden("You are not authorised to log in here")
        return user

    def user_id_of(self, cas_user: CasUser) -> str:
        return f"@{map_username_to_localpart(cas_user.user)}:{self._server_name}"

    async def _account_for(self, cas_user: CasUser) -> str:
        """The local account of a CAS user, created on first login."""
        user_id = self.user_id_of(cas_user)
        if len(user_id) > 255:
            raise Forbidden("The CAS user name is too long for a user ID")
        user = await self._users.get_user(user_id)
        if user is not None:
            if user.deactivated:
                raise UserDeactivated()
            return user_id
        try:
            await self._users.create_user(
                user_id, password_hash=None, created_ts=self._clock.time_ms()
            )
        except UserIdTaken:
            return user_id  # created meanwhile by a concurrent login
        name_attr = self._config.displayname_attribute
        values = cas_user.attributes.get(name_attr, []) if name_attr else []
        display_name = values[0] if values and values[0] else user_id[1:].partition(":")[0]
        if self._profiles is not None:
            try:
                await self._profiles.set_field(
                    user_id, "displayname", display_name, max_profile_bytes=MAX_PROFILE_BYTES
                )
            except NoSuchUserError:  # pragma: no cover - the account was just created
                pass
        return user_id

    async def login_ticket(self, ticket: str, redirect_url: str) -> str:
        """Validate a login ticket; the client URL to continue at, with a ``loginToken``."""
        cas_user = await self.validate_ticket(ticket, self.service(redirect_url=redirect_url))
        user_id = await self._account_for(cas_user)
        return add_query(redirect_url, loginToken=self._tokens.issue(user_id))

    async def ui_auth_ticket(self, ticket: str, session: str) -> str:
        """Validate the ticket of a UIA ``m.login.sso`` stage; the user CAS vouched for."""
        cas_user = await self.validate_ticket(ticket, self.service(session=session))
        user_id = self.user_id_of(cas_user)
        await self._uia.complete_sso(session, user_id)
        return user_id

    async def login_with_token(
        self,
        token: str,
        *,
        device_id: str | None,
        display_name: str | None,
        want_refresh: bool,
    ) -> Session:
        """``m.login.token``.

        Raises:
            Forbidden: an invalid, expired or used token; UserDeactivated.
        """
        user_id = await self._tokens.consume(token)
        user = await self._users.get_user(user_id)
        if user is None:
            raise Forbidden("Invalid login token")
        if user.deactivated:
            raise UserDeactivated()
        return await self._auth.create_session(
            user_id, device_id=device_id, display_name=display_name, want_refresh=want_refresh
        )

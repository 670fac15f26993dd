"""User-interactive authentication (UIA).

Spec: client-server-api/_index.md › User-Interactive Authentication API, Authentication types.

An endpoint that needs UIA calls :meth:`UiaService.check` with the request body, a
``request_key`` naming the operation, and the flows it offers. ``check`` either returns a
:class:`UiaResult` (one flow is complete) or raises :class:`UiaRequired`, the spec's 401 body::

    {"flows": [{"stages": [...]}], "params": {}, "session": "...", "completed": [...],
     "errcode": "M_FORBIDDEN", "error": "..."}      # errcode/error only after a failed stage

Sessions:

- A session starts with the first request (with or without ``auth``; clients differ:
  matrix-nio's ``register()`` sends ``{"type": "m.login.dummy"}`` with no session, its
  ``register_with_token()`` an ``auth`` without ``type``; both work, as on Synapse).
- It is bound to the request that started it: ``request_key`` (see :func:`request_key`: method,
  path and, where an endpoint asks for it, a hash of body fields that name what is acted on) and
  the authenticated user. A session used for another operation or by another user is refused
  (403).
- An endpoint may have the session remember its request parameters (:meth:`UiaService.open_session`
  with ``params``): a later request of the session that omits one gets the remembered value, one
  that gives it replaces it (Synapse's behaviour: clients send the parameters once and then only
  ``auth``). :meth:`UiaService.settle` records what the operation produced, so a replay of a
  completed session answers the same (``/register`` is idempotent).
- Completed stages are stored per session (table ``uia_stages``) with what each proved: the user
  a password authenticated, the registration token, the validated phone number.
- Stages must be completed in the order of some flow; a completed stage is never re-checked, and
  once a flow is complete, further requests in the session succeed (the spec: "servers must
  return ... the result of the API call if all stages were completed").
- Sessions expire (``auth.uia_session_lifetime_s``); :meth:`UiaService.run_expiry` deletes them in
  the background and gives back the registration token uses they had reserved.

Stages: ``m.login.dummy`` (only where a flow offers it), ``m.login.password`` (re-auth of the
requester's user: ``m.id.user`` / ``m.id.phone``; argon2; another user's password is 403, as on
Synapse), ``m.login.registration_token``,
``m.login.msisdn`` (``threepid_creds`` of a session validated by SMS code),
``m.login.email.identity`` (``threepid_creds`` of a session validated by a mailed token).
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from homeserver.clock import Clock
from homeserver.errors import BadJson, Codes, Forbidden, MatrixError
from homeserver.services.identifiers import find_user, parse_identifier
from homeserver.services.passwords import PasswordHasher
from homeserver.services.requester import Requester
from homeserver.storage.registration_tokens import RegistrationTokenStore
from homeserver.storage.threepids import ThreepidStore
from homeserver.storage.uia import UiaStore
from homeserver.storage.user_threepids import UserThreepidStore
from homeserver.storage.users import UserStore

__all__ = [
    "DUMMY",
    "EMAIL_IDENTITY",
    "MSISDN",
    "PASSWORD",
    "REGISTRATION_TOKEN",
    "UiaRequired",
    "UiaResult",
    "UiaService",
    "UiaSession",
    "request_key",
]

logger = logging.getLogger(__name__)

DUMMY = "m.login.dummy"
PASSWORD = "m.login.password"
REGISTRATION_TOKEN = "m.login.registration_token"
MSISDN = "m.login.msisdn"
#: single sign-on: completed out of band, on the fallback page (:meth:`UiaService.complete_sso`)
SSO = "m.login.sso"
EMAIL_IDENTITY = "m.login.email.identity"
KNOWN_STAGES = frozenset({DUMMY, PASSWORD, REGISTRATION_TOKEN, MSISDN, EMAIL_IDENTITY})


def request_key(method: str, path: str, relevant: Mapping[str, Any] | None = None) -> str:
    """The key that binds a UIA session to one operation.

    Args:
        method: the HTTP method.
        path: the request path (with its parameters filled in).
        relevant: the body fields that define the operation (never secrets such as passwords;
            never ``auth``).
    """
    material = json.dumps(
        [method.upper(), path, dict(relevant or {})], sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(material.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class UiaResult:
    """What a completed UIA proved."""

    session_id: str
    completed: tuple[str, ...]
    #: the user an ``m.login.password`` stage authenticated
    user_id: str | None = None
    #: the token of an ``m.login.registration_token`` stage
    registration_token: str | None = None
    #: the E.164 number an ``m.login.msisdn`` stage validated
    phone: str | None = None
    #: the (case-folded) address an ``m.login.email.identity`` stage validated
    email: str | None = None


@dataclass(frozen=True, slots=True)
class UiaSession:
    """A session as one request sees it (from :meth:`UiaService.open_session`)."""

    session_id: str
    #: the remembered request parameters, overridden by the ones this request gave
    params: Mapping[str, Any]
    #: what the operation produced when an earlier request of the session completed it
    #: (:meth:`UiaService.settle`); empty before
    outcome: Mapping[str, Any]
    #: stage name → what it proved
    completed: Mapping[str, Mapping[str, Any]]


class UiaRequired(MatrixError):
    """401: more authentication is needed (the body lists flows, session and completed stages).

    Raised by :meth:`UiaService.check` until a flow is complete; after a failed stage it also
    carries ``errcode`` and ``error``.
    """

    def __init__(
        self,
        *,
        session: str,
        flows: Sequence[Sequence[str]],
        completed: Sequence[str],
        errcode: str | None = None,
        error: str | None = None,
    ) -> None:
        super().__init__(401, errcode or "", error or "Additional authentication is required")
        self.session = session
        self.flows = [list(f) for f in flows]
        self.completed = list(completed)
        self.failed = errcode is not None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "flows": [{"stages": f} for f in self.flows],
            "params": {},
            "session": self.session,
            "completed": self.completed,
        }
        if self.failed:
            body["errcode"] = self.errcode
            body["error"] = self.msg
        return body


class _StageFailed(Exception):
    def __init__(self, errcode: str, error: str) -> None:
        super().__init__(error)
        self.errcode = errcode
        self.error = error


class UiaService:
    """Runs user-interactive authentication for the endpoints that need it.

    With single sign-on on (:meth:`enable_sso`), re-authentication of a logged-in user (a flow
    offering ``m.login.password``) also offers ``[m.login.sso]``, as Synapse does.

    Args:
        store: the sessions.
        users: accounts, for ``m.login.password``.
        registration_tokens: for ``m.login.registration_token``.
        threepids: phone validation sessions, for ``m.login.msisdn``.
        hasher: verifies passwords.
        clock: session timestamps and expiry.
        server_name: to resolve localparts to user IDs.
        session_lifetime_ms: how long a session lives after it starts.
        email_threepids: addresses bound to accounts, for ``m.login.password`` with an email
            identifier and re-authentication with ``m.login.email.identity``.
    """

    def __init__(
        self,
        store: UiaStore,
        users: UserStore,
        registration_tokens: RegistrationTokenStore,
        threepids: ThreepidStore,
        hasher: PasswordHasher,
        clock: Clock,
        *,
        server_name: str,
        session_lifetime_ms: int = 15 * 60 * 1000,
        email_threepids: UserThreepidStore | None = None,
    ) -> None:
        self._store = store
        self._users = users
        self._tokens = registration_tokens
        self._threepids = threepids
        self._hasher = hasher
        self._clock = clock
        self._server_name = server_name
        self._lifetime_ms = session_lifetime_ms
        self._email_threepids = email_threepids

    #: whether re-authentication offers the ``m.login.sso`` stage (single sign-on)
    _sso: bool = False

    def enable_sso(self) -> None:
        """Offer ``m.login.sso`` to re-authenticate (single sign-on is configured)."""
        self._sso = True

    async def complete_sso(self, session_id: str, user_id: str) -> None:
        """Record the ``m.login.sso`` stage of a session: the SSO provider vouched for ``user_id``.

        A user other than the session's makes the operation fail with 403 (:meth:`check`).

        Raises:
            MatrixError: 400 ``M_UNKNOWN`` for an unknown or expired session.
        """
        now = self._clock.time_ms()
        row = await self._store.get_session(session_id)
        if row is None or row.expires_ts <= now:
            raise MatrixError(400, Codes.UNKNOWN, "Unknown or expired UIA session")
        await self._store.complete_stage(
            session_id, SSO, json.dumps({"user_id": user_id}, sort_keys=True), now=now
        )

    async def open_session(
        self,
        *,
        requester: Requester | None,
        body: Mapping[str, Any],
        request_key: str,
        description: str = "",
        params: Mapping[str, Any] | None = None,
    ) -> UiaSession:
        """Find the session named in ``body["auth"]``, or start one.

        Args:
            requester: the authenticated user (None on ``/register``).
            body: the request body (its ``auth`` is read).
            request_key: from :func:`request_key`; binds the session to this operation.
            description: what the session authorises (kept for logs and admins).
            params: this request's parameters to remember (only those it gave; never
                secrets in clear).

        Raises:
            BadJson: ``auth`` is malformed.
            MatrixError: 400 ``M_UNKNOWN`` for an unknown or expired session, 403 when the
                session belongs to another operation or user.
        """
        auth = _auth_of(body)
        session_id = auth.get("session")
        user_id = requester.user_id if requester is not None else None
        now = self._clock.time_ms()
        given = dict(params or {})
        if session_id is None:
            session_id = secrets.token_urlsafe(24)
            await self._store.create_session(
                session_id,
                request_key=request_key,
                user_id=user_id,
                description=description,
                created_ts=now,
                expires_ts=now + self._lifetime_ms,
            )
            if given:
                await self._store.set_data(session_id, _dumps({"params": given}), now=now)
            return UiaSession(session_id, given, {}, {})
        row = await self._store.get_session(session_id)
        if row is None or row.expires_ts <= now:
            raise MatrixError(400, Codes.UNKNOWN, "Unknown or expired UIA session")
        if row.request_key != request_key:
            raise Forbidden("Requested operation has changed during the UI authentication session.")
        if row.user_id != user_id:
            raise Forbidden("This UI authentication session belongs to another user.")
        data = json.loads(row.data) if row.data is not None else {}
        remembered = data.get("params", {})
        outcome = data.get("outcome", {})
        merged = {**remembered, **given}
        if merged != remembered and not outcome:
            await self._store.set_data(session_id, _dumps({"params": merged}), now=now)
        completed = {name: json.loads(result) for name, result in row.stages}
        return UiaSession(session_id, merged, outcome, completed)

    async def remember(self, session: UiaSession, params: Mapping[str, Any]) -> None:
        """Add ``params`` to what the session remembers of its requests."""
        merged = {**session.params, **params}
        await self._store.set_data(
            session.session_id, _dumps({"params": merged}), now=self._clock.time_ms()
        )

    async def settle(self, session: UiaSession, outcome: Mapping[str, Any]) -> None:
        """Record what the operation of a completed session produced.

        The completed stages are used up (an expiry releases nothing they reserved); a later
        request of the session finds ``outcome`` in :attr:`UiaSession.outcome`.
        """
        data = {"params": dict(session.params), "outcome": dict(outcome)}
        await self._store.settle(session.session_id, _dumps(data), now=self._clock.time_ms())

    async def check(
        self,
        *,
        requester: Requester | None,
        body: Mapping[str, Any],
        request_key: str,
        flows: list[list[str]],
        description: str = "",
        session: UiaSession | None = None,
    ) -> UiaResult:
        """Advance the UIA of this request; return once one of ``flows`` is complete.

        Args:
            requester: the authenticated user (None on ``/register``).
            body: the request body (its ``auth`` is read).
            request_key: from :func:`request_key`; binds the session to this operation.
            flows: the flows offered, each a list of stage types.
            description: what the session authorises (kept for logs and admins).
            session: the session :meth:`open_session` gave for this request (opened here if None).

        Raises:
            UiaRequired: 401 with flows/session/completed (and errcode after a failed stage).
            BadJson: ``auth`` is malformed.
            Forbidden: ``m.login.password`` authenticated another user than the requester.
            MatrixError: 400 ``M_UNKNOWN`` for an unknown or expired session, 403 when the
                session belongs to another operation or user, 400 ``M_UNRECOGNIZED`` for an
                unknown stage type.
        """
        auth = _auth_of(body)
        stage = auth.get("type")
        if stage == SSO:
            stage = None  # completed out of band (complete_sso); the request only looks
        if self._sso and requester is not None and any(PASSWORD in f for f in flows):
            flows = [*flows, [SSO]] if [SSO] not in flows else flows
        if session is None:
            session = await self.open_session(
                requester=requester, body=body, request_key=request_key, description=description
            )
        session_id = session.session_id
        completed: dict[str, Mapping[str, Any]] = dict(session.completed)
        now = self._clock.time_ms()

        done = _complete_flow(flows, completed)
        if done is None and stage is not None and stage not in completed:
            if stage not in KNOWN_STAGES:
                raise MatrixError(400, Codes.UNRECOGNIZED, f"Unrecognised auth type {stage!r}")
            if not _may_attempt(flows, list(completed), stage):
                raise UiaRequired(
                    session=session_id,
                    flows=flows,
                    completed=list(completed),
                    errcode=Codes.FORBIDDEN,
                    error=f"{stage} is not offered here or not the next stage of a flow",
                )
            try:
                result = await self._run_stage(stage, auth, requester)
            except _StageFailed as e:
                raise UiaRequired(
                    session=session_id,
                    flows=flows,
                    completed=list(completed),
                    errcode=e.errcode,
                    error=e.error,
                ) from None
            await self._store.complete_stage(
                session_id, stage, json.dumps(result, sort_keys=True), now=now
            )
            completed[stage] = result
            done = _complete_flow(flows, completed)

        if done is None:
            raise UiaRequired(session=session_id, flows=flows, completed=list(completed))
        proved: dict[str, Any] = {}
        for name in done:
            proved.update(completed[name])
        if requester is not None and proved.get("user_id") not in (None, requester.user_id):
            # single sign-on vouched for another user than the requester (Synapse: 403)
            raise Forbidden("You can only authenticate as yourself")
        return UiaResult(
            session_id=session_id,
            completed=tuple(completed),
            user_id=proved.get("user_id"),
            registration_token=proved.get("registration_token"),
            phone=proved.get("phone"),
            email=proved.get("email"),
        )

    async def finish(self, result: UiaResult) -> None:
        """Forget a session whose operation was carried out and must not be repeated."""
        await self._store.delete_session(result.session_id)

    async def _run_stage(
        self, stage: str, auth: Mapping[str, Any], requester: Requester | None
    ) -> dict[str, Any]:
        if stage == DUMMY:
            return {}
        if stage == PASSWORD:
            return await self._check_password(auth, requester)
        if stage == REGISTRATION_TOKEN:
            return await self._check_registration_token(auth)
        if stage == MSISDN:
            return await self._check_msisdn(auth, requester)
        if stage == EMAIL_IDENTITY:
            return await self._check_email(auth, requester)
        raise AssertionError(stage)  # pragma: no cover - KNOWN_STAGES is checked first

    async def _check_password(
        self, auth: Mapping[str, Any], requester: Requester | None
    ) -> dict[str, Any]:
        password = auth.get("password")
        if not isinstance(password, str):
            raise BadJson("auth.password must be a string")
        identifier = parse_identifier(auth)
        user = await find_user(self._users, self._server_name, identifier, self._email_threepids)
        ok = await self._hasher.verify(user.password_hash if user else None, password)
        if user is None or not ok or user.deactivated:
            raise _StageFailed(Codes.FORBIDDEN, "Invalid username or password")
        if requester is not None and user.user_id != requester.user_id:
            # the credentials are right but not the requester's: refused outright, as Synapse
            raise Forbidden("You can only authenticate as yourself")
        return {"user_id": user.user_id}

    async def _check_registration_token(self, auth: Mapping[str, Any]) -> dict[str, Any]:
        token = auth.get("token", auth.get("registration_token"))
        if not isinstance(token, str):
            raise BadJson("auth.token must be a string")
        if not await self._tokens.reserve(token, now=self._clock.time_ms()):
            raise _StageFailed(Codes.UNAUTHORIZED, "Invalid registration token")
        return {"registration_token": token}

    async def _check_msisdn(
        self, auth: Mapping[str, Any], requester: Requester | None
    ) -> dict[str, Any]:
        creds = auth.get("threepid_creds", auth.get("threepidCreds"))
        if not isinstance(creds, dict):
            raise BadJson("auth.threepid_creds must be an object")
        sid = creds.get("sid")
        secret = creds.get("client_secret")
        if not isinstance(sid, str) or not isinstance(secret, str):
            raise BadJson("threepid_creds needs sid and client_secret strings")
        session = await self._threepids.get(sid)
        if (
            session is None
            or session.medium != "msisdn"
            or not secrets.compare_digest(session.client_secret, secret)
            or session.validated_ts is None
        ):
            raise _StageFailed(Codes.UNAUTHORIZED, "Phone number not validated")
        if requester is not None:
            # re-authentication: the number must be the one bound to the requester's account
            user = await self._users.get_user(requester.user_id)
            if user is None or user.phone != session.address:
                raise _StageFailed(Codes.FORBIDDEN, "This is not your account's phone number")
        return {"phone": session.address}

    async def _check_email(
        self, auth: Mapping[str, Any], requester: Requester | None
    ) -> dict[str, Any]:
        creds = auth.get("threepid_creds", auth.get("threepidCreds"))
        if not isinstance(creds, dict):
            raise BadJson("auth.threepid_creds must be an object")
        sid = creds.get("sid")
        secret = creds.get("client_secret")
        if not isinstance(sid, str) or not isinstance(secret, str):
            raise BadJson("threepid_creds needs sid and client_secret strings")
        session = await self._threepids.get(sid)
        if (
            session is None
            or session.medium != "email"
            or not secrets.compare_digest(session.client_secret, secret)
            or session.validated_ts is None
        ):
            raise _StageFailed(Codes.UNAUTHORIZED, "Email address not validated")
        if requester is not None:
            # re-authentication: the address must be bound to the requester's account
            bound = (
                await self._email_threepids.owner("email", session.address)
                if self._email_threepids is not None
                else None
            )
            if bound is None or bound.user_id != requester.user_id:
                raise _StageFailed(Codes.FORBIDDEN, "This is not your account's email address")
        return {"email": session.address}

    async def expire_sessions(self) -> int:
        """Delete expired sessions and release the registration token uses they reserved.

        Returns:
            how many reserved uses were released.
        """
        results = await self._store.delete_expired(
            self._clock.time_ms(), collect_stage=REGISTRATION_TOKEN
        )
        for result in results:
            token = json.loads(result).get("registration_token")
            if isinstance(token, str):
                await self._tokens.release(token)
        return len(results)

    async def run_expiry(
        self,
        *,
        interval_s: float = 60.0,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Expire sessions every ``interval_s`` seconds, forever (run it in a nursery)."""
        task_status.started()
        while True:
            await trio.sleep(interval_s)
            try:
                await self.expire_sessions()
            except Exception:
                logger.exception("expiring UIA sessions failed")


def _auth_of(body: Mapping[str, Any]) -> Mapping[str, Any]:
    auth = body.get("auth")
    if auth is None:
        return {}
    if not isinstance(auth, dict):
        raise BadJson("auth must be an object")
    if auth.get("session") is not None and not isinstance(auth["session"], str):
        raise BadJson("auth.session must be a string")
    if auth.get("type") is not None and not isinstance(auth["type"], str):
        raise BadJson("auth.type must be a string")
    return auth


def _dumps(data: Mapping[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def _complete_flow(
    flows: Sequence[Sequence[str]], completed: Mapping[str, Any]
) -> Sequence[str] | None:
    for flow in flows:
        if all(stage in completed for stage in flow):
            return flow
    return None


def _may_attempt(flows: Sequence[Sequence[str]], completed: Sequence[str], stage: str) -> bool:
    """Whether ``stage`` is the next stage of a flow whose first stages are ``completed``."""
    done = set(completed)
    for flow in flows:
        n = len(done)
        if n < len(flow) and set(flow[:n]) == done and flow[n] == stage:
            return True
    return False

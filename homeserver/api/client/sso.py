"""Single sign-on through CAS, the UIA ``m.login.sso`` fallback, and ``POST /login/get_token``.

Spec: client-server-api/_index.md › Client login via SSO (``sso_login_redirect.yaml``),
User-Interactive Authentication API › Fallback (``/auth/m.login.sso/fallback/web``),
``login_token.yaml`` (``POST /_matrix/client/v1/login/get_token``). The CAS endpoints
(``/login/cas/redirect``, ``/login/cas/ticket``) are Synapse's.
"""

from __future__ import annotations

import html
from typing import Any

from quart import Response, request

from homeserver.api._http import route
from homeserver.api.client._body import optional_json_body
from homeserver.errors import MissingParam, NotFound, Unrecognized
from homeserver.services.requester import Requester
from homeserver.services.sso import CasService
from homeserver.services.uia import PASSWORD, UiaService, request_key

__all__ = ["SsoApi"]

#: the one identity provider
CAS_IDP = "cas"


def _redirect(location: str) -> Response:
    resp = Response("", status=302)
    resp.headers["Location"] = location
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _page(title: str, body: str, status: int = 200) -> Response:
    text = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title></head><body>{body}</body></html>"
    )
    resp = Response(text, status=status, content_type="text/html; charset=utf-8")
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _arg(name: str) -> str:
    value = request.args.get(name)
    if not value:
        raise MissingParam(f"Missing parameter {name!r}")
    return value


class SsoApi:
    """CAS login, the SSO UIA stage and login tokens for logged-in users."""

    def __init__(
        self, cas: CasService, uia: UiaService, *, allow_get_token: bool, max_body_bytes: int
    ) -> None:
        self._cas = cas
        self._uia = uia
        self._allow_get_token = allow_get_token
        self._max = max_body_bytes

    def _need_cas(self) -> None:
        if not self._cas.enabled:
            raise Unrecognized(404, "Single sign-on is not enabled")

    @route("GET", "/_matrix/client/v3/login/sso/redirect")
    @route("GET", "/_matrix/client/v3/login/cas/redirect")
    async def sso_redirect(self) -> Response:
        """GET /_matrix/client/v3/login/sso/redirect — spec: Client login via SSO.

        "A web-based Matrix client should instruct the user's browser to navigate to the
        /login/sso/redirect endpoint on the user's homeserver, appending a query parameter
        redirectUrl giving the URI to which the user's browser should be returned." We redirect
        to the CAS server's login page. ``/login/cas/redirect`` is Synapse's legacy
        ``m.login.cas`` name for the same.
        """
        self._need_cas()
        return _redirect(self._cas.login_redirect(redirect_url=_arg("redirectUrl")))

    @route("GET", "/_matrix/client/v3/login/sso/redirect/{idp_id}")
    async def sso_redirect_idp(self, idp_id: str) -> Response:
        """GET /_matrix/client/v3/login/sso/redirect/{idpId} — spec: Client login via SSO.

        "This endpoint is the same as /login/sso/redirect, though with an IdP ID from the
        original identity_providers array to inform the server of which IdP the client/user
        would like to continue with." Our one provider is ``cas``; another: 404.
        """
        self._need_cas()
        if idp_id != CAS_IDP:
            raise NotFound("Unknown identity provider")
        return _redirect(self._cas.login_redirect(redirect_url=_arg("redirectUrl")))

    @route("GET", "/_matrix/client/v3/login/cas/ticket")
    async def cas_ticket(self) -> Response:
        """GET /_matrix/client/v3/login/cas/ticket (Synapse's CAS service endpoint).

        CAS knows it as ``/_matrix/client/r0/login/cas/ticket`` (as Synapse's service URL; r0
        paths are served by their v3 twins).

        CAS sends the browser here with a ``ticket``, which we validate at the CAS server's
        ``proxyValidate``. With ``redirectUrl`` (login): a page that continues to the client
        with a ``loginToken`` (spec, Client login via SSO: "the server then redirects the user's
        browser back to redirectUrl with an additional loginToken query parameter"; Synapse
        asks the user to confirm first). With ``session`` (the UIA ``m.login.sso`` stage): the
        stage is complete; the page tells the fallback's opener ("authDone").
        """
        self._need_cas()
        ticket = _arg("ticket")
        session = request.args.get("session")
        if session:
            await self._cas.ui_auth_ticket(ticket, session)
            return _page(
                "Authentication complete",
                "<p>Thank you. You may now close this window and return to the application.</p>"
                "<script>if (window.onAuthDone) { window.onAuthDone(); } "
                "else if (window.opener && window.opener.postMessage) "
                '{ window.opener.postMessage("authDone", "*"); }'
                "</script>",
            )
        redirect_url = _arg("redirectUrl")
        target = await self._cas.login_ticket(ticket, redirect_url)
        link = html.escape(target, quote=True)
        return _page(
            "Continue to your account",
            f"<p>You are about to sign in to {html.escape(redirect_url)}.</p>"
            f'<p><a href="{link}">Continue</a></p>',
        )

    @route("GET", "/_matrix/client/v3/auth/m.login.sso/fallback/web")
    async def sso_fallback(self) -> Response:
        """GET /_matrix/client/v3/auth/m.login.sso/fallback/web — spec: UIA › Fallback, SSO.

        "the client should open ... /_matrix/client/v3/auth/<auth type>/fallback/web?session=
        <session ID>" ; for ``m.login.sso`` the server "should guide the user through the SSO
        flow" and then mark the stage complete. A page that leads to the CAS server; CAS sends
        the browser back to the ticket endpoint with the session.
        """
        self._need_cas()
        session = _arg("session")
        link = html.escape(self._cas.login_redirect(session=session), quote=True)
        return _page(
            "Confirm your identity",
            "<p>To continue, confirm your identity with your single sign-on provider.</p>"
            f'<p><a href="{link}">Continue with single sign-on</a></p>',
        )

    @route("POST", "/_matrix/client/v1/login/get_token", auth="user", rate_limit="login")
    async def get_token(self, requester: Requester) -> Any:
        """POST /_matrix/client/v1/login/get_token — spec: Login › Login tokens (v1.7).

        "Optional endpoint to generate a single-use, time-limited, m.login.token token ... This
        API endpoint uses the User-Interactive Authentication API." 404 when
        ``login_tokens.allow_get_token`` is off (as Synapse without the feature); guests: 403.
        """
        if not self._allow_get_token:
            raise Unrecognized(404, "Login tokens for logged-in users are not enabled")
        body = await optional_json_body(self._max)
        done = await self._uia.check(
            requester=requester,
            body=body,
            request_key=request_key("POST", "/login/get_token"),
            flows=[[PASSWORD]],
            description="sign in on a new device",
        )
        token = self._cas.tokens.issue(requester.user_id)
        await self._uia.finish(done)
        return {"login_token": token, "expires_in_ms": self._cas.tokens.lifetime_ms}

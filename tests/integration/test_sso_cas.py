"""Single sign-on through CAS, login tokens and the UIA ``m.login.sso`` stage, over real HTTP
(SQLite and PostgreSQL), with a fake CAS server this test starts (hypercorn): it answers
``/cas/proxyValidate`` with the CAS 2.0 XML the test sets and records every request.

Spec: client-server-api/_index.md › Client login via SSO, Login (``m.login.token``),
User-Interactive Authentication API › Fallback; ``POST /_matrix/client/v1/login/get_token``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import hypercorn.trio
import pytest
import trio
import trustme
from hypercorn.config import Config as HypercornConfig

from tests.integration.conftest import SERVER_NAME, RunningServer, ServerFactory

V3 = "/_matrix/client/v3"
SERVICE_BASE = "https://hs.example"
REDIRECT = "https://client.example/done?p=http%3A%2F%2Fserver"


def cas_success(user: str, **attributes: str) -> str:
    attrs = "".join(f"<cas:{k}>{v}</cas:{k}>" for k, v in attributes.items())
    return (
        "<cas:serviceResponse xmlns:cas='http://www.yale.edu/tp/cas'>"
        f"<cas:authenticationSuccess><cas:user>{user}</cas:user>"
        f"<cas:attributes>{attrs}</cas:attributes></cas:authenticationSuccess>"
        "</cas:serviceResponse>"
    )


CAS_FAILURE = (
    "<cas:serviceResponse xmlns:cas='http://www.yale.edu/tp/cas'>"
    "<cas:authenticationFailure code='INVALID_TICKET'>no</cas:authenticationFailure>"
    "</cas:serviceResponse>"
)


@dataclass
class FakeCas:
    """Answers ``/cas/proxyValidate`` with ``answer``; records the query of every request."""

    url: str = ""
    answer: str = CAS_FAILURE
    requests: list[tuple[str, dict[str, list[str]]]] = field(default_factory=list)

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        self.requests.append((scope["path"], parse_qs(scope["query_string"].decode())))
        status, body = (200, self.answer) if scope["path"] == "/cas/proxyValidate" else (404, "")
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"text/xml")],
            }
        )
        await send({"type": "http.response.body", "body": body.encode()})


@pytest.fixture
async def cas(nursery: trio.Nursery) -> AsyncIterator[FakeCas]:
    async for fake in _serve_cas(nursery):
        yield fake


@pytest.fixture
async def tls_cas(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[tuple[FakeCas, Path]]:
    """The fake CAS server over TLS, its certificate from a CA of the test's (written to a file)."""
    ca = trustme.CA()
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(tmp_path / "cas.pem")
    )
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    async for fake in _serve_cas(nursery, tmp_path / "cas.pem"):
        yield fake, tmp_path / "ca.pem"


async def _serve_cas(nursery: trio.Nursery, pem: Path | None = None) -> AsyncIterator[FakeCas]:
    fake = FakeCas()
    config = HypercornConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    if pem is not None:
        config.certfile = config.keyfile = str(pem)
    stop = trio.Event()
    urls = await nursery.start(
        partial(hypercorn.trio.serve, fake.app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
    )
    fake.url = urls[0] + "/cas"
    yield fake
    stop.set()


async def start(factory: ServerFactory, fake: FakeCas, **overrides: Any) -> RunningServer:
    cas_cfg = {"enabled": True, "server_url": fake.url, "service_url": SERVICE_BASE}
    cas_cfg.update(overrides.pop("cas", {}))
    return await factory(cas=cas_cfg, **overrides)


def local_ticket_url(srv: RunningServer, service: str, ticket: str) -> str:
    """The service URL CAS would send the browser to, on the test server."""
    parts = urlsplit(service)
    return f"{srv.base_url}{parts.path}?{parts.query}&{urlencode({'ticket': ticket})}"


async def cas_login_token(srv: RunningServer, fake: FakeCas, cas_user: str) -> str:
    """Run the browser part of a CAS login; the ``loginToken`` the client gets."""
    fake.answer = cas_success(cas_user)
    async with srv.client() as c:
        r = await c.get(f"{V3}/login/sso/redirect", params={"redirectUrl": REDIRECT})
        assert r.status_code == 302, r.text
        location = r.headers["location"]
        assert location.startswith(fake.url + "/login?")
        service = parse_qs(urlsplit(location).query)["service"][0]
        assert service == (
            f"{SERVICE_BASE}/_matrix/client/r0/login/cas/ticket?"
            + urlencode({"redirectUrl": REDIRECT})
        )
        r = await c.get(local_ticket_url(srv, service, "ST-1"))
        assert r.status_code == 200, r.text
    path, query = fake.requests[-1]
    assert path == "/cas/proxyValidate"
    assert query == {"ticket": ["ST-1"], "service": [service]}
    m = re.search(r'href="([^"]+)"', r.text)
    assert m is not None
    target = unescape(m.group(1))
    assert target.startswith(REDIRECT + "&loginToken=")
    return parse_qs(urlsplit(target).query)["loginToken"][0]


async def token_login(srv: RunningServer, token: Any, **body: Any) -> httpx.Response:
    async with srv.client() as c:
        return await c.post(f"{V3}/login", json={"type": "m.login.token", "token": token, **body})


async def test_cas_login_creates_the_account_and_tokens_are_single_use(
    homeserver_factory: ServerFactory, cas: FakeCas
) -> None:
    srv = await start(homeserver_factory, cas)
    async with srv.client() as c:
        flows = (await c.get(f"{V3}/login")).json()["flows"]
    types = [f["type"] for f in flows]
    assert {"m.login.sso", "m.login.cas", "m.login.token"} <= set(types)
    sso = next(f for f in flows if f["type"] == "m.login.sso")
    assert sso["identity_providers"] == [{"id": "cas", "name": "CAS"}]

    token = await cas_login_token(srv, cas, "_Cas_user!")
    r = await token_login(srv, token, device_id="SSODEV")
    assert r.status_code == 200, r.text
    body = r.json()
    user_id = f"@=5fcas_user=21:{SERVER_NAME}"
    assert body["user_id"] == user_id and body["device_id"] == "SSODEV"
    async with srv.client() as c:
        r = await c.get(f"{V3}/profile/{user_id}/displayname")
        assert r.json() == {"displayname": "=5fcas_user=21"}
        who = await c.get(
            f"{V3}/account/whoami", headers={"Authorization": f"Bearer {body['access_token']}"}
        )
        assert who.json()["user_id"] == user_id
    # single use
    r = await token_login(srv, token)
    assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"
    # the same CAS user logs in to the same account again
    r = await token_login(srv, await cas_login_token(srv, cas, "_Cas_user!"))
    assert r.json()["user_id"] == user_id


async def test_existing_account_and_legacy_redirect_and_idp(
    homeserver_factory: ServerFactory, cas: FakeCas
) -> None:
    srv = await start(homeserver_factory, cas)
    await srv.register("alice")
    r = await token_login(srv, await cas_login_token(srv, cas, "alice"))
    assert r.json()["user_id"] == f"@alice:{SERVER_NAME}"
    async with srv.client() as c:
        for path in ("/login/cas/redirect", "/login/sso/redirect/cas"):
            r = await c.get(V3 + path, params={"redirectUrl": REDIRECT})
            assert r.status_code == 302
            assert r.headers["location"].startswith(cas.url + "/login?service=")
        r = await c.get(f"{V3}/login/sso/redirect/oidc", params={"redirectUrl": REDIRECT})
        assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"


async def test_bad_input(homeserver_factory: ServerFactory, cas: FakeCas) -> None:
    srv = await start(homeserver_factory, cas)
    async with srv.client() as c:
        r = await c.get(f"{V3}/login/sso/redirect")
        assert r.status_code == 400 and r.json()["errcode"] == "M_MISSING_PARAM"
        r = await c.get(f"{V3}/login/cas/ticket", params={"redirectUrl": REDIRECT})
        assert r.status_code == 400 and r.json()["errcode"] == "M_MISSING_PARAM"
        # the CAS server refuses the ticket
        cas.answer = CAS_FAILURE
        r = await c.get(
            f"{V3}/login/cas/ticket", params={"redirectUrl": REDIRECT, "ticket": "ST-bad"}
        )
        assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"
        # not XML
        cas.answer = "<html>"
        r = await c.get(f"{V3}/login/cas/ticket", params={"redirectUrl": REDIRECT, "ticket": "x"})
        assert r.status_code == 403
    for token in ("garbage", "a.b", "", "x" * 3000):
        r = await token_login(srv, token)
        assert r.status_code in (400, 403), (token, r.text)
    r = await token_login(srv, 12)
    assert r.status_code == 400 and r.json()["errcode"] == "M_BAD_JSON"
    # a forged token: the payload of a real one with another user
    token = await cas_login_token(srv, cas, "bob")
    payload, mac = token.split(".")
    r = await token_login(srv, f"{payload[:-2]}xx.{mac}")
    assert r.status_code == 403


async def test_required_attributes_and_display_name(
    homeserver_factory: ServerFactory, cas: FakeCas
) -> None:
    srv = await start(
        homeserver_factory,
        cas,
        cas={"required_attributes": {"dept": "eng"}, "displayname_attribute": "name"},
    )
    with pytest.raises(AssertionError):
        await cas_login_token(srv, cas, "carol")  # no dept attribute: 403
    assert cas.requests[-1][0] == "/cas/proxyValidate"
    cas.answer = cas_success("carol", dept="eng", name="Carol C")
    async with srv.client() as c:
        r = await c.get(
            f"{V3}/login/cas/ticket", params={"redirectUrl": REDIRECT, "ticket": "ST-2"}
        )
        assert r.status_code == 200
        token = parse_qs(urlsplit(unescape(re.findall(r'href="([^"]+)"', r.text)[0])).query)
        r = await token_login(srv, token["loginToken"][0])
        assert r.json()["user_id"] == f"@carol:{SERVER_NAME}"
        r = await c.get(f"{V3}/profile/@carol:{SERVER_NAME}/displayname")
        assert r.json() == {"displayname": "Carol C"}


async def test_cas_off(homeserver_factory: ServerFactory) -> None:
    srv = await homeserver_factory()
    async with srv.client() as c:
        types = [f["type"] for f in (await c.get(f"{V3}/login")).json()["flows"]]
        assert "m.login.sso" not in types and "m.login.token" not in types
        r = await c.get(f"{V3}/login/sso/redirect", params={"redirectUrl": REDIRECT})
        assert r.status_code == 404
        r = await c.post("/_matrix/client/v1/login/get_token", json={})
        assert r.status_code == 401, r.text  # no access token
    r = await token_login(srv, "anything")
    assert r.status_code == 400 and r.json()["errcode"] == "M_UNKNOWN"


async def _delete_device(srv: RunningServer, token: str, device: str, body: Any) -> httpx.Response:
    async with srv.client() as c:
        return await c.request(
            "DELETE",
            f"{V3}/devices/{device}",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        )


@pytest.mark.parametrize("cas_user, status", [("alice", 200), ("mallory", 403)])
async def test_ui_auth_with_sso(
    homeserver_factory: ServerFactory, cas: FakeCas, cas_user: str, status: int
) -> None:
    srv = await start(homeserver_factory, cas)
    owner = await srv.register("alice")
    r = await token_login(srv, await cas_login_token(srv, cas, "alice"), device_id="DEV2")
    access = r.json()["access_token"]
    r = await _delete_device(srv, access, "DEV2", {})
    assert r.status_code == 401
    body = r.json()
    assert ["m.login.sso"] in [f["stages"] for f in body["flows"]]
    session = body["session"]
    async with srv.client() as c:
        page = await c.get(f"{V3}/auth/m.login.sso/fallback/web", params={"session": session})
        assert page.status_code == 200
        link = unescape(re.findall(r'href="([^"]+)"', page.text)[0])
        service = parse_qs(urlsplit(link).query)["service"][0]
        assert parse_qs(urlsplit(service).query) == {"session": [session]}
        cas.answer = cas_success(cas_user)
        r = await c.get(local_ticket_url(srv, service, "ST-3"))
        assert r.status_code == 200 and "authDone" in r.text
        # an unknown session
        r = await c.get(f"{V3}/login/cas/ticket", params={"session": "nope", "ticket": "ST-4"})
        assert r.status_code == 400
    # naming the stage without completing it changes nothing; the session alone completes it
    r = await _delete_device(srv, access, "DEV2", {"auth": {"session": session}})
    assert r.status_code == status, r.text
    async with srv.client() as c:
        r = await c.get(
            f"{V3}/devices/DEV2", headers={"Authorization": f"Bearer {owner['access_token']}"}
        )
    assert r.status_code == (404 if status == 200 else 200)


async def test_get_token(homeserver_factory: ServerFactory, cas: FakeCas) -> None:
    srv = await start(homeserver_factory, cas, login_tokens={"allow_get_token": True})
    login = await srv.register("dave", "pw-of-dave-1")
    headers = {"Authorization": f"Bearer {login['access_token']}"}
    async with srv.client() as c:
        flows = (await c.get(f"{V3}/login")).json()["flows"]
        assert {"type": "m.login.token", "get_login_token": True} in flows
        caps = (await c.get(f"{V3}/capabilities", headers=headers)).json()["capabilities"]
        assert caps["m.get_login_token"] == {"enabled": True}
        r = await c.post("/_matrix/client/v1/login/get_token", json={}, headers=headers)
        assert r.status_code == 401
        session = r.json()["session"]
        auth = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "dave"},
            "password": "pw-of-dave-1",
            "session": session,
        }
        r = await c.post("/_matrix/client/v1/login/get_token", json={"auth": auth}, headers=headers)
        assert r.status_code == 200, r.text
        assert r.json()["expires_in_ms"] == 120_000
        token = r.json()["login_token"]
    r = await token_login(srv, token)
    assert r.status_code == 200 and r.json()["user_id"] == f"@dave:{SERVER_NAME}"
    # a server without the feature: 404
    other = await start(homeserver_factory, cas)
    async with other.client() as c:
        login = await other.register("erin")
        r = await c.post(
            "/_matrix/client/v1/login/get_token",
            json={},
            headers={"Authorization": f"Bearer {login['access_token']}"},
        )
        assert r.status_code == 404


async def test_cas_server_over_tls_with_a_custom_ca(
    homeserver_factory: ServerFactory, tls_cas: tuple[FakeCas, Path]
) -> None:
    fake, ca_file = tls_cas
    assert fake.url.startswith("https://")
    srv = await start(homeserver_factory, fake, cas={"custom_ca_file": str(ca_file)})
    r = await token_login(srv, await cas_login_token(srv, fake, "frank"))
    assert r.json()["user_id"] == f"@frank:{SERVER_NAME}"
    # without the CA, the CAS server's certificate is not trusted: 502
    other = await start(homeserver_factory, fake)
    fake.answer = cas_success("frank")
    async with other.client() as c:
        r = await c.get(
            f"{V3}/login/cas/ticket", params={"redirectUrl": REDIRECT, "ticket": "ST-5"}
        )
    assert r.status_code == 502 and r.json()["errcode"] == "M_UNKNOWN"

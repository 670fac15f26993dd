"""Shared-secret registration (Synapse's ``/_synapse/admin/v1/register``), the CLI command,
``public_baseurl`` (well-known, ``submit_url``), ``/versions`` and capabilities."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import httpx
import pytest

from homeserver.app import register_user
from homeserver.config import parse_config

PATH = "/_synapse/admin/v1/register"
SECRET = "s3cret-shared-between-tools"


def generate_mac(
    nonce: str,
    user: str,
    password: str,
    admin: bool = False,
    user_type: str | None = None,
    secret: str = SECRET,
) -> str:
    """As Synapse's docs (admin_api/register_api.md) show it."""
    mac = hmac.new(key=secret.encode("utf8"), digestmod=hashlib.sha1)
    mac.update(nonce.encode("utf8"))
    mac.update(b"\x00")
    mac.update(user.encode("utf8"))
    mac.update(b"\x00")
    mac.update(password.encode("utf8"))
    mac.update(b"\x00")
    mac.update(b"admin" if admin else b"notadmin")
    if user_type:
        mac.update(b"\x00")
        mac.update(user_type.encode("utf8"))
    return mac.hexdigest()


@pytest.fixture
async def srv(homeserver_factory):
    return await homeserver_factory(
        registration_shared_secret=SECRET,
        registration={"policy": "closed"},
        public_baseurl="https://matrix.example.org/",
    )


async def nonce(c: httpx.AsyncClient) -> str:
    r = await c.get(PATH)
    assert r.status_code == 200, r.text
    value: str = r.json()["nonce"]
    return value


async def test_register_admin_with_hmac_as_synapse_documents(srv):
    async with srv.client() as c:
        n = await nonce(c)
        body = {
            "nonce": n,
            "username": "pepper_roni",
            "displayname": "Pepper Roni",
            "password": "pizza pizza",
            "admin": True,
            "mac": generate_mac(n, "pepper_roni", "pizza pizza", admin=True),
        }
        r = await c.post(PATH, json=body)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["user_id"] == "@pepper_roni:test.local" and out["home_server"] == "test.local"
        h = {"Authorization": f"Bearer {out['access_token']}"}
        r = await c.get("/_matrix/client/v3/account/whoami", headers=h)
        assert r.json()["device_id"] == out["device_id"]
        # an admin: the admin API answers
        r = await c.get("/_synapse/admin/v1/registration_tokens", headers=h)
        assert r.status_code == 200
        r = await c.get("/_matrix/client/v3/profile/@pepper_roni:test.local/displayname")
        assert r.json() == {"displayname": "Pepper Roni"}
        # the nonce was used up
        r = await c.post(PATH, json=body)
        assert (r.status_code, r.json()["errcode"]) == (400, "M_INVALID_PARAM")
        # the password works for login
        r = await c.post(
            "/_matrix/client/v3/login",
            json={"type": "m.login.password", "user": "pepper_roni", "password": "pizza pizza"},
        )
        assert r.status_code == 200


async def test_not_admin_and_refusals(srv):
    async with srv.client() as c:
        n = await nonce(c)
        mac = generate_mac(n, "olive", "correct horse")
        r = await c.post(
            PATH, json={"nonce": n, "username": "olive", "password": "correct horse", "mac": mac}
        )
        assert r.status_code == 200, r.text
        h = {"Authorization": f"Bearer {r.json()['access_token']}"}
        r = await c.get("/_synapse/admin/v1/registration_tokens", headers=h)
        assert r.status_code == 403

        async def attempt(**fields: Any) -> httpx.Response:
            n = await nonce(c)
            body = {
                "nonce": n,
                "username": "pat",
                "password": "correct horse",
                "mac": generate_mac(n, "pat", "correct horse"),
                **fields,
            }
            response: httpx.Response = await c.post(PATH, json=body)
            return response

        # a MAC over other content (admin flipped), with another secret, or garbage: 403
        for fields in (
            {"admin": True},
            {"password": "correct horse!"},
        ):
            r = await attempt(**fields)
            assert (r.status_code, r.json()["errcode"]) == (403, "M_FORBIDDEN"), fields
        n = await nonce(c)
        r = await c.post(
            PATH,
            json={
                "nonce": n,
                "username": "pat",
                "password": "correct horse",
                "mac": generate_mac(n, "pat", "correct horse", secret="another secret value"),
            },
        )
        assert (r.status_code, r.json()["errcode"]) == (403, "M_FORBIDDEN")
        # the nonce of a failed attempt is gone too
        r = await c.post(
            PATH,
            json={
                "nonce": n,
                "username": "pat",
                "password": "correct horse",
                "mac": generate_mac(n, "pat", "correct horse"),
            },
        )
        assert (r.status_code, r.json()["errcode"]) == (400, "M_INVALID_PARAM")
        # unknown nonce, taken and invalid usernames, short password, bad types
        r = await attempt(nonce="made-up")
        assert (r.status_code, r.json()["errcode"]) == (400, "M_INVALID_PARAM")
        n = await nonce(c)
        r = await c.post(
            PATH,
            json={
                "nonce": n,
                "username": "olive",
                "password": "correct horse",
                "mac": generate_mac(n, "olive", "correct horse"),
            },
        )
        assert (r.status_code, r.json()["errcode"]) == (400, "M_USER_IN_USE")
        for user, password, errcode in (
            ("bad name", "correct horse", "M_INVALID_USERNAME"),
            ("shorty", "short", "M_WEAK_PASSWORD"),
        ):
            n = await nonce(c)
            r = await c.post(
                PATH,
                json={
                    "nonce": n,
                    "username": user,
                    "password": password,
                    "mac": generate_mac(n, user, password),
                },
            )
            assert (r.status_code, r.json()["errcode"]) == (400, errcode)
        n = await nonce(c)
        r = await c.post(
            PATH,
            json={
                "nonce": n,
                "username": "bot",
                "password": "correct horse",
                "user_type": "bot",
                "mac": generate_mac(n, "bot", "correct horse", user_type="bot"),
            },
        )
        assert (r.status_code, r.json()["errcode"]) == (400, "M_INVALID_PARAM")
        for body in ({"nonce": 5}, {"nonce": n, "username": "x"}, {"nonce": n, "admin": "yes"}):
            r = await c.post(PATH, json=body)
            assert r.status_code == 400 and r.json()["errcode"] in ("M_BAD_JSON", "M_MISSING_PARAM")
        r = await c.post(PATH, content=b"not json")
        assert (r.status_code, r.json()["errcode"]) == (400, "M_NOT_JSON")


async def test_disabled_without_a_secret(server):
    async with server.client() as c:
        r = await c.get(PATH)
        assert r.status_code == 400 and "not enabled" in r.json()["error"]
        r = await c.post(PATH, json={"nonce": "x", "username": "a", "password": "b", "mac": "c"})
        assert r.status_code == 400 and "not enabled" in r.json()["error"]


def test_short_secret_is_a_config_error():
    with pytest.raises(Exception, match="registration_shared_secret"):
        parse_config({"server_name": "x", "registration_shared_secret": "short"}, "f")


async def test_cli_register_user_still_works(srv):
    assert await register_user(srv.config, "cli_user", "correct horse", admin=True) == (
        "@cli_user:test.local"
    )
    async with srv.client() as c:
        r = await c.post(
            "/_matrix/client/v3/login",
            json={"type": "m.login.password", "user": "cli_user", "password": "correct horse"},
        )
        assert r.status_code == 200


async def test_public_baseurl_well_known_and_submit_url(srv, server):
    async with srv.client() as c:
        r = await c.get("/.well-known/matrix/client")
        assert r.status_code == 200
        assert r.json() == {"m.homeserver": {"base_url": "https://matrix.example.org"}}
        r = await c.post(
            "/_matrix/client/v3/register/msisdn/requestToken",
            json={
                "client_secret": "sec",
                "country": "DE",
                "phone_number": "0151 23456789",
                "send_attempt": 1,
            },
        )
        assert r.json()["submit_url"] == (
            "https://matrix.example.org/_homeserver/client/v1/msisdn/submit_token"
        )
    # without public_baseurl: no discovery information, submit_url from the Host header
    async with server.client() as c:
        r = await c.get("/.well-known/matrix/client")
        assert (r.status_code, r.json()["errcode"]) == (404, "M_NOT_FOUND")
        r = await c.post(
            "/_matrix/client/v3/register/msisdn/requestToken",
            json={
                "client_secret": "sec",
                "country": "DE",
                "phone_number": "0151 23456789",
                "send_attempt": 1,
            },
        )
        assert r.json()["submit_url"].startswith(server.base_url)


async def test_versions_and_capabilities(server, homeserver_factory):
    async with server.client() as c:
        r = await c.get("/_matrix/client/versions")
        versions = r.json()["versions"]
        # matrix-js-sdk needs v1.1+, Element checks v1.11 for authenticated media
        assert {"v1.1", "v1.3", "v1.5", "v1.11", "v1.12"} <= set(versions)
        assert "v1.13" not in versions and not any(v.startswith("r0") for v in versions)
        assert r.json()["unstable_features"]["org.example.reglock"] is True
        reg = await server.register("cap")
        r = await c.get(
            "/_matrix/client/v3/capabilities",
            headers={"Authorization": f"Bearer {reg['access_token']}"},
        )
        caps = r.json()["capabilities"]
        assert caps["m.profile_fields"] == {"enabled": True}
        assert caps["m.3pid_changes"] == {"enabled": True}
    off = await homeserver_factory(registration_lock={"enabled": False}, otp={"enabled": False})
    async with off.client() as c:
        r = await c.get("/_matrix/client/versions")
        assert r.json()["unstable_features"]["org.example.reglock"] is False
        reg = await off.register("cap2")
        h = {"Authorization": f"Bearer {reg['access_token']}"}
        r = await c.get("/_matrix/client/v3/capabilities", headers=h)
        assert r.json()["capabilities"]["m.3pid_changes"] == {"enabled": False}
        r = await c.get("/_matrix/client/unstable/org.example.reglock/pin", headers=h)
        assert (r.status_code, r.json()["errcode"]) == (404, "M_UNRECOGNIZED")
        r = await c.get("/_matrix/client/v3/login")
        assert r.json() == {"flows": [{"type": "m.login.password"}]}

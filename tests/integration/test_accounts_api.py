"""Registration, login, refresh, logout and account management over real sockets."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.app import register_user

REGISTER = "/_matrix/client/v3/register"
LOGIN = "/_matrix/client/v3/login"
WHOAMI = "/_matrix/client/v3/account/whoami"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def password_login(user: str, password: Any = "correct horse", **kw: Any) -> dict[str, Any]:
    return {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user},
        "password": password,
        **kw,
    }


async def test_first_request_shapes_clients_send(server):
    async with server.client() as c:
        # no auth: 401 with flows and a session, no errcode
        r = await c.post(REGISTER, json={"username": "amy", "password": "correct horse"})
        assert r.status_code == 401
        body = r.json()
        assert body["flows"] == [{"stages": ["m.login.dummy"]}, {"stages": ["m.login.msisdn"]}]
        assert body["session"] and body["completed"] == [] and "errcode" not in body
        # auth without type (matrix-nio's register_with_token first step): the same
        r = await c.post(
            REGISTER, json={"username": "amy", "password": "correct horse", "auth": {}}
        )
        assert r.status_code == 401 and r.json()["session"] != body["session"]
        # then dummy with the first session
        r = await c.post(
            REGISTER,
            json={
                "username": "AMY",
                "password": "correct horse",
                "auth": {"type": "m.login.dummy", "session": body["session"]},
                "inhibit_login": True,
            },
        )
        assert r.status_code == 200, r.text
        assert r.json()["user_id"] == "@amy:test.local" and "access_token" not in r.json()


async def test_uia_session_is_bound_to_the_request(server):
    async with server.client() as c:
        r = await c.post(REGISTER, json={"username": "ben", "password": "correct horse"})
        session = r.json()["session"]
        # a session of another operation is refused on /register
        pat = await server.register("pat")
        r = await c.post(
            "/_matrix/client/v3/delete_devices",
            json={"devices": ["X"]},
            headers=bearer(pat["access_token"]),
        )
        other = r.json()["session"]
        r = await c.post(
            REGISTER,
            json={"username": "ben", "auth": {"type": "m.login.dummy", "session": other}},
        )
        assert (r.status_code, r.json()["errcode"]) == (403, "M_FORBIDDEN")
        r = await c.post(
            REGISTER,
            json={"username": "ben", "password": "correct horse", "auth": {"session": "nope"}},
        )
        assert (r.status_code, r.json()["errcode"]) == (400, "M_UNKNOWN")
        r = await c.post(
            REGISTER,
            json={"username": "ben", "auth": {"type": "m.login.foo", "session": session}},
        )
        assert (r.status_code, r.json()["errcode"]) == (400, "M_UNRECOGNIZED")
        r = await c.post(REGISTER, json={"auth": {"type": "m.login.dummy", "session": 5}})
        assert (r.status_code, r.json()["errcode"]) == (400, "M_BAD_JSON")
        # registration tokens are not offered under the open policy
        r = await c.post(
            REGISTER,
            json={
                "username": "ben",
                "auth": {"type": "m.login.registration_token", "token": "x", "session": session},
            },
        )
        assert r.status_code == 401 and r.json()["errcode"] == "M_FORBIDDEN"
        # nothing was created on the way
        r = await c.get("/_matrix/client/v3/register/available", params={"username": "ben"})
        assert r.json() == {"available": True}


async def test_uia_session_remembers_the_registration_parameters(server):
    async with server.client() as c:
        first = {
            "username": "cat",
            "password": "übersecret pässword",
            "device_id": "XYZZY",
            "initial_device_display_name": "cat's phone",
        }
        r = await c.post(REGISTER, json=first)
        assert r.status_code == 401
        session = r.json()["session"]
        # the follow-up sends only auth: the first request's parameters are used
        r = await c.post(REGISTER, json={"auth": {"type": "m.login.dummy", "session": session}})
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["user_id"], body["device_id"]) == ("@cat:test.local", "XYZZY")
        r = await c.get("/_matrix/client/v3/devices/XYZZY", headers=bearer(body["access_token"]))
        assert r.json()["display_name"] == "cat's phone"
        # the remembered password (non-ASCII) logs in
        r = await c.post(LOGIN, json=password_login("cat", "übersecret pässword"))
        assert r.status_code == 200, r.text
        # a new account's display name is its localpart
        r = await c.get("/_matrix/client/v3/profile/@cat:test.local/displayname")
        assert r.json() == {"displayname": "cat"}
        # a later request's parameter replaces a remembered one
        r = await c.post(REGISTER, json={"username": "dan", "inhibit_login": True})
        session = r.json()["session"]
        r = await c.post(
            REGISTER,
            json={"username": "dana", "auth": {"type": "m.login.dummy", "session": session}},
        )
        assert r.status_code == 200, r.text
        assert r.json() == {"user_id": "@dana:test.local", "home_server": "test.local"}
        # no password was given: the account has none
        r = await c.post(LOGIN, json=password_login("dana"))
        assert r.status_code == 403


@pytest.mark.parametrize("username", [None, "eve"])
async def test_registration_is_idempotent(server, username):
    async with server.client() as c:
        first: dict[str, Any] = {"password": "correct horse"}
        if username:
            first["username"] = username
        r = await c.post(REGISTER, json=first)
        session = r.json()["session"]
        again = {**first, "auth": {"type": "m.login.dummy", "session": session}}
        r1 = await c.post(REGISTER, json=again)
        assert r1.status_code == 200, r1.text
        # the same session again: the same account, logged in again, not a new one
        r2 = await c.post(REGISTER, json=again)
        assert r2.status_code == 200, r2.text
        assert r2.json()["user_id"] == r1.json()["user_id"]
        assert r2.json()["access_token"] != r1.json()["access_token"]
        for r in (r1, r2):
            w = await c.get(WHOAMI, headers=bearer(r.json()["access_token"]))
            assert w.json()["user_id"] == r1.json()["user_id"]
        # a new session for a taken name is still refused
        r = await c.post(REGISTER, json={**first, "username": username or "eve"})
        if username:
            assert r.json()["errcode"] == "M_USER_IN_USE"


async def test_registration_token_use_is_spent_once(homeserver_factory):
    srv = await homeserver_factory(registration={"policy": "token"})
    await register_user(srv.config, "root", "correct horse", admin=True)
    async with srv.client() as c:
        admin = (await c.post(LOGIN, json=password_login("root"))).json()["access_token"]
    async with srv.client(headers=bearer(admin)) as c:
        r = await c.post(
            "/_synapse/admin/v1/registration_tokens/new", json={"token": "tok", "uses_allowed": 1}
        )
        assert r.status_code == 200, r.text
    async with srv.client() as c:
        r = await c.post(REGISTER, json={"username": "fay", "password": "correct horse"})
        session = r.json()["session"]
        r = await c.post(
            REGISTER,
            json={
                "auth": {"type": "m.login.registration_token", "token": "tok", "session": session}
            },
        )
        assert r.status_code == 401 and r.json()["completed"] == ["m.login.registration_token"]
        for _ in range(2):
            r = await c.post(REGISTER, json={"auth": {"type": "m.login.dummy", "session": session}})
            assert r.status_code == 200 and r.json()["user_id"] == "@fay:test.local", r.text
    async with srv.client(headers=bearer(admin)) as c:
        r = await c.get("/_synapse/admin/v1/registration_tokens/tok")
        assert (r.json()["pending"], r.json()["completed"]) == (0, 1), r.text


@pytest.mark.parametrize(
    "body, status, errcode",
    [
        ({"username": "bad name", "password": "correct horse"}, 400, "M_INVALID_USERNAME"),
        ({"username": "_reserved", "password": "correct horse"}, 400, "M_INVALID_USERNAME"),
        ({"username": "x" * 300, "password": "correct horse"}, 400, "M_INVALID_USERNAME"),
        ({"username": "taken", "password": "correct horse"}, 400, "M_USER_IN_USE"),
        ({"username": "TAKEN", "password": "correct horse"}, 400, "M_USER_IN_USE"),
        ({"username": "fresh", "password": "short"}, 400, "M_WEAK_PASSWORD"),
        ({"username": 5, "password": "correct horse"}, 400, "M_BAD_JSON"),
        ({"username": "fresh", "password": ["x"]}, 400, "M_BAD_JSON"),
        ({"username": "fresh", "auth": "dummy"}, 400, "M_BAD_JSON"),
        ({"username": "fresh", "inhibit_login": "yes"}, 400, "M_BAD_JSON"),
    ],
)
async def test_register_bad_input(server, body, status, errcode):
    await server.register("taken")
    async with server.client() as c:
        body = {**body, "auth": body.get("auth", {"type": "m.login.dummy"})}
        r = await c.post(REGISTER, json=body)
        assert (r.status_code, r.json()["errcode"]) == (status, errcode), r.text
        r = await c.post(REGISTER, content=b"{nope")
        assert r.json()["errcode"] == "M_NOT_JSON"
        r = await c.post(REGISTER + "?kind=admin", json={})
        assert r.json()["errcode"] == "M_INVALID_PARAM"
        # state intact: taken still logs in, fresh does not exist
        r = await c.post(LOGIN, json=password_login("taken"))
        assert r.status_code == 200
        r = await c.get("/_matrix/client/v3/register/available", params={"username": "fresh"})
        assert r.status_code == 200


async def test_available_and_closed_policy(homeserver_factory):
    srv = await homeserver_factory(registration={"policy": "closed"})
    async with srv.client() as c:
        r = await c.post(REGISTER, json={"username": "x", "auth": {"type": "m.login.dummy"}})
        assert (r.status_code, r.json()["errcode"]) == (403, "M_FORBIDDEN")
        r = await c.post(REGISTER + "?kind=guest", json={})
        assert (r.status_code, r.json()["errcode"]) == (403, "M_FORBIDDEN")
        r = await c.get("/_matrix/client/v3/register/available", params={"username": "Bad!"})
        assert r.json()["errcode"] == "M_INVALID_USERNAME"
        r = await c.get(
            "/_matrix/client/v1/register/m.login.registration_token/validity",
            params={"token": "x"},
        )
        assert (r.status_code, r.json()["errcode"]) == (403, "M_FORBIDDEN")
    # the operator can still create accounts
    assert await register_user(srv.config, "op", "correct horse", admin=False) == "@op:test.local"


async def test_guest_registration(homeserver_factory):
    srv = await homeserver_factory(registration={"allow_guests": True})
    async with srv.client() as c:
        r = await c.post(REGISTER + "?kind=guest", json={})
        assert r.status_code == 200, r.text
        r = await c.get(WHOAMI, headers=bearer(r.json()["access_token"]))
        assert r.json()["is_guest"] is True


async def test_guest_upgrades_to_a_full_account(homeserver_factory):
    srv = await homeserver_factory(registration={"allow_guests": True})
    async with srv.client() as c:
        guest = (await c.post(REGISTER + "?kind=guest", json={})).json()
        other = (await c.post(REGISTER + "?kind=guest", json={})).json()
        localpart = guest["user_id"][1:].split(":")[0]
        # guests get a display name too: their localpart
        r = await c.get(f"/_matrix/client/v3/profile/{guest['user_id']}/displayname")
        assert r.json() == {"displayname": localpart}
        body = {"username": localpart, "password": "correct horse"}
        # another guest's token, a full account's token, no username, a bad token
        full = await srv.register("full")
        for token, extra, status, errcode in (
            (other["access_token"], {}, 403, "M_FORBIDDEN"),
            (full["access_token"], {}, 403, "M_FORBIDDEN"),
            (guest["access_token"], {"username": None}, 400, "M_MISSING_PARAM"),
            ("nope", {}, 401, "M_UNKNOWN_TOKEN"),
            (5, {}, 400, "M_BAD_JSON"),
        ):
            r = await c.post(
                REGISTER,
                json={
                    **body,
                    **extra,
                    "guest_access_token": token,
                    "auth": {"type": "m.login.dummy"},
                },
            )
            assert (r.status_code, r.json()["errcode"]) == (status, errcode), r.text
        # without the guest's token the name is taken
        r = await c.post(REGISTER, json={**body, "auth": {"type": "m.login.dummy"}})
        assert r.json()["errcode"] == "M_USER_IN_USE"
        r = await c.post(REGISTER, json={**body, "guest_access_token": guest["access_token"]})
        assert r.status_code == 401
        r = await c.post(
            REGISTER,
            json={
                **body,
                "guest_access_token": guest["access_token"],
                "auth": {"type": "m.login.dummy", "session": r.json()["session"]},
            },
        )
        assert r.status_code == 200, r.text
        assert r.json()["user_id"] == guest["user_id"]
        w = await c.get(WHOAMI, headers=bearer(r.json()["access_token"]))
        assert (w.json()["user_id"], w.json()["is_guest"]) == (guest["user_id"], False)
        # the password now logs in
        r = await c.post(LOGIN, json=password_login(localpart))
        assert r.status_code == 200, r.text
        # the guest's token ended with the guest account
        r = await c.get(WHOAMI, headers=bearer(guest["access_token"]))
        assert (r.status_code, r.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN")
        r = await c.post(
            REGISTER,
            json={
                **body,
                "guest_access_token": guest["access_token"],
                "auth": {"type": "m.login.dummy"},
            },
        )
        assert (r.status_code, r.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN"), r.text


async def test_whois_for_a_server_admin(server):
    alice = await server.register("alice", device_id="PHONE")
    await register_user(server.config, "root", "correct horse", admin=True)
    async with server.client() as c:
        root = (await c.post(LOGIN, json=password_login("root"))).json()["access_token"]
        r = await c.get("/_matrix/client/v3/admin/whois/@alice:test.local", headers=bearer(root))
        assert r.status_code == 200, r.text
        assert r.json()["user_id"] == "@alice:test.local"
        assert list(r.json()["devices"]) == ["PHONE"]
        # last-seen times reach the database once a minute: not yet
        assert r.json()["devices"]["PHONE"] == {"sessions": [{"connections": []}]}
        # an unknown user has no devices here
        r = await c.get("/_matrix/client/v3/admin/whois/@nobody:test.local", headers=bearer(root))
        assert r.json() == {"user_id": "@nobody:test.local", "devices": {}}
        # a user who is no admin may not look at another
        r = await c.get(
            "/_matrix/client/v3/admin/whois/@root:test.local", headers=bearer(alice["access_token"])
        )
        assert (r.status_code, r.json()["errcode"]) == (403, "M_FORBIDDEN")


async def test_login_variants_and_device_reuse(server):
    await server.register("lou", "correct horse")
    async with server.client() as c:
        r = await c.get(LOGIN)
        # m.login.msisdn: login with an SMS code (phone verification is on in the fixture)
        assert r.json() == {"flows": [{"type": "m.login.password"}, {"type": "m.login.msisdn"}]}
        # full user ID, localpart in upper case, deprecated top-level user
        for body in (
            password_login("@lou:test.local"),
            password_login("LOU"),
            {"type": "m.login.password", "user": "lou", "password": "correct horse"},
        ):
            r = await c.post(LOGIN, json=body)
            assert r.status_code == 200, r.text
        r = await c.post(
            LOGIN, json=password_login("lou", device_id="PHONE", initial_device_display_name="p")
        )
        first = r.json()["access_token"]
        assert r.json()["device_id"] == "PHONE"
        r = await c.post(LOGIN, json=password_login("lou", device_id="PHONE"))
        second = r.json()["access_token"]
        # reusing the device ID revoked the device's earlier token
        assert (await c.get(WHOAMI, headers=bearer(first))).status_code == 401
        r = await c.get(WHOAMI, headers=bearer(second))
        assert r.json()["device_id"] == "PHONE"


@pytest.mark.parametrize(
    "body, status, errcode",
    [
        (password_login("lou", "wrong password"), 403, "M_FORBIDDEN"),
        (password_login("nobody"), 403, "M_FORBIDDEN"),
        (password_login("@lou:elsewhere"), 403, "M_FORBIDDEN"),
        ({"type": "m.login.token", "token": "x"}, 400, "M_UNKNOWN"),
        ({"type": 1}, 400, "M_BAD_JSON"),
        ({"type": "m.login.password", "password": "x"}, 400, "M_BAD_JSON"),
        (
            {"type": "m.login.password", "identifier": {"type": "m.id.user"}, "password": "x"},
            400,
            "M_BAD_JSON",
        ),
        (
            {"type": "m.login.password", "identifier": {"type": "m.id.nope"}, "password": "x"},
            400,
            "M_INVALID_PARAM",
        ),
        (password_login("lou", 5), 400, "M_BAD_JSON"),
        (password_login("lou", refresh_token="yes"), 400, "M_BAD_JSON"),
    ],
)
async def test_login_bad_input(server, body, status, errcode):
    await server.register("lou", "correct horse")
    async with server.client() as c:
        r = await c.post(LOGIN, json=body)
        assert (r.status_code, r.json()["errcode"]) == (status, errcode), r.text
        assert (await c.post(LOGIN, json=password_login("lou"))).status_code == 200


async def test_login_rate_limited_per_ip(homeserver_factory):
    srv = await homeserver_factory(
        rate_limits={"enabled": True, "login": {"per_second": 0.01, "burst_count": 2}}
    )
    await srv.register("rita", "correct horse")
    async with srv.client() as c:
        codes = [
            (await c.post(LOGIN, json=password_login("rita", "bad"))).status_code for _ in range(3)
        ]
        assert codes == [403, 403, 429]


async def test_refresh_rotation_and_reuse(server):
    reg = await server.register("rex", "correct horse", refresh_token=True)
    assert reg["expires_in_ms"] == 300_000
    async with server.client() as c:
        other = (await c.post(LOGIN, json=password_login("rex"))).json()
        r = await c.post("/_matrix/client/v3/refresh", json={"refresh_token": reg["refresh_token"]})
        assert r.status_code == 200, r.text
        new = r.json()
        assert new["refresh_token"] != reg["refresh_token"] and new["expires_in_ms"] == 300_000
        # the old refresh token still works until the new pair is used ...
        r = await c.post("/_matrix/client/v3/refresh", json={"refresh_token": reg["refresh_token"]})
        assert r.status_code == 200
        newer = r.json()
        # ... and that replaced the pair handed out before (never used)
        assert (await c.get(WHOAMI, headers=bearer(new["access_token"]))).status_code == 401
        assert (await c.get(WHOAMI, headers=bearer(newer["access_token"]))).status_code == 200
        # the device is the same throughout
        r = await c.get(WHOAMI, headers=bearer(newer["access_token"]))
        assert r.json()["device_id"] == reg["device_id"]
        assert (await c.get(WHOAMI, headers=bearer(reg["access_token"]))).status_code == 401
        # unknown and malformed refresh tokens revoke nothing
        r = await c.post("/_matrix/client/v3/refresh", json={"refresh_token": "mar_unknown"})
        assert (r.status_code, r.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN")
        r = await c.post("/_matrix/client/v3/refresh", json={"refresh_token": 5})
        assert r.json()["errcode"] == "M_BAD_JSON"
        assert (await c.get(WHOAMI, headers=bearer(newer["access_token"]))).status_code == 200
        # using the new access token retired the old refresh token: its reuse (a leaked token
        # family) → 401 M_UNKNOWN_TOKEN and the device's whole session is revoked
        r = await c.post("/_matrix/client/v3/refresh", json={"refresh_token": reg["refresh_token"]})
        assert (r.status_code, r.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN")
        r = await c.get(WHOAMI, headers=bearer(newer["access_token"]))
        assert (r.status_code, r.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN")
        r = await c.post(
            "/_matrix/client/v3/refresh", json={"refresh_token": newer["refresh_token"]}
        )
        assert (r.status_code, r.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN")
        r = await c.get("/_matrix/client/v3/devices", headers=bearer(other["access_token"]))
        assert reg["device_id"] not in [d["device_id"] for d in r.json()["devices"]]


async def test_tokens_unknown_missing_and_logout_all(server):
    a = await server.register("lia", "correct horse")
    async with server.client() as c:
        b = (await c.post(LOGIN, json=password_login("lia"))).json()
        assert (await c.get(WHOAMI)).json()["errcode"] == "M_MISSING_TOKEN"
        assert (await c.get(WHOAMI, headers=bearer("mat_forged"))).json()[
            "errcode"
        ] == "M_UNKNOWN_TOKEN"
        r = await c.post("/_matrix/client/v3/logout/all", headers=bearer(a["access_token"]))
        assert r.status_code == 200
        for token in (a["access_token"], b["access_token"]):
            r = await c.get(WHOAMI, headers=bearer(token))
            assert (r.status_code, r.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN")
            assert "soft_logout" not in r.json()
        assert (await c.post(LOGIN, json=password_login("lia"))).status_code == 200


def reauth(user: str, password: str, session: str) -> dict[str, Any]:
    return {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user},
        "password": password,
        "session": session,
    }


async def test_change_password_with_uia(server):
    a = await server.register("pat", "correct horse")
    async with server.client() as c:
        b = (await c.post(LOGIN, json=password_login("pat"))).json()
        url = "/_matrix/client/v3/account/password"
        r = await c.post(
            url, json={"new_password": "new password"}, headers=bearer(a["access_token"])
        )
        assert r.status_code == 401 and r.json()["flows"][0] == {"stages": ["m.login.password"]}
        session = r.json()["session"]
        # wrong password: 401 with errcode, the session goes on
        body = {"new_password": "new password", "auth": reauth("pat", "wrong!", session)}
        r = await c.post(url, json=body, headers=bearer(a["access_token"]))
        assert (r.status_code, r.json()["errcode"], r.json()["session"]) == (
            401,
            "M_FORBIDDEN",
            session,
        )
        # another user's password does not re-authenticate pat: 403, as on Synapse
        await server.register("mallory", "mallory password")
        body["auth"] = reauth("mallory", "mallory password", session)
        r = await c.post(url, json=body, headers=bearer(a["access_token"]))
        assert (r.status_code, r.json()["errcode"]) == (403, "M_FORBIDDEN")
        # too short
        body = {"new_password": "short", "auth": reauth("pat", "correct horse", session)}
        r = await c.post(url, json=body, headers=bearer(a["access_token"]))
        assert r.json()["errcode"] == "M_WEAK_PASSWORD"
        body["new_password"] = "new password"
        r = await c.post(url, json=body, headers=bearer(a["access_token"]))
        assert r.status_code == 200, r.text
        # the other device was logged out, this one was not
        assert (await c.get(WHOAMI, headers=bearer(b["access_token"]))).status_code == 401
        assert (await c.get(WHOAMI, headers=bearer(a["access_token"]))).status_code == 200
        assert (await c.post(LOGIN, json=password_login("pat"))).status_code == 403
        assert (await c.post(LOGIN, json=password_login("pat", "new password"))).status_code == 200


async def test_deactivate(server):
    a = await server.register("dee", "correct horse")
    async with server.client(headers=bearer(a["access_token"])) as c:
        url = "/_matrix/client/v3/account/deactivate"
        r = await c.post(url, json={})
        session = r.json()["session"]
        r = await c.post(url, json={"auth": {"type": "m.login.dummy", "session": session}})
        assert r.status_code == 401 and r.json()["errcode"] == "M_FORBIDDEN"  # dummy not offered
        r = await c.post(url, json={"auth": reauth("dee", "correct horse", session)})
        assert r.status_code == 200 and r.json() == {"id_server_unbind_result": "no-support"}
        assert (await c.get(WHOAMI)).status_code == 401
        r = await c.post(LOGIN, json=password_login("dee"))
        assert (r.status_code, r.json()["errcode"]) == (403, "M_USER_DEACTIVATED")
        r = await c.get("/_matrix/client/v3/register/available", params={"username": "dee"})
        assert r.json()["errcode"] == "M_USER_IN_USE"


async def test_admin_registration_tokens(homeserver_factory):
    srv = await homeserver_factory(registration={"policy": "token"})
    await register_user(srv.config, "root", "correct horse", admin=True)
    await register_user(srv.config, "joe", "correct horse", admin=False)
    base = "/_synapse/admin/v1/registration_tokens"
    async with srv.client() as c:
        root = bearer((await c.post(LOGIN, json=password_login("root"))).json()["access_token"])
        joe = bearer((await c.post(LOGIN, json=password_login("joe"))).json()["access_token"])
        assert (await c.get(base, headers=joe)).json()["errcode"] == "M_FORBIDDEN"
        assert (await c.get(base)).json()["errcode"] == "M_MISSING_TOKEN"
        r = await c.post(base + "/new", json={"length": 20}, headers=root)
        token = r.json()["token"]
        assert len(token) == 20 and r.json()["uses_allowed"] is None
        r = await c.post(base + "/new", json={"token": token}, headers=root)
        assert r.json()["errcode"] == "M_INVALID_PARAM"
        r = await c.post(base + "/new", json={"token": "bad token"}, headers=root)
        assert r.json()["errcode"] == "M_INVALID_PARAM"
        r = await c.post(base + "/new", json={"uses_allowed": -1}, headers=root)
        assert r.json()["errcode"] == "M_INVALID_PARAM"
        r = await c.put(f"{base}/{token}", json={"uses_allowed": 0}, headers=root)
        assert r.json()["uses_allowed"] == 0
        r = await c.get(base, params={"valid": "false"}, headers=root)
        assert [t["token"] for t in r.json()["registration_tokens"]] == [token]
        validity = "/_matrix/client/v1/register/m.login.registration_token/validity"
        assert (await c.get(validity, params={"token": token})).json() == {"valid": False}
        await c.put(f"{base}/{token}", json={"uses_allowed": None}, headers=root)
        assert (await c.get(validity, params={"token": token})).json() == {"valid": True}
        assert (await c.delete(f"{base}/{token}", headers=root)).status_code == 200
        assert (await c.get(f"{base}/{token}", headers=root)).json()["errcode"] == "M_NOT_FOUND"
        assert (await c.get(validity, params={"token": token})).json() == {"valid": False}

"""Accounts' security rules over real sockets: one user can never read or change another's
devices, account data, tags, profile, PIN or tokens; failed-login limits per account and per IP;
expired tokens are a soft logout."""

from __future__ import annotations

from typing import Any

LOGIN = "/_matrix/client/v3/login"
WHOAMI = "/_matrix/client/v3/account/whoami"
ROOM = "!room:test.local"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def password_login(user: str, password: str = "correct horse", **kw: Any) -> dict[str, Any]:
    return {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user},
        "password": password,
        **kw,
    }


async def test_a_user_never_touches_another_users_devices_data_or_tokens(server):
    alice = await server.register("alice", device_id="ALICEPHONE")
    bob = await server.register("bob", device_id="BOBPHONE")
    a, b = bearer(alice["access_token"]), bearer(bob["access_token"])
    bob_id = bob["user_id"]
    async with server.client() as c:
        assert (
            await c.put(
                "/_matrix/client/v3/user/@bob:test.local/account_data/m.x",
                headers=b,
                json={"secret": 1},
            )
        ).status_code == 200
        await c.put(
            f"/_matrix/client/v3/user/{bob_id}/rooms/{ROOM}/account_data/m.y",
            headers=b,
            json={"secret": 2},
        )

        # devices: Alice's API only ever sees Alice's devices
        r = await c.get("/_matrix/client/v3/devices", headers=a)
        assert [d["device_id"] for d in r.json()["devices"]] == ["ALICEPHONE"]
        for method, kwargs in (
            ("GET", {}),
            ("PUT", {"json": {"display_name": "pwned"}}),
        ):
            r = await c.request(method, "/_matrix/client/v3/devices/BOBPHONE", headers=a, **kwargs)
            assert (r.status_code, r.json()["errcode"]) == (404, "M_NOT_FOUND")
        # deleting Bob's device with Alice's own password: nothing of Bob's goes
        r = await c.post(
            "/_matrix/client/v3/delete_devices", headers=a, json={"devices": ["BOBPHONE"]}
        )
        assert r.status_code == 401
        r = await c.post(
            "/_matrix/client/v3/delete_devices",
            headers=a,
            json={
                "devices": ["BOBPHONE"],
                "auth": {
                    "type": "m.login.password",
                    "identifier": {"type": "m.id.user", "user": "alice"},
                    "password": "correct horse",
                    "session": r.json()["session"],
                },
            },
        )
        assert r.status_code == 200
        # ... nor by authenticating as Bob inside Alice's session (she does not know his
        # password, but even with it the stage must be her own account)
        r = await c.delete("/_matrix/client/v3/devices/ALICEPHONE", headers=a)
        r = await c.request(
            "DELETE",
            "/_matrix/client/v3/devices/ALICEPHONE",
            headers=a,
            json={
                "auth": {
                    "type": "m.login.password",
                    "identifier": {"type": "m.id.user", "user": "bob"},
                    "password": "correct horse",
                    "session": r.json()["session"],
                }
            },
        )
        # right credentials of another user: 403 outright (as Synapse), the device stays
        assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"
        r = await c.get("/_matrix/client/v3/devices/ALICEPHONE", headers=a)
        assert r.status_code == 200
        r = await c.get("/_matrix/client/v3/devices/BOBPHONE", headers=b)
        assert (r.status_code, r.json()["display_name"]) == (200, None)

        # account data and tags: 403 for someone else's, reading and writing
        for path in (
            f"/_matrix/client/v3/user/{bob_id}/account_data/m.x",
            f"/_matrix/client/v3/user/{bob_id}/rooms/{ROOM}/account_data/m.y",
            f"/_matrix/client/v3/user/{bob_id}/rooms/{ROOM}/tags",
        ):
            r = await c.get(path, headers=a)
            assert (r.status_code, r.json()["errcode"]) == (403, "M_FORBIDDEN"), path
        for path in (
            f"/_matrix/client/v3/user/{bob_id}/account_data/m.x",
            f"/_matrix/client/v3/user/{bob_id}/rooms/{ROOM}/account_data/m.y",
            f"/_matrix/client/v3/user/{bob_id}/rooms/{ROOM}/tags/u.work",
        ):
            r = await c.put(path, headers=a, json={"secret": "overwritten"})
            assert (r.status_code, r.json()["errcode"]) == (403, "M_FORBIDDEN"), path
        r = await c.delete(f"/_matrix/client/v3/user/{bob_id}/rooms/{ROOM}/tags/u.work", headers=a)
        assert r.status_code == 403
        r = await c.get(f"/_matrix/client/v3/user/{bob_id}/account_data/m.x", headers=b)
        assert r.json() == {"secret": 1}

        # profile: readable, not writable
        r = await c.put(
            f"/_matrix/client/v3/profile/{bob_id}/displayname",
            headers=a,
            json={"displayname": "Bobby Tables"},
        )
        assert (r.status_code, r.json()["errcode"]) == (403, "M_FORBIDDEN")
        r = await c.delete(f"/_matrix/client/v3/profile/{bob_id}/displayname", headers=a)
        assert r.status_code == 403

        # tokens: OpenID tokens only for oneself; logging out affects only oneself
        r = await c.post(
            f"/_matrix/client/v3/user/{bob_id}/openid/request_token", headers=a, json={}
        )
        assert (r.status_code, r.json()["errcode"]) == (403, "M_FORBIDDEN")
        assert (await c.post("/_matrix/client/v3/logout/all", headers=a)).status_code == 200
        r = await c.get(WHOAMI, headers=b)
        assert (r.status_code, r.json()["user_id"]) == (200, bob_id)
        r = await c.get("/_matrix/client/v3/devices", headers=b)
        assert [d["device_id"] for d in r.json()["devices"]] == ["BOBPHONE"]


async def test_failed_logins_limited_per_account_and_per_ip(homeserver_factory):
    srv = await homeserver_factory(
        rate_limits={"enabled": True, "login": {"per_second": 0.001, "burst_count": 3}}
    )
    await srv.register("rita")
    await srv.register("sam")
    async with srv.client() as c:
        # per account: wrong passwords for rita from three different addresses, then even the
        # right password from a fourth address is refused
        codes = [
            (
                await c.post(
                    LOGIN,
                    json=password_login("rita", "wrong"),
                    headers={"X-Forwarded-For": f"10.0.0.{n}"},
                )
            ).status_code
            for n in range(4)
        ]
        assert codes == [403, 403, 403, 429]
        r = await c.post(
            LOGIN, json=password_login("rita"), headers={"X-Forwarded-For": "10.9.9.9"}
        )
        assert (r.status_code, r.json()["errcode"]) == (429, "M_LIMIT_EXCEEDED")
        assert r.json()["retry_after_ms"] > 0 and int(r.headers["Retry-After"]) >= 1
        # sam is not affected
        r = await c.post(LOGIN, json=password_login("sam"), headers={"X-Forwarded-For": "10.8.8.8"})
        assert r.status_code == 200
        # per IP: one address guessing different accounts
        ip = {"X-Forwarded-For": "192.0.2.7"}
        codes = [
            (await c.post(LOGIN, json=password_login(f"nobody{n}"), headers=ip)).status_code
            for n in range(4)
        ]
        assert codes == [403, 403, 403, 429]


async def test_expired_access_token_is_soft_logout(homeserver_factory):
    srv = await homeserver_factory(auth={"refreshable_access_token_lifetime_s": 0.001})
    reg = await srv.register("tim", refresh_token=True)
    async with srv.client() as c:
        r = await c.get(WHOAMI, headers=bearer(reg["access_token"]))
        assert r.status_code == 401
        assert r.json() == {
            "errcode": "M_UNKNOWN_TOKEN",
            "error": r.json()["error"],
            "soft_logout": True,
        }
        # the client refreshes and keeps its device
        r = await c.post("/_matrix/client/v3/refresh", json={"refresh_token": reg["refresh_token"]})
        assert r.status_code == 200 and r.json()["expires_in_ms"] == 1
        # a logged-out token is a hard logout
        login = (await c.post(LOGIN, json=password_login("tim"))).json()
        await c.post("/_matrix/client/v3/logout", headers=bearer(login["access_token"]))
        r = await c.get(WHOAMI, headers=bearer(login["access_token"]))
        assert r.status_code == 401 and "soft_logout" not in r.json()


async def test_unknown_user_costs_a_password_check(server):
    """Constant time: an unknown user is checked against a dummy argon2 hash, so it answers
    like a wrong password (same status, same error text)."""
    await server.register("uma")
    async with server.client() as c:
        known = await c.post(LOGIN, json=password_login("uma", "wrong"))
        unknown = await c.post(LOGIN, json=password_login("nobody-here", "wrong"))
    assert known.status_code == unknown.status_code == 403
    assert known.json() == unknown.json()

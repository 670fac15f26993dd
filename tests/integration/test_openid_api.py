"""OpenID userinfo on every listener that serves clients or federation, over real sockets."""

from __future__ import annotations

import pytest

USERINFO = "/_matrix/federation/v1/openid/userinfo"


def _listener(*resources: str) -> list[dict[str, object]]:
    return [{"host": "127.0.0.1", "port": 0, "resources": list(resources)}]


@pytest.mark.parametrize(
    "resources", [("client",), ("client", "federation"), ("federation", "client", "media")]
)
async def test_userinfo_on_client_listeners(homeserver_factory, resources):
    srv = await homeserver_factory(listeners=_listener(*resources))
    alice = await srv.register("alice")
    async with srv.client(headers={"Authorization": f"Bearer {alice['access_token']}"}) as c:
        r = await c.post(f"/_matrix/client/v3/user/{alice['user_id']}/openid/request_token")
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]
    async with srv.client() as c:
        r = await c.get(USERINFO, params={"access_token": token})
        assert (r.status_code, r.json()) == (200, {"sub": alice["user_id"]})
        r = await c.get(USERINFO, params={"access_token": "an/invalid/token"})
        assert (r.status_code, r.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN")
        r = await c.get(USERINFO)
        assert (r.status_code, r.json()["errcode"]) == (401, "M_MISSING_TOKEN")
        # the client's access token is no OpenID token
        r = await c.get(USERINFO, params={"access_token": alice["access_token"]})
        assert r.status_code == 401


async def test_userinfo_not_on_other_listeners(homeserver_factory):
    srv = await homeserver_factory(listeners=_listener("health", "media"))
    async with srv.client() as c:
        r = await c.get(USERINFO, params={"access_token": "x"})
        assert r.status_code == 404

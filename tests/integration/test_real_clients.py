"""Real client libraries against an in-process server: matrix-nio and mautrix-python.

Both are asyncio libraries and the server runs on Trio, so each client scenario runs in its own
asyncio loop in a worker thread (``in_asyncio``) while the server serves from the test's nursery.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import trio
from nio import (
    AsyncClient,
    AsyncClientConfig,
    LoginResponse,
    LogoutResponse,
    RegisterResponse,
    WhoamiResponse,
)
from nio.responses import RegisterErrorResponse

from homeserver.app import register_user

T = TypeVar("T")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


async def in_asyncio(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    return await trio.to_thread.run_sync(lambda: asyncio.run(fn(*args)))


def nio_client(base_url: str, user: str = "") -> AsyncClient:
    return AsyncClient(base_url, user, config=AsyncClientConfig(store_sync_tokens=False))


async def test_nio_register_login_whoami_logout(server):
    async def scenario(base_url: str) -> None:
        client = nio_client(base_url)
        try:
            # register(): a one-shot m.login.dummy without a session
            resp = await client.register("alice", "correct horse battery", device_name="nio")
            assert isinstance(resp, RegisterResponse), resp
            assert resp.user_id == "@alice:test.local"
            assert resp.access_token and resp.device_id
            who = await client.whoami()
            assert isinstance(who, WhoamiResponse), who
            assert (who.user_id, who.device_id, who.is_guest) == (
                "@alice:test.local",
                resp.device_id,
                False,
            )
        finally:
            await client.close()

        other = nio_client(base_url)
        try:
            again = await other.register("alice", "correct horse battery")
            assert isinstance(again, RegisterErrorResponse)
            assert again.status_code == "M_USER_IN_USE"
        finally:
            await other.close()

        client = nio_client(base_url, "@alice:test.local")
        try:
            login = await client.login("correct horse battery", device_name="laptop")
            assert isinstance(login, LoginResponse), login
            old_token = login.access_token
            who = await client.whoami()
            assert isinstance(who, WhoamiResponse) and who.device_id == login.device_id
            out = await client.logout()
            assert isinstance(out, LogoutResponse), out
            client.access_token = old_token
            who = await client.whoami()
            assert not isinstance(who, WhoamiResponse)
            assert who.status_code == "M_UNKNOWN_TOKEN"
        finally:
            await client.close()

    await in_asyncio(scenario, server.base_url)


async def test_nio_wrong_password(server):
    await server.register("bob", "correct horse battery")

    async def scenario(base_url: str) -> None:
        client = nio_client(base_url, "bob")
        try:
            resp = await client.login("wrong password!")
            assert not isinstance(resp, LoginResponse)
            assert resp.status_code == "M_FORBIDDEN"
        finally:
            await client.close()

    await in_asyncio(scenario, server.base_url)


async def test_nio_register_with_token(homeserver_factory):
    srv = await homeserver_factory(registration={"policy": "token"})
    await register_user(srv.config, "admin", "admin password", admin=True)
    async with srv.client() as c:
        r = await c.post(
            "/_matrix/client/v3/login",
            json={"type": "m.login.password", "user": "admin", "password": "admin password"},
        )
        admin = {"Authorization": f"Bearer {r.json()['access_token']}"}
        r = await c.post(
            "/_synapse/admin/v1/registration_tokens/new",
            json={"token": "letmein", "uses_allowed": 1},
            headers=admin,
        )
        assert r.status_code == 200, r.text

    async def scenario(base_url: str) -> None:
        client = nio_client(base_url)
        try:
            # the open flow is not offered under the token policy
            resp = await client.register("carol", "correct horse battery")
            assert isinstance(resp, RegisterErrorResponse)
            resp = await client.register_with_token("carol", "correct horse battery", "wrong")
            assert isinstance(resp, RegisterErrorResponse)
            resp = await client.register_with_token("carol", "correct horse battery", "letmein")
            assert isinstance(resp, RegisterResponse), resp
            assert resp.user_id == "@carol:test.local"
            who = await client.whoami()
            assert isinstance(who, WhoamiResponse) and who.user_id == "@carol:test.local"
        finally:
            await client.close()
        client = nio_client(base_url)
        try:  # the token had one use
            resp = await client.register_with_token("dave", "correct horse battery", "letmein")
            assert isinstance(resp, RegisterErrorResponse)
        finally:
            await client.close()

    await in_asyncio(scenario, srv.base_url)
    async with srv.client() as c:
        r = await c.get("/_synapse/admin/v1/registration_tokens/letmein", headers=admin)
        assert r.json() == {
            "token": "letmein",
            "uses_allowed": 1,
            "pending": 0,
            "completed": 1,
            "expiry_time": None,
        }


async def test_mautrix_login_and_whoami(server):
    await server.register("erin", "correct horse battery")

    async def scenario(base_url: str) -> None:
        from mautrix.client import ClientAPI
        from mautrix.types import LoginType, UserID

        api = ClientAPI(base_url=base_url)
        try:
            resp = await api.login(
                identifier=UserID("erin"),
                login_type=LoginType.PASSWORD,
                password="correct horse battery",
            )
            assert resp.user_id == "@erin:test.local"
            assert api.api.token == resp.access_token
            who = await api.whoami()
            assert who.user_id == "@erin:test.local"
            assert who.device_id == resp.device_id
        finally:
            await api.api.session.close()

    await in_asyncio(scenario, server.base_url)

"""A server with the account-surface APIs over real sockets, and users to call it as.

Until the accounts engineer's login exists, users and access tokens are made through the stores:
a device row plus an ``access_tokens`` row holding the SHA-256 hex of the token, which
:class:`TokenAuthenticator` looks up on every request (so deleting a device revokes its token).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial

import httpx
import hypercorn.trio
import trio
from hypercorn.config import Config as HypercornConfig
from sqlalchemy import bindparam, insert, select

from homeserver.api._http import ObservedApp, RequestGate, build_asgi_app
from homeserver.api.client.account_data import AccountDataApi
from homeserver.api.client.capabilities import CapabilitiesApi
from homeserver.api.client.devices import DevicesApi
from homeserver.api.client.openid import OpenIdApi
from homeserver.api.client.profile import ProfileApi
from homeserver.api.client.tags import TagsApi
from homeserver.api.client.user_directory import UserDirectoryApi
from homeserver.api.federation.openid import FederationOpenIdApi
from homeserver.api.metrics import HttpMetrics
from homeserver.clock import FakeClock
from homeserver.errors import UnknownToken
from homeserver.services.account_data import AccountDataService
from homeserver.services.devices import DeviceService
from homeserver.services.openid import OpenIdService
from homeserver.services.passwords import PasswordHasher
from homeserver.services.profile import ProfileService
from homeserver.services.requester import Requester
from homeserver.services.uia import UiaService
from homeserver.services.user_directory import UserDirectoryService
from homeserver.storage import Conn, Database, Stores
from homeserver.storage.registration_tokens import RegistrationTokenStore
from homeserver.storage.schema import access_tokens
from homeserver.storage.threepids import ThreepidStore
from homeserver.storage.uia import UiaStore

SERVER_NAME = "test.local"
PASSWORD = "correct horse battery staple"
MAX_BODY = 1_048_576

_ADD_TOKEN = insert(access_tokens).values(
    token_hash=bindparam("h"), user_id=bindparam("u"), device_id=bindparam("d"), created_ts=1
)
_FIND_TOKEN = select(access_tokens.c.user_id, access_tokens.c.device_id).where(
    access_tokens.c.token_hash == bindparam("h")
)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenAuthenticator:
    """Looks access tokens up in ``access_tokens`` by SHA-256 hex."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def authenticate(self, access_token: str, *, client_ip: str) -> Requester:
        async def work(conn: Conn):
            return await conn.fetch_one(_FIND_TOKEN, {"h": _hash(access_token)})

        row = await self._db.read(work, name="test_auth")
        if row is None:
            raise UnknownToken()
        return Requester(row[0], row[1])


@dataclass
class Harness:
    """What a test gets: an HTTP client on the server, the stores, the clock."""

    client: httpx.AsyncClient
    db: Database
    stores: Stores
    clock: FakeClock
    hasher: PasswordHasher

    async def user(self, localpart: str, *, password: str | None = PASSWORD) -> str:
        user_id = f"@{localpart}:{SERVER_NAME}"
        pw_hash = await self.hasher.hash(password) if password else None
        await self.stores.users.create_user(user_id, password_hash=pw_hash, created_ts=1)
        return user_id

    async def login(self, user_id: str, device_id: str | None = None) -> str:
        """A new device and access token for ``user_id``; returns the token."""
        device_id = device_id or secrets.token_hex(5).upper()
        await self.stores.devices.create_device(user_id, device_id)
        token = secrets.token_urlsafe(16)

        async def work(conn: Conn) -> None:
            await conn.execute(_ADD_TOKEN, {"h": _hash(token), "u": user_id, "d": device_id})

        await self.db.run(work, name="test_login")
        return token

    def auth(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


def build_apis(db: Database, stores: Stores, clock: FakeClock, hasher: PasswordHasher) -> list:
    uia = UiaService(
        UiaStore(db),
        stores.users,
        RegistrationTokenStore(db),
        ThreepidStore(db),
        hasher,
        clock,
        server_name=SERVER_NAME,
    )
    account_data = AccountDataService(stores.account_data)
    openid = OpenIdService(stores.openid, clock, SERVER_NAME)
    return [
        DevicesApi(DeviceService(stores.devices), uia, MAX_BODY),
        ProfileApi(ProfileService(stores.users, stores.profiles, SERVER_NAME), MAX_BODY),
        AccountDataApi(account_data, MAX_BODY),
        TagsApi(account_data, MAX_BODY),
        CapabilitiesApi(default_room_version="12", change_password=True),
        OpenIdApi(openid),
        UserDirectoryApi(UserDirectoryService(stores.user_directory, search_all_users=True)),
        FederationOpenIdApi(openid),
    ]


@asynccontextmanager
async def serve(db: Database, stores: Stores) -> AsyncIterator[Harness]:
    clock = FakeClock()
    hasher = PasswordHasher(time_cost=1, memory_cost=1024)
    app = build_asgi_app(
        build_apis(db, stores, clock, hasher),
        max_body_bytes=MAX_BODY,
        gate=RequestGate(TokenAuthenticator(db), None),
    )
    observed = ObservedApp(app, HttpMetrics(pool_usage=lambda: (0, 1)), ("*",))
    hc = HypercornConfig()
    hc.bind = ["127.0.0.1:0"]
    hc.accesslog = None
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        urls = await nursery.start(
            partial(hypercorn.trio.serve, observed, hc, shutdown_trigger=stop.wait)
        )
        async with httpx.AsyncClient(base_url=urls[0], timeout=10) as client:
            yield Harness(client, db, stores, clock, hasher)
        stop.set()

"""Real client libraries against the real server: matrix-nio and mautrix-python.

The server is the composition root (``serve_homeserver``) on 127.0.0.1:0 with open registration,
in this test's Trio loop; each client library runs its own asyncio loop in a worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from mautrix.api import HTTPAPI
from mautrix.client.api import ClientAPI
from mautrix.errors import MForbidden, MNotFound
from mautrix.types import RoomCreatePreset, RoomTagInfo
from nio import (
    AsyncClient,
    DeleteDevicesAuthResponse,
    DeleteDevicesResponse,
    DevicesResponse,
    GetOpenIDTokenResponse,
    LoginResponse,
    ProfileGetResponse,
    ProfileSetAvatarResponse,
    ProfileSetDisplayNameResponse,
    RegisterResponse,
    UpdateDeviceResponse,
)

from homeserver.app import serve_homeserver
from homeserver.config import parse_config

SERVER = "test.local"
PASSWORD = "a long enough password"


async def in_asyncio(fn: Callable[[], Awaitable[Any]]) -> Any:
    """Run an asyncio coroutine function to completion in a worker thread."""
    return await trio.to_thread.run_sync(lambda: asyncio.run(fn()))


@pytest.fixture
async def base_url(nursery, tmp_path: Path, database_url: str):
    cfg = parse_config(
        {
            "server_name": SERVER,
            "listeners": [{"host": "127.0.0.1", "port": 0}],
            "database": {"url": database_url},
            "data_dir": str(tmp_path / "data"),
            "signing_key_path": str(tmp_path / "data" / "signing.key"),
            "registration": {"policy": "open"},
            "rate_limits": {"enabled": False},
        },
        "",
    )
    stop = trio.Event()
    with trio.fail_after(60):
        bound = await nursery.start(
            lambda task_status: serve_homeserver(
                cfg, shutdown_trigger=stop.wait, task_status=task_status
            )
        )
    yield bound[0].urls[0]
    stop.set()


async def test_matrix_nio(base_url: str) -> None:
    async def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        phone = AsyncClient(base_url, "alice")
        laptop = AsyncClient(base_url, "@alice:test.local")
        try:
            r = await phone.register("alice", PASSWORD, device_name="phone")
            assert isinstance(r, RegisterResponse), r
            r = await laptop.login(PASSWORD, device_name="laptop")
            assert isinstance(r, LoginResponse), r

            devices = await phone.devices()
            assert isinstance(devices, DevicesResponse), devices
            out["devices"] = sorted((d.id, d.display_name) for d in devices.devices)

            r = await phone.update_device(laptop.device_id, {"display_name": "old laptop"})
            assert isinstance(r, UpdateDeviceResponse), r

            r = await phone.set_displayname("Alice")
            assert isinstance(r, ProfileSetDisplayNameResponse), r
            r = await phone.set_avatar("mxc://test.local/avatar1")
            assert isinstance(r, ProfileSetAvatarResponse), r
            profile = await laptop.get_profile("@alice:test.local")
            assert isinstance(profile, ProfileGetResponse), profile
            out["profile"] = (profile.displayname, profile.avatar_url)
            bad = await phone.set_avatar("https://not.mxc/x")
            out["bad_avatar"] = getattr(bad, "status_code", None)

            token = await phone.get_openid_token("@alice:test.local")
            assert isinstance(token, GetOpenIDTokenResponse), token
            out["openid"] = token.access_token

            # deleting needs UIA: first the flows, then the password
            r = await phone.delete_devices([laptop.device_id])
            assert isinstance(r, DeleteDevicesAuthResponse), r
            out["flows"] = r.flows
            auth = {
                "type": "m.login.password",
                "session": r.session,
                "identifier": {"type": "m.id.user", "user": "alice"},
                "password": PASSWORD,
            }
            r = await phone.delete_devices([laptop.device_id], auth)
            assert isinstance(r, DeleteDevicesResponse), r
            remaining = await phone.devices()
            out["remaining"] = [d.id for d in remaining.devices]
            out["phone_device"] = phone.device_id
            out["laptop_after"] = type(await laptop.devices()).__name__
        finally:
            await phone.close()
            await laptop.close()
        return out

    out = await in_asyncio(scenario)
    assert out["devices"] == sorted(
        [(out["devices"][0][0], out["devices"][0][1]), (out["devices"][1][0], out["devices"][1][1])]
    )
    assert {name for _, name in out["devices"]} == {"phone", "laptop"}
    assert out["profile"] == ("Alice", "mxc://test.local/avatar1")
    assert out["bad_avatar"] == "M_INVALID_PARAM"
    assert out["flows"] == [{"stages": ["m.login.password"]}]
    assert out["remaining"] == [out["phone_device"]]
    assert out["laptop_after"] == "DevicesError"  # its token was revoked

    async with httpx.AsyncClient(base_url=base_url) as http:
        r = await http.get(
            "/_matrix/federation/v1/openid/userinfo", params={"access_token": out["openid"]}
        )
        assert r.json() == {"sub": "@alice:test.local"}


async def test_mautrix(base_url: str) -> None:
    async def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        reg = AsyncClient(base_url, "bob")
        try:
            assert isinstance(await reg.register("bob", PASSWORD), RegisterResponse)
            assert isinstance(await reg.register("carol", PASSWORD), RegisterResponse)
        finally:
            await reg.close()
        api = HTTPAPI(base_url=base_url)
        client = ClientAPI(api=api)
        try:
            await client.login(identifier="bob", password=PASSWORD, device_name="mautrix")
            me = client.mxid
            out["whoami"] = (await client.whoami()).user_id

            await client.set_displayname("Bobby", check_current=False)
            await client.set_avatar_url("mxc://test.local/bob", check_current=False)
            member = await client.get_profile(me)
            out["profile"] = (member.displayname, member.avatar_url)
            out["displayname"] = await client.get_displayname(me)

            await client.set_account_data("org.example.settings", {"theme": "dark"})
            out["global"] = await client.get_account_data("org.example.settings")
            room = "!room:test.local"
            await client.set_account_data("org.example.room", {"muted": True}, room)
            out["room"] = await client.get_account_data("org.example.room", room)
            try:
                await client.get_account_data("org.example.missing")
            except MNotFound:
                out["missing"] = "M_NOT_FOUND"

            await client.set_room_tag(room, "m.favourite", RoomTagInfo(order=0.5))
            await client.set_room_tag(room, "u.work")
            tags = await client.get_room_tags(room)
            out["tags"] = {k: (v.order if v else None) for k, v in tags.tags.items()}
            await client.remove_room_tag(room, "u.work")
            out["tags_after"] = sorted((await client.get_room_tags(room)).tags)

            # the directory finds users in public rooms (and those sharing a room with the
            # searcher): bob finds himself once he is in one
            assert (await client.search_users("bob")).results == []
            await client.create_room(preset=RoomCreatePreset.PUBLIC)
            results = await client.search_users("bob")
            # mautrix 0.21 reads "displayname" here; the spec (and Synapse) send "display_name"
            out["search"] = [(u.user_id, u.avatar_url) for u in results.results]

            carol = "@carol:test.local"
            try:
                await client.api.request(
                    "PUT", f"/_matrix/client/v3/user/{carol}/account_data/org.x", {}
                )
            except MForbidden:
                out["other_user"] = "M_FORBIDDEN"
        finally:
            await api.session.close()
        return out

    out = await in_asyncio(scenario)
    assert out["whoami"] == "@bob:test.local"
    assert out["profile"] == ("Bobby", "mxc://test.local/bob")
    assert out["displayname"] == "Bobby"
    assert out["global"] == {"theme": "dark"}
    assert out["room"] == {"muted": True}
    assert out["missing"] == "M_NOT_FOUND"
    assert out["tags"] == {"m.favourite": 0.5, "u.work": None}
    assert out["tags_after"] == ["m.favourite"]
    assert out["search"] == [("@bob:test.local", "mxc://test.local/bob")]
    assert out["other_user"] == "M_FORBIDDEN"

"""Real client libraries uploading and downloading media: mautrix-python and matrix-nio.

mautrix 0.21.1 downloads through the authenticated ``/_matrix/client/v1/media`` API (the server
lists v1.11); matrix-nio 0.26.0 only knows the deprecated ``/_matrix/media/v3/download``, which
this server freezes by default, so its test configures a freeze time in the future.
Both libraries are asyncio-based: each scenario runs in its own loop in a worker thread.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
import trio
from mautrix.client import ClientAPI
from mautrix.types import UserID
from nio import (  # type: ignore[import-untyped]
    AsyncClient,
    AsyncClientConfig,
    DownloadResponse,
    UploadResponse,
)

from tests.integration.test_media_api import LISTENER

T = TypeVar("T")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


async def in_asyncio(fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
    return await trio.to_thread.run_sync(lambda: asyncio.run(fn(*args)))


async def test_mautrix_upload_download_and_async_upload(homeserver_factory):
    srv = await homeserver_factory(listeners=[LISTENER])
    reg = await srv.register("alice")
    data = os.urandom(3 * 1024 * 1024)

    async def scenario(base_url: str) -> None:
        client = ClientAPI(UserID(reg["user_id"]), base_url=base_url, token=reg["access_token"])
        try:
            mxc = await client.upload_media(data, mime_type="application/pdf", filename="doc.pdf")
            assert mxc.startswith("mxc://test.local/")
            assert await client.download_media(mxc) == data
            # asynchronous upload: mautrix creates the URI, returns it at once and PUTs in the
            # background; the download waits for the upload (timeout_ms)
            created = await client.upload_media(
                b"async bytes", mime_type="text/plain", async_upload=True
            )
            assert created.startswith("mxc://test.local/")
            got = await client.download_media(created, timeout_ms=10000)
            assert got == b"async bytes"
        finally:
            await client.api.session.close()

    await in_asyncio(scenario, srv.base_url)


async def test_nio_upload_and_download(homeserver_factory):
    srv = await homeserver_factory(
        listeners=[LISTENER], media={"unauthenticated_media_freeze_ts": 2**53}
    )
    reg = await srv.register("bob")
    data = os.urandom(2 * 1024 * 1024)

    async def scenario(base_url: str) -> None:
        client = AsyncClient(
            base_url, reg["user_id"], config=AsyncClientConfig(store_sync_tokens=False)
        )
        client.access_token = reg["access_token"]
        client.user_id = reg["user_id"]
        try:
            resp, _keys = await client.upload(
                lambda *_: data, content_type="image/png", filename="pic.png", filesize=len(data)
            )
            assert isinstance(resp, UploadResponse), resp
            assert resp.content_uri.startswith("mxc://test.local/")
            down = await client.download(resp.content_uri)
            assert isinstance(down, DownloadResponse), down
            assert down.body == data
            assert down.content_type == "image/png"
            assert down.filename == "pic.png"
        finally:
            await client.close()

    await in_asyncio(scenario, srv.base_url)

"""The media repository over real HTTP: uploads, downloads, thumbnails, limits, admin, clients.

Runs against a server started in-process (``homeserver_factory``) on SQLite and PostgreSQL.
"""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
from PIL import Image

from tests.integration.conftest import RunningServer

LISTENER = {"host": "127.0.0.1", "port": 0, "resources": ["client", "media"]}
V1 = "/_matrix/client/v1/media"


async def start(homeserver_factory, **media: Any) -> RunningServer:
    srv: RunningServer = await homeserver_factory(listeners=[LISTENER], media=media)
    return srv


async def user(srv: RunningServer, name: str) -> dict[str, str]:
    reg = await srv.register(name)
    return {"Authorization": f"Bearer {reg['access_token']}"}


def blob_files(srv: RunningServer) -> list[Path]:
    root = srv.config.resolve_path(srv.config.data_dir) / srv.config.media.store_path
    return sorted(p for p in (root / "content").rglob("*") if p.is_file())


def temp_files(srv: RunningServer) -> list[Path]:
    root = srv.config.resolve_path(srv.config.data_dir) / srv.config.media.store_path
    return sorted((root / "tmp").iterdir())


def media_path(content_uri: str) -> str:
    assert content_uri.startswith("mxc://")
    return content_uri[len("mxc://") :]


async def upload(
    c,
    auth,
    data: bytes,
    content_type: str = "application/octet-stream",
    filename: str | None = None,
) -> str:
    params: dict[str, Any] = {"filename": filename} if filename is not None else {}
    r = await c.post(
        "/_matrix/media/v3/upload",
        content=data,
        headers={**auth, "Content-Type": content_type},
        params=params,
    )
    assert r.status_code == 200, r.text
    return media_path(r.json()["content_uri"])


async def test_upload_and_download_small(homeserver_factory):
    srv = await start(homeserver_factory)
    auth = await user(srv, "alice")
    async with srv.client() as c:
        mxc = await upload(c, auth, b"hello, world\n", "text/plain", filename="hello.txt")
        server, media_id = mxc.split("/")
        assert server == "test.local" and len(media_id) >= 20
        r = await c.get(f"{V1}/download/{mxc}", headers=auth)
        assert r.status_code == 200
        assert r.content == b"hello, world\n"
        assert r.headers["content-type"] == "text/plain"
        assert r.headers["content-disposition"] == 'inline; filename="hello.txt"'
        assert r.headers["content-security-policy"].startswith("sandbox;")
        assert r.headers["cross-origin-resource-policy"] == "cross-origin"
        assert r.headers["content-length"] == "13"
        r = await c.get(f"{V1}/download/{mxc}/other name.txt", headers=auth)
        assert r.headers["content-disposition"] == 'inline; filename="other name.txt"'


async def test_multi_megabyte_round_trip_and_ranges(homeserver_factory):
    srv = await start(homeserver_factory)
    auth = await user(srv, "alice")
    data = os.urandom(5 * 1024 * 1024 + 123)
    size = len(data)
    async with srv.client() as c:
        mxc = await upload(c, auth, data, "video/mp4", filename="clip.mp4")
        r = await c.get(f"{V1}/download/{mxc}", headers=auth)
        assert r.status_code == 200 and r.content == data
        assert r.headers["accept-ranges"] == "bytes"
        etag = r.headers["etag"]

        r = await c.get(f"{V1}/download/{mxc}", headers={**auth, "Range": "bytes=0-99"})
        assert r.status_code == 206 and r.content == data[:100]
        assert r.headers["content-range"] == f"bytes 0-99/{size}"
        r = await c.get(f"{V1}/download/{mxc}", headers={**auth, "Range": "bytes=-100"})
        assert r.status_code == 206 and r.content == data[-100:]
        r = await c.get(f"{V1}/download/{mxc}", headers={**auth, "Range": "bytes=4000000-"})
        assert r.status_code == 206 and r.content == data[4000000:]
        assert r.headers["content-length"] == str(size - 4000000)
        r = await c.get(f"{V1}/download/{mxc}", headers={**auth, "Range": f"bytes=10-{size + 50}"})
        assert r.status_code == 206 and r.content == data[10:]
        # several ranges, garbage, or a stale If-Range: the whole file
        for headers in (
            {"Range": "bytes=0-1,5-6"},
            {"Range": "pages=1-2"},
            {"Range": "bytes=0-1", "If-Range": '"not-the-etag"'},
        ):
            r = await c.get(f"{V1}/download/{mxc}", headers={**auth, **headers})
            assert r.status_code == 200 and len(r.content) == size
        r = await c.get(
            f"{V1}/download/{mxc}", headers={**auth, "Range": "bytes=0-1", "If-Range": etag}
        )
        assert r.status_code == 206 and r.content == data[:2]
        r = await c.get(f"{V1}/download/{mxc}", headers={**auth, "Range": f"bytes={size}-"})
        assert r.status_code == 416
        assert r.headers["content-range"] == f"bytes */{size}"


async def test_upload_limits(homeserver_factory):
    srv = await start(homeserver_factory, max_upload_bytes=100_000)
    auth = await user(srv, "alice")
    async with srv.client() as c:
        r = await c.post("/_matrix/media/v3/upload", content=b"x")
        assert r.status_code == 401 and r.json()["errcode"] == "M_MISSING_TOKEN"
        # declared too large: refused before the body is read
        r = await c.post("/_matrix/media/v3/upload", content=b"x" * 100_001, headers=auth)
        assert r.status_code == 413 and r.json()["errcode"] == "M_TOO_LARGE"

        # no Content-Length (chunked): refused once the limit is crossed
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(30):
                yield b"y" * 10_000

        r = await c.post("/_matrix/media/v3/upload", content=chunks(), headers=auth)
        assert r.status_code == 413 and r.json()["errcode"] == "M_TOO_LARGE"
        # exactly the limit is fine, chunked or not
        await upload(c, auth, b"z" * 100_000)

        async def exact() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b"w" * 10_000

        r = await c.post("/_matrix/media/v3/upload", content=exact(), headers=auth)
        assert r.status_code == 200, r.text
        r = await c.get(f"{V1}/config", headers=auth)
        assert r.json() == {"m.upload.size": 100_000}
        r = await c.get("/_matrix/media/v3/config", headers=auth)
        assert r.json() == {"m.upload.size": 100_000}
        r = await c.post(
            "/_matrix/media/v3/upload", content=b"a", headers=auth, params={"filename": "a\nb"}
        )
        assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM"
        r = await c.post(
            "/_matrix/media/v3/upload", content=b"a", headers={**auth, "Content-Type": "nonsense"}
        )
        assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM"
        # no Content-Type: application/octet-stream, served as an attachment
        r = await c.post(
            "/_matrix/media/v3/upload", content=b"raw", headers={**auth, "Content-Type": ""}
        )
        mxc = media_path(r.json()["content_uri"])
        r = await c.get(f"{V1}/download/{mxc}", headers=auth)
        assert r.headers["content-type"] == "application/octet-stream"
        assert r.headers["content-disposition"] == "attachment"
    assert temp_files(srv) == []


async def test_quota(homeserver_factory):
    srv = await start(homeserver_factory, user_quota_bytes=1000)
    alice = await user(srv, "alice")
    bob = await user(srv, "bob")
    async with srv.client() as c:
        await upload(c, alice, b"a" * 600)
        r = await c.post("/_matrix/media/v3/upload", content=b"b" * 600, headers=alice)
        assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"

        async def chunked() -> AsyncIterator[bytes]:
            yield b"c" * 300
            yield b"c" * 300

        r = await c.post("/_matrix/media/v3/upload", content=chunked(), headers=alice)
        assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"
        await upload(c, alice, b"d" * 400)  # exactly at the quota
        await upload(c, bob, b"e" * 1000)  # quotas are per user
    assert len(blob_files(srv)) == 3 and temp_files(srv) == []


async def _raw_request(url: str, head: bytes, body: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(head + body)
        await stream.send_eof()
        out = b""
        with trio.move_on_after(5):
            while chunk := await stream.receive_some():
                out += chunk
        return out


async def test_content_length_mismatch_stores_nothing(homeserver_factory):
    srv = await start(homeserver_factory)
    reg = await srv.register("alice")
    head = (
        b"POST /_matrix/media/v3/upload HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Bearer " + reg["access_token"].encode() + b"\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Length: 400000\r\n\r\n"
    )
    answer = await _raw_request(srv.base_url, head, os.urandom(300_000))
    assert b"200 OK" not in answer
    with trio.fail_after(5):
        while temp_files(srv):
            await trio.sleep(0.01)
    assert blob_files(srv) == []
    async with srv.client() as c:
        r = await c.get(
            "/_synapse/admin/v1/users/@alice:test.local/media",
            headers={"Authorization": f"Bearer {reg['access_token']}"},
        )
        assert r.status_code == 403  # not an admin; the store is checked below
    async with srv.client() as c:
        auth = {"Authorization": f"Bearer {reg['access_token']}"}
        # the same connection pattern with the full body works
        r = await c.post("/_matrix/media/v3/upload", content=b"q" * 1000, headers=auth)
        assert r.status_code == 200
    assert len(blob_files(srv)) == 1


async def test_async_upload(homeserver_factory):
    srv = await start(homeserver_factory, max_pending_uploads=3)
    alice = await user(srv, "alice")
    bob = await user(srv, "bob")
    async with srv.client() as c:
        r = await c.post("/_matrix/media/v1/create", headers=alice)
        assert r.status_code == 200, r.text
        body = r.json()
        mxc = media_path(body["content_uri"])
        assert body["unused_expires_at"] > 0
        r = await c.get(f"{V1}/download/{mxc}", headers=alice, params={"timeout_ms": 0})
        assert r.status_code == 504 and r.json()["errcode"] == "M_NOT_YET_UPLOADED"
        r = await c.get(f"{V1}/download/{mxc}", headers=alice, params={"timeout_ms": "soon"})
        assert r.status_code == 400
        r = await c.put(f"/_matrix/media/v3/upload/{mxc}", content=b"bob's", headers=bob)
        assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"
        r = await c.put(
            "/_matrix/media/v3/upload/test.local/unknownID123", content=b"x", headers=alice
        )
        assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"
        r = await c.put(
            f"/_matrix/media/v3/upload/other.server/{mxc.split('/')[1]}",
            content=b"x",
            headers=alice,
        )
        assert r.status_code == 404

        # a download waiting for the upload is woken by it
        got: dict[str, Any] = {}

        async def wait_download():
            async with srv.client() as c2:
                got["r"] = await c2.get(
                    f"{V1}/download/{mxc}", headers=alice, params={"timeout_ms": 15000}
                )

        async with trio.open_nursery() as n:
            n.start_soon(wait_download)
            await trio.sleep(0.2)
            r = await c.put(
                f"/_matrix/media/v3/upload/{mxc}",
                content=b"later content",
                headers={**alice, "Content-Type": "text/plain"},
                params={"filename": "late.txt"},
            )
            assert r.status_code == 200 and r.json() == {}
        assert got["r"].status_code == 200 and got["r"].content == b"later content"
        assert got["r"].headers["content-disposition"] == 'inline; filename="late.txt"'

        r = await c.put(f"/_matrix/media/v3/upload/{mxc}", content=b"again", headers=alice)
        assert r.status_code == 409 and r.json()["errcode"] == "M_CANNOT_OVERWRITE_MEDIA"

        # the per-user limit of pending IDs
        for _ in range(3):
            r = await c.post("/_matrix/media/v1/create", headers=alice)
            assert r.status_code == 200
        r = await c.post("/_matrix/media/v1/create", headers=alice)
        assert r.status_code == 429 and r.json()["errcode"] == "M_LIMIT_EXCEEDED"
        assert r.json()["retry_after_ms"] > 0
        r = await c.post("/_matrix/media/v1/create", headers=bob)
        assert r.status_code == 200


async def test_dedup_and_admin_delete(homeserver_factory):
    from homeserver.app import register_user

    srv = await start(homeserver_factory)
    alice = await user(srv, "alice")
    await register_user(srv.config, "admin", "admin password", admin=True)
    async with srv.client() as c:
        r = await c.post(
            "/_matrix/client/v3/login",
            json={"type": "m.login.password", "user": "admin", "password": "admin password"},
        )
        admin = {"Authorization": f"Bearer {r.json()['access_token']}"}
        data = os.urandom(50_000)
        first = await upload(c, alice, data)
        second = await upload(c, alice, data, "image/png")
        assert first != second
        assert len(blob_files(srv)) == 1
        r = await c.get("/_synapse/admin/v1/users/@alice:test.local/media", headers=admin)
        assert r.status_code == 200 and r.json()["total"] == 2
        r = await c.delete(f"/_synapse/admin/v1/media/{first}", headers=alice)
        assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"
        r = await c.delete(f"/_synapse/admin/v1/media/{first}", headers=admin)
        assert r.json() == {"deleted_media": [first.split("/")[1]], "total": 1}
        r = await c.get(f"{V1}/download/{first}", headers=alice)
        assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"
        r = await c.get(f"{V1}/download/{second}", headers=alice)
        assert r.status_code == 200 and r.content == data  # the shared file is still there
        assert len(blob_files(srv)) == 1
        r = await c.delete(f"/_synapse/admin/v1/media/{first}", headers=admin)
        assert r.status_code == 404
        await upload(c, alice, b"other")
        r = await c.delete("/_synapse/admin/v1/users/@alice:test.local/media", headers=admin)
        assert r.json()["total"] == 2
        assert blob_files(srv) == []
        r = await c.delete("/_synapse/admin/v1/users/nobody/media", headers=admin)
        assert r.status_code == 400


async def test_html_and_svg_never_inline(homeserver_factory):
    srv = await start(homeserver_factory)
    auth = await user(srv, "alice")
    async with srv.client() as c:
        cases = [
            ("text/html", "page.html"),
            ("text/html; charset=utf-8", None),
            ("image/svg+xml", "logo.svg"),
            ("application/javascript", None),
            ("TEXT/HTML", None),
        ]
        for content_type, name in cases:
            mxc = await upload(c, auth, b"<script>alert(1)</script>", content_type, filename=name)
            r = await c.get(f"{V1}/download/{mxc}", headers=auth)
            assert r.headers["content-disposition"].startswith("attachment"), content_type
            assert r.headers["content-type"] == content_type
            assert "sandbox" in r.headers["content-security-policy"]
            # naming a safe file name in the path does not make it inline
            r = await c.get(f"{V1}/download/{mxc}/picture.png", headers=auth)
            assert r.headers["content-disposition"] == 'attachment; filename="picture.png"'
        mxc = await upload(c, auth, b"x", "image/png")
        r = await c.get(f"{V1}/download/{mxc}/a%22b%0D%0AX-Evil: 1", headers=auth)
        disposition = r.headers["content-disposition"]
        assert disposition.startswith("inline; filename*=utf-8''a%22b%0D%0AX-Evil")
        assert "x-evil" not in r.headers
        r = await c.get(f"{V1}/download/{mxc}/na%C3%AFve.png", headers=auth)
        assert r.headers["content-disposition"] == "inline; filename*=utf-8''na%C3%AFve.png"


async def test_path_traversal_and_bad_ids(homeserver_factory):
    srv = await start(homeserver_factory)
    auth = await user(srv, "alice")
    secret = srv.directory / "secret.txt"
    secret.write_text("do not serve")
    async with srv.client() as c:
        mxc = await upload(c, auth, b"fine")
        for path in (
            f"{V1}/download/test.local/..%2F..%2Fsecret.txt",
            f"{V1}/download/test.local/..",
            f"{V1}/download/..%2F..%2F/secret.txt",
            f"{V1}/download/test.local/abc.def",
            f"{V1}/download/test.local/%2e%2e%2fsecret.txt",
            f"{V1}/download/bad%20server/{mxc.split('/')[1]}",
            f"{V1}/thumbnail/test.local/..%2Fsecret.txt?width=1&height=1",
            "/_matrix/media/v3/upload/test.local/..%2F..%2Fx",
        ):
            method = "PUT" if "upload" in path else "GET"
            content = b"" if method == "PUT" else None
            # werkzeug answers an empty path segment with a 308 to the merged path: follow it
            r = await c.request(method, path, headers=auth, content=content, follow_redirects=True)
            assert r.status_code == 404, (path, r.status_code)
            assert b"do not serve" not in r.content
        # the file name is only ever a header value
        r = await c.get(f"{V1}/download/{mxc}/..%5C..%5Csecret.txt", headers=auth)
        assert r.content == b"fine"
        assert (
            r.headers["content-disposition"] == "attachment; filename*=utf-8''..%5C..%5Csecret.txt"
        )
        r = await c.get(f"{V1}/download/{mxc}/..%2F..%2Fsecret.txt", headers=auth)
        assert b"do not serve" not in r.content


async def test_unauthenticated_v3_is_frozen_and_remote_media(homeserver_factory):
    srv = await start(homeserver_factory)
    auth = await user(srv, "alice")
    async with srv.client() as c:
        mxc = await upload(c, auth, b"new media", "text/plain")
        r = await c.get(f"/_matrix/media/v3/download/{mxc}")
        assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"
        r = await c.get(f"/_matrix/media/v3/download/{mxc}/x.txt")
        assert r.status_code == 404
        r = await c.get(f"{V1}/download/{mxc}")
        assert r.status_code == 401
        r = await c.get(f"{V1}/download/matrix.org/abcdefABCDEF123")
        assert r.status_code == 401
        r = await c.get(f"{V1}/download/matrix.org/abcdefABCDEF123", headers=auth)
        assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"
        assert "federation" in r.json()["error"]
        r = await c.get(f"{V1}/preview_url", headers=auth, params={"url": "https://matrix.org"})
        assert r.status_code == 404 and r.json()["errcode"] == "M_UNRECOGNIZED"


async def test_unauthenticated_v3_serves_media_from_before_the_freeze(homeserver_factory):
    srv = await start(homeserver_factory, unauthenticated_media_freeze_ts=2**53)
    auth = await user(srv, "alice")
    async with srv.client() as c:
        mxc = await upload(c, auth, b"old media", "text/plain", filename="old.txt")
        r = await c.get(f"/_matrix/media/v3/download/{mxc}")
        assert r.status_code == 200 and r.content == b"old media"
        assert r.headers["content-disposition"] == 'inline; filename="old.txt"'
        r = await c.get(f"/_matrix/media/v3/download/{mxc}/new.txt")
        assert r.headers["content-disposition"] == 'inline; filename="new.txt"'


# --- thumbnails ---------------------------------------------------------------------------------


def image_bytes(fmt: str, size: tuple[int, int], *, frames: int = 1, mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    images = [
        Image.new(
            mode,
            size,
            color=(40 * i % 255, 100, 200) if mode == "RGB" else (40 * i % 255, 100, 200, 128),
        )
        for i in range(frames)
    ]
    if frames > 1:
        images[0].save(out, fmt, save_all=True, append_images=images[1:], duration=80, loop=0)
    else:
        images[0].save(out, fmt)
    return out.getvalue()


def decode(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


@pytest.mark.parametrize(
    "fmt, content_type, out_type",
    [
        ("JPEG", "image/jpeg", "image/jpeg"),
        ("PNG", "image/png", "image/png"),
        ("GIF", "image/gif", "image/png"),
        ("WEBP", "image/webp", "image/png"),
    ],
)
async def test_thumbnails_of_each_format(homeserver_factory, fmt, content_type, out_type):
    srv = await start(homeserver_factory)
    auth = await user(srv, "alice")
    async with srv.client() as c:
        mxc = await upload(c, auth, image_bytes(fmt, (640, 480)), content_type)
        cases: list[tuple[dict[str, Any], tuple[int, int]]] = [
            ({"width": 32, "height": 32, "method": "crop"}, (32, 32)),
            ({"width": 96, "height": 96, "method": "crop"}, (96, 96)),
            ({"width": 320, "height": 240, "method": "scale"}, (320, 240)),
            # dynamic thumbnails: the requested size, not a bigger configured one
            ({"width": 100, "height": 100, "method": "scale"}, (100, 75)),
            ({"width": 600, "height": 450, "method": "scale"}, (600, 450)),  # not the original
            ({"width": 50, "height": 20, "method": "crop"}, (50, 20)),  # on demand
            ({"width": 700, "height": 700, "method": "scale"}, (640, 480)),  # the original
        ]
        for params, expected in cases:
            r = await c.get(f"{V1}/thumbnail/{mxc}", headers=auth, params=params)
            assert r.status_code == 200, (params, r.text)
            im = decode(r.content)
            assert im.size == expected, (params, im.size)
            assert r.headers["content-disposition"].startswith('inline; filename="thumbnail.')
            if expected != (640, 480):
                assert r.headers["content-type"] == out_type
            else:
                assert r.headers["content-type"] == content_type
            assert r.headers["cross-origin-resource-policy"] == "cross-origin"
        # served again from the cache: same bytes
        again = await c.get(
            f"{V1}/thumbnail/{mxc}",
            headers=auth,
            params={"width": 50, "height": 20, "method": "crop"},
        )
        first = await c.get(
            f"{V1}/thumbnail/{mxc}",
            headers=auth,
            params={"width": 50, "height": 20, "method": "crop"},
        )
        assert again.content == first.content


async def test_thumbnails_pregenerated_shared_and_scaled(homeserver_factory):
    srv = await start(homeserver_factory)
    auth = await user(srv, "alice")
    png = image_bytes("PNG", (1000, 500), mode="RGBA")
    async with srv.client() as c:
        mxc = await upload(c, auth, png, "image/png")
        # source + the five configured sizes, made at upload time
        assert len(blob_files(srv)) == 6
        mxc2 = await upload(c, auth, png, "image/png")
        assert len(blob_files(srv)) == 6  # the same content shares file and thumbnails
        r = await c.get(
            f"{V1}/thumbnail/{mxc2}", headers=auth, params={"width": 640, "height": 480}
        )
        im = decode(r.content)
        assert im.size == (640, 320) and im.mode == "RGBA"  # scale keeps the aspect ratio
        r = await c.get(
            f"{V1}/thumbnail/{mxc}",
            headers=auth,
            params={"width": 96, "height": 96, "method": "crop"},
        )
        assert decode(r.content).size == (96, 96)
        assert len(blob_files(srv)) == 6


async def test_animated_thumbnails(homeserver_factory):
    srv = await start(homeserver_factory)
    auth = await user(srv, "alice")
    async with srv.client() as c:
        gif = await upload(c, auth, image_bytes("GIF", (200, 200), frames=3), "image/gif")
        r = await c.get(
            f"{V1}/thumbnail/{gif}",
            headers=auth,
            params={"width": 96, "height": 96, "method": "crop", "animated": "true"},
        )
        assert r.status_code == 200 and r.headers["content-type"] == "image/webp"
        im = decode(r.content)
        assert im.size == (96, 96) and getattr(im, "n_frames", 1) == 3
        for animated in ("false", None):
            params: dict[str, Any] = {"width": 96, "height": 96, "method": "crop"}
            if animated:
                params["animated"] = animated
            r = await c.get(f"{V1}/thumbnail/{gif}", headers=auth, params=params)
            assert r.headers["content-type"] == "image/png"
            assert getattr(decode(r.content), "n_frames", 1) == 1
        # small animated image, large request: the original only when animation is wanted
        r = await c.get(
            f"{V1}/thumbnail/{gif}",
            headers=auth,
            params={"width": 800, "height": 600, "animated": "true"},
        )
        assert (
            r.headers["content-type"] == "image/gif"
            and getattr(decode(r.content), "n_frames", 1) == 3
        )
        r = await c.get(
            f"{V1}/thumbnail/{gif}",
            headers=auth,
            params={"width": 800, "height": 600, "animated": "false"},
        )
        assert r.headers["content-type"] == "image/png" and decode(r.content).size == (200, 200)
        # animated=true on a still image behaves as false
        jpeg = await upload(c, auth, image_bytes("JPEG", (400, 300)), "image/jpeg")
        r = await c.get(
            f"{V1}/thumbnail/{jpeg}",
            headers=auth,
            params={"width": 32, "height": 32, "method": "crop", "animated": "true"},
        )
        assert r.headers["content-type"] == "image/jpeg" and decode(r.content).size == (32, 32)


def _png_header_only(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


async def test_thumbnail_errors_and_image_bombs(homeserver_factory):
    srv = await start(homeserver_factory)
    auth = await user(srv, "alice")
    async with srv.client() as c:
        bomb = await upload(c, auth, _png_header_only(60_000, 60_000), "image/png")
        r = await c.get(f"{V1}/thumbnail/{bomb}", headers=auth, params={"width": 32, "height": 32})
        assert r.status_code == 413 and r.json()["errcode"] == "M_TOO_LARGE"
        text = await upload(c, auth, b"just text", "text/plain")
        r = await c.get(f"{V1}/thumbnail/{text}", headers=auth, params={"width": 32, "height": 32})
        assert r.status_code == 400 and r.json()["errcode"] == "M_UNKNOWN"
        liar = await upload(c, auth, b"not really a png", "image/png")
        r = await c.get(f"{V1}/thumbnail/{liar}", headers=auth, params={"width": 32, "height": 32})
        assert r.status_code == 400
        truncated = await upload(c, auth, image_bytes("PNG", (300, 300))[:200], "image/png")
        r = await c.get(
            f"{V1}/thumbnail/{truncated}", headers=auth, params={"width": 32, "height": 32}
        )
        assert r.status_code == 400
        ok = await upload(c, auth, image_bytes("PNG", (300, 300)), "image/png")
        bad: list[tuple[dict[str, Any], str]] = [
            ({"height": 32}, "M_MISSING_PARAM"),
            ({"width": 32, "height": -1}, "M_INVALID_PARAM"),
            ({"width": "x", "height": 32}, "M_INVALID_PARAM"),
            ({"width": 32, "height": 32, "method": "stretch"}, "M_INVALID_PARAM"),
            ({"width": 32, "height": 32, "animated": "yes"}, "M_INVALID_PARAM"),
        ]
        for params, code in bad:
            r = await c.get(f"{V1}/thumbnail/{ok}", headers=auth, params=params)
            assert r.status_code == 400 and r.json()["errcode"] == code, params
        r = await c.get(
            f"{V1}/thumbnail/test.local/nope1234", headers=auth, params={"width": 32, "height": 32}
        )
        assert r.status_code == 404
        r = await c.get(f"/_matrix/media/v3/thumbnail/{ok}", params={"width": 32, "height": 32})
        assert r.status_code == 404  # frozen


async def test_image_bomb_by_configured_pixel_limit(homeserver_factory):
    srv = await start(homeserver_factory, max_image_pixels=10_000, pregenerate_thumbnails=False)
    auth = await user(srv, "alice")
    async with srv.client() as c:
        mxc = await upload(c, auth, image_bytes("JPEG", (200, 200)), "image/jpeg")
        r = await c.get(f"{V1}/thumbnail/{mxc}", headers=auth, params={"width": 32, "height": 32})
        assert r.status_code == 413
        assert len(blob_files(srv)) == 1

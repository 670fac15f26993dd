"""The media service, thumbnails and retention over a real database and file store, with a
fake clock: expiry of unused IDs, retention of local and cached remote media, dedup, and
uploads that fail half-way leaving nothing behind."""

from __future__ import annotations

import dataclasses
import io
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from PIL import Image

from homeserver.clock import FakeClock
from homeserver.config import MediaConfig
from homeserver.errors import Forbidden, LimitExceeded, NotFound, TooLarge
from homeserver.services.media import (
    CannotOverwriteMedia,
    ContentLengthMismatch,
    MediaService,
    NotYetUploaded,
)
from homeserver.services.media_blobs import BlobLocks
from homeserver.services.media_retention import MediaRetention
from homeserver.services.thumbnails import ThumbnailService
from homeserver.storage.media_files import LocalFileStore

DAY = 86400.0
ALICE = "@alice:test.local"
BOB = "@bob:test.local"


@dataclasses.dataclass
class Repo:
    media: MediaService
    retention: MediaRetention
    files: LocalFileStore
    clock: FakeClock
    stores: object

    def blobs(self) -> list[Path]:
        return sorted(p for p in (self.files.root / "content").rglob("*") if p.is_file())

    def temps(self) -> list[Path]:
        return sorted((self.files.root / "tmp").iterdir())


def make_repo(stores, tmp_path: Path, **overrides) -> Repo:
    cfg = MediaConfig(**overrides)
    clock = FakeClock()
    files = LocalFileStore(tmp_path / "media")
    locks = BlobLocks(stores.media, files)
    thumbs = ThumbnailService(stores.media, files, locks, clock, cfg)
    media = MediaService(
        stores.media, files, locks, thumbs, clock, server_name="test.local", config=cfg
    )
    return Repo(media, MediaRetention(media, stores.media, files, clock, cfg), files, clock, stores)


@pytest.fixture
async def repo(stores, tmp_path):
    for user in (ALICE, BOB):
        await stores.users.create_user(user, password_hash=None, created_ts=0)
    return make_repo(
        stores, tmp_path, local_media_lifetime_s=10 * DAY, remote_media_lifetime_s=30 * DAY
    )


async def body(*chunks: bytes):
    for chunk in chunks:
        yield chunk


async def put(repo: Repo, data: bytes, user: str = ALICE, content_type: str = "text/plain") -> str:
    result = await repo.media.upload(
        user, body(data), content_length=len(data), content_type=content_type, filename=None
    )
    return result.content_uri.rsplit("/", 1)[1]


async def test_unused_ids_expire(repo):
    created = await repo.media.create(ALICE)
    media_id = created.content_uri.rsplit("/", 1)[1]
    assert created.unused_expires_at == repo.clock.time_ms() + int(DAY * 1000)
    with pytest.raises(NotYetUploaded):
        await repo.media.get_content("test.local", media_id, timeout_ms=0)
    repo.clock.advance(DAY + 1)
    with pytest.raises(NotFound):
        await repo.media.upload_to(
            ALICE, "test.local", media_id, body(b"late"), content_length=4,
            content_type="text/plain", filename=None,
        )  # fmt: skip
    with pytest.raises(NotFound):
        await repo.media.get_content("test.local", media_id, timeout_ms=0)
    # expired IDs no longer count against the limit, and retention deletes them
    report = await repo.retention.run_once()
    assert report.expired_pending == 1
    assert await repo.stores.media.get("test.local", media_id) is None


async def test_pending_limit_and_upload_rules(stores, tmp_path):
    for user in (ALICE, BOB):
        await stores.users.create_user(user, password_hash=None, created_ts=0)
    repo = make_repo(stores, tmp_path, max_pending_uploads=2, unused_id_lifetime_s=100.0)
    first = (await repo.media.create(ALICE)).content_uri.rsplit("/", 1)[1]
    await repo.media.create(ALICE)
    with pytest.raises(LimitExceeded) as e:
        await repo.media.create(ALICE)
    assert e.value.extra["retry_after_ms"] == 100_000
    repo.clock.advance(40)
    with pytest.raises(LimitExceeded) as e:
        await repo.media.create(ALICE)
    assert e.value.extra["retry_after_ms"] == 60_000
    with pytest.raises(Forbidden):
        await repo.media.upload_to(
            BOB,
            "test.local",
            first,
            body(b"x"),
            content_length=1,
            content_type="a/b",
            filename=None,
        )
    await repo.media.upload_to(
        ALICE, "test.local", first, body(b"x"), content_length=1, content_type="a/b", filename="f"
    )
    with pytest.raises(CannotOverwriteMedia):
        await repo.media.upload_to(
            ALICE,
            "test.local",
            first,
            body(b"y"),
            content_length=1,
            content_type="a/b",
            filename=None,
        )
    # one pending ID is used: there is room for one more
    await repo.media.create(ALICE)
    repo.clock.advance(61)  # the other pending IDs expired
    await repo.media.create(ALICE)
    row = await repo.media.get_content("test.local", first)
    assert (row.size, row.upload_name, row.content_type) == (1, "f", "a/b")


async def test_retention_deletes_only_what_it_should(repo):
    stale = await put(repo, b"stale local")
    used = await put(repo, b"used local")
    shared_a = await put(repo, b"shared")
    repo.clock.advance(5 * DAY)
    shared_b = await put(repo, b"shared")  # same blob, uploaded later
    pending = (await repo.media.create(BOB)).content_uri.rsplit("/", 1)[1]
    # a cached remote item (as federation will store it) and one that stays in use
    for media_id, data in (("oldremote", b"remote old"), ("newremote", b"remote new")):
        writer = await repo.files.open_writer()
        await writer.write(data)
        sha = await writer.finish()
        await writer.commit()
        await repo.stores.media.add_media(
            "remote.example", media_id, None, content_type="text/plain", upload_name=None,
            size=len(data), sha256=sha, now=repo.clock.time_ms(),
        )  # fmt: skip
    assert len(repo.blobs()) == 5
    await repo.media.get_content("test.local", used)
    repo.clock.advance(6 * DAY)  # stale: 11 days unused; used: 6 days
    report = await repo.retention.run_once()
    # stale + shared_a; the pending ID expired after a day
    assert (report.local, report.remote, report.expired_pending) == (2, 0, 1)
    assert await repo.stores.media.get("test.local", pending) is None
    fresh_pending = (await repo.media.create(BOB)).content_uri.rsplit("/", 1)[1]
    assert await repo.stores.media.get("test.local", stale) is None
    assert await repo.stores.media.get("test.local", shared_a) is None
    for kept in (used, shared_b, fresh_pending):
        assert await repo.stores.media.get("test.local", kept) is not None
    assert len(repo.blobs()) == 4  # the shared blob is still used by shared_b
    (await repo.media.get_content("remote.example", "newremote"))
    repo.clock.advance(25 * DAY)  # oldremote: 31 days; newremote: 25 days
    report = await repo.retention.run_once()
    assert report.remote == 1
    assert await repo.stores.media.get("remote.example", "oldremote") is None
    assert await repo.stores.media.get("remote.example", "newremote") is not None
    assert report.expired_pending == 1 and report.local == 2  # used and shared_b, 31 days later
    assert await repo.stores.media.get("test.local", fresh_pending) is None


async def test_retention_keeps_local_media_forever_by_default(stores, tmp_path):
    await stores.users.create_user(ALICE, password_hash=None, created_ts=0)
    repo = make_repo(stores, tmp_path)
    await put(repo, b"keep me")
    repo.clock.advance(3650 * DAY)
    report = await repo.retention.run_once()
    assert report.local == 0 and len(repo.blobs()) == 1


async def test_retention_loop_runs_in_a_nursery(repo, mock_clock):
    """The loop runs a pass once per interval of Trio time (a mock clock jumped by hand)."""
    pending = (await repo.media.create(ALICE)).content_uri.rsplit("/", 1)[1]
    repo.clock.advance(2 * DAY)

    async def gone() -> bool:
        return await repo.stores.media.get("test.local", pending) is None

    async with trio.open_nursery() as nursery:
        await nursery.start(repo.retention.run)
        mock_clock.jump(3500)
        await trio.to_thread.run_sync(time.sleep, 0.05)
        assert not await gone()  # the interval (3600 s) has not passed
        mock_clock.jump(101)
        for _ in range(500):  # real time: the pass runs database and file I/O
            if await gone():
                break
            await trio.to_thread.run_sync(time.sleep, 0.01)
        assert await gone()
        nursery.cancel_scope.cancel()


async def test_abandoned_temp_files_are_swept(repo):
    old = repo.files.root / "tmp" / "crashed.part"
    old.write_bytes(b"half")
    os.utime(old, (0, 0))
    fresh = repo.files.root / "tmp" / "in-flight.part"
    fresh.write_bytes(b"half")
    report = await repo.retention.run_once()
    assert report.temp_files == 1 and repo.temps() == [fresh]


async def test_failed_uploads_leave_nothing(repo):
    with pytest.raises(ContentLengthMismatch):
        await repo.media.upload(
            ALICE, body(b"a" * 10), content_length=20, content_type="a/b", filename=None
        )
    with pytest.raises(TooLarge):
        await repo.media.upload(
            ALICE, body(b"a" * 30_000_000, b"b" * 30_000_000), content_length=None,
            content_type="a/b", filename=None,
        )  # fmt: skip

    async def stalls() -> AsyncIterator[bytes]:
        yield b"first"
        await trio.sleep_forever()

    with trio.move_on_after(0.2):
        await repo.media.upload(
            ALICE, stalls(), content_length=None, content_type="a/b", filename=None
        )
    assert repo.blobs() == [] and repo.temps() == []
    assert await repo.media.usage(ALICE) == 0


async def test_quota_is_checked_when_recording(stores, tmp_path):
    await stores.users.create_user(ALICE, password_hash=None, created_ts=0)
    repo = make_repo(stores, tmp_path, user_quota_bytes=100)
    await put(repo, b"x" * 60)
    with pytest.raises(Forbidden):
        # no Content-Length: only the recorded size can tell
        await repo.media.upload(
            ALICE, body(b"y" * 50), content_length=None, content_type="a/b", filename=None
        )
    assert len(repo.blobs()) == 1 and await repo.media.usage(ALICE) == 60


async def test_dedup_and_deletion_with_thumbnails(repo):
    png = io.BytesIO()
    Image.new("RGB", (400, 300), (1, 2, 3)).save(png, "PNG")
    a = await put(repo, png.getvalue(), content_type="image/png")
    b = await put(repo, png.getvalue(), content_type="image/png")
    assert a != b
    assert len(repo.blobs()) == 1 + 3  # the image, 32x32, 96x96 and 320x240 (smaller than it)
    await repo.media.delete([("test.local", a)])
    assert len(repo.blobs()) == 4
    await repo.media.delete([("test.local", b)])
    assert repo.blobs() == []
    assert await repo.stores.media.list_thumbnails("0" * 64) == []


async def test_waiting_download_is_woken_by_the_upload(repo):
    media_id = (await repo.media.create(ALICE)).content_uri.rsplit("/", 1)[1]
    got = {}

    async def download():
        got["row"] = await repo.media.get_content("test.local", media_id, timeout_ms=60_000)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(download)
            await trio.testing.wait_all_tasks_blocked()
            await repo.media.upload_to(
                ALICE, "test.local", media_id, body(b"hi"), content_length=2,
                content_type="text/plain", filename=None,
            )  # fmt: skip
    assert got["row"].size == 2

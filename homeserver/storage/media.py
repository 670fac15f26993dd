"""Media metadata: the ``media`` and ``media_thumbnails`` tables.

One transaction per method. Writes that count against a user's limits (the storage quota, the
number of pending asynchronous uploads) first lock the user's ``users`` row (``SELECT ... FOR
UPDATE`` on PostgreSQL; SQLite has one writer anyway), so two concurrent uploads cannot both slip
under the quota.

The bytes are blobs named by their sha256 (:mod:`homeserver.storage.media_files`); several rows
may share one. :meth:`MediaStore.delete_media` says which blobs lost their last reference, and
:meth:`MediaStore.blob_in_use` re-checks one before the service deletes its file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import (
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)

from homeserver.storage.db import Conn, Database, UniqueViolation
from homeserver.storage.schema import media, media_thumbnails, users

__all__ = [
    "MediaRow",
    "MediaStore",
    "PendingLimitReached",
    "QuotaExceeded",
    "ThumbnailRow",
]


class QuotaExceeded(Exception):
    """The upload would take the user over their storage quota."""


class PendingLimitReached(Exception):
    """The user holds too many pending asynchronous upload IDs.

    Attributes:
        earliest_expiry_ts: when the first of them expires (the client may retry then).
    """

    def __init__(self, earliest_expiry_ts: int) -> None:
        super().__init__("too many pending uploads")
        self.earliest_expiry_ts = earliest_expiry_ts


@dataclass(frozen=True, slots=True)
class MediaRow:
    """One media item, as stored."""

    origin: str
    media_id: str
    user_id: str | None
    content_type: str | None
    upload_name: str | None
    size: int | None
    sha256: str | None
    created_ts: int
    uploaded_ts: int | None
    unused_expires_ts: int | None
    last_access_ts: int | None


@dataclass(frozen=True, slots=True)
class ThumbnailRow:
    """One stored thumbnail of the blob ``source_sha256``."""

    source_sha256: str
    width: int
    height: int
    method: str
    animated: bool
    content_type: str
    size: int
    sha256: str
    created_ts: int


_COLUMNS = tuple(media.c)
_THUMB_COLUMNS = tuple(media_thumbnails.c)
_KEY = and_(media.c.origin == bindparam("origin"), media.c.media_id == bindparam("media_id"))

_LOCK_USER = (
    select(users.c.user_id).where(users.c.user_id == bindparam("user_id")).with_for_update()
)
_USAGE = select(func.coalesce(func.sum(media.c.size), 0)).where(
    media.c.user_id == bindparam("user_id")
)
_INSERT = insert(media).values({c.name: bindparam(c.name) for c in _COLUMNS})
_GET = select(*_COLUMNS).where(_KEY)
_GET_FOR_UPDATE = select(*_COLUMNS).where(_KEY).with_for_update()
_PENDING = select(func.count(), func.min(media.c.unused_expires_ts)).where(
    and_(
        media.c.user_id == bindparam("user_id"),
        media.c.uploaded_ts.is_(None),
        media.c.unused_expires_ts > bindparam("now"),
    )
)
_FILL = (
    update(media)
    .where(_KEY)
    .values(
        content_type=bindparam("content_type"),
        upload_name=bindparam("upload_name"),
        size=bindparam("size"),
        sha256=bindparam("sha256"),
        uploaded_ts=bindparam("uploaded_ts"),
        unused_expires_ts=None,
        last_access_ts=bindparam("uploaded_ts"),
    )
)
_TOUCH = update(media).where(_KEY).values(last_access_ts=bindparam("ts"))
_LIST_USER = (
    select(*_COLUMNS)
    .where(and_(media.c.user_id == bindparam("user_id"), media.c.origin == bindparam("origin")))
    .order_by(media.c.created_ts, media.c.media_id)
)
_DELETE = delete(media).where(_KEY)
_MEDIA_WITH_SHA = exists().where(media.c.sha256 == bindparam("sha256"))
_THUMB_WITH_SHA = exists().where(media_thumbnails.c.sha256 == bindparam("sha256"))
_IN_USE = select(or_(_MEDIA_WITH_SHA, _THUMB_WITH_SHA))
_SHA_STILL_USED = select(_MEDIA_WITH_SHA)
_THUMBS_OF = select(*_THUMB_COLUMNS).where(media_thumbnails.c.source_sha256 == bindparam("sha256"))
_DELETE_THUMBS_OF = delete(media_thumbnails).where(
    media_thumbnails.c.source_sha256 == bindparam("sha256")
)
_EXPIRED_PENDING = (
    select(media.c.origin, media.c.media_id)
    .where(and_(media.c.uploaded_ts.is_(None), media.c.unused_expires_ts <= bindparam("now")))
    .limit(bindparam("limit"))
)
_STALE_LOCAL = (
    select(media.c.origin, media.c.media_id)
    .where(
        and_(
            media.c.origin == bindparam("origin"),
            media.c.uploaded_ts.is_not(None),
            media.c.last_access_ts < bindparam("cutoff"),
        )
    )
    .limit(bindparam("limit"))
)
_STALE_REMOTE = (
    select(media.c.origin, media.c.media_id)
    .where(
        and_(
            media.c.origin != bindparam("origin"),
            media.c.last_access_ts < bindparam("cutoff"),
        )
    )
    .limit(bindparam("limit"))
)
_THUMB_KEY = and_(
    media_thumbnails.c.source_sha256 == bindparam("source_sha256"),
    media_thumbnails.c.width == bindparam("width"),
    media_thumbnails.c.height == bindparam("height"),
    media_thumbnails.c.method == bindparam("method"),
    media_thumbnails.c.animated == bindparam("animated"),
)
_GET_THUMB = select(*_THUMB_COLUMNS).where(_THUMB_KEY)
# A thumbnail is only recorded while some media item still has its source blob: a thumbnail
# made while the last such item was being deleted is refused instead of orphaned.
_ADD_THUMB = insert(media_thumbnails).from_select(
    [c.name for c in _THUMB_COLUMNS],
    select(*[bindparam(c.name, type_=c.type) for c in _THUMB_COLUMNS]).where(
        exists().where(media.c.sha256 == bindparam("source_sha256"))
    ),
)


def _row(row: tuple[object, ...] | None) -> MediaRow | None:
    return None if row is None else MediaRow(*row)  # type: ignore[arg-type]


async def _over_quota(conn: Conn, user_id: str, size: int, quota: int | None) -> bool:
    await conn.fetch_one(_LOCK_USER, {"user_id": user_id})
    if quota is None:
        return False
    used = int(await conn.fetch_val(_USAGE, {"user_id": user_id}) or 0)
    return used + size > quota


class MediaStore:
    """Media items, pending upload IDs and thumbnails."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create_pending(
        self,
        origin: str,
        media_id: str,
        user_id: str,
        *,
        now: int,
        expires_ts: int,
        max_pending: int,
    ) -> None:
        """Reserve ``media_id`` for a later upload by ``user_id``.

        Raises:
            PendingLimitReached: the user already holds ``max_pending`` unexpired IDs.
        """

        async def work(conn: Conn) -> None:
            await conn.fetch_one(_LOCK_USER, {"user_id": user_id})
            row = await conn.fetch_one(_PENDING, {"user_id": user_id, "now": now})
            count, earliest = (int(row[0]), row[1]) if row else (0, None)
            if count >= max_pending:
                raise PendingLimitReached(int(earliest or expires_ts))
            await conn.execute(
                _INSERT,
                _values(origin, media_id, user_id, created_ts=now, unused_expires_ts=expires_ts),
            )

        await self._db.run(work, name="media_create_pending")

    async def add_media(
        self,
        origin: str,
        media_id: str,
        user_id: str | None,
        *,
        content_type: str | None,
        upload_name: str | None,
        size: int,
        sha256: str,
        now: int,
        quota: int | None = None,
    ) -> None:
        """Record uploaded (or, with ``user_id=None``, remote cached) content.

        Raises:
            QuotaExceeded: ``user_id`` would go over ``quota`` bytes.
            UniqueViolation: the ID exists (IDs are random, so only a bug or a cache race).
        """

        async def work(conn: Conn) -> None:
            if user_id is not None and await _over_quota(conn, user_id, size, quota):
                raise QuotaExceeded()
            await conn.execute(
                _INSERT,
                _values(
                    origin,
                    media_id,
                    user_id,
                    created_ts=now,
                    content_type=content_type,
                    upload_name=upload_name,
                    size=size,
                    sha256=sha256,
                    uploaded_ts=now,
                    last_access_ts=now,
                ),
            )

        await self._db.run(work, name="media_add")

    async def complete_pending(
        self,
        origin: str,
        media_id: str,
        user_id: str,
        *,
        content_type: str | None,
        upload_name: str | None,
        size: int,
        sha256: str,
        now: int,
        quota: int | None = None,
    ) -> str:
        """Fill a pending ID with its content.

        Returns:
            ``"ok"``; ``"not_found"`` (no such ID, or it expired), ``"forbidden"`` (another
            user created it), ``"exists"`` (already uploaded) or ``"quota"``; nothing is
            written unless ``"ok"``.
        """

        async def work(conn: Conn) -> str:
            await conn.fetch_one(_LOCK_USER, {"user_id": user_id})
            row = _row(await conn.fetch_one(_GET_FOR_UPDATE, _key(origin, media_id)))
            if row is None:
                return "not_found"
            if row.user_id != user_id:
                return "forbidden"
            if row.uploaded_ts is not None:
                return "exists"
            if row.unused_expires_ts is not None and row.unused_expires_ts <= now:
                return "not_found"
            if await _over_quota(conn, user_id, size, quota):
                return "quota"
            await conn.execute(
                _FILL,
                {
                    **_key(origin, media_id),
                    "content_type": content_type,
                    "upload_name": upload_name,
                    "size": size,
                    "sha256": sha256,
                    "uploaded_ts": now,
                },
            )
            return "ok"

        return await self._db.run(work, name="media_complete_pending")

    async def get(self, origin: str, media_id: str) -> MediaRow | None:
        """The item, pending or not, or ``None``."""

        async def work(conn: Conn) -> MediaRow | None:
            return _row(await conn.fetch_one(_GET, _key(origin, media_id)))

        return await self._db.read(work, name="media_get")

    async def touch(self, origin: str, media_id: str, ts: int) -> None:
        """Record an access (for retention)."""

        async def work(conn: Conn) -> None:
            await conn.execute(_TOUCH, {**_key(origin, media_id), "ts": ts})

        await self._db.run(work, name="media_touch")

    async def usage(self, user_id: str) -> int:
        """Bytes of media stored for ``user_id`` (each item counted, shared blobs too)."""

        async def work(conn: Conn) -> int:
            return int(await conn.fetch_val(_USAGE, {"user_id": user_id}) or 0)

        return await self._db.read(work, name="media_usage")

    async def list_user_media(self, origin: str, user_id: str) -> list[MediaRow]:
        """Every item ``user_id`` created on ``origin`` (this server), oldest first."""

        async def work(conn: Conn) -> list[MediaRow]:
            rows = await conn.fetch_all(_LIST_USER, {"user_id": user_id, "origin": origin})
            return [MediaRow(*r) for r in rows]

        return await self._db.read(work, name="media_list_user")

    async def delete_media(self, keys: Sequence[tuple[str, str]]) -> tuple[list[str], list[str]]:
        """Delete items; with the last item of a blob, its thumbnails go too.

        Returns:
            The media IDs deleted, and the blobs that may now be unreferenced (check each with
            :meth:`blob_in_use` before deleting its file).
        """

        async def work(conn: Conn) -> tuple[list[str], list[str]]:
            deleted: list[str] = []
            candidates: list[str] = []
            for origin, media_id in dict.fromkeys(keys):
                row = _row(await conn.fetch_one(_GET, _key(origin, media_id)))
                if row is None:
                    continue
                await conn.execute(_DELETE, _key(origin, media_id))
                deleted.append(media_id)
                sha = row.sha256
                if sha is None or await conn.fetch_val(_SHA_STILL_USED, {"sha256": sha}):
                    continue
                thumbs = await conn.fetch_all(_THUMBS_OF, {"sha256": sha})
                await conn.execute(_DELETE_THUMBS_OF, {"sha256": sha})
                candidates.append(sha)
                candidates.extend(ThumbnailRow(*t).sha256 for t in thumbs)
            return deleted, list(dict.fromkeys(candidates))

        return await self._db.run(work, name="media_delete")

    async def blob_in_use(self, sha256: str) -> bool:
        """Whether any media item or thumbnail refers to the blob."""

        async def work(conn: Conn) -> bool:
            return bool(await conn.fetch_val(_IN_USE, {"sha256": sha256}))

        return await self._db.read(work, name="media_blob_in_use")

    async def expired_pending(self, now: int, *, limit: int = 500) -> list[tuple[str, str]]:
        """Pending IDs whose ``unused_expires_ts`` has passed."""

        async def work(conn: Conn) -> list[tuple[str, str]]:
            rows = await conn.fetch_all(_EXPIRED_PENDING, {"now": now, "limit": limit})
            return [(str(o), str(m)) for o, m in rows]

        return await self._db.read(work, name="media_expired_pending")

    async def stale_media(
        self, server_name: str, *, local_cutoff: int | None, remote_cutoff: int | None, limit: int
    ) -> list[tuple[str, str]]:
        """Items last used before the cutoffs: local ones (``origin == server_name``, uploaded)
        before ``local_cutoff``, cached remote ones before ``remote_cutoff`` (None: never)."""

        async def work(conn: Conn) -> list[tuple[str, str]]:
            out: list[tuple[str, str]] = []
            if local_cutoff is not None:
                rows = await conn.fetch_all(
                    _STALE_LOCAL, {"origin": server_name, "cutoff": local_cutoff, "limit": limit}
                )
                out.extend((str(o), str(m)) for o, m in rows)
            if remote_cutoff is not None:
                rows = await conn.fetch_all(
                    _STALE_REMOTE,
                    {"origin": server_name, "cutoff": remote_cutoff, "limit": limit},
                )
                out.extend((str(o), str(m)) for o, m in rows)
            return out

        return await self._db.read(work, name="media_stale")

    async def get_thumbnail(
        self, source_sha256: str, width: int, height: int, method: str, animated: bool
    ) -> ThumbnailRow | None:
        """The stored thumbnail for that box, method and animation, or ``None``."""

        async def work(conn: Conn) -> ThumbnailRow | None:
            row = await conn.fetch_one(
                _GET_THUMB,
                {
                    "source_sha256": source_sha256,
                    "width": width,
                    "height": height,
                    "method": method,
                    "animated": animated,
                },
            )
            return None if row is None else ThumbnailRow(*row)

        return await self._db.read(work, name="media_get_thumbnail")

    async def list_thumbnails(self, source_sha256: str) -> list[ThumbnailRow]:
        """Every thumbnail of a blob."""

        async def work(conn: Conn) -> list[ThumbnailRow]:
            rows = await conn.fetch_all(_THUMBS_OF, {"sha256": source_sha256})
            return [ThumbnailRow(*r) for r in rows]

        return await self._db.read(work, name="media_list_thumbnails")

    async def add_thumbnail(self, thumb: ThumbnailRow) -> bool:
        """Record a thumbnail; False if one exists for that key or no media has the source."""

        async def work(conn: Conn) -> int:
            return await conn.execute(
                _ADD_THUMB,
                {
                    "source_sha256": thumb.source_sha256,
                    "width": thumb.width,
                    "height": thumb.height,
                    "method": thumb.method,
                    "animated": thumb.animated,
                    "content_type": thumb.content_type,
                    "size": thumb.size,
                    "sha256": thumb.sha256,
                    "created_ts": thumb.created_ts,
                },
            )

        try:
            return await self._db.run(work, name="media_add_thumbnail") > 0
        except UniqueViolation:
            return False


def _key(origin: str, media_id: str) -> dict[str, str]:
    return {"origin": origin, "media_id": media_id}


def _values(
    origin: str,
    media_id: str,
    user_id: str | None,
    *,
    created_ts: int,
    content_type: str | None = None,
    upload_name: str | None = None,
    size: int | None = None,
    sha256: str | None = None,
    uploaded_ts: int | None = None,
    unused_expires_ts: int | None = None,
    last_access_ts: int | None = None,
) -> dict[str, object]:
    return {
        "origin": origin,
        "media_id": media_id,
        "user_id": user_id,
        "content_type": content_type,
        "upload_name": upload_name,
        "size": size,
        "sha256": sha256,
        "created_ts": created_ts,
        "uploaded_ts": uploaded_ts,
        "unused_expires_ts": unused_expires_ts,
        "last_access_ts": last_access_ts,
    }

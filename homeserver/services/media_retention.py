"""Media retention: the background loop that forgets what is no longer wanted.

Every ``retention_interval_s`` it deletes

- pending upload IDs (``POST /_matrix/media/v1/create``) past their ``unused_expires_at``;
- local media not downloaded (or thumbnailed) for ``local_media_lifetime_s``, if set;
- cached remote media not used for ``remote_media_lifetime_s``, if set;
- temporary files abandoned by a crash in the middle of an upload;

in batches, through :meth:`MediaService.delete`, so a blob's file goes only with its last row.
"Used" is ``last_access_ts``, which downloads and thumbnails refresh (at most hourly). Time comes
from the injected clock, so tests run :meth:`MediaRetention.run_once` at any fake time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import trio

from homeserver.clock import Clock
from homeserver.config import MediaConfig
from homeserver.services.media import TEMP_MAX_AGE_S, MediaService
from homeserver.storage.media import MediaStore
from homeserver.storage.media_files import MediaFileStore

__all__ = ["MediaRetention", "RetentionReport"]

logger = logging.getLogger(__name__)

_BATCH = 500


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """What one pass deleted."""

    expired_pending: int
    local: int
    remote: int
    temp_files: int


class MediaRetention:
    """Deletes expired upload IDs and media past its retention period.

    Args:
        media: deletes items and their unreferenced blobs.
        store: finds what to delete.
        files: sweeps abandoned temporary files.
        clock: the time the lifetimes are measured against.
        config: the media section (lifetimes, interval).
    """

    def __init__(
        self,
        media: MediaService,
        store: MediaStore,
        files: MediaFileStore,
        clock: Clock,
        config: MediaConfig,
    ) -> None:
        self._media = media
        self._store = store
        self._files = files
        self._clock = clock
        self._cfg = config

    async def run_once(self) -> RetentionReport:
        """One pass over everything (in batches until nothing is left)."""
        now = self._clock.time_ms()
        expired = 0
        while batch := await self._store.expired_pending(now, limit=_BATCH):
            expired += len(await self._media.delete(batch))
            if len(batch) < _BATCH:
                break
        local_cutoff = _cutoff(now, self._cfg.local_media_lifetime_s)
        remote_cutoff = _cutoff(now, self._cfg.remote_media_lifetime_s)
        local = remote = 0
        server = self._media.server_name
        while True:
            batch = await self._store.stale_media(
                server, local_cutoff=local_cutoff, remote_cutoff=remote_cutoff, limit=_BATCH
            )
            if not batch:
                break
            deleted = set(await self._media.delete(batch))
            local += sum(1 for origin, m in batch if origin == server and m in deleted)
            remote += sum(1 for origin, m in batch if origin != server and m in deleted)
            if len(batch) < _BATCH:
                break
        temp = await self._files.sweep_temp(TEMP_MAX_AGE_S)
        report = RetentionReport(expired, local, remote, temp)
        if expired or local or remote or temp:
            logger.info("media retention: %s", report)
        return report

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run a pass every ``retention_interval_s``, forever (run it in the app's nursery)."""
        task_status.started()
        while True:
            await trio.sleep(self._cfg.retention_interval_s)
            try:
                await self.run_once()
            except Exception:
                logger.exception("media retention pass failed")


def _cutoff(now: int, lifetime_s: float | None) -> int | None:
    return None if lifetime_s is None else now - int(lifetime_s * 1000)

"""The media repository's HTTP API (the ``media`` listener resource).

Spec: client-server-api/modules/content_repo.md. ``upload`` (upload, asynchronous upload,
config, URL previews), ``download`` (authenticated and deprecated downloads), ``thumbnail``;
the admin endpoints are in :mod:`homeserver.api.admin.media`.
"""

from homeserver.api.media.download import DownloadApi
from homeserver.api.media.thumbnail import ThumbnailApi
from homeserver.api.media.upload import UploadApi

__all__ = ["DownloadApi", "ThumbnailApi", "UploadApi"]

"""Admin API for media, shaped like Synapse's.

Synapse: docs/admin_api/media_admin_api.md (``DELETE /_synapse/admin/v1/media/<server>/<id>``)
and docs/admin_api/user_admin_api.md (``GET|DELETE /_synapse/admin/v1/users/<user_id>/media``).
Server admins only; everyone else gets ``403 M_FORBIDDEN``. Deleting removes the item's row,
and its file and thumbnails once no other item shares the same content.
"""

from __future__ import annotations

from typing import Any

from homeserver.api._http import route
from homeserver.errors import Forbidden
from homeserver.services.media import MediaRow, MediaService
from homeserver.services.requester import Requester

__all__ = ["MediaAdminApi"]


def _admin(requester: Requester) -> None:
    if not requester.is_admin:
        raise Forbidden("You are not a server admin")


def _render(row: MediaRow) -> dict[str, Any]:
    return {
        "media_id": row.media_id,
        "media_type": row.content_type,
        "media_length": row.size,
        "upload_name": row.upload_name,
        "created_ts": row.created_ts,
        "last_access_ts": row.last_access_ts,
        "pending": row.uploaded_ts is None,
    }


class MediaAdminApi:
    """Deleting a media item or all of a user's media; listing a user's media.

    Args:
        media: the media service.
    """

    def __init__(self, media: MediaService) -> None:
        self._media = media

    @route("DELETE", "/_synapse/admin/v1/media/{server_name}/{media_id}", auth="user")
    async def delete_media(self, requester: Requester, server_name: str, media_id: str) -> Any:
        """DELETE /_synapse/admin/v1/media/<server_name>/<media_id>: delete one item."""
        _admin(requester)
        deleted = await self._media.delete_one(server_name, media_id)
        return {"deleted_media": deleted, "total": len(deleted)}

    @route("GET", "/_synapse/admin/v1/users/{user_id}/media", auth="user")
    async def list_user_media(self, requester: Requester, user_id: str) -> Any:
        """GET /_synapse/admin/v1/users/<user_id>/media: the user's local media."""
        _admin(requester)
        rows = await self._media.list_user_media(user_id)
        return {"media": [_render(r) for r in rows], "total": len(rows)}

    @route("DELETE", "/_synapse/admin/v1/users/{user_id}/media", auth="user")
    async def delete_user_media(self, requester: Requester, user_id: str) -> Any:
        """DELETE /_synapse/admin/v1/users/<user_id>/media: delete all of the user's media."""
        _admin(requester)
        deleted = await self._media.delete_user_media(user_id)
        return {"deleted_media": deleted, "total": len(deleted)}

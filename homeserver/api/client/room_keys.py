"""Server-side key backups: ``/room_keys/version`` and ``/room_keys/keys``.

Spec: https://spec.matrix.org/v1.19/client-server-api/#server-side-key-backups (OpenAPI
``key_backup.yaml``). Every endpoint acts on the requester's own backup only. Session IDs are
unpadded base64 and may contain ``/`` (sent as ``%2F``), so the session segment is matched as
a path.
"""

from __future__ import annotations

from quart import request

from homeserver.api._http import JsonDict, read_json_body, route
from homeserver.errors import MissingParam
from homeserver.services.key_backup import KeyBackupService
from homeserver.services.requester import Requester

__all__ = ["RoomKeysApi"]

_PREFIX = "/_matrix/client/v3/room_keys"


def _version_arg() -> str:
    version = request.args.get("version")
    if version is None:
        raise MissingParam("Missing 'version'")
    return version


class RoomKeysApi:
    """Backup versions and backed-up keys.

    Args:
        backup: the key backup service.
        max_body_bytes: the body limit of these endpoints.
    """

    def __init__(self, backup: KeyBackupService, *, max_body_bytes: int) -> None:
        self._backup = backup
        self._max_body = max_body_bytes

    # --- versions -------------------------------------------------------------------------------

    @route("POST", f"{_PREFIX}/version", auth="user")
    async def create_version(self, requester: Requester) -> JsonDict:
        """POST /_matrix/client/v3/room_keys/version — spec: #post_matrixclientv3room_keysversion.

        "Creates a new backup." Answers ``{"version": ...}``; the new version is the current one.
        """
        body = await read_json_body(self._max_body)
        return {"version": await self._backup.create_version(requester.user_id, body)}

    @route("GET", f"{_PREFIX}/version", auth="user")
    async def get_current_version(self, requester: Requester) -> JsonDict:
        """GET /_matrix/client/v3/room_keys/version — spec: #get_matrixclientv3room_keysversion.

        "Get information about the latest backup version." 404 ``M_NOT_FOUND`` when none.
        """
        return await self._backup.get_version(requester.user_id, None)

    @route("GET", f"{_PREFIX}/version/{{version}}", auth="user")
    async def get_version(self, requester: Requester, version: str) -> JsonDict:
        """GET /_matrix/client/v3/room_keys/version/{version}.

        Spec: #get_matrixclientv3room_keysversionversion. "Get information about an existing
        backup." 404 ``M_NOT_FOUND`` for unknown or deleted versions.
        """
        return await self._backup.get_version(requester.user_id, version)

    @route("PUT", f"{_PREFIX}/version/{{version}}", auth="user")
    async def update_version(self, requester: Requester, version: str) -> JsonDict:
        """PUT /_matrix/client/v3/room_keys/version/{version}.

        Spec: #put_matrixclientv3room_keysversionversion. "Update information about an
        existing backup. Only auth_data can be modified."
        """
        body = await read_json_body(self._max_body)
        await self._backup.update_version(requester.user_id, version, body)
        return {}

    @route("DELETE", f"{_PREFIX}/version/{{version}}", auth="user")
    async def delete_version(self, requester: Requester, version: str) -> JsonDict:
        """DELETE /_matrix/client/v3/room_keys/version/{version}.

        Spec: #delete_matrixclientv3room_keysversionversion. "Delete an existing key backup.
        Both the information about the backup, as well as all key data related to the backup
        will be deleted."
        """
        await self._backup.delete_version(requester.user_id, version)
        return {}

    # --- keys -----------------------------------------------------------------------------------

    @route("PUT", f"{_PREFIX}/keys", auth="user")
    async def put_all(self, requester: Requester) -> JsonDict:
        """PUT /_matrix/client/v3/room_keys/keys — spec: #put_matrixclientv3room_keyskeys.

        "Store several keys in the backup." Only to the current version (403
        ``M_WRONG_ROOM_KEYS_VERSION`` otherwise). Answers ``{etag, count}``.
        """
        body = await read_json_body(self._max_body)
        return await self._backup.put_keys(requester.user_id, _version_arg(), body)

    @route("PUT", f"{_PREFIX}/keys/{{room_id}}", auth="user")
    async def put_room(self, requester: Requester, room_id: str) -> JsonDict:
        """PUT /_matrix/client/v3/room_keys/keys/{roomId}.

        Spec: #put_matrixclientv3room_keyskeysroomid. "Store several keys in the backup" for
        one room.
        """
        body = await read_json_body(self._max_body)
        return await self._backup.put_keys(requester.user_id, _version_arg(), body, room_id)

    @route("PUT", f"{_PREFIX}/keys/{{room_id}}/{{session_id:path}}", auth="user")
    async def put_session(self, requester: Requester, room_id: str, session_id: str) -> JsonDict:
        """PUT /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}.

        Spec: #put_matrixclientv3room_keyskeysroomidsessionid. "Store a key in the backup."
        """
        body = await read_json_body(self._max_body)
        return await self._backup.put_keys(
            requester.user_id, _version_arg(), body, room_id, session_id
        )

    @route("GET", f"{_PREFIX}/keys", auth="user")
    async def get_all(self, requester: Requester) -> JsonDict:
        """GET /_matrix/client/v3/room_keys/keys — spec: #get_matrixclientv3room_keyskeys.

        "Retrieve the keys from the backup."
        """
        return await self._backup.get_keys(requester.user_id, _version_arg())

    @route("GET", f"{_PREFIX}/keys/{{room_id}}", auth="user")
    async def get_room(self, requester: Requester, room_id: str) -> JsonDict:
        """GET /_matrix/client/v3/room_keys/keys/{roomId}.

        Spec: #get_matrixclientv3room_keyskeysroomid. "Retrieve the keys from the backup for
        a given room." ``{"sessions": {}}`` when none.
        """
        return await self._backup.get_keys(requester.user_id, _version_arg(), room_id)

    @route("GET", f"{_PREFIX}/keys/{{room_id}}/{{session_id:path}}", auth="user")
    async def get_session(self, requester: Requester, room_id: str, session_id: str) -> JsonDict:
        """GET /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}.

        Spec: #get_matrixclientv3room_keyskeysroomidsessionid. "Retrieve a key from the
        backup." 404 ``M_NOT_FOUND`` when the session has no key.
        """
        return await self._backup.get_keys(requester.user_id, _version_arg(), room_id, session_id)

    @route("DELETE", f"{_PREFIX}/keys", auth="user")
    async def delete_all(self, requester: Requester) -> JsonDict:
        """DELETE /_matrix/client/v3/room_keys/keys — spec: #delete_matrixclientv3room_keyskeys.

        "Delete the keys from the backup." Answers ``{etag, count}``.
        """
        return await self._backup.delete_keys(requester.user_id, _version_arg())

    @route("DELETE", f"{_PREFIX}/keys/{{room_id}}", auth="user")
    async def delete_room(self, requester: Requester, room_id: str) -> JsonDict:
        """DELETE /_matrix/client/v3/room_keys/keys/{roomId}.

        Spec: #delete_matrixclientv3room_keyskeysroomid. "Delete the keys from the backup for
        a given room."
        """
        return await self._backup.delete_keys(requester.user_id, _version_arg(), room_id)

    @route("DELETE", f"{_PREFIX}/keys/{{room_id}}/{{session_id:path}}", auth="user")
    async def delete_session(self, requester: Requester, room_id: str, session_id: str) -> JsonDict:
        """DELETE /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}.

        Spec: #delete_matrixclientv3room_keyskeysroomidsessionid. "Delete a key from the
        backup."
        """
        return await self._backup.delete_keys(
            requester.user_id, _version_arg(), room_id, session_id
        )

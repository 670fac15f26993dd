"""Other servers' users' profiles, asked over federation.

Spec: server-server-api › Querying for information › ``GET /query/profile``; client-server ›
Profiles (``GET /profile/{userId}`` for any user). Implements
:class:`~homeserver.services.profile.RemoteProfiles`.

The other server's errors are not passed on as ours: "not found" there is ``404`` here; an
unreachable, refusing or broken server is ``502`` (``M_UNKNOWN``). Nothing is cached.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from federation.client import FederationClient
from federation.client.errors import FederationError, RemoteServerError
from federation.core.ids import parse_user_id
from homeserver.errors import Codes, MatrixError, NotFound

__all__ = ["FederatedProfiles"]


class FederatedProfiles:
    """Remote profiles through the federation client."""

    def __init__(self, client: FederationClient) -> None:
        self._client = client

    async def query(self, user_id: str, field: str | None) -> Mapping[str, Any]:
        server = parse_user_id(user_id).server_name
        try:
            return await self._client.query_profile(server, user_id, field)
        except RemoteServerError as e:
            if e.status == 404:
                raise NotFound("Profile not found") from None
            raise MatrixError(
                502, Codes.UNKNOWN, f"Could not ask {server} (HTTP {e.status})"
            ) from None
        except FederationError as e:
            raise MatrixError(
                502, Codes.UNKNOWN, f"Could not ask {server}: {type(e).__name__}"
            ) from None

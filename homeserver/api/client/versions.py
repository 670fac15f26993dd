"""Client-server API versions.

Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientversions

Which versions to list: those whose changes that clients act on work here. Clients read the list
to decide which endpoints and behaviours to use: matrix-js-sdk 37 refuses servers without v1.1 and
switches features on at v1.5+; Element uses authenticated media (``/_matrix/client/v1/media``)
only when the server lists v1.11 and otherwise falls back to the unauthenticated endpoints, which
v1.11 servers may freeze. Listing v1.1-v1.12 says: the v3 endpoints, refresh tokens (v1.3),
``m.login.registration_token`` and the space hierarchy (v1.2,
:mod:`homeserver.services.space_hierarchy`), threads (v1.4), ``timestamp_to_event`` (v1.6),
asynchronous uploads (v1.7), authenticated media (v1.11).
``tests/integration/test_versions_api.py`` checks that every endpoint the spec marks as added in
a listed version is served, except the optional ones: SSO redirects (no SSO login type), ``POST
/login/get_token`` (no ``m.get_login_token`` capability), the application service ping (no
application services), ``/.well-known/matrix/support`` (its 404 means "no support
information"). v1.13 and later are not listed because parts of them are not here (v1.13 ``POST
/rooms/{roomId}/report``, v1.14 ``/users/{userId}/report``, v1.15 ``/room_summary`` and OAuth 2.0
server metadata); the profile fields of v1.16 work and are announced through the
``m.profile_fields`` capability.

Modules older than v1.1 that are not complete here, whatever the version: email addresses as
third-party identifiers (phone numbers work), the identity server binding endpoints, pushers and
``/notifications``, VoIP TURN servers, third-party networks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeserver.api._http import route

__all__ = ["SUPPORTED_VERSIONS", "VersionsApi"]

#: The spec versions this server implements ("advertise only what works", and all of it).
SUPPORTED_VERSIONS: tuple[str, ...] = tuple(f"v1.{n}" for n in range(1, 13))


class VersionsApi:
    """``GET /_matrix/client/versions``.

    Args:
        unstable_features: extensions and their state (``org.example.reglock``: the
            registration lock and login with an SMS code).
    """

    def __init__(self, unstable_features: Mapping[str, bool] | None = None) -> None:
        self._body: dict[str, Any] = {
            "versions": list(SUPPORTED_VERSIONS),
            "unstable_features": dict(unstable_features or {}),
        }

    @route("GET", "/_matrix/client/versions")
    async def get_versions(self) -> dict[str, Any]:
        """GET /_matrix/client/versions — spec: client-server-api/#get_matrixclientversions.

        "Gets the versions of the specification supported by the server." No authentication.
        """
        return self._body

"""Client-server API versions.

Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientversions
"""

from __future__ import annotations

from typing import Any

from homeserver.api._http import route

#: The spec versions this server implements, grown as features land. Only versions whose
#: endpoints clients depend on work here are listed ("advertise only what works").
SUPPORTED_VERSIONS: tuple[str, ...] = ("v1.11",)

#: Unstable features and their state; none yet.
UNSTABLE_FEATURES: dict[str, bool] = {}


class VersionsApi:
    """``GET /_matrix/client/versions``."""

    @route("GET", "/_matrix/client/versions")
    async def get_versions(self) -> dict[str, Any]:
        """GET /_matrix/client/versions — spec: client-server-api/#get_matrixclientversions.

        "Gets the versions of the specification supported by the server." No authentication.
        """
        return {"versions": list(SUPPORTED_VERSIONS), "unstable_features": UNSTABLE_FEATURES}

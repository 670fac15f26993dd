"""The server's implementation name and version, for other servers.

Spec: https://spec.matrix.org/v1.19/server-server-api/#get_matrixfederationv1version
"""

from __future__ import annotations

from homeserver.api._http import JsonDict, route

__all__ = ["FederationVersionApi"]

#: What ``server.name`` says (the distribution name in setup.cfg).
SERVER_NAME = "trio-homeserver"


class FederationVersionApi:
    """``GET /_matrix/federation/v1/version`` (no authentication).

    Args:
        version: our version string (``server.version``).
    """

    def __init__(self, version: str) -> None:
        self._version = version

    @route("GET", "/_matrix/federation/v1/version")
    async def version(self) -> JsonDict:
        """GET /_matrix/federation/v1/version — spec: server-server-api › Server implementation.

        "Get the implementation name and version of this homeserver."
        """
        return {"server": {"name": SERVER_NAME, "version": self._version}}

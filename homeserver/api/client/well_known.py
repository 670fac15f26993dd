"""Server discovery for clients: ``/.well-known/matrix/client``.

Spec: client-server-api/_index.md › Server Discovery › Well-known URIs
(data/api/client-server/wellknown.yaml). Served from ``public_baseurl`` (the address clients
reach this server at); without it the server does not know its public address and answers 404,
as the spec allows ("404 No server-discovery information is available.").
"""

from __future__ import annotations

from typing import Any

from homeserver.api._http import route
from homeserver.errors import NotFound

__all__ = ["WellKnownApi"]


class WellKnownApi:
    """``GET /.well-known/matrix/client``.

    Args:
        public_baseurl: the ``public_baseurl`` option (None: no discovery information).
    """

    def __init__(self, public_baseurl: str | None) -> None:
        self._body = (
            None
            if public_baseurl is None
            else {"m.homeserver": {"base_url": public_baseurl.rstrip("/")}}
        )

    @route("GET", "/.well-known/matrix/client")
    async def client_well_known(self) -> Any:
        """GET /.well-known/matrix/client — spec: #getwell-knownmatrixclient.

        "Gets discovery information about the domain." ``{"m.homeserver": {"base_url": ...}}``.
        """
        if self._body is None:
            raise NotFound("No server-discovery information is available")
        return self._body

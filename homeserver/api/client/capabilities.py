"""Capabilities negotiation.

Spec: https://spec.matrix.org/v1.16/client-server-api/#capabilities-negotiation
"""

from __future__ import annotations

from federation.core.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.api._http import JsonDict, route

__all__ = ["CapabilitiesApi"]


class CapabilitiesApi:
    """``GET /capabilities``.

    Args:
        default_room_version: the version new rooms get (``default_room_version`` in the config).
        change_password: whether ``POST /account/password`` works for users.
        threepid_changes: whether ``/account/3pid/add`` and ``/delete`` work (phone numbers,
            with SMS verification).
        get_login_token: whether ``POST /_matrix/client/v1/login/get_token`` is offered
            (``login_tokens.allow_get_token``).
    """

    def __init__(
        self,
        *,
        default_room_version: str,
        change_password: bool,
        threepid_changes: bool = False,
        get_login_token: bool = False,
    ) -> None:
        self._body: JsonDict = {
            "capabilities": {
                "m.change_password": {"enabled": change_password},
                "m.room_versions": {
                    "default": default_room_version,
                    "available": dict.fromkeys(KNOWN_ROOM_VERSIONS, "stable"),
                },
                # Deprecated by m.profile_fields in v1.16, still read by older clients.
                "m.set_displayname": {"enabled": True},
                "m.set_avatar_url": {"enabled": True},
                # Phone numbers can be added and removed when SMS verification is on.
                "m.3pid_changes": {"enabled": threepid_changes},
                "m.get_login_token": {"enabled": get_login_token},
                "m.profile_fields": {"enabled": True},
            }
        }

    @route("GET", "/_matrix/client/v3/capabilities", auth="user")
    async def get_capabilities(self) -> JsonDict:
        """GET /_matrix/client/v3/capabilities — spec: #get_matrixclientv3capabilities.

        "Gets information about the server's supported feature set and other relevant
        capabilities."
        """
        return self._body

"""Who is making a request: the result of checking an access token.

The API layer asks an :class:`Authenticator` (the accounts service implements it) to turn the
access token of a request into a :class:`Requester`, and hands that to the handler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Requester:
    """An authenticated user and device."""

    user_id: str
    device_id: str | None
    is_guest: bool = False
    is_admin: bool = False
    #: The stored id of the access token (for logout), not the token itself.
    token_id: int | None = None


class Authenticator(Protocol):
    """Turns an access token into a :class:`Requester`."""

    async def authenticate(self, access_token: str, *, client_ip: str) -> Requester:
        """Check ``access_token``.

        Raises:
            UnknownToken: the token is unknown, expired (``soft_logout``) or revoked.
        """
        ...

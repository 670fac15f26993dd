"""Account management: password, deactivation, bound phone numbers, whoami.

Spec: client-server-api › Password management (``POST /account/password``), Account
deactivation (``POST /account/deactivate``), Adding account administrative contact information
(``GET /account/3pid``, ``POST /account/3pid/add``, ``POST /account/3pid/delete``),
``GET /account/whoami``.

Each operation that needs user-interactive auth gets the UIA result from the API layer, which
called :meth:`~homeserver.services.uia.UiaService.check` first.
"""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.clock import Clock
from homeserver.errors import Forbidden, NotFound
from homeserver.services.auth import AuthService
from homeserver.services.email_threepids import EmailVerificationService
from homeserver.services.otp import PhoneVerificationService, ThreepidInUse
from homeserver.services.passwords import PasswordHasher
from homeserver.services.registration import check_password_strength
from homeserver.services.requester import Requester
from homeserver.storage.users import PhoneInUse, UserStore

__all__ = ["AccountService", "BoundPhone"]


@dataclass(frozen=True, slots=True)
class BoundPhone:
    """A phone number bound to an account (E.164)."""

    phone: str
    added_at: int


class AccountService:
    """Changes to one's own account."""

    def __init__(
        self,
        users: UserStore,
        auth: AuthService,
        phones: PhoneVerificationService,
        hasher: PasswordHasher,
        clock: Clock,
        *,
        password_min_length: int,
        emails: EmailVerificationService | None = None,
    ) -> None:
        self._users = users
        self._auth = auth
        self._phones = phones
        self._hasher = hasher
        self._clock = clock
        self._min_password = password_min_length
        self._emails = emails

    async def change_password(
        self, requester: Requester, new_password: str, *, logout_devices: bool
    ) -> None:
        """Set a new password; with ``logout_devices`` delete every other device.

        Raises:
            WeakPassword: shorter than ``auth.password_min_length``.
        """
        check_password_strength(new_password, self._min_password)
        password_hash = await self._hasher.hash(new_password)
        if not await self._users.set_password_hash(requester.user_id, password_hash):
            raise NotFound("No such user")
        if logout_devices:
            await self._auth.logout_all(requester.user_id, except_device=requester.device_id)

    async def reset_password(
        self, user_id: str, new_password: str, *, logout_devices: bool
    ) -> None:
        """Set a new password of an account proved by its email address (no access token);
        with ``logout_devices`` delete every device.

        Raises:
            WeakPassword: shorter than ``auth.password_min_length``.
        """
        check_password_strength(new_password, self._min_password)
        password_hash = await self._hasher.hash(new_password)
        if not await self._users.set_password_hash(user_id, password_hash):
            raise NotFound("No such user")
        if logout_devices:
            await self._auth.logout_all(user_id)

    async def deactivate(self, user_id: str) -> None:
        """Deactivate: forget password, phone number and email addresses, delete every device
        and token.

        The user ID is never reused; login then answers ``403 M_USER_DEACTIVATED``.
        """
        await self._users.deactivate_user(user_id)
        if self._emails is not None:
            await self._emails.unbind_all(user_id)
        await self._auth.logout_all(user_id)

    async def phones(self, user_id: str) -> list[BoundPhone]:
        user = await self._users.get_user(user_id)
        if user is None or user.phone is None:
            return []
        added = user.phone_added_ts if user.phone_added_ts is not None else user.created_ts
        return [BoundPhone(user.phone, added)]

    async def bind_phone(self, requester: Requester, *, sid: str, client_secret: str) -> None:
        """Bind the number a validation session proved to the requester's account.

        Raises:
            NotFound / ThreepidAuthFailed: unknown or unvalidated session.
            ThreepidInUse: another account has the number.
        """
        if requester.is_guest:
            raise Forbidden("Guests cannot add phone numbers")
        phone = await self._phones.validated_number(sid=sid, client_secret=client_secret)
        owner = await self._users.get_user_by_phone(phone)
        if owner is not None and owner.user_id != requester.user_id:
            raise ThreepidInUse()
        try:
            await self._users.bind_phone(requester.user_id, phone, now=self._clock.time_ms())
        except PhoneInUse:
            raise ThreepidInUse() from None

    async def unbind_phone(self, user_id: str, phone: str) -> bool:
        """Remove a bound number; return whether it was bound to this account."""
        return await self._users.unbind_phone(user_id, phone)

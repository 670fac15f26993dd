"""User profiles: display name, avatar and the extended profile fields of Matrix v1.16.

Spec: client-server-api/_index.md › Profiles, and ``data/api/client-server/profile.yaml``.

- Any field name matching the spec's ``keyName`` grammar may be set: ``displayname``,
  ``avatar_url``, ``m.tz`` and namespaced custom keys; a key over 255 bytes is
  ``M_KEY_TOO_LARGE``, and the whole profile (as one JSON object) must stay under 64 KiB
  (``M_PROFILE_TOO_LARGE``), checked in the writing transaction.
- ``displayname`` and ``m.tz`` must be strings and ``avatar_url`` an ``mxc://`` URI; custom
  fields may hold any JSON value, ``null`` included (stored, as the spec asks, not treated as a
  deletion). For ``displayname`` and ``avatar_url``, an empty string or ``null`` removes the field:
  that is how clients have long cleared them (Synapse does the same), and a stored ``null``
  display name would break clients that expect a string.
- Only the owner may change a profile (``403 M_FORBIDDEN``). Reading is open to any
  authenticated user, which the spec allows ("MUST at a minimum allow ... users who share a
  room").
- Remote users: asked of their server with the federation profile query
  (``GET /_matrix/federation/v1/query/profile``, :class:`RemoteProfiles`) when federation is
  wired; ``404 M_NOT_FOUND`` otherwise, and for the federation query itself (no proxying).

Changes are announced to :class:`ProfileListener` s after they commit. The spec wants a
display name or avatar change propagated as a new ``m.room.member`` event in every joined room
(and a presence update): :class:`~homeserver.services.profile_propagation.ProfilePropagator`
is the rooms listener.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from federation.core.errors import InvalidIdentifier
from federation.core.ids import parse_server_name, parse_user_id
from homeserver.errors import BadJson, Forbidden, InvalidParam, MatrixError, NotFound
from homeserver.services.requester import Requester
from homeserver.storage.profile import NoSuchUserError, ProfileStore, ProfileTooLargeError
from homeserver.storage.users import UserStore

__all__ = [
    "AVATAR_URL",
    "DISPLAYNAME",
    "MAX_PROFILE_BYTES",
    "KeyTooLarge",
    "Profile",
    "ProfileListener",
    "ProfileService",
    "ProfileTooLarge",
    "is_mxc_uri",
]

DISPLAYNAME = "displayname"
AVATAR_URL = "avatar_url"
TIMEZONE = "m.tz"

#: The spec's limit on a whole profile.
MAX_PROFILE_BYTES = 64 * 1024
#: The spec's limit on a key, in bytes.
MAX_KEY_BYTES = 255
#: Per-field limits (characters), as Synapse has them.
MAX_DISPLAYNAME_LEN = 256
MAX_AVATAR_URL_LEN = 1000

# The spec's keyName pattern, widened by "-" which the Common Namespaced Identifier Grammar allows.
_KEY_RE = re.compile(r"avatar_url|displayname|[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)+")
# mxc://<server-name>/<media-id>, media IDs being [A-Za-z0-9_-]+ (content repository module).
_MXC_RE = re.compile(r"mxc://(?P<server>[^/]+)/(?P<media>[A-Za-z0-9_-]+)")


class KeyTooLarge(MatrixError):
    """A profile key is longer than 255 bytes."""

    def __init__(self) -> None:
        super().__init__(400, "M_KEY_TOO_LARGE", f"Profile keys are at most {MAX_KEY_BYTES} bytes")


class ProfileTooLarge(MatrixError):
    """The profile would be over 64 KiB."""

    def __init__(self) -> None:
        super().__init__(
            400, "M_PROFILE_TOO_LARGE", f"A profile may be at most {MAX_PROFILE_BYTES} bytes"
        )


@dataclass(frozen=True, slots=True)
class Profile:
    """A user's profile fields (values are JSON: strings for the well-known keys)."""

    user_id: str
    fields: Mapping[str, Any]


class RemoteProfiles(Protocol):
    """Other servers' users' profiles (``services/federation_profiles.py``)."""

    async def query(self, user_id: str, field: str | None) -> Mapping[str, Any]:
        """The profile (or the one field) from the user's server.

        Raises:
            NotFound: that server has no such user or field.
            MatrixError: 502, it could not be asked.
        """
        ...


class ProfileListener(Protocol):
    """Told about a committed profile change (rooms will re-send member events from here)."""

    async def profile_changed(self, user_id: str, field: str, value: Any | None) -> None:
        """``field`` of ``user_id`` is now ``value`` (``None``: removed)."""
        ...


def is_mxc_uri(value: str) -> bool:
    """True for ``mxc://<server-name>/<media-id>``."""
    m = _MXC_RE.fullmatch(value)
    if m is None:
        return False
    try:
        parse_server_name(m["server"])
    except InvalidIdentifier:
        return False
    return True


def check_key(key: str) -> None:
    """Check a profile key against the spec's grammar.

    Raises:
        KeyTooLarge: over 255 bytes.
        InvalidParam: not ``displayname``, ``avatar_url`` or a namespaced key.
    """
    if len(key.encode()) > MAX_KEY_BYTES:
        raise KeyTooLarge()
    if _KEY_RE.fullmatch(key) is None:
        raise InvalidParam(f"Invalid profile key {key!r}")


def _check_value(key: str, value: Any) -> Any | None:
    """The value to store, or ``None`` to remove the field.

    Raises:
        BadJson: a well-known field of the wrong type.
        InvalidParam: a well-known field with a bad value.
    """
    if key in (DISPLAYNAME, AVATAR_URL):
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise BadJson(f"{key} must be a string")
        if key == DISPLAYNAME and len(value) > MAX_DISPLAYNAME_LEN:
            raise InvalidParam(f"displayname is too long (max {MAX_DISPLAYNAME_LEN})")
        if key == AVATAR_URL and (len(value) > MAX_AVATAR_URL_LEN or not is_mxc_uri(value)):
            raise InvalidParam("avatar_url must be an mxc:// URI")
    elif key == TIMEZONE and not isinstance(value, str):
        raise BadJson("m.tz must be a string")
    return value


class ProfileService:
    """Read and change profiles.

    Args:
        users: to tell unknown users (404) from users without a profile.
        profiles: the profile store.
        server_name: this server's name (users of other servers are remote).
        listeners: told about every committed change.
    """

    def __init__(
        self,
        users: UserStore,
        profiles: ProfileStore,
        server_name: str,
        listeners: Sequence[ProfileListener] = (),
    ) -> None:
        self._users = users
        self._profiles = profiles
        self._server_name = server_name
        self._listeners = list(listeners)
        self._remote: RemoteProfiles | None = None

    def use_remote(self, remote: RemoteProfiles) -> None:
        """Ask other servers for their users' profiles (wired in ``app.py``)."""
        self._remote = remote

    def _remote_user(self, user_id: str, ask_remote: bool) -> bool:
        try:
            uid = parse_user_id(user_id)
        except InvalidIdentifier:
            raise InvalidParam(f"Invalid user ID {user_id!r}") from None
        return ask_remote and self._remote is not None and uid.server_name != self._server_name

    def add_listener(self, listener: ProfileListener) -> None:
        """Subscribe to profile changes (the composition root wires this)."""
        self._listeners.append(listener)

    async def _check_local_user(self, user_id: str) -> None:
        try:
            uid = parse_user_id(user_id)
        except InvalidIdentifier:
            raise InvalidParam(f"Invalid user ID {user_id!r}") from None
        if uid.server_name != self._server_name:
            raise NotFound("Profile not found (a user of another server)")
        user = await self._users.get_user(user_id)
        if user is None or user.deactivated:
            raise NotFound("Profile not found")

    async def get_profile(self, user_id: str, *, ask_remote: bool = True) -> Profile:
        """The whole profile; a remote user's from their server (unless ``ask_remote`` is
        False: the federation query answers for our users only).

        Raises:
            NotFound: no such user (or a remote user that cannot be asked).
            InvalidParam: ``user_id`` is not a user ID.
        """
        if self._remote_user(user_id, ask_remote):
            assert self._remote is not None
            return Profile(user_id, dict(await self._remote.query(user_id, None)))
        await self._check_local_user(user_id)
        return Profile(user_id, await self._profiles.get_profile(user_id))

    async def get_field(self, user_id: str, key: str) -> Any:
        """One field's value.

        Raises:
            NotFound: no such user, or the field is not set.
            InvalidParam: ``user_id`` or ``key`` is malformed.
        """
        check_key(key)
        if self._remote_user(user_id, True):
            assert self._remote is not None
            fields = await self._remote.query(user_id, key)
            if key not in fields:
                raise NotFound(f"The profile has no {key!r} field")
            return fields[key]
        await self._check_local_user(user_id)
        found, value = await self._profiles.get_field(user_id, key)
        if not found:
            raise NotFound(f"The profile has no {key!r} field")
        return value

    async def set_field(self, requester: Requester, user_id: str, key: str, value: Any) -> None:
        """Set (or, for an empty display name or avatar, remove) a field.

        Raises:
            Forbidden: ``user_id`` is not the requester.
            KeyTooLarge, InvalidParam, BadJson: bad key or value.
            ProfileTooLarge: the profile would exceed 64 KiB.
            NotFound: the user does not exist.
        """
        check_key(key)
        if requester.user_id != user_id:
            raise Forbidden("Cannot change another user's profile")
        stored = _check_value(key, value)
        await self._check_local_user(user_id)
        if stored is None and key in (DISPLAYNAME, AVATAR_URL):
            await self._profiles.delete_field(user_id, key)
        else:
            try:
                await self._profiles.set_field(
                    user_id, key, stored, max_profile_bytes=MAX_PROFILE_BYTES
                )
            except ProfileTooLargeError:
                raise ProfileTooLarge() from None
            except NoSuchUserError:
                raise NotFound("Profile not found") from None
        await self._announce(user_id, key, stored)

    async def delete_field(self, requester: Requester, user_id: str, key: str) -> None:
        """Remove a field (a field that is not set is fine).

        Raises:
            Forbidden: ``user_id`` is not the requester.
            KeyTooLarge, InvalidParam: bad key.
        """
        check_key(key)
        if requester.user_id != user_id:
            raise Forbidden("Cannot change another user's profile")
        await self._check_local_user(user_id)
        if await self._profiles.delete_field(user_id, key):
            await self._announce(user_id, key, None)

    async def _announce(self, user_id: str, key: str, value: Any | None) -> None:
        # Rooms (ProfilePropagator) queue a new m.room.member event with the new
        # displayname/avatar_url for every joined room (spec: Profiles › Events on Change of
        # Profile Information); presence pushes an m.presence update.
        for listener in self._listeners:
            await listener.profile_changed(user_id, key, value)

"""Pushers and the notifications list: what ``/pushers``, ``/pushers/set`` and
``/notifications`` do.

Spec: client-server-api/modules/push.md › Push Notifications (Pushers, Listing Notifications),
``data/api/client-server/pushers.yaml`` and ``notifications.yaml``.

A pusher belongs to the device whose access token set it (a device-less requester, e.g. an
admin path, sets an unowned one): deleting the device deletes its pushers (the storage's
foreign key), which is how "pushers created with a different access token are deleted on
password change" holds. Only ``kind: http`` pushers are accepted (``email`` needs an e-mail
sender this server does not have); ``kind: null`` deletes.

``data.url`` must be an absolute ``http``/``https`` URL whose path is exactly
``/_matrix/push/v1/notify`` (spec: "MUST be an HTTPS URL with a path of
``/_matrix/push/v1/notify``"; plain http is allowed for gateways on a private network, like
Synapse). A URL naming a loopback, private, link-local or otherwise non-public address (or
``localhost``) is refused unless ``push.allow_private_destinations`` is set: otherwise any
user could make this server send requests into its own network. Names are checked again
when the sender resolves them (:mod:`homeserver.services.push_sender`).

The sending itself is in :mod:`homeserver.services.push_sender`; this service tells it when a
pusher appears or goes (:class:`PusherListener`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

from homeserver.clock import Clock
from homeserver.errors import BadJson, Codes, InvalidParam, MatrixError, MissingParam
from homeserver.services.events import client_event
from homeserver.services.requester import Requester
from homeserver.storage.db import ForeignKeyViolation
from homeserver.storage.pushers import PusherRow, PusherStore

__all__ = [
    "PUSH_PATH",
    "PusherListener",
    "PusherService",
    "check_gateway_url",
    "is_public_address",
]

#: The path every HTTP pusher's URL must have (push-gateway-api.md).
PUSH_PATH = "/_matrix/push/v1/notify"
#: Longest accepted value of the string fields (pushkey's own limit is the spec's 512 bytes).
_MAX_FIELD = 512
_MAX_DATA_BYTES = 8192
#: ``GET /notifications``: the default and the largest ``limit``.
DEFAULT_LIMIT = 20
MAX_LIMIT = 100

JsonDict = dict[str, Any]


class PusherListener(Protocol):
    """Told of pushers set and deleted through this service (the push sender)."""

    def pusher_changed(self, pusher: PusherRow) -> None: ...

    def pusher_deleted(self, user_id: str, app_id: str, pushkey: str) -> None: ...


def is_public_address(address: str) -> bool:
    """Whether an IP address is a global unicast one (not loopback, private, link-local,
    multicast, reserved, unspecified, shared or documentation space)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_gateway_url(url: str, *, allow_private: bool) -> str:
    """``url`` if it is a push gateway URL pushers may use; see the module docstring.

    Raises:
        InvalidParam: not an absolute http(s) URL with the notify path, or it names a
            non-public address and those are not allowed.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidParam("'data.url' is not a valid URL") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidParam("'data.url' must be an absolute https:// (or http://) URL")
    if parts.path != PUSH_PATH:
        raise InvalidParam(f"'data.url' must have the path {PUSH_PATH}")
    if parts.username is not None or parts.password is not None or parts.fragment:
        raise InvalidParam("'data.url' must not carry credentials or a fragment")
    if port == 0:
        raise InvalidParam("'data.url' has an invalid port")
    host = parts.hostname.rstrip(".").lower()
    if not allow_private:
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
            literal = True
        except ValueError:
            literal = False
        if (literal and not is_public_address(host)) or (
            host == "localhost" or host.endswith(".localhost")
        ):
            raise InvalidParam("'data.url' names a private or loopback address")
    return url


def _opt_str(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadJson(f"'{key}' must be a string")
    if len(value) > _MAX_FIELD:
        raise InvalidParam(f"'{key}' is too long")
    return value


def _req_str(body: Mapping[str, Any], key: str) -> str:
    value = _opt_str(body, key)
    if value is None:
        raise MissingParam(f"Missing '{key}'")
    return value


def pusher_json(p: PusherRow) -> JsonDict:
    """A pusher as ``GET /pushers`` shows it."""
    out: JsonDict = {
        "app_display_name": p.app_display_name,
        "app_id": p.app_id,
        "data": dict(p.data),
        "device_display_name": p.device_display_name,
        "kind": p.kind,
        "lang": p.lang,
        "pushkey": p.pushkey,
        "enabled": p.enabled,
    }
    if p.profile_tag is not None:
        out["profile_tag"] = p.profile_tag
    if p.device_id is not None:
        out["device_id"] = p.device_id
    return out


def _check_not_guest(requester: Requester) -> None:
    """Guests have no pushers or notifications list (as in Synapse)."""
    if requester.is_guest:
        raise MatrixError(403, Codes.GUEST_ACCESS_FORBIDDEN, "Guest accounts cannot use pushers")


class PusherService:
    """``/pushers``, ``/pushers/set`` and ``/notifications``.

    Args:
        store: pushers and recorded notifications.
        clock: creation times.
        listener: the push sender, told of every change made here.
        read_upto: the user's read position in a room (main timeline) for ``read``.
        allow_private: ``push.allow_private_destinations``.
    """

    def __init__(
        self,
        store: PusherStore,
        clock: Clock,
        listener: PusherListener,
        read_upto: Callable[[str, str], Awaitable[int]],
        *,
        allow_private: bool,
    ) -> None:
        self._store = store
        self._clock = clock
        self._listener = listener
        self._read_upto = read_upto
        self._allow_private = allow_private

    async def pushers(self, requester: Requester) -> list[JsonDict]:
        _check_not_guest(requester)
        return [pusher_json(p) for p in await self._store.pushers_of(requester.user_id)]

    async def set_pusher(self, requester: Requester, body: Mapping[str, Any]) -> None:
        """Create, update (same user, app ID and pushkey) or, with ``kind: null``, delete."""
        _check_not_guest(requester)
        pushkey = _req_str(body, "pushkey")
        app_id = _req_str(body, "app_id")
        if len(pushkey.encode()) > 512:
            raise InvalidParam("'pushkey' must be at most 512 bytes")
        if len(app_id) > 64:
            raise InvalidParam("'app_id' must be at most 64 characters")
        if "kind" not in body:
            raise MissingParam("Missing 'kind'")
        kind = body["kind"]
        if kind is None:
            if await self._store.delete_pusher(requester.user_id, app_id, pushkey):
                self._listener.pusher_deleted(requester.user_id, app_id, pushkey)
            return
        if not isinstance(kind, str):
            raise BadJson("'kind' must be a string or null")
        if kind != "http":
            raise InvalidParam(f"Unsupported pusher kind {kind!r} (only 'http')")
        app_display_name = _req_str(body, "app_display_name")
        device_display_name = _req_str(body, "device_display_name")
        lang = _req_str(body, "lang")
        profile_tag = _opt_str(body, "profile_tag")
        if "data" not in body:
            raise MissingParam("Missing 'data'")
        data = body["data"]
        if not isinstance(data, dict):
            raise BadJson("'data' must be an object")
        if len(repr(data)) > _MAX_DATA_BYTES:
            raise InvalidParam("'data' is too large")
        url = data.get("url")
        if url is None:
            raise MissingParam("'data.url' is required for an http pusher")
        if not isinstance(url, str):
            raise BadJson("'data.url' must be a string")
        check_gateway_url(url, allow_private=self._allow_private)
        fmt = data.get("format")
        if fmt is not None and not isinstance(fmt, str):
            raise BadJson("'data.format' must be a string")
        append = body.get("append", False)
        if not isinstance(append, bool):
            raise BadJson("'append' must be a boolean")
        enabled = body.get("enabled", True)
        if not isinstance(enabled, bool):
            raise BadJson("'enabled' must be a boolean")
        row = PusherRow(
            user_id=requester.user_id,
            app_id=app_id,
            pushkey=pushkey,
            device_id=requester.device_id,
            kind=kind,
            app_display_name=app_display_name,
            device_display_name=device_display_name,
            profile_tag=profile_tag,
            lang=lang,
            data=data,
            enabled=enabled,
            created_ts=self._clock.time_ms(),
        )
        try:
            stored = await self._store.set_pusher(row, append=append)
        except ForeignKeyViolation:  # the device was deleted under us (logout)
            raise MatrixError(401, Codes.UNKNOWN_TOKEN, "The access token was revoked") from None
        self._listener.pusher_changed(stored)

    async def notifications(
        self,
        requester: Requester,
        *,
        from_token: str | None,
        limit: int | None,
        only: str | None,
    ) -> JsonDict:
        """``GET /notifications``: the newest first, ``next_token`` while there may be more."""
        _check_not_guest(requester)
        before: int | None = None
        if from_token is not None:
            try:
                before = int(from_token)
            except ValueError:
                raise InvalidParam("'from' is not a token this server gave out") from None
            if before < 0:
                raise InvalidParam("'from' is not a token this server gave out")
        n = DEFAULT_LIMIT if limit is None else max(1, min(limit, MAX_LIMIT))
        rows = await self._store.notifications_before(
            requester.user_id, before, n, highlights_only=only == "highlight"
        )
        read_cache: dict[str, int] = {}
        out: list[JsonDict] = []
        for notif, stored in rows:
            if stored is None:
                continue
            if notif.room_id not in read_cache:
                read_cache[notif.room_id] = await self._read_upto(requester.user_id, notif.room_id)
            out.append(
                {
                    "actions": list(notif.actions),
                    "event": client_event(stored),
                    "profile_tag": None,
                    "read": notif.stream_ordering <= read_cache[notif.room_id],
                    "room_id": notif.room_id,
                    "ts": notif.ts,
                }
            )
        body: JsonDict = {"notifications": out}
        if len(rows) == n:
            body["next_token"] = str(rows[-1][0].stream_ordering)
        return body

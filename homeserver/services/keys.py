"""E2EE keys: upload, query, claim, cross-signing, signatures, and device-list changes.

Spec: client-server-api/modules/end_to_end_encryption.md (Device keys, One-time and fallback
keys, Cross-signing, Tracking the device list for a user); OpenAPI ``keys.yaml`` and
``cross_signing.yaml``.

The rules live in :mod:`e2ee` (parsing, which key signs what, key-ID rules, device-list
deltas); this service reads and writes through :class:`~homeserver.storage.e2ee_keys.E2eeKeyStore`,
translates :mod:`e2ee.errors` into Matrix errors, and after each commit that other users must
learn of notifies ``DEVICE_LISTS`` for the changed user and everyone sharing a room with them.

Remote users: queries and claims for users of other servers go through :class:`RemoteKeys`
(``services/federation_devices.py`` with federation, :meth:`KeyService.use_remote`); a server
that cannot be asked comes back under ``failures``. Other servers read our users' keys through
:meth:`KeyService.query_for_server` and :meth:`KeyService.claim`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from e2ee.cross_signing import (
    CrossSigningUpload,
    check_cross_signing_upload,
    needs_reauthentication,
    stored_key,
)
from e2ee.device_lists import MembershipChange, device_list_delta
from e2ee.errors import (
    E2eeError,
    InvalidSignature,
    KeyConflict,
    KeyFormatError,
    KeyIdInUse,
    KeyOwnerMismatch,
    MissingMasterKey,
)
from e2ee.models import (
    MASTER,
    SELF_SIGNING,
    USER_SIGNING,
    CrossSigningKey,
    DeviceKeys,
    canonical,
    parse_device_keys,
    parse_fallback_keys,
    parse_one_time_keys,
)
from e2ee.signatures import check_signature_upload
from federation.core.errors import InvalidIdentifier
from federation.core.ids import parse_user_id
from homeserver.errors import BadJson, Forbidden, InvalidParam, MatrixError, MissingParam
from homeserver.services.notifier import Notifier
from homeserver.services.requester import Requester
from homeserver.storage.devices import DeviceStore
from homeserver.storage.e2ee_keys import E2eeKeyStore, KeyUpload, SignatureRow, StoredDeviceKeys
from homeserver.storage.stream_ids import StreamIdGenerator
from homeserver.streams import StreamName, StreamToken

__all__ = [
    "INVALID_SIGNATURE",
    "KeyService",
    "NoRemoteKeys",
    "RemoteKeys",
    "RemoteKeysUnavailable",
    "matrix_error",
]

logger = logging.getLogger(__name__)

#: The spec's error code for a bad signature (not among the common error codes).
INVALID_SIGNATURE = "M_INVALID_SIGNATURE"
#: The one-time key algorithm clients expect a count for even when it is zero.
SIGNED_CURVE25519 = "signed_curve25519"

JsonDict = dict[str, Any]


#: Devices whose key counts are cached (the cache is simply emptied when full).
_COUNTS_CACHE_SIZE = 100_000


class RemoteKeysUnavailable(Exception):
    """A remote server could not be asked for keys."""


class RemoteKeys(Protocol):
    """Asks other servers for their users' keys (``/_matrix/federation/v1/user/keys/*``)."""

    async def query(
        self, server_name: str, device_keys: Mapping[str, Sequence[str]], timeout_ms: int
    ) -> Mapping[str, Any]:
        """The remote ``/user/keys/query`` answer.

        Raises:
            RemoteKeysUnavailable: the server could not be reached or answered badly.
        """
        ...

    async def claim(
        self, server_name: str, one_time_keys: Mapping[str, Mapping[str, str]], timeout_ms: int
    ) -> Mapping[str, Any]:
        """The remote ``/user/keys/claim`` answer.

        Raises:
            RemoteKeysUnavailable: the server could not be reached or answered badly.
        """
        ...


class NoRemoteKeys:
    """The :class:`RemoteKeys` of a server without federation: every remote is unavailable."""

    async def query(
        self, server_name: str, device_keys: Mapping[str, Sequence[str]], timeout_ms: int
    ) -> Mapping[str, Any]:
        raise RemoteKeysUnavailable("federation is not available")

    async def claim(
        self, server_name: str, one_time_keys: Mapping[str, Mapping[str, str]], timeout_ms: int
    ) -> Mapping[str, Any]:
        raise RemoteKeysUnavailable("federation is not available")


def matrix_error(e: E2eeError) -> MatrixError:
    """The Matrix error a client gets for an :mod:`e2ee.errors` error."""
    if isinstance(e, KeyFormatError):
        return BadJson(str(e))
    if isinstance(e, InvalidSignature):
        return MatrixError(400, INVALID_SIGNATURE, str(e))
    if isinstance(e, KeyOwnerMismatch | KeyConflict):
        return InvalidParam(str(e))
    if isinstance(e, MissingMasterKey):
        return MissingParam(str(e))
    if isinstance(e, KeyIdInUse):
        return Forbidden(str(e))
    return BadJson(str(e))


def _unavailable(e: Exception) -> JsonDict:
    return {"status": 503, "message": str(e) or "Remote server unavailable"}


@dataclass
class _Lookup:
    """A :class:`e2ee.signatures.KeyLookup` over keys read from the store beforehand."""

    devices: dict[tuple[str, str], DeviceKeys]
    cross_signing: dict[tuple[str, str], CrossSigningKey]

    def device_keys(self, user_id: str, device_id: str) -> DeviceKeys | None:
        return self.devices.get((user_id, device_id))

    def cross_signing_key(self, user_id: str, usage: str) -> CrossSigningKey | None:
        return self.cross_signing.get((user_id, usage))


def _with_signatures(key: Mapping[str, Any], sigs: Sequence[SignatureRow]) -> dict[str, Any]:
    """``key`` with the stored signatures ``sigs`` merged into its ``signatures``."""
    out = dict(key)
    if not sigs:
        return out
    merged = {signer: dict(by_key) for signer, by_key in out.get("signatures", {}).items()}
    for row in sigs:
        merged.setdefault(row.signer_user_id, {})[row.signer_key_id] = row.signature
    out["signatures"] = merged
    return out


class KeyService:
    """Device, one-time, fallback and cross-signing keys.

    Args:
        store: the key store.
        devices: the device store (device IDs, for the cross-signing key-ID rule).
        streams: the current stream token (``/keys/changes`` without ``to``).
        notifier: woken with DEVICE_LISTS positions.
        server_name: this server's name (which users are local).
        remote: asks other servers for keys.
    """

    def __init__(
        self,
        store: E2eeKeyStore,
        devices: DeviceStore,
        streams: StreamIdGenerator,
        notifier: Notifier,
        *,
        server_name: str,
        remote: RemoteKeys | None = None,
    ) -> None:
        self._store = store
        self._devices = devices
        self._streams = streams
        self._notifier = notifier
        self._server_name = server_name
        self._remote: RemoteKeys = remote or NoRemoteKeys()
        self._counts_cache: dict[tuple[str, str], tuple[dict[str, int], list[str]]] = {}
        self._counts_version: dict[tuple[str, str], int] = {}
        self._change_listeners: list[Callable[[str], None]] = []

    def use_remote(self, remote: RemoteKeys) -> None:
        """Ask other servers for their users' keys through ``remote`` (federation)."""
        self._remote = remote

    def add_change_listener(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(user_id)`` after each committed change of a user's keys that other
        users must learn of (federation sends it on)."""
        self._change_listeners.append(listener)

    # --- helpers --------------------------------------------------------------------------------

    def _server_of(self, user_id: str) -> str:
        try:
            return parse_user_id(user_id).server_name
        except InvalidIdentifier:
            raise InvalidParam(f"{user_id!r} is not a valid user ID") from None

    async def _notify_device_lists(self, position: int | None, *user_ids: str) -> None:
        if position is None:
            return
        users: set[str] = set(user_ids)
        for user_id in user_ids:
            users |= await self._store.users_sharing_room(user_id)
        self._notifier.notify(StreamName.DEVICE_LISTS, position, user_ids=sorted(users))
        for user_id in user_ids:
            for listener in self._change_listeners:
                listener(user_id)

    # --- /keys/upload ---------------------------------------------------------------------------

    async def upload(self, requester: Requester, body: Mapping[str, Any]) -> dict[str, int]:
        """Store the device keys, one-time keys and fallback keys of the requester's device.

        Returns:
            ``one_time_key_counts`` after the upload (``signed_curve25519`` always present).

        Raises:
            MatrixError: ``M_BAD_JSON`` (malformed), ``M_INVALID_PARAM`` (keys of another
                user or device, or a one-time key ID re-used with other content).

        The device's self-signature is not checked: the spec asks the *clients* to verify it
        ("Clients MUST verify the signature... before trusting the keys") and Synapse stores
        device keys unverified; SyTest uploads placeholder keys and signatures.
        """
        user_id, device_id = requester.user_id, _device_of(requester)
        try:
            device_keys_json = None
            if body.get("device_keys") is not None:
                device = parse_device_keys(
                    body["device_keys"], user_id=user_id, device_id=device_id
                )
                device_keys_json = canonical(device.json, "device_keys").decode()
            otks = parse_one_time_keys(body.get("one_time_keys") or {})
            fallbacks = parse_fallback_keys(body.get("fallback_keys") or {})
            self._key_counts_changed(user_id, device_id)
            outcome = await self._store.upload(
                user_id,
                device_id,
                device_keys_json=device_keys_json,
                one_time_keys=[
                    KeyUpload(k.algorithm, k.key_id, k.encoded().decode()) for k in otks
                ],
                fallback_keys=[
                    KeyUpload(k.algorithm, k.key_id, k.encoded().decode()) for k in fallbacks
                ],
            )
        except E2eeError as e:
            raise matrix_error(e) from None
        self._key_counts_changed(user_id, device_id)
        await self._notify_device_lists(outcome.device_list_position, user_id)
        return {SIGNED_CURVE25519: 0, **outcome.one_time_key_counts}

    # Every /sync response carries the device's key counts, so they are cached per device and
    # dropped when an upload or a claim changes them. A reader only stores what it read if no
    # change happened meanwhile (the version check), so a read racing a write never leaves a
    # stale entry behind.

    def devices_deleted(self, user_id: str, device_ids: Sequence[str]) -> None:
        """The devices and their keys are gone (a later device may reuse an ID)."""
        for device_id in device_ids:
            self._key_counts_changed(user_id, device_id)

    def _key_counts_changed(self, user_id: str, device_id: str) -> None:
        key = (user_id, device_id)
        self._counts_version[key] = self._counts_version.get(key, 0) + 1
        self._counts_cache.pop(key, None)

    async def _key_counts(self, user_id: str, device_id: str) -> tuple[dict[str, int], list[str]]:
        key = (user_id, device_id)
        cached = self._counts_cache.get(key)
        if cached is not None:
            return cached
        version = self._counts_version.get(key, 0)
        counts = {SIGNED_CURVE25519: 0, **await self._store.one_time_key_counts(user_id, device_id)}
        fallbacks = await self._store.unused_fallback_key_types(user_id, device_id)
        if self._counts_version.get(key, 0) == version:
            if len(self._counts_cache) >= _COUNTS_CACHE_SIZE:
                self._counts_cache.clear()
            self._counts_cache[key] = (counts, fallbacks)
        return counts, fallbacks

    async def one_time_key_counts(self, user_id: str, device_id: str) -> dict[str, int]:
        """Unclaimed one-time keys per algorithm (``signed_curve25519`` always present)."""
        return dict((await self._key_counts(user_id, device_id))[0])

    async def unused_fallback_key_types(self, user_id: str, device_id: str) -> list[str]:
        """Algorithms with a fallback key not handed out yet."""
        return list((await self._key_counts(user_id, device_id))[1])

    # --- /keys/query ----------------------------------------------------------------------------

    async def query(
        self, requester: Requester, wanted: Mapping[str, Sequence[str]], timeout_ms: int = 10_000
    ) -> JsonDict:
        """Device keys and cross-signing keys of users (an empty device list: all devices).

        User-signing keys are only returned for the requester, and signatures made with a
        user-signing key only to their signer (end_to_end_encryption.md › Cross-signing).
        """
        local: dict[str, Sequence[str] | None] = {}
        remote: dict[str, dict[str, Sequence[str]]] = {}
        for user_id, device_ids in wanted.items():
            server = self._server_of(user_id)
            if server == self._server_name:
                local[user_id] = list(device_ids) or None
            else:
                remote.setdefault(server, {})[user_id] = device_ids
        out: JsonDict = {
            "device_keys": {},
            "failures": {},
            "master_keys": {},
            "self_signing_keys": {},
            "user_signing_keys": {},
        }
        if local:
            await self._query_local(requester.user_id, local, out)
        for server, users in remote.items():
            try:
                answer = await self._remote.query(server, users, timeout_ms)
            except RemoteKeysUnavailable as e:
                out["failures"][server] = _unavailable(e)
                continue
            for field in ("device_keys", "master_keys", "self_signing_keys"):
                value = answer.get(field)
                if isinstance(value, Mapping):
                    out[field].update(value)
        return out

    async def query_for_server(self, wanted: Mapping[str, Sequence[str]]) -> JsonDict:
        """Our users' device, master and self-signing keys for another server (users of other
        servers are left out; user-signing keys and their signatures are only for their owner)."""
        local = {
            u: list(d) or None for u, d in wanted.items() if _is_local(u, self._server_name)
        }
        out: JsonDict = {
            "device_keys": {},
            "master_keys": {},
            "self_signing_keys": {},
            "user_signing_keys": {},
        }
        if local:
            await self._query_local("", local, out)
        del out["user_signing_keys"]
        return out

    async def _query_local(
        self, requester: str, wanted: Mapping[str, Sequence[str] | None], out: JsonDict
    ) -> None:
        found = await self._store.device_keys(wanted)
        csks = await self._store.cross_signing_keys(wanted)
        sigs = await self._store.signatures_on(wanted)
        for user_id, by_device in found.items():
            rows = sigs.get(user_id, [])
            user_out: JsonDict = {}
            for device_id, stored in by_device.items():
                on_device = [r for r in rows if r.target_key_id == device_id]
                user_out[device_id] = _device_json(stored, on_device)
            out["device_keys"][user_id] = user_out
        for user_id, keys in csks.items():
            rows = sigs.get(user_id, [])
            master = keys.get(MASTER)
            if master is not None:
                public = stored_key(master, user_id, MASTER).public_key
                # self-signatures (device → master) are public; others' user-signing
                # signatures are only for their signer
                visible = (user_id, requester)
                on_master = [
                    r for r in rows if r.target_key_id == public and r.signer_user_id in visible
                ]
                out["master_keys"][user_id] = _with_signatures(master, on_master)
            if SELF_SIGNING in keys:
                out["self_signing_keys"][user_id] = keys[SELF_SIGNING]
            if USER_SIGNING in keys and user_id == requester:
                out["user_signing_keys"][user_id] = keys[USER_SIGNING]

    # --- /keys/claim ----------------------------------------------------------------------------

    async def claim(
        self, wanted: Mapping[str, Mapping[str, str]], timeout_ms: int = 10_000
    ) -> JsonDict:
        """Claim one key per device: a one-time key, else the device's fallback key.

        Each one-time key is handed out at most once, also under concurrent claims
        (see :mod:`homeserver.storage.e2ee_keys`).
        """
        local: list[tuple[str, str, str]] = []
        remote: dict[str, dict[str, Mapping[str, str]]] = {}
        for user_id, by_device in wanted.items():
            server = self._server_of(user_id)
            if server == self._server_name:
                local.extend((user_id, d, alg) for d, alg in by_device.items())
            else:
                remote.setdefault(server, {})[user_id] = by_device
        out: JsonDict = {"one_time_keys": {}, "failures": {}}
        for user_id, device_id, _alg in local:
            self._key_counts_changed(user_id, device_id)
        claimed = await self._store.claim(local) if local else []
        for user_id, device_id, _alg in local:
            self._key_counts_changed(user_id, device_id)
        for key in claimed:
            out["one_time_keys"].setdefault(key.user_id, {}).setdefault(key.device_id, {})[
                key.full_key_id
            ] = key.value
        for server, users in remote.items():
            try:
                answer = await self._remote.claim(server, users, timeout_ms)
            except RemoteKeysUnavailable as e:
                out["failures"][server] = _unavailable(e)
                continue
            keys = answer.get("one_time_keys")
            if isinstance(keys, Mapping):
                out["one_time_keys"].update(keys)
        return out

    # --- cross-signing --------------------------------------------------------------------------

    async def _cross_signing_keys_of(self, user_id: str) -> dict[str, CrossSigningKey]:
        keys = (await self._store.cross_signing_keys([user_id])).get(user_id, {})
        return {usage: stored_key(obj, user_id, usage) for usage, obj in keys.items()}

    async def cross_signing_upload_needs_auth(
        self, requester: Requester, body: Mapping[str, Any]
    ) -> bool:
        """Whether ``/keys/device_signing/upload`` with ``body`` needs user-interactive auth.

        Raises:
            MatrixError: the keys are malformed (checked before any authentication).
        """
        try:
            upload = CrossSigningUpload.parse(body, requester.user_id)
        except E2eeError as e:
            raise matrix_error(e) from None
        return needs_reauthentication(upload, await self._cross_signing_keys_of(requester.user_id))

    async def upload_cross_signing_keys(
        self, requester: Requester, body: Mapping[str, Any]
    ) -> None:
        """Store the requester's master, self-signing and user-signing keys.

        Raises:
            MatrixError: ``M_BAD_JSON``, ``M_INVALID_PARAM`` (another user's key),
                ``M_INVALID_SIGNATURE`` (not signed by the master key), ``M_MISSING_PARAM``
                (no master key), ``403 M_FORBIDDEN`` (a public key is a device ID).
        """
        user_id = requester.user_id
        try:
            upload = CrossSigningUpload.parse(body, user_id)
            existing = await self._cross_signing_keys_of(user_id)
            device_ids = [d.device_id for d in await self._devices.list_devices(user_id)]
            keys = check_cross_signing_upload(upload, existing, device_ids)
        except E2eeError as e:
            raise matrix_error(e) from None
        if not keys:
            return
        position = await self._store.set_cross_signing_keys(
            user_id,
            [(k.usage, k.public_key, canonical(k.json, k.usage).decode()) for k in keys],
        )
        if all(k.usage == USER_SIGNING for k in keys):
            # Only the owner sees a user-signing key: no one else has anything to re-fetch.
            if position is not None:
                self._notifier.notify(StreamName.DEVICE_LISTS, position, user_ids=[user_id])
            return
        await self._notify_device_lists(position, user_id)

    async def upload_signatures(self, requester: Requester, body: Mapping[str, Any]) -> JsonDict:
        """Check and store cross-signing signatures; return the spec's ``failures``."""
        uploader = requester.user_id
        targets = [u for u in body if isinstance(u, str)]
        local_targets = [u for u in targets if _is_local(u, self._server_name)]
        lookup = await self._lookup(uploader, local_targets)
        result = check_signature_upload(uploader, body, lookup)
        failures: JsonDict = {
            user: {key: f.to_json() for key, f in by_key.items()}
            for user, by_key in result.failures.items()
        }
        if result.signatures:
            position = await self._store.add_signatures(
                [
                    (
                        s.target_user_id,
                        s.target_key_id,
                        s.signer_user_id,
                        s.signer_key_id,
                        s.signature,
                    )
                    for s in result.signatures
                ],
                [(s.target_user_id, s.target_key_id) for s in result.signatures],
            )
            changed = sorted({s.target_user_id for s in result.signatures})
            await self._notify_device_lists(position, uploader, *changed)
        return {"failures": failures}

    async def _lookup(self, uploader: str, targets: Sequence[str]) -> _Lookup:
        users = list(dict.fromkeys([uploader, *targets]))
        sigs = await self._store.signatures_on([uploader])
        devices: dict[tuple[str, str], DeviceKeys] = {}
        for device_id, stored in (await self._store.device_keys({uploader: None}))[
            uploader
        ].items():
            merged = _with_signatures(
                stored.keys,
                [r for r in sigs.get(uploader, []) if r.target_key_id == device_id],
            )
            try:
                devices[(uploader, device_id)] = parse_device_keys(
                    merged, user_id=uploader, device_id=device_id
                )
            except E2eeError:
                logger.warning("stored device keys of %s %s do not parse", uploader, device_id)
        cross: dict[tuple[str, str], CrossSigningKey] = {}
        all_sigs = await self._store.signatures_on(users)
        for user_id, keys in (await self._store.cross_signing_keys(users)).items():
            for usage, obj in keys.items():
                key = stored_key(obj, user_id, usage)
                if usage == MASTER:
                    rows = [
                        r for r in all_sigs.get(user_id, []) if r.target_key_id == key.public_key
                    ]
                    key = stored_key(_with_signatures(obj, rows), user_id, usage)
                cross[(user_id, usage)] = key
        return _Lookup(devices, cross)

    # --- device lists ---------------------------------------------------------------------------

    async def current_token(self) -> StreamToken:
        """A token at the newest committed position of every stream."""
        return await self._streams.current_token()

    async def device_list_changes(
        self, user_id: str, from_token: StreamToken, to_token: StreamToken
    ) -> tuple[set[str], set[str]]:
        """``(changed, left)`` between two tokens (``/sync``'s ``device_lists``,
        ``/keys/changes``)."""
        inputs = await self._store.device_list_inputs(
            user_id,
            device_lists=(
                from_token.get(StreamName.DEVICE_LISTS),
                to_token.get(StreamName.DEVICE_LISTS),
            ),
            events_range=(from_token.get(StreamName.EVENTS), to_token.get(StreamName.EVENTS)),
        )
        return device_list_delta(
            user_id,
            devices_changed=inputs.devices_changed,
            membership_changes=[MembershipChange(*c) for c in inputs.membership_changes],
            rooms_now=inputs.rooms_now,
            members_now=inputs.members_now,
            sharing_now=inputs.sharing_now,
        )


def _device_of(requester: Requester) -> str:
    if requester.device_id is None:
        raise InvalidParam("This access token has no device; keys belong to a device")
    return requester.device_id


def _is_local(user_id: str, server_name: str) -> bool:
    try:
        return parse_user_id(user_id).server_name == server_name
    except InvalidIdentifier:
        return False


def _device_json(stored: StoredDeviceKeys, sigs: Sequence[SignatureRow]) -> JsonDict:
    """Device keys as ``/keys/query`` returns them: as uploaded, plus the stored cross-signing
    signatures and ``unsigned.device_display_name``. ``unsigned`` is always there, empty when
    there is nothing to say (as Synapse; SyTest expects it)."""
    out = _with_signatures(stored.keys, sigs)
    unsigned = dict(out.get("unsigned") or {})
    if stored.display_name is not None:
        unsigned["device_display_name"] = stored.display_name
    out["unsigned"] = unsigned
    return out

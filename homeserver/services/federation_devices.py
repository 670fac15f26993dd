"""Device lists and E2EE keys across servers.

Spec: server-server-api.md › Device Management (``GET /user/devices/{userId}``,
``m.device_list_update``, ``m.signing_key_update``) and › End-to-End Encryption
(``POST /user/keys/query``, ``POST /user/keys/claim``).

- Served: our users' devices and keys to other servers (:meth:`FederationDevices.user_devices`,
  :meth:`FederationDevices.query`, :meth:`FederationDevices.claim`); other servers' users are
  never answered for.
- Asked: a client's ``/keys/query`` and ``/keys/claim`` for other servers' users go through
  :class:`FederatedKeys` (the key service's :class:`~homeserver.services.keys.RemoteKeys`),
  bounded by the client's ``timeout``: a server that is down or slow lands under ``failures``,
  never a 500. Device lists of users who share a room with one of ours are held
  (``remote_device_lists``, ``remote_devices``): fetched whole with ``GET /user/devices`` the
  first time, then kept up to date by their server's ``m.device_list_update``; a query is
  answered from them (also while their server is down). Other users' keys are asked with
  ``/user/keys/query`` each time. Claims always go to the user's server.
- Out: every change of a local user's devices or keys (the ``device_list_changes`` rows, with
  their DEVICE_LISTS positions as ``stream_id`` and the user's previous change as ``prev_id``)
  goes to each server sharing a room with the user: ``m.signing_key_update`` for a change of
  their master or self-signing key, ``m.device_list_update`` otherwise (``deleted`` once the
  device is gone). The changes of the user-signing key are for their owner only and stay here.
- In: an update from the user's own server, for a user who shares a room with one of ours, is
  applied to the held list when its ``prev_id`` is the held ``stream_id`` (Synapse's rule);
  any other ``prev_id``, or no held list, means an update went missing: the whole list is
  fetched again (or, if that fails, dropped, so the next query asks). A signing-key update drops
  the held list (the next query fetches it with the new keys). Either is then recorded as a
  change of that user on the DEVICE_LISTS stream: the local users sharing a room
  with them see them in ``device_lists.changed`` (``/sync``, ``/keys/changes``) and query again.

State: :meth:`FederationDevices.run` keeps, in memory, the DEVICE_LISTS position sent up to; it
starts at the current position, so changes made while no sender ran are not sent (the next
change's ``prev_id`` shows the gap to the other server). One process runs it, the one that runs
the federation sender. It reads the table when woken (the device store's announcer and the key
service call :meth:`FederationDevices.wake` after their commits), and every ``poll_interval``
seconds for writers that do not.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import trio

from federation.client import FederationClient
from federation.core.errors import InvalidIdentifier
from federation.core.ids import parse_user_id
from homeserver.errors import InvalidParam
from homeserver.services.federation_edus import EduSender
from homeserver.services.keys import KeyService, RemoteKeysUnavailable
from homeserver.services.notifier import Notifier
from homeserver.storage.devices import DeviceStore
from homeserver.storage.e2ee_keys import OWN_ONLY_CHANGE_PREFIX
from homeserver.storage.federation_devices import (
    DeviceChange,
    FederationDeviceStore,
    RemoteDevice,
    RemoteDeviceList,
)
from homeserver.streams import StreamName

__all__ = ["FederatedKeys", "FederationDevices"]

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]
_BATCH = 100


def _server_of(user_id: object) -> str | None:
    if not isinstance(user_id, str):
        return None
    try:
        return parse_user_id(user_id).server_name
    except InvalidIdentifier:
        return None


def _own_users(server: str, value: object) -> dict[str, Any]:
    """The entries of a ``{user_id: ...}`` answer that belong to ``server``'s users."""
    if not isinstance(value, Mapping):
        return {}
    return {u: v for u, v in value.items() if _server_of(u) == server}


def _held_keys(held: RemoteDeviceList, wanted: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for device in held.devices:
        if device.keys is None or (wanted and device.device_id not in wanted):
            continue
        keys = dict(device.keys)
        if device.display_name is not None:
            keys["unsigned"] = {
                **(keys.get("unsigned") or {}),
                "device_display_name": device.display_name,
            }
        out[device.device_id] = keys
    return out


class FederatedKeys:
    """Other servers' users' keys: the held device lists, else the federation client
    (implements ``RemoteKeys``; see the module docstring).

    Args:
        client: the federation client.
        store: the held device lists.
        users_sharing_room: the users in a room with a user.
        server_name: ours.
    """

    def __init__(
        self,
        client: FederationClient,
        store: FederationDeviceStore,
        users_sharing_room: Callable[[str], Awaitable[set[str]]],
        *,
        server_name: str,
    ) -> None:
        self._client = client
        self._store = store
        self._sharing = users_sharing_room
        self._server_name = server_name

    async def tracked(self, user_id: str) -> bool:
        """Whether one of our users shares a room with ``user_id`` (their list is held)."""
        return any(_server_of(u) == self._server_name for u in await self._sharing(user_id))

    async def resync(self, server_name: str, user_id: str) -> RemoteDeviceList:
        """Fetch and hold the whole device list of ``user_id`` (``GET /user/devices``).

        Raises:
            Exception: whatever the request raised; the held list is then dropped.
        """
        try:
            answer = await self._client.user_devices(server_name, user_id)
            if answer.user_id != user_id:
                raise RemoteKeysUnavailable(f"{server_name} answered for {answer.user_id}")
            devices = []
            for device in answer.devices:
                device_id, keys = device.get("device_id"), device.get("keys")
                name = device.get("device_display_name")
                if isinstance(device_id, str):
                    devices.append(
                        RemoteDevice(
                            device_id,
                            name if isinstance(name, str) else None,
                            keys if isinstance(keys, Mapping) else None,
                        )
                    )
            await self._store.replace_remote_list(
                user_id, answer.stream_id, devices, answer.master_key, answer.self_signing_key
            )
        except BaseException:
            with trio.CancelScope(shield=True):
                await self._store.forget_remote_list(user_id)
            raise
        held = await self._store.remote_list(user_id)
        assert held is not None
        return held

    async def query(
        self, server_name: str, device_keys: Mapping[str, Sequence[str]], timeout_ms: int
    ) -> Mapping[str, Any]:
        out: dict[str, dict[str, Any]] = {
            "device_keys": {},
            "master_keys": {},
            "self_signing_keys": {},
        }
        with trio.move_on_after(max(timeout_ms, 1) / 1000):
            try:
                ask: dict[str, Sequence[str]] = {}
                for user_id, wanted in device_keys.items():
                    held = await self._store.remote_list(user_id)
                    if held is None and await self.tracked(user_id):
                        held = await self.resync(server_name, user_id)
                    if held is None:
                        ask[user_id] = wanted
                        continue
                    out["device_keys"][user_id] = _held_keys(held, wanted)
                    if held.master_key is not None:
                        out["master_keys"][user_id] = held.master_key
                    if held.self_signing_key is not None:
                        out["self_signing_keys"][user_id] = held.self_signing_key
                if ask:
                    answer = await self._client.query_keys(server_name, ask)
                    out["device_keys"].update(_own_users(server_name, answer.device_keys))
                    out["master_keys"].update(_own_users(server_name, answer.master_keys))
                    out["self_signing_keys"].update(
                        _own_users(server_name, answer.self_signing_keys)
                    )
            except Exception as e:  # any failure of theirs is a failure entry, never ours
                raise RemoteKeysUnavailable(f"{type(e).__name__}: {e}") from None
            return out
        raise RemoteKeysUnavailable("timed out")

    async def claim(
        self, server_name: str, one_time_keys: Mapping[str, Mapping[str, str]], timeout_ms: int
    ) -> Mapping[str, Any]:
        with trio.move_on_after(max(timeout_ms, 1) / 1000):
            try:
                answer = await self._client.claim_keys(server_name, one_time_keys)
            except Exception as e:
                raise RemoteKeysUnavailable(f"{type(e).__name__}: {e}") from None
            return {"one_time_keys": _own_users(server_name, answer.one_time_keys)}
        raise RemoteKeysUnavailable("timed out")


def _public_keys(key: object) -> set[str]:
    if not isinstance(key, Mapping) or not isinstance(key.get("keys"), Mapping):
        return set()
    return {str(v) for v in key["keys"].values()}


class FederationDevices:
    """Device lists and keys for and from other servers (see the module docstring).

    Args:
        keys: our users' keys.
        devices: our users' devices.
        store: the device-list changes.
        users_sharing_room: the users in a room with a user.
        sender: queues outbound EDUs.
        notifier: woken for local users when another server's user changed.
        remote: other servers' keys and the held device lists.
        server_name: ours.
        poll_interval: seconds between reads of the changes without a wake-up.
    """

    def __init__(
        self,
        keys: KeyService,
        devices: DeviceStore,
        store: FederationDeviceStore,
        users_sharing_room: Callable[[str], Awaitable[set[str]]],
        sender: EduSender,
        notifier: Notifier,
        remote: FederatedKeys,
        *,
        server_name: str,
        poll_interval: float = 1.0,
    ) -> None:
        self._keys = keys
        self._devices = devices
        self._store = store
        self._sharing = users_sharing_room
        self._sender = sender
        self._notifier = notifier
        self._remote = remote
        self._server_name = server_name
        self._poll_interval = poll_interval
        self._wakeup = trio.Event()

    def register(self, registry: Any) -> None:
        """Register the inbound handlers with the EDU registry (``EduRegistry``)."""
        registry.register("m.device_list_update", self.on_device_list_update)
        registry.register("m.signing_key_update", self.on_signing_key_update)

    def _local(self, user_id: str) -> bool:
        return _server_of(user_id) == self._server_name

    # --- served ----------------------------------------------------------------------------------

    async def user_devices(self, user_id: str) -> JsonDict:
        """``GET /user/devices/{userId}`` for one of our users.

        Raises:
            InvalidParam: not one of our users.
        """
        if not self._local(user_id):
            raise InvalidParam("The user is not hosted on this server")
        found = await self._keys.query_for_server({user_id: []})
        device_keys = found["device_keys"].get(user_id, {})
        devices: list[JsonDict] = []
        for row in await self._devices.list_devices(user_id):
            device: JsonDict = {"device_id": row.device_id}
            if row.device_id in device_keys:
                device["keys"] = device_keys[row.device_id]
            devices.append(device)
        out: JsonDict = {
            "user_id": user_id,
            "stream_id": await self._store.latest_change(user_id),
            "devices": devices,
        }
        if user_id in found["master_keys"]:
            out["master_key"] = found["master_keys"][user_id]
        if user_id in found["self_signing_keys"]:
            out["self_signing_key"] = found["self_signing_keys"][user_id]
        return out

    async def query(self, wanted: Mapping[str, Sequence[str]]) -> JsonDict:
        """``POST /user/keys/query``: our users' keys (others are left out)."""
        return await self._keys.query_for_server(wanted)

    async def claim(self, wanted: Mapping[str, Mapping[str, str]]) -> JsonDict:
        """``POST /user/keys/claim``: one key per device of our users (others are left out)."""
        local = {u: d for u, d in wanted.items() if self._local(u)}
        claimed = await self._keys.claim(local) if local else {"one_time_keys": {}}
        return {"one_time_keys": claimed["one_time_keys"]}

    # --- out -------------------------------------------------------------------------------------

    def wake(self, user_id: str = "") -> None:
        """Read the changes now (a change of ``user_id`` was just committed)."""
        self._wakeup.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Send our users' device-list changes to the servers sharing their rooms, forever."""
        position = await self._store.position()
        task_status.started()
        while True:
            try:
                changes = await self._store.changes_after(position, _BATCH)
                for change in changes:
                    if self._local(change.user_id):
                        await self._announce(change)
                    position = change.stream_id
            except Exception:
                logger.exception("device-list updates after %d not sent; retrying", position)
                changes = []
            if len(changes) < _BATCH:
                with trio.move_on_after(self._poll_interval if self._poll_interval else math.inf):
                    await self._wakeup.wait()
                self._wakeup = trio.Event()

    async def _announce(self, change: DeviceChange) -> None:
        if change.device_id.startswith(OWN_ONLY_CHANGE_PREFIX):
            return
        user_id = change.user_id
        servers = {_server_of(u) for u in await self._sharing(user_id)} - {self._server_name, None}
        if not servers:
            return
        found = await self._keys.query_for_server({user_id: []})
        master = found["master_keys"].get(user_id)
        self_signing = found["self_signing_keys"].get(user_id)
        edu_type: str
        if change.device_id in _public_keys(master) | _public_keys(self_signing):
            edu_type = "m.signing_key_update"
            content: JsonDict = {"user_id": user_id}
            if master is not None:
                content["master_key"] = master
            if self_signing is not None:
                content["self_signing_key"] = self_signing
        else:
            edu_type = "m.device_list_update"
            previous = await self._store.previous_change(user_id, change.stream_id)
            content = {
                "user_id": user_id,
                "device_id": change.device_id,
                "stream_id": change.stream_id,
                "prev_id": [] if previous is None else [previous],
            }
            keys = found["device_keys"].get(user_id, {}).get(change.device_id)
            if keys is not None:
                content["keys"] = keys
            elif change.device_id not in {
                d.device_id for d in await self._devices.list_devices(user_id)
            }:
                content["deleted"] = True
        for server in sorted(s for s in servers if s is not None):
            self._sender.send_edu(server, edu_type, content)

    # --- in --------------------------------------------------------------------------------------

    async def on_device_list_update(self, origin: str, content: Mapping[str, Any]) -> None:
        """``m.device_list_update`` from ``origin``: the held list is brought up to date, then
        the local users sharing a room are told."""
        user_id, device_id = content.get("user_id"), content.get("device_id")
        if not isinstance(device_id, str) or not device_id:
            logger.info("malformed m.device_list_update from %s dropped", origin)
            return
        local = await self._accept(origin, user_id, "m.device_list_update")
        if not local:
            return
        assert isinstance(user_id, str)
        if await self._apply(origin, user_id, device_id, content):
            await self._announce_remote(user_id, device_id, local)

    async def _apply(
        self, origin: str, user_id: str, device_id: str, content: Mapping[str, Any]
    ) -> bool:
        """Apply an update to the held list or fetch it again; False: already applied."""
        held = await self._store.remote_list(user_id)
        stream_id, prev_ids = content.get("stream_id"), content.get("prev_id") or []
        if held is not None and isinstance(stream_id, int) and isinstance(prev_ids, list):
            if stream_id <= held.stream_id:
                return False
            if all(p == held.stream_id for p in prev_ids):
                keys, name = content.get("keys"), content.get("device_display_name")
                device = RemoteDevice(
                    device_id,
                    name if isinstance(name, str) else None,
                    keys if isinstance(keys, Mapping) else None,
                )
                deleted = content.get("deleted") is True
                if await self._store.update_remote_device(
                    user_id, held.stream_id, stream_id, device, deleted
                ):
                    return True
        try:
            with trio.fail_after(30):
                await self._remote.resync(origin, user_id)
        except Exception as e:
            logger.info("device list of %s not fetched (%s): dropped", user_id, e)
        return True

    async def on_signing_key_update(self, origin: str, content: Mapping[str, Any]) -> None:
        """``m.signing_key_update`` from ``origin``: the held list is dropped (the next query
        fetches it with the new keys), then the local users sharing a room are told."""
        keys = sorted(
            _public_keys(content.get("master_key")) | _public_keys(content.get("self_signing_key"))
        )
        if not keys:
            logger.info("m.signing_key_update from %s without keys dropped", origin)
            return
        user_id = content.get("user_id")
        local = await self._accept(origin, user_id, "m.signing_key_update")
        if local:
            assert isinstance(user_id, str)
            await self._store.forget_remote_list(user_id)
            await self._announce_remote(user_id, keys[0], local)

    async def _accept(self, origin: str, user_id: object, edu_type: str) -> set[str]:
        """The local users sharing a room with ``user_id``; empty when the update is not
        taken (not the origin's user, or nobody here shares a room with them)."""
        if _server_of(user_id) != origin or origin == self._server_name:
            logger.info("%s from %s for %r dropped: not its user", edu_type, origin, user_id)
            return set()
        assert isinstance(user_id, str)
        return {u for u in await self._sharing(user_id) if self._local(u)}

    async def _announce_remote(self, user_id: str, device_id: str, local: set[str]) -> None:
        position = await self._store.record_remote_change(user_id, device_id)
        self._notifier.notify(StreamName.DEVICE_LISTS, position, user_ids=sorted(local))

"""In-memory fakes of the Protocols that pure code receives its I/O through.

Each section belongs to one Protocol; add new fakes in their own section.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet

from federation.core.events import Event

# =====================================================================================
# State resolution: federation.core.stateres.protocol.StateResStore
# =====================================================================================


class FakeStateResStore:
    """An in-memory :class:`~federation.core.stateres.protocol.StateResStore`.

    Args:
        events: the room's events.
        rejected: IDs of the events this server rejected.
    """

    def __init__(self, events: Iterable[Event] = (), rejected: Iterable[str] = ()) -> None:
        self.events: dict[str, Event] = {}
        self.rejected: set[str] = set(rejected)
        #: Every call, as (method name, number of IDs asked about): lets tests check batching.
        self.calls: list[tuple[str, int]] = []
        self._auth_ids: dict[str, list[str]] = {}
        for event in events:
            self.add(event)

    def add(self, event: Event, *, rejected: bool = False) -> None:
        """Add an event (marking it rejected if asked)."""
        self.events[event.event_id] = event
        if rejected:
            self.rejected.add(event.event_id)

    def auth_event_ids(self, event: Event) -> list[str]:
        """The event's auth events, with the create event implied from the room ID in v12."""
        cached = self._auth_ids.get(event.event_id)
        if cached is not None:
            return cached
        ids = list(event.auth_event_ids)
        if not event.room_version.create_event_in_auth_events and event.type != "m.room.create":
            create_id = "$" + event.room_id[1:]
            if create_id not in ids:
                ids.append(create_id)
        self._auth_ids[event.event_id] = ids
        return ids

    def get_events(self, event_ids: Collection[str]) -> Mapping[str, Event]:
        self.calls.append(("get_events", len(event_ids)))
        return {eid: self.events[eid] for eid in event_ids if eid in self.events}

    def get_rejected(self, event_ids: Collection[str]) -> AbstractSet[str]:
        self.calls.append(("get_rejected", len(event_ids)))
        return {eid for eid in event_ids if eid in self.rejected}

    def get_auth_chain(self, event_ids: Collection[str]) -> AbstractSet[str]:
        self.calls.append(("get_auth_chain", len(event_ids)))
        chain: set[str] = set()
        todo = [
            aid
            for eid in event_ids
            if (ev := self.events.get(eid)) is not None
            for aid in self.auth_event_ids(ev)
        ]
        while todo:
            eid = todo.pop()
            if eid in chain:
                continue
            chain.add(eid)
            event = self.events.get(eid)
            if event is not None:
                todo.extend(a for a in self.auth_event_ids(event) if a not in chain)
        return chain


class FakeStateResStoreWithDifference(FakeStateResStore):
    """A fake that also answers ``get_auth_chain_difference`` (an ``AuthChainDifferenceStore``),
    computed naively so it checks the optimised path in ``stateres.v2``."""

    def get_auth_chain_difference(self, state_sets: Sequence[AbstractSet[str]]) -> AbstractSet[str]:
        self.calls.append(("get_auth_chain_difference", sum(len(s) for s in state_sets)))
        chains = [set(s) | set(self.get_auth_chain(s)) for s in state_sets]
        return set().union(*chains) - set(chains[0]).intersection(*chains[1:])


# ===================================================================== end state resolution


# =====================================================================================
# E2EE: e2ee.signatures.KeyLookup
# =====================================================================================

from e2ee.models import CrossSigningKey, DeviceKeys  # noqa: E402


class FakeKeyLookup:
    """An in-memory :class:`~e2ee.signatures.KeyLookup`: add keys, then look them up."""

    def __init__(self) -> None:
        self.devices: dict[tuple[str, str], DeviceKeys] = {}
        self.cross_signing: dict[tuple[str, str], CrossSigningKey] = {}

    def add_device(self, device: DeviceKeys) -> None:
        self.devices[(device.user_id, device.device_id)] = device

    def add_cross_signing_key(self, key: CrossSigningKey) -> None:
        self.cross_signing[(key.user_id, key.usage)] = key

    def device_keys(self, user_id: str, device_id: str) -> DeviceKeys | None:
        return self.devices.get((user_id, device_id))

    def cross_signing_key(self, user_id: str, usage: str) -> CrossSigningKey | None:
        return self.cross_signing.get((user_id, usage))


# ===================================================================== end E2EE


# =====================================================================================
# Federation keys: homeserver.services.server_keys.ServerKeyFetcher
# =====================================================================================

from collections.abc import Mapping as _Mapping  # noqa: E402
from typing import Any as _Any  # noqa: E402

import trio as _trio  # noqa: E402

from federation.core.signing import SigningKey, sign_json  # noqa: E402


def make_key_response(
    server_name: str,
    key: SigningKey,
    *,
    valid_until_ts: int,
    old: _Mapping[SigningKey, int] | None = None,
) -> dict[str, _Any]:
    """A ``GET /_matrix/key/v2/server`` body of ``server_name``, self-signed by ``key``.

    Args:
        old: old keys with their ``expired_ts``.
    """
    body = {
        "server_name": server_name,
        "valid_until_ts": valid_until_ts,
        "verify_keys": {key.key_id: {"key": key.verify_key.to_base64()}},
        "old_verify_keys": {
            k.key_id: {"key": k.verify_key.to_base64(), "expired_ts": ts}
            for k, ts in (old or {}).items()
        },
    }
    return sign_json(body, server_name, key)


class FakeServerKeyFetcher:
    """An in-memory :class:`~homeserver.services.server_keys.ServerKeyFetcher`.

    ``origins[name]`` is what ``fetch_server_keys(name)`` returns (an exception instance is
    raised; a missing name raises ``ConnectionError``); ``notaries[name]`` is called with the
    criteria and its result returned. ``calls`` records every call in order. While ``gate`` is
    set to an unset event, every call waits for it (single-flight tests).
    """

    def __init__(self) -> None:
        self.origins: dict[str, _Mapping[str, _Any] | Exception] = {}
        self.notaries: dict[str, _Any] = {}
        self.calls: list[tuple[str, str]] = []
        self.gate: _trio.Event | None = None

    async def fetch_server_keys(self, server_name: str) -> _Mapping[str, _Any]:
        self.calls.append(("origin", server_name))
        if self.gate is not None:
            await self.gate.wait()
        answer = self.origins.get(server_name)
        if answer is None:
            raise ConnectionError(f"cannot reach {server_name}")
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def query_notary(
        self, notary: str, criteria: _Mapping[str, _Mapping[str, _Mapping[str, int]]]
    ) -> list[_Mapping[str, _Any]]:
        self.calls.append(("notary", notary))
        if self.gate is not None:
            await self.gate.wait()
        answer = self.notaries.get(notary)
        if answer is None:
            raise ConnectionError(f"cannot reach {notary}")
        result: list[_Mapping[str, _Any]] = answer(criteria)
        return result


# ===================================================================== end federation keys

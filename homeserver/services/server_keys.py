"""The key ring: our signing keys as we publish them, other servers' keys, and the notary.

Spec: server-server-api.md › Retrieving server keys
(https://spec.matrix.org/v1.19/server-server-api/#retrieving-server-keys), › Publishing Keys,
› Querying Keys Through Another Server.

Where another server's keys come from, in order (as Synapse does):

1. the database (``server_keys``), if it has every wanted key valid at the wanted time;
2. the configured notaries (``federation.trusted_key_servers``), ``POST /_matrix/key/v2/query``;
3. the origin itself, ``GET /_matrix/key/v2/server``.

What is accepted: a key response must name the server asked about and carry at least one
signature by a key in its own ``verify_keys``, and every signature by such a key must verify
(the origin's self-signature). A notary's answer must in addition carry the notary's signature,
checked with the keys configured for it, or else with the notary's own keys (fetched from the
notary directly). Validity: a current key counts as valid until the response's
``valid_until_ts`` capped to 7 days after it was fetched; an old key until its ``expired_ts``.

Single flight: however many requests need a server's keys at the same moment, one fetch runs
(in the nursery of :meth:`ServerKeys.run`, so that the first requester going away does not
cancel it for the others); the others wait for it and then read what it stored. The map of
in-flight fetches is the only in-memory state: owned by this process, it holds nothing between
fetches (the cache is the database).

As a notary we answer from the database, fetching from the origin (directly, never through our
own notaries) when what we have is not valid until the asker's ``minimum_valid_until_ts``; we
add our signature to the origin's signed response and return an expired key if it is all we
know. The store never lets a later answer shorten what it knows (``storage/server_keys.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import orjson
import trio

from federation.core.canonicaljson import encode_canonical_json
from federation.core.errors import ProtocolError, SignatureError
from federation.core.event_signatures import required_signers, verify_event_signatures
from federation.core.ids import is_valid_server_name
from federation.core.room_versions import RoomVersion
from federation.core.signing import (
    ALGORITHM,
    KnownKey,
    SigningKey,
    VerifyKey,
    cap_valid_until,
    parse_server_keys,
    sign_json,
    signed_bytes,
    verify_json_with_known_keys,
    verify_key_object,
    verify_signatures,
)
from homeserver.clock import Clock
from homeserver.config import TrustedKeyServer
from homeserver.keys import OldVerifyKey
from homeserver.storage.server_keys import ServerKeyRow, ServerKeyStore

__all__ = [
    "NotaryCriteria",
    "ServerKeyFetcher",
    "ServerKeys",
    "ServerPolicy",
]

logger = logging.getLogger(__name__)

#: ``{server_name: {key_id: {"minimum_valid_until_ts": ts}}}`` as in ``POST /_matrix/key/v2/query``.
NotaryCriteria = Mapping[str, Mapping[str, Mapping[str, int]]]


class ServerKeyFetcher(Protocol):
    """Outbound HTTP for keys (``federation.client.api.FederationClient`` implements it).

    Both methods raise any exception on failure (network, HTTP error, not JSON); the key ring
    treats every ``Exception`` as "no answer from there".
    """

    async def fetch_server_keys(self, server_name: str) -> Mapping[str, Any]:
        """``GET /_matrix/key/v2/server`` on ``server_name``: the parsed JSON object."""
        ...

    async def query_notary(
        self, notary: str, criteria: NotaryCriteria
    ) -> Sequence[Mapping[str, Any]]:
        """``POST /_matrix/key/v2/query`` on ``notary``: the ``server_keys`` list."""
        ...


@dataclass(frozen=True)
class ServerPolicy:
    """Which servers we federate with (``federation.domain_allowlist`` / ``domain_denylist``).

    An entry names a server case-insensitively; an entry without a port also covers that host
    with any port (``example.org`` covers ``example.org:8448``), as the outbound client's
    ``DestinationPolicy`` reads the same lists.
    """

    allowlist: frozenset[str] | None = None
    denylist: frozenset[str] = frozenset()

    def allows(self, server_name: str) -> bool:
        """Whether ``server_name`` may send us requests and be contacted."""
        name = server_name.lower()
        host = name if name.endswith("]") or ":" not in name else name.rsplit(":", 1)[0]

        def listed(entries: frozenset[str]) -> bool:
            return any(e.lower() in (name, host) for e in entries)

        if listed(self.denylist):
            return False
        return self.allowlist is None or listed(self.allowlist)


def _usable(key: KnownKey, at_ts: int) -> bool:
    """Valid at ``at_ts`` in the strict sense (a current key's validity must reach it)."""
    return key.valid_at(at_ts, enforce_key_validity=True)


class ServerKeys:
    """Our published keys, other servers' keys (fetched, verified, cached) and the notary.

    Args:
        store: the ``server_keys`` cache.
        fetcher: outbound HTTP; None: only cached keys are known (federation client absent).
        clock: for ``valid_until_ts`` and fetch times.
        server_name: ours.
        signing_key: our active key.
        old_keys: our retired keys (published in ``old_verify_keys``).
        notaries: asked before the origin.
        key_validity_period_ms: how long our key responses say they are valid.
        policy: servers we never contact.
    """

    def __init__(
        self,
        store: ServerKeyStore,
        fetcher: ServerKeyFetcher | None,
        clock: Clock,
        *,
        server_name: str,
        signing_key: SigningKey,
        old_keys: Mapping[str, OldVerifyKey] | None = None,
        notaries: Sequence[TrustedKeyServer] = (),
        key_validity_period_ms: int = 86_400_000,
        policy: ServerPolicy | None = None,
    ) -> None:
        self._store = store
        self._fetcher = fetcher
        self._clock = clock
        self._server_name = server_name
        self._signing_key = signing_key
        self._old_keys = dict(old_keys or {})
        self._notaries = tuple(notaries)
        self._validity_ms = key_validity_period_ms
        self._policy = policy or ServerPolicy()
        self._in_flight: dict[str, trio.Event] = {}
        self._nursery: trio.Nursery | None = None

    @property
    def server_name(self) -> str:
        return self._server_name

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the nursery fetches run in, until cancelled.

        A fetch then outlives the request that started it, which others may be waiting for
        (a client that goes away cancels only its own wait). Without :meth:`run` a fetch runs
        in the task of the first request that needs it.
        """
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                task_status.started()
                await trio.sleep_forever()
            finally:
                self._nursery = None

    def set_fetcher(self, fetcher: ServerKeyFetcher) -> None:
        """Connect the outbound client (built after this service in the composition root)."""
        self._fetcher = fetcher

    # --- our keys ---------------------------------------------------------------------------

    def own_keys_response(self) -> dict[str, Any]:
        """The body of ``GET /_matrix/key/v2/server``, signed by our active key."""
        body = {
            "server_name": self._server_name,
            "valid_until_ts": self._clock.time_ms() + self._validity_ms,
            "verify_keys": {
                self._signing_key.key_id: verify_key_object(self._signing_key.verify_key)
            },
            "old_verify_keys": {
                key_id: {"key": old.verify_key.to_base64(), "expired_ts": old.expired_ts}
                for key_id, old in self._old_keys.items()
                if key_id != self._signing_key.key_id
            },
        }
        return sign_json(body, self._server_name, self._signing_key)

    def _own_known_keys(self) -> dict[str, KnownKey]:
        out = {
            key_id: KnownKey(old.verify_key, expired_ts=old.expired_ts)
            for key_id, old in self._old_keys.items()
        }
        out[self._signing_key.key_id] = KnownKey(
            self._signing_key.verify_key,
            valid_until_ts=self._clock.time_ms() + self._validity_ms,
        )
        return out

    # --- other servers' keys ----------------------------------------------------------------

    async def known_keys(
        self, server_name: str, key_ids: Collection[str], *, at_ts: int
    ) -> dict[str, KnownKey]:
        """``server_name``'s keys among ``key_ids``, fetching those not valid at ``at_ts``.

        Returns every wanted key we know after a fetch if needed, valid or not: the caller
        decides with :meth:`KnownKey.valid_at` (room versions before v5 accept a key whose
        ``valid_until_ts`` has passed).
        """
        if server_name == self._server_name:
            own = self._own_known_keys()
            return {k: own[k] for k in key_ids if k in own}
        wanted = {k for k in key_ids if k.startswith(ALGORITHM + ":")}
        if not wanted:
            return {}
        known = await self._cached(server_name)
        if all(k in known and _usable(known[k], at_ts) for k in wanted):
            return {k: known[k] for k in wanted}
        if self._policy.allows(server_name):
            await self._single_flight(
                server_name,
                wanted,
                at_ts,
                use_notaries=True,
                satisfied=partial(self._has_usable, server_name, wanted, at_ts),
            )
            known = await self._cached(server_name)
        return {k: known[k] for k in wanted if k in known}

    async def verify_keys(
        self, server_name: str, key_ids: Collection[str], *, at_ts: int
    ) -> Mapping[str, VerifyKey]:
        """``server_name``'s keys among ``key_ids`` that are valid at ``at_ts``, by key ID."""
        keys = await self.known_keys(server_name, key_ids, at_ts=at_ts)
        return {k: v.verify_key for k, v in keys.items() if _usable(v, at_ts)}

    async def verify_json(
        self,
        obj: Mapping[str, Any],
        server_name: str,
        *,
        at_ts: int,
        enforce_key_validity: bool = True,
    ) -> None:
        """Check ``server_name``'s signature on ``obj`` with keys valid at ``at_ts``.

        Raises:
            SignatureError: no signature from a known key valid then, or a bad one.
        """
        keys = await self.known_keys(server_name, _signing_key_ids(obj, server_name), at_ts=at_ts)
        verify_json_with_known_keys(
            obj, server_name, keys, at_ts=at_ts, enforce_key_validity=enforce_key_validity
        )

    async def verify_event(self, room_version: RoomVersion, pdu: Mapping[str, Any]) -> None:
        """Check the signatures an event needs (sender's server, v1-2 event ID's server,
        restricted join's authorising server), at the event's ``origin_server_ts``.

        Raises:
            SignatureError: a signature is missing or does not verify.
        """
        ts = pdu.get("origin_server_ts")
        if not isinstance(ts, int) or isinstance(ts, bool):
            raise SignatureError("event has no integer origin_server_ts")
        keys: dict[str, Mapping[str, KnownKey]] = {}
        for server in required_signers(room_version, pdu):
            keys[server] = await self.known_keys(server, _signing_key_ids(pdu, server), at_ts=ts)
        verify_event_signatures(room_version, pdu, keys)

    async def _has_usable(self, server_name: str, key_ids: Collection[str], at_ts: int) -> bool:
        known = await self._cached(server_name)
        return all(k in known and _usable(known[k], at_ts) for k in key_ids)

    async def _cached(self, server_name: str) -> dict[str, KnownKey]:
        out: dict[str, KnownKey] = {}
        for row in await self._store.keys_of(server_name):
            try:
                vk = VerifyKey.from_base64(row.verify_key, row.key_id)
            except SignatureError:  # pragma: no cover - stored keys were parsed before
                continue
            if row.expired_ts is not None:
                out[row.key_id] = KnownKey(vk, expired_ts=row.expired_ts)
            else:
                out[row.key_id] = KnownKey(
                    vk, valid_until_ts=cap_valid_until(row.valid_until_ts, row.fetched_ts)
                )
        return out

    async def _single_flight(
        self,
        server_name: str,
        key_ids: Collection[str],
        at_ts: int,
        *,
        use_notaries: bool,
        satisfied: Callable[[], Awaitable[bool]],
    ) -> None:
        """Fetch ``server_name``'s keys unless a fetch is already running (then wait for it)
        or the cache now has what ``satisfied`` wants."""
        running = self._in_flight.get(server_name)
        if running is None:
            running = self._in_flight[server_name] = trio.Event()
            lead = partial(
                self._lead, server_name, running, key_ids, at_ts, use_notaries, satisfied
            )
            if self._nursery is None:
                await lead()
                return
            self._nursery.start_soon(lead)
        await running.wait()

    async def _lead(
        self,
        server_name: str,
        done: trio.Event,
        key_ids: Collection[str],
        at_ts: int,
        use_notaries: bool,
        satisfied: Callable[[], Awaitable[bool]],
    ) -> None:
        try:
            # A fetch may have finished between the caller's read of the cache and now.
            if not await satisfied():
                await self._fetch(server_name, key_ids, at_ts, use_notaries=use_notaries)
        except Exception:  # the database failed: the waiters find no new keys
            logger.exception("fetching the keys of %s failed", server_name)
        finally:
            del self._in_flight[server_name]
            done.set()

    async def _fetch(
        self, server_name: str, key_ids: Collection[str], at_ts: int, *, use_notaries: bool
    ) -> None:
        if self._fetcher is None:
            return
        if use_notaries:
            for notary in self._notaries:
                if notary.server_name == server_name or not self._policy.allows(notary.server_name):
                    continue
                rows = await self._ask_notary(notary, server_name, key_ids, at_ts)
                if rows:
                    await self._store.store_keys(rows)
                if await self._has_usable(server_name, key_ids, at_ts):
                    return
        now = self._clock.time_ms()
        try:
            response = await self._fetcher.fetch_server_keys(server_name)
            rows = _verified_rows(response, server_name, fetched_from=server_name, now=now)
        except Exception as e:  # any failure of the origin: no keys from there
            logger.info("no keys from %s: %s", server_name, e)
            return
        await self._store.store_keys(rows)

    async def _ask_notary(
        self, notary: TrustedKeyServer, server_name: str, key_ids: Collection[str], at_ts: int
    ) -> list[ServerKeyRow]:
        assert self._fetcher is not None
        criteria = {server_name: {k: {"minimum_valid_until_ts": at_ts} for k in key_ids}}
        now = self._clock.time_ms()
        try:
            answers = await self._fetcher.query_notary(notary.server_name, criteria)
        except Exception as e:  # any failure of the notary: ask the next one
            logger.info("notary %s gave no keys of %s: %s", notary.server_name, server_name, e)
            return []
        rows: list[ServerKeyRow] = []
        for answer in answers:
            if not isinstance(answer, Mapping) or answer.get("server_name") != server_name:
                continue
            try:
                notary_keys = await self._notary_keys(notary, answer)
                verify_signatures(signed_bytes(answer), answer, notary.server_name, notary_keys.get)
                rows += _verified_rows(
                    answer, server_name, fetched_from=notary.server_name, now=now
                )
            except (ProtocolError, ValueError) as e:
                logger.warning(
                    "notary %s: bad answer about %s: %s", notary.server_name, server_name, e
                )
        return rows

    async def _notary_keys(
        self, notary: TrustedKeyServer, answer: Mapping[str, Any]
    ) -> dict[str, VerifyKey]:
        if notary.verify_keys is not None:
            return {
                key_id: VerifyKey.from_base64(key, key_id)
                for key_id, key in notary.verify_keys.items()
            }
        wanted = _signing_key_ids(answer, notary.server_name)
        now = self._clock.time_ms()
        known = await self._cached(notary.server_name)
        if not all(k in known and _usable(known[k], now) for k in wanted):
            await self._single_flight(
                notary.server_name,
                wanted,
                now,
                use_notaries=False,
                satisfied=partial(self._has_usable, notary.server_name, wanted, now),
            )
            known = await self._cached(notary.server_name)
        return {k: v.verify_key for k, v in known.items() if k in wanted and _usable(v, now)}

    # --- notary -----------------------------------------------------------------------------

    async def query(
        self,
        criteria: Mapping[str, Mapping[str, int | None]],
        *,
        minimum_valid_until_ts: int | None = None,
    ) -> list[dict[str, Any]]:
        """Answer a notary query: ``{server: {key_id: minimum_valid_until_ts or None}}``.

        An empty key mapping asks for every key of the server, to be valid until
        ``minimum_valid_until_ts``; a None minimum means now. Each returned key response is the
        origin's signed response with our signature added.
        """
        out: list[dict[str, Any]] = []
        now = self._clock.time_ms()
        all_minimum = now if minimum_valid_until_ts is None else minimum_valid_until_ts
        for server_name, wanted in criteria.items():
            if not is_valid_server_name(server_name):
                continue
            if server_name == self._server_name:
                out.append(self.own_keys_response())
                continue
            rows = {r.key_id: r for r in await self._store.keys_of(server_name)}
            if self._needs_fetch(rows, wanted, now, all_minimum) and self._policy.allows(
                server_name
            ):
                await self._single_flight(
                    server_name,
                    list(wanted) or list(rows),
                    now,
                    use_notaries=False,
                    satisfied=partial(self._cache_answers, server_name, wanted, now, all_minimum),
                )
                rows = {r.key_id: r for r in await self._store.keys_of(server_name)}
            chosen = [rows[k] for k in wanted if k in rows] if wanted else list(rows.values())
            seen: set[str] = set()
            for row in chosen:
                if row.key_json in seen:
                    continue
                seen.add(row.key_json)
                out.append(
                    sign_json(orjson.loads(row.key_json), self._server_name, self._signing_key)
                )
        return out

    async def _cache_answers(
        self, server_name: str, wanted: Mapping[str, int | None], now: int, all_minimum: int
    ) -> bool:
        rows = {r.key_id: r for r in await self._store.keys_of(server_name)}
        return not self._needs_fetch(rows, wanted, now, all_minimum)

    @staticmethod
    def _needs_fetch(
        rows: Mapping[str, ServerKeyRow],
        wanted: Mapping[str, int | None],
        now: int,
        all_minimum: int,
    ) -> bool:
        if not wanted:
            return not any(
                r.expired_ts is None and r.valid_until_ts >= all_minimum for r in rows.values()
            )
        for key_id, minimum in wanted.items():
            row = rows.get(key_id)
            if row is None or row.valid_until_ts < (now if minimum is None else minimum):
                return True
        return False


def _signing_key_ids(obj: Mapping[str, Any], server_name: str) -> list[str]:
    sigs = obj.get("signatures")
    mine = sigs.get(server_name) if isinstance(sigs, Mapping) else None
    return [k for k in mine if isinstance(k, str)] if isinstance(mine, Mapping) else []


def _verified_rows(
    response: Mapping[str, Any], server_name: str, *, fetched_from: str, now: int
) -> list[ServerKeyRow]:
    """Check a key response's shape and self-signature; its keys as rows to store.

    Raises:
        SignatureError: wrong server, malformed, or not validly self-signed.
    """
    if not isinstance(response, Mapping):
        raise SignatureError("key response is not an object")
    if response.get("server_name") != server_name:
        raise SignatureError(f"key response is about {response.get('server_name')!r}")
    valid_until = response.get("valid_until_ts")
    if not isinstance(valid_until, int) or isinstance(valid_until, bool):
        raise SignatureError("key response has no integer valid_until_ts")
    keys = parse_server_keys(response, now)
    current = {k: v.verify_key for k, v in keys.items() if v.expired_ts is None}
    verify_signatures(signed_bytes(response), response, server_name, current.get)
    key_json = encode_canonical_json(response).decode("utf-8")
    return [
        ServerKeyRow(
            server_name=server_name,
            key_id=key_id,
            verify_key=known.verify_key.to_base64(),
            valid_until_ts=valid_until,
            expired_ts=known.expired_ts,
            fetched_ts=now,
            fetched_from=fetched_from,
            key_json=key_json,
        )
        for key_id, known in keys.items()
    ]

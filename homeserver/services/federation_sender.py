"""The federation sender: local PDUs and EDUs to every other server in the room, as transactions.

Spec: server-server-api.md › Transactions (``PUT /_matrix/federation/v1/send/{txnId}``: at most
50 PDUs and 100 EDUs each), › PDUs, › EDUs.

How an event travels::

    EventCreationService commits a local event ──listener──► on_local_event() (wakes, no I/O)
    ingest task:  local events after the queued-up-to position (events table, in stream order)
                  → destinations = the room's joined servers (current state) + the target's
                    server for a membership event, minus us
                  → outbox rows + new position, one transaction        (storage/federation_queue)
                  → wake each destination's worker
    worker (one per destination with work, so one transaction in flight per destination):
                  oldest ≤ 50 queued PDUs + ≤ 100 EDUs → PUT /send/{txnId}
                  2xx: delete the sent rows, clear the back-off
                  failure: keep the rows, back off (persisted) and retry

Durability: the outbox and the position are in the database. A row leaves the outbox only
after the destination accepted its transaction, and the position moves in the same transaction
that writes the rows, so neither a crash, a cancel (shutdown) nor a restart loses a queued PDU:
events committed while the sender was not running are found from the position at start. A
transaction cancelled mid-flight is simply sent again (PDUs are idempotent by event ID).

Back-off: after a failed transaction the destination is left alone for ``min_backoff`` seconds,
doubling with each consecutive failure up to ``max_backoff`` (4 hours), with ±20 % jitter; it is
stored, so a restart does not hammer a dead server. It ends as soon as that server contacts us
(:meth:`FederationSender.on_server_contacted`, called by the inbound side on any authenticated
request) or a transaction succeeds.

Catch-up: when a destination that was failing has more than one transaction's worth queued,
only the newest queued PDU of each room is kept before the next attempt (Synapse's catch-up):
it references the events before it as ``prev_events``, and the destination fetches the gap with
``/get_missing_events`` (or state) instead of receiving hours of backlog.

EDUs are in memory only (typing, receipts, presence, device messages are ephemeral or re-sent by
their own services), up to 10,000 per destination, oldest dropped first; a restart forgets
them. They ride in the next transaction to their destination, or start one.

Ownership: one sender process owns every destination's queue (the outbox rows, the back-off
state and the in-memory EDUs and worker of each destination). A second process must not run a
sender over the same database; splitting destinations between processes would need a
destination → process rule and a notification from the event writers.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from federation.client.api import TransactionResult
from federation.client.errors import DestinationBlocked, FederationError
from federation.core.canonicaljson import decode_json
from federation.core.errors import CanonicalJSONError
from homeserver.clock import Clock
from homeserver.storage.federation_queue import FederationQueueStore, OutboxRow

__all__ = ["FederationSender", "TransactionSender"]

logger = logging.getLogger(__name__)

MAX_PDUS_PER_TRANSACTION = 50
MAX_EDUS_PER_TRANSACTION = 100
MAX_QUEUED_EDUS = 10_000
_INGEST_BATCH = 500


class TransactionSender(Protocol):
    """``PUT /send/{txnId}`` (``federation.client.api.FederationClient`` implements it)."""

    async def send_transaction(
        self,
        destination: str,
        txn_id: str,
        pdus: Sequence[Mapping[str, Any]],
        edus: Sequence[Mapping[str, Any]],
        origin_server_ts: int,
    ) -> TransactionResult: ...


@dataclass(eq=False)
class _Destination:
    name: str
    edus: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_QUEUED_EDUS))
    #: set by every wake-up; cleared by the worker before it reads the queue
    pending: bool = True
    running: bool = False
    wake: trio.Event = field(default_factory=trio.Event)
    failures: int = 0
    interval: float = 0.0
    #: Trio time before which no transaction is sent
    retry_at: float = 0.0
    #: the stored back-off has been read (or superseded by a contact from the server)
    loaded: bool = False
    #: the next success is written down (the stored state shows a failure or a contact)
    record_success: bool = False
    #: transactions failed since the last success: the next one is a catch-up
    catching_up: bool = False


class FederationSender:
    """Sends local PDUs and EDUs to other servers (one per process; see the module docstring).

    Args:
        queue: the outbox store.
        client: sends transactions.
        clock: wall time for ``origin_server_ts`` and the stored back-off.
        server_name: ours (never a destination).
        min_backoff: seconds before the first retry.
        max_backoff: the longest back-off.
        poll_interval: how often the events table is read without a wake-up (local events
            written by a path that does not call :meth:`on_local_event` or :meth:`wake`).
    """

    def __init__(
        self,
        queue: FederationQueueStore,
        client: TransactionSender,
        clock: Clock,
        *,
        server_name: str,
        min_backoff: float = 10.0,
        max_backoff: float = 4 * 3600.0,
        max_pdus: int = MAX_PDUS_PER_TRANSACTION,
        max_edus: int = MAX_EDUS_PER_TRANSACTION,
        poll_interval: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        self._queue = queue
        self._client = client
        self._clock = clock
        self._server_name = server_name
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._max_pdus = max_pdus
        self._max_edus = max_edus
        self._poll_interval = poll_interval
        self._rng = rng or random.Random()
        self._destinations: dict[str, _Destination] = {}
        self._ingest_wanted = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._position = 0
        self._txn_base = 0
        self._txn_counter = 0
        #: transactions sent successfully (for tests and metrics)
        self.transactions_sent = 0

    # --- the hooks others call (synchronous, cheap, never raise) -----------------------------

    def on_local_event(self, room_id: str, sender: str, event_type: str) -> None:
        """``EventCreationService`` listener: a local event was committed."""
        self._ingest_wanted.set()

    def wake(self) -> None:
        """Local events were written by another path (joins, upgrades): look for them."""
        self._ingest_wanted.set()

    def on_server_contacted(self, server_name: str) -> None:
        """``server_name`` sent us an authenticated request: it is up, end any back-off."""
        dest = self._destinations.get(server_name)
        if dest is None or (dest.loaded and dest.failures == 0 and dest.retry_at == 0.0):
            return
        dest.loaded = True  # what is stored is out of date now
        dest.record_success = True
        dest.failures = 0
        dest.interval = 0.0
        dest.retry_at = 0.0
        self._kick(dest)
        if self._nursery is not None:
            self._nursery.start_soon(self._reset_stored_backoff, server_name)

    def send_edu(self, destination: str, edu_type: str, content: Mapping[str, Any]) -> None:
        """Queue an EDU for ``destination`` (in memory; see the module docstring)."""
        if destination == self._server_name:
            return
        dest = self._destination(destination)
        dest.edus.append({"edu_type": edu_type, "content": dict(content)})
        self._kick(dest)

    # --- the background task -----------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled: resume the stored queues, then follow new local events."""
        self._position = await self._queue.start_position()
        self._txn_base = self._clock.time_ms()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for name in await self._queue.pending_destinations():
                self._kick(self._destination(name))
            for dest in list(self._destinations.values()):
                if dest.edus or dest.pending:
                    self._kick(dest)
            self._ingest_wanted.set()  # events committed while we were not running
            task_status.started()
            await self._ingest_loop()

    async def _ingest_loop(self) -> None:
        while True:
            # a local event written by a path without the listener is found by the poll
            with trio.move_on_after(self._poll_interval):
                await self._ingest_wanted.wait()
            self._ingest_wanted = trio.Event()
            try:
                while await self._ingest_once():
                    pass
            except Exception:
                logger.exception("queueing local events for federation failed; retrying")
                await trio.sleep(1)
                self._ingest_wanted.set()

    async def _ingest_once(self) -> bool:
        """Queue the next batch of local events; False when there were none."""
        events = await self._queue.local_events_after(
            self._position, self._server_name, _INGEST_BATCH
        )
        if not events:
            return False
        rows: list[OutboxRow] = []
        joined: dict[str, set[str]] = {}
        for ev in events:
            servers = joined.get(ev.room_id)
            if servers is None:
                servers = joined[ev.room_id] = await self._queue.joined_servers(ev.room_id)
            targets = set(servers)
            if ev.type == "m.room.member" and ev.state_key and ":" in ev.state_key:
                if ev.membership in ("leave", "ban"):
                    # a kicked or banned user's server hears of it too (an invited user's
                    # server got the invite through /invite already, as in Synapse)
                    targets.add(ev.state_key.split(":", 1)[1])
                joined.pop(ev.room_id, None)  # membership changed: read it again
            targets.discard(self._server_name)
            rows.extend(
                OutboxRow(d, ev.stream_ordering, ev.room_id, ev.event_id) for d in sorted(targets)
            )
        position = events[-1].stream_ordering
        await self._queue.enqueue(rows, position)
        self._position = position
        for name in {r.destination for r in rows}:
            self._kick(self._destination(name))
        return len(events) == _INGEST_BATCH

    # --- per destination ---------------------------------------------------------------------

    def _destination(self, name: str) -> _Destination:
        dest = self._destinations.get(name)
        if dest is None:
            dest = self._destinations[name] = _Destination(name)
        return dest

    def _kick(self, dest: _Destination) -> None:
        dest.pending = True
        dest.wake.set()
        if not dest.running and self._nursery is not None:
            dest.running = True
            self._nursery.start_soon(self._worker, dest)

    async def _reset_stored_backoff(self, name: str) -> None:
        try:
            await self._queue.set_backoff(name, 0, 0, 0)
        except Exception:
            logger.exception("clearing the back-off of %s failed", name)

    async def _worker(self, dest: _Destination) -> None:
        try:
            if not dest.loaded:
                await self._load_backoff(dest)
            while True:
                now = trio.current_time()
                if dest.retry_at > now:
                    dest.wake = trio.Event()
                    with trio.move_on_at(dest.retry_at):
                        while dest.retry_at > trio.current_time():
                            await dest.wake.wait()
                            dest.wake = trio.Event()
                    continue
                dest.pending = False
                if not await self._send_one(dest):
                    if dest.pending:
                        continue
                    return
        except Exception:
            logger.exception("federation sender for %s failed", dest.name)
            dest.pending = True  # keeps the entry: the retry finds this one
            self._schedule_retry(dest)
        finally:
            dest.running = False
            if dest.failures == 0 and not dest.edus and not dest.pending:
                self._destinations.pop(dest.name, None)

    def _schedule_retry(self, dest: _Destination) -> None:
        if self._nursery is None:
            return

        async def later() -> None:
            await trio.sleep(self._min_backoff)
            self._kick(self._destination(dest.name))

        self._nursery.start_soon(later)

    async def _load_backoff(self, dest: _Destination) -> None:
        stored = await self._queue.destination(dest.name)
        dest.loaded = True
        if stored is None or stored.failures == 0:
            return
        dest.failures = stored.failures
        dest.catching_up = True
        dest.interval = stored.retry_interval_ms / 1000
        remaining = (stored.retry_at_ts - self._clock.time_ms()) / 1000
        dest.retry_at = trio.current_time() + max(0.0, remaining) if remaining > 0 else 0.0

    async def _send_one(self, dest: _Destination) -> bool:
        """Send one transaction to ``dest``; False when there was nothing to send."""
        name = dest.name
        if dest.catching_up and await self._queue.count(name) > self._max_pdus:
            dropped = await self._queue.keep_latest_per_room(name)
            logger.info("catching up %s: %d older PDUs left to get_missing_events", name, dropped)
        batch = await self._queue.next_batch(name, self._max_pdus)
        edus = [dest.edus.popleft() for _ in range(min(self._max_edus, len(dest.edus)))]
        if not batch and not edus:
            return False
        pdus: list[Mapping[str, Any]] = []
        for queued in batch:
            try:
                pdu = decode_json(queued.pdu_json, strict=False) if queued.pdu_json else None
            except CanonicalJSONError:
                pdu = None
            if isinstance(pdu, dict):
                pdus.append(pdu)
            else:
                logger.warning("queued event %s for %s is unreadable", queued.event_id, name)
        self._txn_counter += 1
        txn_id = f"{self._txn_base}.{self._txn_counter}"
        try:
            result = await self._client.send_transaction(
                name, txn_id, pdus, edus, self._clock.time_ms()
            )
        except DestinationBlocked as exc:
            logger.warning("dropping the queue for %s: %s", name, exc.message)
            await self._queue.remove_all(name)
            dest.edus.clear()
            return True
        except FederationError as exc:
            dest.edus.extendleft(reversed(edus))
            await self._back_off(dest, exc)
            return True
        except Exception as exc:  # a bug or an unencodable PDU: back off, never spin
            logger.exception("building the transaction to %s failed", name)
            dest.edus.extendleft(reversed(edus))
            await self._back_off(dest, exc)
            return True
        except BaseException:
            dest.edus.extendleft(reversed(edus))  # cancelled mid-flight: sent again next time
            raise
        for event_id, error in result.pdu_errors.items():
            logger.info("%s refused %s: %s", name, event_id, error)
        if batch:
            await self._queue.remove_up_to(name, batch[-1].stream_ordering)
        dest.catching_up = False
        if dest.failures or dest.record_success:
            dest.record_success = False
            dest.failures = 0
            dest.interval = 0.0
            dest.retry_at = 0.0
            await self._queue.record_success(name, self._clock.time_ms())
        self.transactions_sent += 1
        return True

    async def _back_off(self, dest: _Destination, exc: Exception) -> None:
        dest.catching_up = True
        dest.failures += 1
        dest.interval = min(max(dest.interval * 2, self._min_backoff), self._max_backoff)
        delay = dest.interval * self._rng.uniform(0.8, 1.2)
        dest.retry_at = trio.current_time() + delay
        logger.info(
            "transaction to %s failed (%s); retry in %.0f s (failure %d)",
            dest.name,
            exc,
            delay,
            dest.failures,
        )
        await self._queue.set_backoff(
            dest.name,
            dest.failures,
            int(dest.interval * 1000),
            self._clock.time_ms() + int(delay * 1000),
        )

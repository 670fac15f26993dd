"""The push sender: events that notify a local user → ``POST /_matrix/push/v1/notify`` to each
of their pushers' push gateways, so phones that are offline get notified.

Spec: client-server-api/modules/push.md › Push Notifications ("the homeserver [...] sends
[notifications] to the Push Gateway", › Receiving notifications, › Push Rules), and
push-gateway-api.md (``POST /_matrix/push/v1/notify``: the ``notification`` body, ``prio``,
``counts``, ``devices``, ``event_id_only``; the response's ``rejected``: "A list of all
pushkeys given in the notification request that are not valid. [...] Homeservers SHOULD
remove these pushkeys from their pusher list").

How an event travels::

    any writer commits an event (local send, federation, joins) ──► notifier position moves
    EventCreationService listener ──► wake()           (local events: at once; others: ≤ poll)
    ingest task: accepted timeline events after the stored position, in stream order
                 → for each local member joined to the room (and a local invitee of an invite),
                   not the sender: their push rules (PushEvaluator) with the room's context
                 → ``notify`` outcomes become push_notifications rows; rows + new position
                   in one transaction                              (storage/pushers)
                 → wake the workers of those users' pushers
    worker (one per pusher): the user's notifications after the pusher's last_stream_ordering
                 → POST notify (one per notification, oldest first)
                 2xx: move last_stream_ordering past it; a ``rejected`` pushkey deletes the
                      pusher and ends its worker
                 failure: retry the same notification with exponential back-off
                      (``push.retry_initial_s`` doubling to ``push.retry_max_s``); a pusher
                      failing for longer than ``push.give_up_after_s`` skips it

Every local member's notifications are recorded, pusher or not: ``GET /notifications`` lists
them. A read receipt that moves queues a badge-only push (``counts`` without an event) to the
user's pushers, so a phone can clear its badge; the unread count is the user's notifications
after their main-timeline read position in each room (the push body's ``counts.unread``).

Durability: the evaluated-up-to position and each pusher's position are in the database and
move in the transaction that records what they cover, so a crash, a cancel (shutdown) or a
restart loses no notification; one cancelled mid-flight is sent again (at least once). A new
pusher starts at the newest event: it is sent what notifies after it was set. The room
context (members, names, power levels) is read from the current state once per room and
batch, and read again after a state event in the batch.

Ownership: one process owns the push sender: the ingest position, every pusher's queue and
position, its worker and back-off (in memory: the retry interval; stored: ``failing_since``).
A second process must not run a sender over the same database (it would send every
notification twice); splitting pushers between processes would need a pusher → process rule.
The in-memory map of each user's pushers is a cache checked against the database by each
worker (a pusher deleted with its device simply ends its worker); compiled push rules are
dropped on :meth:`PushSender.rules_changed`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
import trio

from federation.core.power_levels import get_creators
from homeserver.clock import Clock
from homeserver.services.push_evaluator import PushContext, PushEvaluator
from homeserver.services.push_ruleset import PushRuleset
from homeserver.services.pushers import is_public_address
from homeserver.storage.events import StoredEvent
from homeserver.storage.pushers import NotificationRow, PusherRow, PusherStore, RoomPushState

__all__ = ["HttpPushGateway", "PushGateway", "PushGatewayError", "PushSender", "PushSettings"]

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]
_INGEST_BATCH = 200
_SEND_BATCH = 20
#: members evaluated between checkpoints (about 20 µs each)
_YIELD_EVERY = 256
#: ``GET /notifications`` keeps this long of history.
_RETENTION_MS = 30 * 24 * 3600 * 1000
_PRUNE_INTERVAL_S = 3600.0


class PushGatewayError(Exception):
    """A push could not be delivered (unreachable, timed out, non-2xx, refused address);
    the sender retries it."""


class PushGateway(Protocol):
    """Sends one ``POST /_matrix/push/v1/notify``; returns the ``rejected`` pushkeys."""

    async def notify(self, url: str, body: Mapping[str, Any]) -> list[str]: ...


class HttpPushGateway:
    """:class:`PushGateway` over httpx.

    Args:
        client: the shared HTTP client.
        timeout_s: the whole request's timeout.
        allow_private: send to non-public addresses (``push.allow_private_destinations``).
        resolve: host name → addresses (default: the system resolver through Trio).
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        timeout_s: float,
        allow_private: bool,
        resolve: Callable[[str], Awaitable[list[str]]] | None = None,
    ) -> None:
        self._client = client
        self._timeout = timeout_s
        self._allow_private = allow_private
        self._resolve = resolve or _resolve

    async def notify(self, url: str, body: Mapping[str, Any]) -> list[str]:
        host = urlsplit(url).hostname or ""
        if not self._allow_private:
            try:
                addresses = await self._resolve(host)
            except OSError as e:
                raise PushGatewayError(f"cannot resolve {host}: {e}") from None
            if not addresses or not all(is_public_address(a) for a in addresses):
                raise PushGatewayError(f"{host} resolves to a non-public address")
        try:
            with trio.fail_after(self._timeout):
                response = await self._client.post(url, json=body, timeout=self._timeout)
        except trio.TooSlowError:
            raise PushGatewayError(f"{url}: timed out") from None
        except httpx.HTTPError as e:
            raise PushGatewayError(f"{url}: {type(e).__name__}: {e}") from None
        if not 200 <= response.status_code < 300:
            raise PushGatewayError(f"{url}: HTTP {response.status_code}")
        try:
            answer = response.json()
        except ValueError:
            return []
        rejected = answer.get("rejected") if isinstance(answer, dict) else None
        if not isinstance(rejected, list):
            return []
        return [k for k in rejected if isinstance(k, str)]


async def _resolve(host: str) -> list[str]:
    infos = await trio.socket.getaddrinfo(host, None, type=trio.socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True)
class PushSettings:
    """The sender's timing (``push`` configuration section)."""

    retry_initial_s: float = 1.0
    retry_max_s: float = 600.0
    give_up_after_s: float = 24 * 3600.0
    #: how often the position of events written without the local listener is looked at
    poll_interval_s: float = 0.5


@dataclass(eq=False)
class _Worker:
    key: tuple[str, str, str]
    wake: trio.Event = field(default_factory=trio.Event)
    badge: bool = False
    running: bool = False


class PushSender:
    """Evaluates new events for local users and sends their pushers' notifications (one per
    process; see the module docstring).

    Args:
        store: pushers, notifications, positions and the room reads.
        gateway: sends the requests.
        clock: notification times, ``failing_since``.
        server_name: ours (local users end with ``:server_name``).
        newest_position: the committed EVENTS position (the notifier's).
        push_rules: the user's stored ``m.push_rules`` content (None: never changed).
        read_upto: the user's main-timeline read position in a room (-1: none).
        settings: retry timing.
    """

    def __init__(
        self,
        store: PusherStore,
        gateway: PushGateway,
        clock: Clock,
        *,
        server_name: str,
        newest_position: Callable[[], int],
        push_rules: Callable[[str], Awaitable[Mapping[str, Any] | None]],
        read_upto: Callable[[str, str], Awaitable[int]],
        settings: PushSettings = PushSettings(),
    ) -> None:
        self._store = store
        self._gateway = gateway
        self._clock = clock
        self._server_name = server_name
        self._newest = newest_position
        self._push_rules = push_rules
        self._read_upto = read_upto
        self._settings = settings
        self._position = 0
        self._ingest_wanted = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._workers: dict[tuple[str, str, str], _Worker] = {}
        self._by_user: dict[str, set[tuple[str, str, str]]] = {}
        self._evaluators: dict[str, PushEvaluator] = {}
        #: pushes delivered (for tests and metrics)
        self.pushes_sent = 0

    # --- the hooks others call (synchronous, cheap, never raise) -----------------------------

    def on_local_event(self, room_id: str, sender: str, event_type: str) -> None:
        """``EventCreationService`` listener: a local event was committed."""
        self._ingest_wanted.set()

    def wake(self) -> None:
        self._ingest_wanted.set()

    def rules_changed(self, user_id: str) -> None:
        self._evaluators.pop(user_id, None)

    def on_read(self, user_id: str, room_id: str, thread_id: str, position: int) -> None:
        """A receipt of the user's moved: a badge update for their pushers."""
        for key in self._by_user.get(user_id, ()):
            worker = self._workers.get(key)
            if worker is not None:
                worker.badge = True
                self._kick(worker)

    def pusher_changed(self, pusher: PusherRow) -> None:
        self._by_user.setdefault(pusher.user_id, set()).add(pusher.key)
        self._kick(self._worker(pusher.key))

    def pusher_deleted(self, user_id: str, app_id: str, pushkey: str) -> None:
        worker = self._workers.get((user_id, app_id, pushkey))
        if worker is not None:
            self._kick(worker)  # it finds the pusher gone and ends

    # --- the background task -----------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled: resume every pusher's queue, then follow new events."""
        self._position = await self._store.start_position()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for pusher in await self._store.all_pushers():
                self.pusher_changed(pusher)
            self._ingest_wanted.set()  # events committed while we were not running
            nursery.start_soon(self._prune_loop)
            task_status.started()
            await self._ingest_loop()

    async def _ingest_loop(self) -> None:
        while True:
            with trio.move_on_after(self._settings.poll_interval_s):
                await self._ingest_wanted.wait()
            self._ingest_wanted = trio.Event()
            try:
                while await self._ingest_once():
                    pass
            except Exception:
                logger.exception("evaluating events for push failed; retrying")
                await trio.sleep(1)

    async def _ingest_once(self) -> bool:
        """Evaluate the next batch of events; False when there were none left."""
        upto = max(self._newest(), 0)
        if upto <= self._position:
            return False
        batch = await self._store.events_after(self._position, upto, _INGEST_BATCH)
        if not batch:
            self._position = upto
            await self._store.record([], upto)
            return False
        rooms: dict[str, RoomPushState] = {}
        out: list[NotificationRow] = []
        now = self._clock.time_ms()
        for stored in batch:
            event = stored.event
            if event.type == "m.room.create" and event.state_key == "":
                continue  # only its sender is in the room (and a v12 one names no room_id)
            state = rooms.get(event.room_id)
            if state is None:
                state = rooms[event.room_id] = await self._store.room_push_state(
                    event.room_id, self._server_name
                )
            out.extend(await self._evaluate(stored, state, now))
            if event.state_key is not None:
                rooms.pop(event.room_id, None)  # members, names or power levels may change
        position = batch[-1].stream_ordering if len(batch) == _INGEST_BATCH else upto
        await self._store.record(out, position)
        self._position = position
        for user_id in {n.user_id for n in out}:
            for key in self._by_user.get(user_id, ()):
                self._kick(self._worker(key))
        return len(batch) == _INGEST_BATCH

    async def _evaluate(
        self, stored: StoredEvent, state: RoomPushState, now: int
    ) -> list[NotificationRow]:
        event = stored.event
        pdu = event.pdu
        targets = [u for u, (m, _n) in state.local_members.items() if m == "join"]
        if (
            event.type == "m.room.member"
            and event.state_key
            and event.state_key.endswith(":" + self._server_name)
            and event.content.get("membership") == "invite"
            and event.state_key not in targets
        ):
            targets.append(event.state_key)
        out = []
        power = state.state.get("m.room.power_levels")
        create = state.state.get("m.room.create")
        version = None if create is None else create.event.room_version
        creators = (
            frozenset()
            if create is None or version is None
            else get_creators(version, create.event)
        )
        for i, user_id in enumerate(targets):
            if i % _YIELD_EVERY == _YIELD_EVERY - 1:
                await trio.lowlevel.checkpoint()  # big rooms: let requests run in between
            if user_id == event.sender:
                continue
            member = state.local_members.get(user_id)
            ctx = PushContext(
                user_id=user_id,
                display_name=None if member is None else member[1],
                member_count=state.joined_count,
                power_levels=None if power is None else power.event.content,
                creators=creators,
                privileged_creators=version is not None and version.privileged_creators,
            )
            outcome = (await self._evaluator(user_id)).evaluate(pdu, ctx)
            if outcome.notify:
                out.append(
                    NotificationRow(
                        user_id,
                        event.room_id,
                        event.event_id,
                        stored.stream_ordering,
                        outcome.actions,
                        outcome.highlight,
                        now,
                    )
                )
        return out

    async def _evaluator(self, user_id: str) -> PushEvaluator:
        evaluator = self._evaluators.get(user_id)
        if evaluator is None:
            content = await self._push_rules(user_id)
            evaluator = PushEvaluator(PushRuleset.from_content(user_id, content))
            if len(self._evaluators) >= 20_000:
                self._evaluators.clear()
            self._evaluators[user_id] = evaluator
        return evaluator

    async def _prune_loop(self) -> None:
        while True:
            try:
                await self._store.prune(self._clock.time_ms() - _RETENTION_MS)
            except Exception:
                logger.exception("pruning old push notifications failed")
            await trio.sleep(_PRUNE_INTERVAL_S)

    # --- per pusher ----------------------------------------------------------------------------

    def _worker(self, key: tuple[str, str, str]) -> _Worker:
        worker = self._workers.get(key)
        if worker is None:
            worker = self._workers[key] = _Worker(key)
        return worker

    def _kick(self, worker: _Worker) -> None:
        worker.wake.set()
        if not worker.running and self._nursery is not None:
            worker.running = True
            self._nursery.start_soon(self._run_worker, worker)

    async def _run_worker(self, worker: _Worker) -> None:
        try:
            while True:
                try:
                    await self._work(worker)
                    return  # the pusher is gone
                except Exception:  # e.g. the database is unavailable: try again later
                    logger.exception("pusher %s failed; restarting it", worker.key[1:])
                    await trio.sleep(self._settings.retry_max_s / 10)
        finally:
            worker.running = False
            if self._workers.get(worker.key) is worker:
                del self._workers[worker.key]
            keys = self._by_user.get(worker.key[0])
            if keys is not None:
                keys.discard(worker.key)
                if not keys:
                    del self._by_user[worker.key[0]]

    async def _work(self, worker: _Worker) -> None:
        user_id, app_id, pushkey = worker.key
        while True:
            worker.wake = trio.Event()
            pusher = await self._store.get_pusher(user_id, app_id, pushkey)
            if pusher is None:
                return
            self._by_user.setdefault(user_id, set()).add(worker.key)
            if not pusher.enabled:
                await worker.wake.wait()
                continue
            batch = await self._store.notifications_after(
                user_id, pusher.last_stream_ordering, _SEND_BATCH
            )
            if batch:
                for notif, stored in batch:
                    if not await self._deliver(pusher, notif, stored):
                        return
                continue
            if worker.badge:
                worker.badge = False
                await self._send_badge(pusher)
                continue
            await worker.wake.wait()

    async def _deliver(
        self, pusher: PusherRow, notif: NotificationRow, stored: StoredEvent | None
    ) -> bool:
        """Send one notification until it is delivered or given up on; False when the pusher
        is gone (rejected)."""
        key = pusher.key
        failing_since = pusher.failing_since
        interval = self._settings.retry_initial_s
        while True:
            rejected: list[str] | None = None
            if stored is not None:
                body = await self._body(pusher, notif, stored)
                try:
                    rejected = await self._gateway.notify(str(pusher.data.get("url")), body)
                except PushGatewayError as e:
                    logger.info("push to %s failed: %s", pusher.app_id, e)
                else:
                    logger.info(
                        "pushed %s to %s of %s", notif.event_id, pusher.app_id, pusher.user_id
                    )
            else:
                rejected = []  # the event is gone: nothing to send
            if rejected is not None:
                if pusher.pushkey in rejected:
                    logger.info("push gateway rejected pushkey of %s: removing", pusher.app_id)
                    await self._store.delete_pusher(*key)
                    return False
                self.pushes_sent += stored is not None
                await self._store.advance_pusher(*key, notif.stream_ordering)
                return True
            now = self._clock.time_ms()
            if failing_since is None:
                failing_since = now
                await self._store.set_failing_since(*key, now)
            elif now - failing_since > self._settings.give_up_after_s * 1000:
                logger.warning("pusher %s failing since %d: skipping", pusher.app_id, failing_since)
                await self._store.advance_pusher(
                    *key, notif.stream_ordering, failing_since=failing_since
                )
                return True
            await trio.sleep(interval)
            interval = min(interval * 2, self._settings.retry_max_s)
            current = await self._store.get_pusher(*key)
            if current is None:
                return False
            pusher = current

    async def _unread(self, user_id: str) -> int:
        rooms = await self._store.notified_rooms(user_id)
        read = {room: await self._read_upto(user_id, room) for room in rooms}
        return sum((await self._store.count_after(user_id, read)).values())

    def _device(self, pusher: PusherRow, tweaks: Mapping[str, Any]) -> JsonDict:
        data = {k: v for k, v in pusher.data.items() if k != "url"}
        return {
            "app_id": pusher.app_id,
            "pushkey": pusher.pushkey,
            "pushkey_ts": pusher.created_ts // 1000,
            "data": data,
            "tweaks": dict(tweaks),
        }

    async def _body(
        self, pusher: PusherRow, notif: NotificationRow, stored: StoredEvent
    ) -> JsonDict:
        event = stored.event
        tweaks = _tweaks(notif.actions)
        prio = (
            "high"
            if event.type == "m.room.encrypted" or tweaks.get("highlight") or tweaks.get("sound")
            else "low"
        )
        counts = {"unread": await self._unread(pusher.user_id)}
        n: JsonDict = {
            "event_id": event.event_id,
            "id": event.event_id,
            "room_id": event.room_id,
            "prio": prio,
            "counts": counts,
            "devices": [self._device(pusher, tweaks)],
        }
        if pusher.data.get("format") == "event_id_only":
            return {"notification": n}
        n["type"] = event.type
        n["sender"] = event.sender
        n["content"] = dict(event.content)
        if event.type == "m.room.member" and event.state_key is not None:
            n["membership"] = event.content.get("membership")
            n["user_is_target"] = event.state_key == pusher.user_id
        state = await self._store.room_push_state(event.room_id, self._server_name)
        name = _state_str(state.state.get("m.room.name"), "name")
        alias = _state_str(state.state.get("m.room.canonical_alias"), "alias")
        if name or alias:
            n["room_name"] = name or alias
        if alias:
            n["room_alias"] = alias
        sender_name = await self._store.display_name(event.room_id, event.sender)
        if sender_name:
            n["sender_display_name"] = sender_name
        return {"notification": n}

    async def _send_badge(self, pusher: PusherRow) -> None:
        body = {
            "notification": {
                "id": "",
                "type": None,
                "sender": "",
                "counts": {"unread": await self._unread(pusher.user_id)},
                "devices": [self._device(pusher, {})],
            }
        }
        try:
            rejected = await self._gateway.notify(str(pusher.data.get("url")), body)
        except PushGatewayError as e:
            logger.info("badge push to %s failed: %s", pusher.app_id, e)
            return
        if pusher.pushkey in rejected:
            await self._store.delete_pusher(*pusher.key)


def _tweaks(actions: Sequence[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for action in actions:
        if isinstance(action, Mapping) and isinstance(action.get("set_tweak"), str):
            tweak = action["set_tweak"]
            out[tweak] = action.get("value", True) if tweak == "highlight" else action.get("value")
    return out


def _state_str(stored: StoredEvent | None, key: str) -> str | None:
    if stored is None:
        return None
    value = stored.event.content.get(key)
    return value if isinstance(value, str) and value else None

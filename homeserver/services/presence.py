"""Presence: online / unavailable / offline, last active, and last-seen privacy.

Spec: client-server-api/modules/presence.md, ``presence.yaml``. Design and cost model:
docs/discussion/presence.md; the privacy setting: docs/reference/presence_privacy.md.

What moves a user's presence
----------------------------
- ``PUT /presence/{userId}/status`` sets the state and status message.
- ``/sync`` (:meth:`PresenceService.on_sync`) means "connected": an ``offline`` user becomes
  ``online`` (default ``set_presence``) or ``unavailable``; ``set_presence=offline`` changes
  nothing. A sync is *not* activity: a client that long-polls all day with nobody at the
  keyboard goes ``unavailable`` after ``idle_timeout_s``.
- Any other authenticated request (:meth:`PresenceService.on_activity`, from the request gate)
  is activity: it sets the last-active time, makes the user ``currently_active`` and turns
  ``unavailable`` into ``online`` (the spec's "any activity ... will cause the server to
  automatically set their presence to online"). Activity of an ``offline`` user is ignored:
  they are gone, or chose to look offline, and must not leak "last active 5 s ago".
- Timers: ``online`` with no activity for ``idle_timeout_s`` → ``unavailable``; no sync and no
  activity for ``offline_timeout_s`` → ``offline``; ``currently_active`` ends
  ``currently_active_s`` after the last activity.

Keeping it cheap
----------------
``on_activity`` is a dict assignment. The background task (:meth:`PresenceService.run`)
applies the collected activity every ``flush_interval_s``, and writes every user whose
*visible* presence (state, status message, ``currently_active``) changed in one transaction,
one PRESENCE stream position each, then notifies each user's rooms (``room_ids=``: the
notifier wakes only the long-polls registered on those rooms, never a member list).
A last-active time alone is what ``currently_active`` exists to hide (spec: no further
updates while it is true), so it is written without a stream position, at most once per
``last_active_write_interval_s`` per user; ``last_active_ago`` is computed when read, from
memory for users this process tracks. The timers are checked by one sweep every few seconds
over the users in memory, which are the users that are not offline.

Last-seen privacy
-----------------
A global account data entry of type :data:`PRIVACY_TYPE` with ``{"last_seen": "everyone" |
"contacts" | "nobody"}`` (default ``contacts``, the Matrix behaviour). ``GET`` of another
user's presence needs ``everyone``, or ``contacts`` and a shared room; otherwise
``403 M_FORBIDDEN``. In ``/sync``, where every target shares a room with the viewer, a
``nobody`` target's changes are left out; when the setting changes the user's presence takes a
new position, so viewers get ``{"presence": "offline"}`` (nothing else) once, and their
clients stop showing a stale "online".

Other servers (``services/federation_edus.py``): each published change of a local user is
offered to the publish listeners; :meth:`PresenceService.for_other_servers` gives what may leave
the server (nothing for a ``nobody`` user but the one ``offline`` when they become hidden).
Presence from other servers is written by :meth:`PresenceService.apply_remote` without timers
(their server tells us when it changes) and reaches ``/sync`` like a local user's.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import trio

from federation.core.errors import InvalidIdentifier
from federation.core.ids import parse_user_id
from homeserver.clock import Clock
from homeserver.config import PresenceConfig
from homeserver.errors import Forbidden, InvalidParam, NotFound
from homeserver.services.notifier import Notifier
from homeserver.storage.presence import PRIVACY_TYPE, PresenceChange, PresenceRow, PresenceStore
from homeserver.storage.users import UserStore
from homeserver.streams import StreamName

__all__ = [
    "PRESENCE_STATES",
    "PRIVACY_TYPE",
    "LastSeenPrivacy",
    "PresenceService",
    "privacy_of",
]

logger = logging.getLogger(__name__)

ONLINE = "online"
UNAVAILABLE = "unavailable"
OFFLINE = "offline"
PRESENCE_STATES = (ONLINE, UNAVAILABLE, OFFLINE)
#: Longest accepted status message, in characters.
MAX_STATUS_MSG = 1024
#: How often the timers are checked (they are coarse: minutes and tens of seconds).
SWEEP_INTERVAL_MS = 5_000

JsonDict = dict[str, Any]


class LastSeenPrivacy(enum.StrEnum):
    """Who may see a user's presence (the ``last_seen`` key of :data:`PRIVACY_TYPE`)."""

    EVERYONE = "everyone"
    CONTACTS = "contacts"  # people who share a room with the user
    NOBODY = "nobody"


DEFAULT_PRIVACY = LastSeenPrivacy.CONTACTS


def privacy_of(content: Mapping[str, Any] | None) -> LastSeenPrivacy:
    """The setting in an account data content; missing or unknown values are the default."""
    value = (content or {}).get("last_seen")
    try:
        return LastSeenPrivacy(value) if isinstance(value, str) else DEFAULT_PRIVACY
    except ValueError:
        return DEFAULT_PRIVACY


def _server_of(user_id: str) -> str | None:
    try:
        return parse_user_id(user_id).server_name
    except InvalidIdentifier:
        return None


@dataclass(slots=True)
class _Live:
    """A user's presence in memory: current values and what was last written."""

    state: str
    status_msg: str | None
    last_active_ts: int
    currently_active: bool
    last_sync_ts: int
    #: (state, status_msg, currently_active) as last published; None: never
    published: tuple[str, str | None, bool] | None
    persisted_last_active_ts: int
    last_active_written_ms: int
    privacy_changed: bool = False

    @classmethod
    def from_row(cls, row: PresenceRow | None, now: int) -> _Live:
        if row is None:
            return cls(OFFLINE, None, 0, False, 0, None, 0, now)
        return cls(
            row.state,
            row.status_msg,
            row.last_active_ts,
            row.currently_active,
            now if row.state != OFFLINE else 0,  # a grace period to reconnect after a restart
            (row.state, row.status_msg, row.currently_active),
            row.last_active_ts,
            now,
        )

    def visible(self) -> tuple[str, str | None, bool]:
        return (self.state, self.status_msg, self.currently_active)


class PresenceService:
    """Track, publish and serve presence.

    Args:
        store: the presence store.
        users: to tell an unknown user (404) from a hidden one (403).
        notifier: woken with each published change.
        clock: wall-clock milliseconds (last active, timers).
        config: the ``presence`` section.
        server_name: this server (only local users have presence here).
    """

    def __init__(
        self,
        store: PresenceStore,
        users: UserStore,
        notifier: Notifier,
        clock: Clock,
        config: PresenceConfig,
        *,
        server_name: str,
    ) -> None:
        self._store = store
        self._users = users
        self._notifier = notifier
        self._clock = clock
        self._cfg = config
        self._server_name = server_name
        self._live: dict[str, _Live] = {}
        self._activity: dict[str, int] = {}
        self._privacy_pending: set[str] = set()
        self._dirty: set[str] = set()
        self._last_sweep_ms = 0
        self._kick = trio.Event()
        self._publish_listeners: list[Callable[[str, bool], None]] = []

    def add_publish_listener(self, listener: Callable[[str, bool], None]) -> None:
        """Call ``listener(user_id, privacy_changed)`` after each published change of a local
        user (federation sends :meth:`for_other_servers` on)."""
        self._publish_listeners.append(listener)

    async def for_other_servers(self, user_id: str, privacy_changed: bool) -> JsonDict | None:
        """The presence of local ``user_id`` that other servers sharing a room may see, or None:
        a ``nobody`` user's presence never leaves, except ``offline`` when they became hidden."""
        row, privacy_content = await self._store.get_with_privacy(user_id)
        if row is None:
            return None
        if privacy_of(privacy_content) is LastSeenPrivacy.NOBODY:
            return {"presence": OFFLINE} if privacy_changed else None
        live = self._live.get(user_id)
        return self._content(row.state, row.status_msg, row.currently_active, live, row)

    async def apply_remote(
        self,
        user_id: str,
        state: str,
        status_msg: str | None,
        last_active_ago: int | None,
        currently_active: bool,
    ) -> None:
        """Publish the presence another server announced for its ``user_id`` (the caller has
        checked the origin).

        Raises:
            InvalidParam: an unknown state or an over-long status message.
        """
        if state not in PRESENCE_STATES:
            raise InvalidParam(f"presence must be one of {', '.join(PRESENCE_STATES)}")
        if status_msg is not None and len(status_msg) > MAX_STATUS_MSG:
            raise InvalidParam(f"status_msg is longer than {MAX_STATUS_MSG} characters")
        if not self._cfg.enabled:
            return
        now = self._clock.time_ms()
        last_active = now - max(0, last_active_ago) if last_active_ago is not None else 0
        change = PresenceChange(user_id, state, status_msg, last_active, currently_active)
        for write in await self._store.write_changes([change]):
            self._notifier.notify(
                StreamName.PRESENCE,
                write.row.stream_id,
                room_ids=write.room_ids,
                user_ids=(user_id,),
            )

    @property
    def enabled(self) -> bool:
        return self._cfg.enabled

    # --- inputs ----------------------------------------------------------------------------------

    def on_activity(self, user_id: str) -> None:
        """``user_id`` made a request (not ``/sync``): cheap, applied by the next flush."""
        if self._cfg.enabled:
            self._activity[user_id] = self._clock.time_ms()
            self._kick.set()

    def on_account_data_changed(self, user_id: str, data_type: str) -> None:
        """Global account data of ``user_id`` changed: re-publish if it is the privacy setting."""
        if self._cfg.enabled and data_type == PRIVACY_TYPE:
            self._privacy_pending.add(user_id)
            self._kick.set()

    async def on_sync(self, user_id: str, set_presence: str | None) -> None:
        """A ``/sync`` of ``user_id`` started, with its ``set_presence`` (default ``online``).

        Raises:
            InvalidParam: ``set_presence`` is not a presence state.
        """
        target = set_presence or ONLINE
        if target not in PRESENCE_STATES:
            raise InvalidParam(f"set_presence must be one of {', '.join(PRESENCE_STATES)}")
        if not self._cfg.enabled or target == OFFLINE:
            return
        live = await self._get_live(user_id)
        now = self._clock.time_ms()
        live.last_sync_ts = now
        if target == ONLINE and live.state == OFFLINE:
            live.state = ONLINE
            live.last_active_ts = now
            live.currently_active = True
        elif target == UNAVAILABLE and live.state != UNAVAILABLE:
            if live.state == OFFLINE and live.last_active_ts == 0:
                # connecting for the first time: "last active" is now, as a client shows it
                live.last_active_ts = now
            live.state = UNAVAILABLE
            live.currently_active = False
        self._mark(user_id, live)

    async def set_presence(self, user_id: str, presence: str, status_msg: str | None) -> None:
        """``PUT /presence/{userId}/status`` (the caller checked it is the requester's own).

        Raises:
            InvalidParam: unknown state or a status message over 1024 characters.
        """
        if presence not in PRESENCE_STATES:
            raise InvalidParam(f"presence must be one of {', '.join(PRESENCE_STATES)}")
        if status_msg is not None and len(status_msg) > MAX_STATUS_MSG:
            raise InvalidParam(f"status_msg is longer than {MAX_STATUS_MSG} characters")
        if not self._cfg.enabled:
            return
        live = await self._get_live(user_id)
        # This request's own activity must not turn an explicit "unavailable" back to online.
        self._activity.pop(user_id, None)
        now = self._clock.time_ms()
        live.state = presence
        live.status_msg = status_msg
        live.last_sync_ts = max(live.last_sync_ts, now)  # the client is there
        if presence == ONLINE:
            live.last_active_ts = now
            live.currently_active = True
        else:
            live.currently_active = False
        self._mark(user_id, live)

    # --- outputs ---------------------------------------------------------------------------------

    async def get_presence(self, requester_user_id: str, target_user_id: str) -> JsonDict:
        """``GET /presence/{userId}/status`` with the target's last-seen privacy enforced.

        Raises:
            InvalidParam: malformed user ID.
            NotFound: no such local user (remote users' presence is not tracked yet).
            Forbidden: the target's privacy setting hides their presence from the requester.
        """
        try:
            target = parse_user_id(target_user_id)
        except InvalidIdentifier:
            raise InvalidParam(f"{target_user_id!r} is not a valid user ID") from None
        if target.server_name != self._server_name:
            raise NotFound("No presence is known for remote users")
        row, privacy_content = await self._store.get_with_privacy(target_user_id)
        if row is None and await self._users.get_user(target_user_id) is None:
            raise NotFound("Unknown user")
        if requester_user_id != target_user_id:
            privacy = privacy_of(privacy_content)
            if privacy is LastSeenPrivacy.NOBODY or (
                privacy is LastSeenPrivacy.CONTACTS
                and not await self._store.share_a_room(requester_user_id, target_user_id)
            ):
                raise Forbidden("You are not allowed to see their presence")
        if not self._cfg.enabled:
            return {"presence": OFFLINE}
        live = self._live.get(target_user_id)
        if live is not None:
            return self._content(live.state, live.status_msg, live.currently_active, live)
        if row is None:
            return {"presence": OFFLINE}
        return self._content(row.state, row.status_msg, row.currently_active, None, row)

    async def presence_events(
        self, user_id: str, from_pos: int | None, to_pos: int
    ) -> list[JsonDict]:
        """``m.presence`` events for ``user_id``'s ``/sync``: their own and those of users who
        share a room with them, changed in ``(from_pos, to_pos]`` (every such user's current
        presence when ``from_pos`` is None), with the targets' privacy applied."""
        if not self._cfg.enabled or (from_pos is not None and from_pos >= to_pos):
            return []
        out: list[JsonDict] = []
        for row, privacy_content in await self._store.changes_for(user_id, from_pos, to_pos):
            if row.user_id == user_id or privacy_of(privacy_content) != LastSeenPrivacy.NOBODY:
                live = self._live.get(row.user_id)
                content = self._content(row.state, row.status_msg, row.currently_active, live, row)
            elif from_pos is not None and from_pos < row.privacy_stream_id <= to_pos:
                content = {"presence": OFFLINE}  # just hidden: clear what viewers showed
            else:
                continue
            out.append({"type": "m.presence", "sender": row.user_id, "content": content})
        return out

    async def presence_of(
        self, viewer: str, user_ids: Collection[str], to_pos: int
    ) -> list[JsonDict]:
        """``m.presence`` events with the current presence of ``user_ids`` (users who newly
        share a room with ``viewer``: their presence may not have changed in the sync's range,
        yet the viewer has never seen it), as of ``to_pos``, with the targets' privacy applied.
        Users who never published presence, or hide it, are ``offline``."""
        if not self._cfg.enabled or not user_ids:
            return []
        rows = {
            row.user_id: (row, privacy)
            for row, privacy in await self._store.changes_for(viewer, None, to_pos)
        }
        out: list[JsonDict] = []
        for user_id in sorted(user_ids):
            found = rows.get(user_id)
            content: JsonDict = {"presence": OFFLINE}
            if found is not None and (
                user_id == viewer or privacy_of(found[1]) != LastSeenPrivacy.NOBODY
            ):
                row = found[0]
                live = self._live.get(user_id)
                content = self._content(row.state, row.status_msg, row.currently_active, live, row)
            out.append({"type": "m.presence", "sender": user_id, "content": content})
        return out

    def _content(
        self,
        state: str,
        status_msg: str | None,
        currently_active: bool,
        live: _Live | None,
        row: PresenceRow | None = None,
    ) -> JsonDict:
        last_active = max(
            live.last_active_ts if live is not None else 0,
            row.last_active_ts if row is not None else 0,
        )
        content: JsonDict = {"presence": state}
        if last_active > 0:
            content["last_active_ago"] = max(0, self._clock.time_ms() - last_active)
        if state == ONLINE:
            content["currently_active"] = currently_active
        if status_msg is not None:
            content["status_msg"] = status_msg
        return content

    # --- memory ----------------------------------------------------------------------------------

    async def _get_live(self, user_id: str) -> _Live:
        await self._load([user_id])
        return self._live[user_id]

    async def _load(self, user_ids: Collection[str]) -> None:
        missing = [u for u in user_ids if u not in self._live]
        if not missing:
            return
        rows = await self._store.get_many(missing)
        now = self._clock.time_ms()
        for user_id in missing:
            if user_id not in self._live:  # not loaded by someone else meanwhile
                self._live[user_id] = _Live.from_row(rows.get(user_id), now)

    def _mark(self, user_id: str, live: _Live) -> None:
        if live.privacy_changed or live.visible() != live.published:
            self._dirty.add(user_id)
            self._kick.set()

    def online_local_users(self) -> list[str]:
        """Local users who are not offline (federation re-announces them now and then)."""
        return sorted(u for u, live in self._live.items() if live.state != OFFLINE)

    @property
    def tracked_users(self) -> int:
        """Users held in memory (for metrics and tests)."""
        return len(self._live)

    # --- the background task ---------------------------------------------------------------------

    async def tick(self) -> None:
        """Apply collected activity and privacy changes, check the timers (every
        :data:`SWEEP_INTERVAL_MS`), and write and publish what changed."""
        now = self._clock.time_ms()
        if self._activity or self._privacy_pending:
            activity, self._activity = self._activity, {}
            privacy, self._privacy_pending = self._privacy_pending, set()
            await self._load([*activity, *privacy])
            for user_id, ts in activity.items():
                self._apply_activity(user_id, self._live[user_id], ts)
            for user_id in privacy:
                live = self._live[user_id]
                live.privacy_changed = True
                self._mark(user_id, live)
        last_active_writes: list[tuple[str, int]] = []
        if now - self._last_sweep_ms >= SWEEP_INTERVAL_MS:
            self._last_sweep_ms = now
            last_active_writes = self._sweep(now)
        await self.flush()
        if last_active_writes:
            await self._store.write_last_active(last_active_writes)
            for user_id, ts in last_active_writes:
                written = self._live.get(user_id)
                if written is not None:
                    written.persisted_last_active_ts = max(written.persisted_last_active_ts, ts)

    def _apply_activity(self, user_id: str, live: _Live, ts: int) -> None:
        if live.state == OFFLINE or ts <= live.last_active_ts:
            return
        live.last_active_ts = ts
        if live.state == UNAVAILABLE:
            live.state = ONLINE
        live.currently_active = True
        self._mark(user_id, live)

    def _sweep(self, now: int) -> list[tuple[str, int]]:
        """Timers and eviction over the users in memory; returns last-active times to write."""
        idle_ms = int(self._cfg.idle_timeout_s * 1000)
        gone_ms = int(self._cfg.offline_timeout_s * 1000)
        active_ms = int(self._cfg.currently_active_s * 1000)
        write_every_ms = int(self._cfg.last_active_write_interval_s * 1000)
        writes: list[tuple[str, int]] = []
        evict: list[str] = []
        for user_id, live in self._live.items():
            if live.state != OFFLINE and now - max(live.last_sync_ts, live.last_active_ts) >= (
                gone_ms
            ):
                live.state = OFFLINE
                live.currently_active = False
            elif live.state == ONLINE and now - live.last_active_ts >= idle_ms:
                live.state = UNAVAILABLE
                live.currently_active = False
            elif live.currently_active and now - live.last_active_ts >= active_ms:
                live.currently_active = False
            self._mark(user_id, live)
            if user_id in self._dirty:
                continue
            if live.last_active_ts > live.persisted_last_active_ts:
                if now - live.last_active_written_ms >= write_every_ms:
                    live.last_active_written_ms = now
                    writes.append((user_id, live.last_active_ts))
            elif live.state == OFFLINE and not live.privacy_changed:
                evict.append(user_id)
        for user_id in evict:
            del self._live[user_id]
        return writes

    async def flush(self) -> None:
        """Write every changed user in one transaction and notify their rooms."""
        users, self._dirty = self._dirty, set()
        changes: list[PresenceChange] = []
        for user_id in sorted(users):
            live = self._live.get(user_id)
            if live is None or (not live.privacy_changed and live.visible() == live.published):
                continue
            changes.append(
                PresenceChange(
                    user_id,
                    live.state,
                    live.status_msg,
                    live.last_active_ts,
                    live.currently_active,
                    privacy_changed=live.privacy_changed,
                )
            )
        if not changes:
            return
        try:
            writes = await self._store.write_changes(changes)
        except BaseException:
            self._dirty.update(c.user_id for c in changes)  # try again next time
            raise
        now = self._clock.time_ms()
        for change, write in zip(changes, writes, strict=True):
            live = self._live.get(change.user_id)
            if live is not None:
                live.published = (change.state, change.status_msg, change.currently_active)
                live.persisted_last_active_ts = max(
                    live.persisted_last_active_ts, change.last_active_ts
                )
                live.last_active_written_ms = now
                if change.privacy_changed:
                    live.privacy_changed = False
            self._notifier.notify(
                StreamName.PRESENCE,
                write.row.stream_id,
                room_ids=write.room_ids,
                user_ids=(change.user_id,),
            )
            for listener in self._publish_listeners:
                listener(change.user_id, change.privacy_changed)

    async def load_online(self) -> None:
        """Take the users that are not offline into memory so their timers run (start-up)."""
        now = self._clock.time_ms()
        for row in await self._store.not_offline():
            if _server_of(row.user_id) == self._server_name:  # others' timers are their own
                self._live.setdefault(row.user_id, _Live.from_row(row, now))
        if self._live:
            self._kick.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Apply activity, run the timers and write changes, forever (in the app's nursery).

        Sleeps on an event while nobody is tracked; writes what is pending when cancelled.
        """
        if not self._cfg.enabled:
            task_status.started()
            await trio.sleep_forever()
        await self.load_online()
        task_status.started()
        try:
            while True:
                if not (self._live or self._activity or self._privacy_pending or self._dirty):
                    await self._kick.wait()
                self._kick = trio.Event()
                await trio.sleep(self._cfg.flush_interval_s)
                try:
                    await self.tick()
                except Exception:
                    logger.exception("presence update failed")
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                try:
                    await self._final_flush()
                except Exception:
                    logger.exception("writing presence at shutdown failed")

    async def _final_flush(self) -> None:
        await self.flush()
        pending = [
            (user_id, live.last_active_ts)
            for user_id, live in self._live.items()
            if live.last_active_ts > live.persisted_last_active_ts
        ]
        await self._store.write_last_active(pending)

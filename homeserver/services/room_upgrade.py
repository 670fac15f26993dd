"""Room upgrades: replace a room by a new one in another room version.

Spec: client-server-api/modules/room_upgrades.md › Server behaviour, ``room_upgrades.yaml``;
rooms/v12.md (room creators). What the server does, in order:

1. check that the requester may send ``m.room.tombstone`` in the old room (``403``), and that
   the version is known (``400 M_UNSUPPORTED_ROOM_VERSION``);
2. create the new room: ``m.room.create`` with ``predecessor``, the new ``room_version``, the
   old room's ``type`` and ``m.federate: false``, and in v12+ the requested
   ``additional_creators`` (never copied from the old room, as the spec says). The
   predecessor's ``event_id`` is the old room's tombstone, as Synapse does (SyTest checks
   it): for a v1-11 new room, whose ID is random, the ID is drawn first and the tombstone
   naming it is built and authorised, then the new room is created while the old room's
   lock is held, and the tombstone is persisted last (nothing is persisted in the old room
   if the new room cannot be made). A v12 room's ID is its create event's hash, so the new
   room comes first and its predecessor names the old room's last event (v1.16: "the
   ``event_id`` ... MAY be omitted");
3. the requester joins, then the transferable state is copied: power levels first, then
   ``m.room.join_rules``, ``history_visibility``, ``guest_access``, ``name``, ``topic``,
   ``avatar``, ``encryption``, ``server_acl`` (and a space's ``m.space.child`` events), then
   the bans (as Synapse does; MSC4167). Join rules, history visibility and guest access the
   old room lacks get the ``private_chat`` preset's values (``invite``, ``shared``,
   ``can_join``), as Synapse creates the new room with that preset under the copied state.
   No one else's membership is copied: a server cannot act for other servers' users, and
   the spec does not ask for invites (clients may invite);
4. send ``m.room.tombstone`` into the old room (for v12, after the new room exists);
5. move the local aliases, move the local aliases of ``m.room.canonical_alias`` to the new
   room's event and take them out of the old one; move the directory listing;
6. restrict the old room: ``events_default`` and ``invite`` at least ``max(50,
   users_default + 1)``; and give the requester their real level in the new room;
7. carry over the personal settings of every local user joined to the old room ("the server
   should automatically transfer/replicate some of the user's personalized settings such as
   notifications, tags, etc."), at upgrade time as Synapse does: their push rules about the
   old room (:meth:`PushRulesService.copy_room_rules`), their tags on it, and the old room's
   place in their ``m.direct`` lists. A failure there is logged, not the upgrade's.

A tombstone that names its own room as the replacement is refused (``400 M_INVALID_PARAM``,
:func:`check_tombstone`, hooked into the event creation path; as Synapse).

Power levels carried over: integers normalised (v1-9 allowed strings); in v12+ the new room's
creators are left out of ``users`` (they have infinite power and may not be listed), and the
old room's creators who are not creators of the new room get level 100 (at least the level to
send power levels) so they keep the power they had. To send every copied event the requester
is raised, in the new room's first power levels event (always allowed), to the highest level
any of them needs, and set back to their old level at the end.

Two upgrades of the same room are serialised (one lock per room) but not refused: the second
makes another replacement, as in Synapse.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from federation.core.errors import InvalidIdentifier, UnsupportedRoomVersion
from federation.core.events import Event, StateKey
from federation.core.ids import parse_user_id
from federation.core.power_levels import (
    NAMED_LEVEL_DEFAULTS,
    get_creators,
    get_power_level,
    get_required_power_level,
    parse_int_power_level,
)
from federation.core.room_versions import RoomIdFormat, RoomVersion, get_room_version
from homeserver.errors import Codes, Forbidden, InvalidParam, MatrixError, NotFound
from homeserver.services.directory import DirectoryService
from homeserver.services.events import EventCreationService, RoomLocks
from homeserver.services.notifier import Notifier
from homeserver.services.push_rules import PushRulesService
from homeserver.services.requester import Requester
from homeserver.storage.account_data import GLOBAL, AccountDataStore
from homeserver.storage.events import EventStore, StoredEvent
from homeserver.streams import StreamName

__all__ = ["TRANSFERABLE_STATE", "RoomUpgradeService", "UserSettingsCarrier", "check_tombstone"]

logger = logging.getLogger(__name__)

#: State copied to the replacement room (the spec's recommended list), after power levels.
TRANSFERABLE_STATE: tuple[str, ...] = (
    "m.room.join_rules",
    "m.room.history_visibility",
    "m.room.guest_access",
    "m.room.name",
    "m.room.topic",
    "m.room.avatar",
    "m.room.encryption",
    "m.room.server_acl",
)
#: What the new room gets for state the old room lacks: Synapse makes the new room with the
#: ``private_chat`` preset under the copied state.
PRESET_DEFAULTS: dict[str, dict[str, Any]] = {
    "m.room.join_rules": {"join_rule": "invite"},
    "m.room.history_visibility": {"history_visibility": "shared"},
    "m.room.guest_access": {"guest_access": "can_join"},
}
_TOMBSTONE_BODY = "This room has been replaced"
_DIRECT = "m.direct"
_TAG = "m.tag"


async def check_tombstone(room_id: str, content: Mapping[str, Any]) -> None:
    """The ``m.room.tombstone`` check of the event creation path: a room cannot be its own
    replacement (Synapse refuses it; SyTest "Cannot send tombstone event that points to the
    same room").

    Raises:
        InvalidParam: ``replacement_room`` is ``room_id``.
    """
    if content.get("replacement_room") == room_id:
        raise InvalidParam("A tombstone cannot name its own room as the replacement")


class UserSettingsCarrier:
    """Carries a local user's personal settings from an upgraded room to its replacement:
    push rules about it, tags on it, and its place in ``m.direct``.

    Args:
        push_rules: the push rules service (the one the API uses, so its change listeners run).
        account_data: where tags and ``m.direct`` are stored.
        notifier: told the ``ACCOUNT_DATA`` position of each write, for the owner's ``/sync``.
    """

    def __init__(
        self, push_rules: PushRulesService, account_data: AccountDataStore, notifier: Notifier
    ) -> None:
        self._push_rules = push_rules
        self._store = account_data
        self._notifier = notifier

    def _written(self, user_id: str, position: int | None) -> None:
        if position is not None:
            self._notifier.notify(StreamName.ACCOUNT_DATA, position, user_ids=(user_id,))

    async def carry_over(self, user_id: str, old_room_id: str, new_room_id: str) -> None:
        """Copy ``user_id``'s settings for ``old_room_id`` to ``new_room_id``."""
        await self._push_rules.copy_room_rules(user_id, old_room_id, new_room_id)

        old_tags = await self._store.get(user_id, old_room_id, _TAG)
        tags = (old_tags or {}).get("tags")
        if isinstance(tags, Mapping) and tags:

            def add_tags(current: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
                have = (current or {}).get("tags")
                merged = dict(have) if isinstance(have, Mapping) else {}
                added = {t: v for t, v in tags.items() if t not in merged}
                if not added:
                    return None
                return {**(current or {}), "tags": {**merged, **added}}

            self._written(user_id, await self._store.modify(user_id, new_room_id, _TAG, add_tags))

        def add_direct(current: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
            if not current:
                return None
            changed = False
            out: dict[str, Any] = {}
            for key, rooms in current.items():
                if isinstance(rooms, list) and old_room_id in rooms and new_room_id not in rooms:
                    out[key] = [*rooms, new_room_id]
                    changed = True
                else:
                    out[key] = rooms
            return out if changed else None

        self._written(user_id, await self._store.modify(user_id, GLOBAL, _DIRECT, add_direct))


class RoomUpgradeService:
    """``POST /rooms/{roomId}/upgrade``.

    Args:
        events: room state reads.
        creator: the event creation path (every event of the upgrade goes through it).
        directory: aliases and directory visibility.
        settings: carries the local members' personal settings over (None: nothing is).
    """

    def __init__(
        self,
        events: EventStore,
        creator: EventCreationService,
        directory: DirectoryService,
        settings: UserSettingsCarrier | None = None,
    ) -> None:
        self._events = events
        self._creator = creator
        self._directory = directory
        self._settings = settings
        self._locks = RoomLocks()

    async def upgrade(
        self,
        requester: Requester,
        room_id: str,
        new_version: str,
        additional_creators: Sequence[str] = (),
    ) -> str:
        """Upgrade ``room_id`` to ``new_version``; return the replacement room's ID.

        Raises:
            MatrixError: ``400 M_UNSUPPORTED_ROOM_VERSION``; ``400 M_INVALID_PARAM`` for a bad
                ``additional_creators`` entry; ``404 M_NOT_FOUND`` for an unknown room;
                ``403 M_FORBIDDEN`` without the power to send ``m.room.tombstone``.
        """
        try:
            version = get_room_version(new_version)
        except UnsupportedRoomVersion:
            raise MatrixError(
                400,
                Codes.UNSUPPORTED_ROOM_VERSION,
                f"This server does not support room version {new_version!r}",
            ) from None
        for user_id in additional_creators:
            try:
                parse_user_id(user_id)
            except InvalidIdentifier:
                raise InvalidParam(f"Invalid user ID in additional_creators: {user_id!r}") from None
        room = await self._events.get_room(room_id)
        if room is None:
            raise NotFound("Unknown room")
        async with self._locks.hold(room_id):
            state = {
                k: s.event
                for k, s in (await self._events.get_current_state_events(room_id)).items()
            }
            old_version = get_room_version(room.room_version)
            user_id = requester.user_id
            member = state.get(("m.room.member", user_id))
            if (
                member is None
                or member.content.get("membership") != "join"
                or get_power_level(old_version, state, user_id)
                < get_required_power_level(old_version, state, "m.room.tombstone", "")
            ):
                raise Forbidden("You cannot upgrade this room")
            extra = list(dict.fromkeys(u for u in additional_creators if u != user_id))

            async def tombstone(
                new_room_id: str,
                before_persist: Callable[[Event], Awaitable[None]] | None = None,
            ) -> None:
                await self._creator.create_event(
                    room_id,
                    sender=user_id,
                    event_type="m.room.tombstone",
                    content={"body": _TOMBSTONE_BODY, "replacement_room": new_room_id},
                    state_key="",
                    before_persist=before_persist,
                )

            if version.room_id_format is RoomIdFormat.CREATE_EVENT_HASH:
                tips = await self._events.get_forward_extremities(room_id)
                new_room_id = await self._create_replacement(
                    user_id,
                    room_id,
                    tips[-1].event_id if tips else None,
                    room.is_public,
                    old_version,
                    state,
                    version,
                    extra,
                )
                await tombstone(new_room_id)
            else:
                new_room_id = self._creator.new_room_id()

                async def create_replacement(built: Event) -> None:
                    await self._create_replacement(
                        user_id,
                        room_id,
                        built.event_id,
                        room.is_public,
                        old_version,
                        state,
                        version,
                        extra,
                        new_room_id=new_room_id,
                    )

                await tombstone(new_room_id, create_replacement)
            await self._move_aliases(user_id, room_id, new_room_id, state)
            if room.is_public:
                await self._directory.set_room_visibility(room_id, False)
            await self._restrict_old_room(user_id, room_id, old_version)
            await self._carry_over_settings(user_id, room_id, new_room_id, state)
        return new_room_id

    async def _carry_over_settings(
        self,
        user_id: str,
        old_room_id: str,
        new_room_id: str,
        state: Mapping[StateKey, Event],
    ) -> None:
        """Each local member's push rules, tags and ``m.direct`` entry (module docstring)."""
        if self._settings is None:
            return
        server = parse_user_id(user_id).server_name
        for (event_type, member), event in sorted(state.items()):
            if event_type != "m.room.member" or event.content.get("membership") != "join":
                continue
            try:
                if parse_user_id(member).server_name != server:
                    continue
                await self._settings.carry_over(member, old_room_id, new_room_id)
            except InvalidIdentifier:
                continue
            except Exception:
                logger.exception("could not carry %s's settings over to %s", member, new_room_id)

    async def _create_replacement(
        self,
        user_id: str,
        old_room_id: str,
        predecessor_event_id: str | None,
        is_public: bool,
        old_version: RoomVersion,
        state: Mapping[StateKey, Event],
        version: RoomVersion,
        additional_creators: list[str],
        *,
        new_room_id: str | None = None,
    ) -> str:
        old_create = state[("m.room.create", "")]
        predecessor: dict[str, str] = {"room_id": old_room_id}
        if predecessor_event_id is not None:
            predecessor["event_id"] = predecessor_event_id
        content: dict[str, Any] = {"room_version": version.identifier, "predecessor": predecessor}
        if not version.implicit_room_creator:
            content["creator"] = user_id
        room_type = old_create.content.get("type")
        if isinstance(room_type, str):
            content["type"] = room_type
        if old_create.content.get("m.federate") is False:
            content["m.federate"] = False
        if version.privileged_creators and additional_creators:
            content["additional_creators"] = additional_creators
        created = await self._creator.create_room_event(
            version, sender=user_id, content=content, is_public=is_public, room_id=new_room_id
        )
        new_room_id = created.room_id
        new_creators = {user_id, *additional_creators} if version.privileged_creators else set()

        async def send(event_type: str, body: Mapping[str, Any], key: str = "") -> None:
            await self._creator.create_event(
                new_room_id, sender=user_id, event_type=event_type, content=body, state_key=key
            )

        await send("m.room.member", {"membership": "join"}, user_id)
        final = _carried_power_levels(old_version, state, new_creators)
        first = dict(final)
        own = final["users"].get(user_id)
        if not version.privileged_creators:
            # Enough power to copy everything; set back to the real level at the end.
            needed = _highest_needed_level(final)
            if (own if own is not None else final.get("users_default", 0)) < needed:
                first["users"] = {**final["users"], user_id: needed}
        await send("m.room.power_levels", first)
        copied: list[tuple[str, str]] = [(t, "") for t in TRANSFERABLE_STATE]
        if room_type == "m.space":
            copied += sorted(k for k in state if k[0] == "m.space.child")
        for key in copied:
            event = state.get(key)
            if event is not None and event.content:
                await send(key[0], dict(event.content), key[1])
            elif key[1] == "" and key[0] in PRESET_DEFAULTS:
                await send(key[0], PRESET_DEFAULTS[key[0]])
        for (event_type, target), event in sorted(state.items()):
            if target in new_creators:
                continue  # a creator cannot be banned (nor was one banned: they upgraded)
            if event_type == "m.room.member" and event.content.get("membership") == "ban":
                ban: dict[str, Any] = {"membership": "ban"}
                if isinstance(event.content.get("reason"), str):
                    ban["reason"] = event.content["reason"]
                await send("m.room.member", ban, target)
        if first != final:
            await send("m.room.power_levels", final)
        return new_room_id

    async def _move_aliases(
        self, user_id: str, old_room_id: str, new_room_id: str, state: Mapping[StateKey, Event]
    ) -> None:
        """Move the local aliases, and the local ones of ``m.room.canonical_alias``."""
        moved = set(await self._directory.move_aliases(old_room_id, new_room_id))
        event = state.get(("m.room.canonical_alias", ""))
        if event is None:
            return
        old_content = dict(event.content)
        new_content: dict[str, Any] = {}
        alias = old_content.get("alias")
        if isinstance(alias, str) and alias in moved:
            new_content["alias"] = alias
            del old_content["alias"]
        alt = old_content.get("alt_aliases")
        if isinstance(alt, list):
            new_alt = [a for a in alt if a in moved]
            if new_alt:
                new_content["alt_aliases"] = new_alt
                left = [a for a in alt if a not in moved]
                if left:
                    old_content["alt_aliases"] = left
                else:  # nothing left: {} as Synapse leaves it (SyTest checks)
                    del old_content["alt_aliases"]
        if not new_content:
            return
        await self._creator.create_event(
            new_room_id,
            sender=user_id,
            event_type="m.room.canonical_alias",
            content=new_content,
            state_key="",
        )
        try:
            await self._creator.create_event(
                old_room_id,
                sender=user_id,
                event_type="m.room.canonical_alias",
                content=old_content,
                state_key="",
            )
        except MatrixError as e:
            logger.warning("could not update the canonical alias of %s: %s", old_room_id, e)

    async def _restrict_old_room(
        self,
        user_id: str,
        room_id: str,
        room_version: RoomVersion,
    ) -> None:
        """Spec: "setting ``events_default`` and ``invite`` to the greater of ``50`` and
        ``users_default + 1``"."""
        current: StoredEvent | None = await self._events.get_current_state_event(
            room_id, "m.room.power_levels", ""
        )
        if current is None:
            logger.info("room %s has no power levels to restrict after its upgrade", room_id)
            return
        content = dict(current.event.content)
        users_default = parse_int_power_level(room_version, content.get("users_default", 0)) or 0
        restricted = max(50, users_default + 1)
        changed = False
        for name in ("events_default", "invite"):
            level = parse_int_power_level(room_version, content.get(name, 0))
            if level is None or level < restricted:
                content[name] = restricted
                changed = True
        if not changed:
            return
        try:
            await self._creator.create_event(
                room_id,
                sender=user_id,
                event_type="m.room.power_levels",
                content=content,
                state_key="",
            )
        except MatrixError as e:
            logger.warning("could not restrict the power levels of %s: %s", room_id, e)


def _carried_power_levels(
    old_version: RoomVersion,
    state: Mapping[StateKey, Event],
    new_creators: set[str],
) -> dict[str, Any]:
    """The old room's power levels for the new room (see the module docstring)."""
    pl = state.get(("m.room.power_levels", ""))
    old: Mapping[str, Any] = pl.content if pl is not None else {}
    out: dict[str, Any] = {}
    for key, value in old.items():
        if key in NAMED_LEVEL_DEFAULTS:
            level = parse_int_power_level(old_version, value)
            if level is not None:
                out[key] = level
        elif key in ("events", "notifications", "users"):
            if isinstance(value, Mapping):
                levels = {k: parse_int_power_level(old_version, v) for k, v in value.items()}
                out[key] = {k: v for k, v in levels.items() if v is not None}
        else:
            out[key] = value
    users: dict[str, int] = dict(out.get("users", {}))
    old_creators = get_creators(old_version, state.get(("m.room.create", "")))
    if old_version.privileged_creators:
        keep = max(100, get_required_power_level(old_version, state, "m.room.power_levels", ""))
        for creator in old_creators - new_creators:
            users[creator] = max(users.get(creator, 0), keep)
    elif pl is None:
        for creator in old_creators:
            users[creator] = 100
    for creator in new_creators:
        users.pop(creator, None)
    out["users"] = users
    return out


def _highest_needed_level(content: Mapping[str, Any]) -> int:
    """The highest level any state event or ban in the new room needs under ``content``."""
    levels = [content.get("state_default", 50), content.get("ban", 50)]
    events = content.get("events")
    if isinstance(events, Mapping):
        levels.extend(events.values())
    return max(int(v) for v in levels)

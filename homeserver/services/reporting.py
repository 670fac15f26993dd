"""Reporting content: events, rooms and users reported to the server's operators.

Spec: client-server-api › Reporting Content
(https://spec.matrix.org/v1.19/client-server-api/#reporting-content):

    When processing event reports, servers MUST verify that the reporting user is currently
    joined to the room the event is in before accepting a report. [...] servers MUST NOT
    restrict room reports based on whether or not the reporting user is joined to the room.
    [...] Similarly, servers MUST NOT restrict user reports based on whether or not the
    reporting user is joined to any rooms that the reported user is joined to.

Reports are stored (``content_reports``) and logged at WARNING with the reporter and the target,
so an operator sees them in the server log at once; the stored reports are for the admin API.
An event report for an event the reporter cannot see, or in a room they are not joined to, is
``404 M_NOT_FOUND`` like an unknown event, so a report cannot probe for events. Unknown rooms
and unknown local users are ``404``; a remote user cannot be checked and is accepted.
"""

from __future__ import annotations

import logging

from federation.core.errors import InvalidIdentifier
from federation.core.ids import parse_user_id
from homeserver.clock import Clock
from homeserver.errors import InvalidParam, NotFound
from homeserver.services.events import room_id_of
from homeserver.services.requester import Requester
from homeserver.services.visibility import HistoryVisibility
from homeserver.storage.events import EventStore
from homeserver.storage.reports import ContentReport, ReportStore
from homeserver.storage.users import UserStore

__all__ = ["ReportingService"]

logger = logging.getLogger(__name__)

#: Longest stored reason, in characters (the rest is cut).
MAX_REASON = 4096


class ReportingService:
    """``POST /rooms/{roomId}/report/{eventId}``, ``/rooms/{roomId}/report``,
    ``/users/{userId}/report``.

    Args:
        reports: where reports are kept.
        events: the event store (events and rooms).
        visibility: the history-visibility rule and memberships.
        users: local accounts.
        clock: for the report's time.
        server_name: ours, to tell local users from remote ones.
    """

    def __init__(
        self,
        reports: ReportStore,
        events: EventStore,
        visibility: HistoryVisibility,
        users: UserStore,
        clock: Clock,
        *,
        server_name: str,
    ) -> None:
        self._reports = reports
        self._events = events
        self._visibility = visibility
        self._users = users
        self._clock = clock
        self._server_name = server_name

    async def _store(self, report: ContentReport) -> None:
        await self._reports.add(report)
        logger.warning(
            "content report: %s by %s about %s (reason: %r)",
            report.kind,
            report.reporter,
            report.event_id or report.room_id or report.target_user_id,
            report.reason,
        )

    async def report_event(
        self,
        requester: Requester,
        room_id: str,
        event_id: str,
        reason: str | None,
        score: int | None,
    ) -> None:
        """Report one event of a room the reporter is joined to.

        Raises:
            NotFound: the reporter is not joined, or the event is unknown, in another room or
                hidden from the reporter.
        """
        access = await self._visibility.get_access(room_id, requester.user_id)
        if access.membership != "join":
            raise NotFound("The event was not found or you are not joined to the room.")
        stored = await self._events.get_event(event_id)
        if (
            stored is None
            or stored.outlier
            or stored.rejected_reason is not None
            or room_id_of(stored.event) != room_id
            or not await self._visibility.filter_events_for_user(requester.user_id, [stored])
        ):
            raise NotFound("The event was not found or you are not joined to the room.")
        await self._store(
            ContentReport(
                "event",
                requester.user_id,
                room_id,
                event_id,
                None,
                _cut(reason),
                score,
                self._clock.time_ms(),
            )
        )

    async def report_room(self, requester: Requester, room_id: str, reason: str) -> None:
        """Report a room; the reporter need not be in it.

        Raises:
            NotFound: this server knows no such room.
        """
        if await self._events.get_room(room_id) is None:
            raise NotFound("The room was not found.")
        await self._store(
            ContentReport(
                "room",
                requester.user_id,
                room_id,
                None,
                None,
                _cut(reason),
                None,
                self._clock.time_ms(),
            )
        )

    async def report_user(self, requester: Requester, user_id: str, reason: str) -> None:
        """Report a user; the reporter need share no room with them.

        Raises:
            InvalidParam: not a user ID.
            NotFound: a local user who does not exist.
        """
        try:
            parsed = parse_user_id(user_id)
        except InvalidIdentifier:
            raise InvalidParam("Invalid user ID") from None
        if parsed.server_name == self._server_name and await self._users.get_user(user_id) is None:
            raise NotFound("The user was not found.")
        await self._store(
            ContentReport(
                "user",
                requester.user_id,
                None,
                None,
                user_id,
                _cut(reason),
                None,
                self._clock.time_ms(),
            )
        )


def _cut(reason: str | None) -> str | None:
    return None if reason is None else reason[:MAX_REASON]

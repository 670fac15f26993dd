"""Device-list tracking: whose device lists a user must re-fetch, and whom they can forget.

Spec: end_to_end_encryption.md › Tracking the device list for a user; ``GET /keys/changes`` and
``/sync``'s ``device_lists``:

- ``changed``: "users who have updated their device identity or cross-signing keys, or who now
  share an encrypted room with the client since the previous sync";
- ``left``: "users with whom we do not share any encrypted rooms anymore since the previous
  sync response".

The server tracks every room, not only encrypted ones (as Synapse does): a client that gets a
user it does not track simply ignores the entry. :func:`device_list_delta` is the pure rule;
the storage layer supplies what happened in the token range and the memberships now.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

__all__ = ["MembershipChange", "device_list_delta"]

_GONE = frozenset({"leave", "ban"})


@dataclass(frozen=True, slots=True)
class MembershipChange:
    """A membership event in the range: ``user_id`` became ``membership`` in ``room_id``."""

    room_id: str
    user_id: str
    membership: str


def device_list_delta(
    user_id: str,
    *,
    devices_changed: Iterable[str],
    membership_changes: Iterable[MembershipChange],
    rooms_now: AbstractSet[str],
    members_now: Mapping[str, AbstractSet[str]],
    sharing_now: AbstractSet[str],
) -> tuple[set[str], set[str]]:
    """``(changed, left)`` for ``user_id`` over a token range.

    Args:
        user_id: the syncing user.
        devices_changed: users whose devices or cross-signing keys changed in the range.
        membership_changes: membership events in the range, in rooms ``user_id`` is or was in.
        rooms_now: the rooms ``user_id`` is joined to now.
        members_now: the joined members now of each room named in ``membership_changes``.
        sharing_now: users who share a joined room with ``user_id`` now.

    Returns:
        ``changed``: users sharing a room now whose devices changed or who started sharing a
        room in the range (``user_id`` itself when its own devices changed); ``left``: users
        who shared a room in the range, or stopped sharing one, and share none now.
    """
    devices = set(devices_changed)
    changed = {u for u in devices if u in sharing_now or u == user_id}
    candidates_left: set[str] = set()
    for change in membership_changes:
        in_room_now = change.room_id in rooms_now
        members = members_now.get(change.room_id, frozenset())
        if change.user_id == user_id:
            if change.membership == "join" and in_room_now:
                changed.update(members)
            elif change.membership in _GONE and not in_room_now:
                candidates_left.update(members)
        elif change.membership == "join" and in_room_now:
            changed.add(change.user_id)
        elif change.membership in _GONE:
            candidates_left.add(change.user_id)
    # the user itself is in "changed" only for its own device changes, not its own joins
    changed = {u for u in changed if u in sharing_now and u != user_id}
    if user_id in devices:
        changed.add(user_id)
    left = {u for u in candidates_left if u not in sharing_now and u != user_id}
    return changed, left

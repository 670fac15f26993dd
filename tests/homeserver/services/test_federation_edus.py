"""FederationEdus with fakes around it: what leaves for other servers (only local users'
changes, only public receipts, presence as privacy allows and pinged again) and the
inbound checks on malformed EDUs and foreign users."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

import trio
import trio.testing

from homeserver.services.federation_edus import FederationEdus

ROOM = "!room:here.example"


class _Sender:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, Any]]] = []

    def send_edu(self, destination: str, edu_type: str, content: Mapping[str, Any]) -> None:
        self.sent.append((destination, edu_type, dict(content)))


class _Listened:
    """Stands in for the typing, receipts, to-device and presence services."""

    def __init__(self) -> None:
        self.typing: Callable[[str, str, bool], None] | None = None
        self.receipt: Callable[..., None] | None = None
        self.presence: Callable[[str, bool], None] | None = None
        self.online: list[str] = []
        self.hidden: set[str] = set()
        self.applied: list[tuple[Any, ...]] = []

    def add_listener(self, listener: Callable[[str, str, bool], None]) -> None:
        self.typing = listener

    def add_receipt_listener(self, listener: Callable[..., None]) -> None:
        self.receipt = listener

    def use_remote(self, remote: object) -> None:
        pass

    def add_publish_listener(self, listener: Callable[[str, bool], None]) -> None:
        self.presence = listener

    def online_local_users(self) -> list[str]:
        return list(self.online)

    async def for_other_servers(self, user_id: str, privacy_changed: bool) -> Any:
        if user_id in self.hidden:
            return {"presence": "offline"} if privacy_changed else None
        return {"presence": "online"}

    async def set_typing(self, *args: Any) -> None:
        self.applied.append(("typing", *args))

    async def apply_remote(self, *args: Any) -> None:
        self.applied.append(("presence", *args))


def _edus(fake: _Listened, sender: _Sender) -> FederationEdus:
    async def joined_servers(room_id: str) -> set[str]:
        return {"here.example", "there.example"}

    async def sharing(user_id: str) -> set[str]:
        return {"@a:here.example", "@b:there.example", "@c:third.example"}

    any_fake = cast(Any, fake)
    return FederationEdus(
        any_fake,
        any_fake,
        any_fake,
        sender,
        joined_servers,
        any_fake,
        sharing,
        server_name="here.example",
        presence_ping_interval_s=60,
    )


async def test_local_changes_leave_remote_ones_and_private_receipts_do_not(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fake, sender = _Listened(), _Sender()
    edus = _edus(fake, sender)
    assert fake.typing and fake.receipt and fake.presence
    async with trio.open_nursery() as nursery:
        await nursery.start(edus.run)
        fake.typing(ROOM, "@a:here.example", True)
        fake.typing(ROOM, "@b:there.example", True)  # applied from there: not echoed
        fake.receipt("@a:here.example", ROOM, "m.read.private", "$e", None, 1)
        fake.receipt("@a:here.example", ROOM, "m.read", "$e", "main", 2)
        fake.presence("@a:here.example", False)
        fake.hidden.add("@h:here.example")
        fake.presence("@h:here.example", False)  # hidden: nothing
        fake.presence("@h:here.example", True)  # just hidden: one offline
        await trio.testing.wait_all_tasks_blocked()
        sent = [(d, t) for d, t, _ in sender.sent]
        assert sent == [
            ("there.example", "m.typing"),
            ("there.example", "m.receipt"),
            ("there.example", "m.presence"),
            ("third.example", "m.presence"),
            ("there.example", "m.presence"),
            ("third.example", "m.presence"),
        ]
        receipt = sender.sent[1][2]
        assert receipt == {
            ROOM: {
                "m.read": {
                    "@a:here.example": {"event_ids": ["$e"], "data": {"ts": 2, "thread_id": "main"}}
                }
            }
        }
        assert sender.sent[4][2] == {
            "push": [{"user_id": "@h:here.example", "presence": "offline"}]
        }
        # presence of users who are online is sent again at each ping
        sender.sent.clear()
        fake.online = ["@a:here.example"]
        await trio.sleep(61)
        await trio.testing.wait_all_tasks_blocked()
        assert [(d, t) for d, t, _ in sender.sent] == [
            ("there.example", "m.presence"),
            ("third.example", "m.presence"),
        ]
        nursery.cancel_scope.cancel()


async def test_inbound_edus_of_foreign_users_or_bad_shape_are_dropped() -> None:
    fake, sender = _Listened(), _Sender()
    edus = _edus(fake, sender)
    await edus.on_typing_edu(
        "there.example", {"room_id": ROOM, "user_id": "@a:here.example", "typing": True}
    )
    await edus.on_typing_edu(
        "there.example", {"room_id": ROOM, "user_id": "@b:there.example", "typing": "yes"}
    )
    await edus.on_typing_edu(
        "there.example", {"room_id": 1, "user_id": "@b:there.example", "typing": True}
    )
    await edus.on_typing_edu(
        "there.example", {"room_id": ROOM, "user_id": "not an id", "typing": True}
    )
    await edus.on_presence_edu("there.example", {"push": "x"})
    await edus.on_presence_edu(
        "there.example", {"push": [1, {"user_id": "@a:here.example", "presence": "online"}]}
    )
    await edus.on_presence_edu(
        "there.example", {"push": [{"user_id": "@b:there.example", "presence": 5}]}
    )
    assert fake.applied == []
    await edus.on_typing_edu(
        "there.example", {"room_id": ROOM, "user_id": "@b:there.example", "typing": True}
    )
    await edus.on_presence_edu(
        "there.example",
        {"push": [{"user_id": "@b:there.example", "presence": "online", "last_active_ago": True}]},
    )
    assert fake.applied == [
        ("typing", "@b:there.example", ROOM, True, 30_000),
        ("presence", "@b:there.example", "online", None, None, False),
    ]

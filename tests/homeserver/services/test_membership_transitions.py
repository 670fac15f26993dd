"""check_transition: each membership action's rule beyond the auth rules (pure)."""

from __future__ import annotations

import pytest

from homeserver.errors import MatrixError
from homeserver.services.rooms import MembershipAction, check_transition

TARGET = "@t:test.local"


@pytest.mark.parametrize(
    ("action", "current", "allowed"),
    [
        ("kick", "join", True),
        ("kick", "invite", True),
        ("kick", "knock", True),
        ("kick", "leave", False),
        ("kick", "ban", False),
        ("kick", None, False),
        ("unban", "ban", True),
        ("unban", "leave", False),
        ("unban", "join", False),
        ("unban", None, False),
        # the others are the auth rules' to decide
        ("ban", None, True),
        ("ban", "ban", True),
        ("invite", "leave", True),
        ("join", None, True),
        ("leave", "join", True),
        ("knock", None, True),
    ],
)
def test_transition(action: MembershipAction, current: str | None, allowed: bool) -> None:
    if allowed:
        check_transition(action, TARGET, current)
        return
    with pytest.raises(MatrixError) as e:
        check_transition(action, TARGET, current)
    assert e.value.status == 403 and e.value.errcode == "M_FORBIDDEN"
    assert TARGET in e.value.msg

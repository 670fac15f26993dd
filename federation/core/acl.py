"""Server access control lists: may a server take part in a room?

Spec: client-server-api › Server Access Control Lists (ACLs) for rooms, the ``m.room.server_acl``
event (https://spec.matrix.org/v1.19/client-server-api/#mroomserver_acl), applied per request by
server-server-api › Server Access Control Lists (ACLs):

    1. If there is no ``m.room.server_acl`` event in the room state, allow.
    2. If the server name is an IP address (v4 or v6) literal, and ``allow_ip_literals`` is
       present and ``false``, deny.
    3. If the server name matches an entry in the ``deny`` list, deny.
    4. If the server name matches an entry in the ``allow`` list, allow.
    5. Otherwise, deny.

Patterns are case-insensitive globs (appendices › Glob-style matching: ``*`` any run of
characters, ``?`` one character) matched against the server name *without its port*. Entries
that are not strings are ignored, and ``allow``/``deny`` that are not lists count as empty, as
Synapse does; ``allow_ip_literals`` that is not a boolean counts as ``true``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

__all__ = ["server_allowed_by_acl"]


@lru_cache(maxsize=1024)
def _glob(pattern: str) -> re.Pattern[str]:
    parts = []
    for ch in pattern:
        if ch == "*":
            parts.append(".*")
        elif ch == "?":
            parts.append(".")
        else:
            parts.append(re.escape(ch))
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def _host(server_name: str) -> str:
    """The server name without its port (an IPv6 literal keeps its brackets)."""
    if server_name.startswith("["):
        end = server_name.find("]")
        return server_name[: end + 1] if end != -1 else server_name
    return server_name.rsplit(":", 1)[0] if ":" in server_name else server_name


def _is_ip_literal(host: str) -> bool:
    candidate = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return True


def _matches(host: str, entries: Any) -> bool:
    if not isinstance(entries, list):
        return False
    return any(isinstance(e, str) and _glob(e).fullmatch(host) for e in entries)


def server_allowed_by_acl(acl_content: Mapping[str, Any] | None, server_name: str) -> bool:
    """Whether ``server_name`` may take part in a room whose ``m.room.server_acl`` content is
    ``acl_content`` (None: the room has no ACL event)."""
    if acl_content is None:
        return True
    host = _host(server_name)
    if acl_content.get("allow_ip_literals") is False and _is_ip_literal(host):
        return False
    if _matches(host, acl_content.get("deny")):
        return False
    return _matches(host, acl_content.get("allow"))

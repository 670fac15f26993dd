"""Server ACLs of a room (``m.room.server_acl``), as applied to requests from other servers.

Spec: client-server-api › Server Access Control Lists (ACLs) for rooms; server-server-api ›
Server Access Control Lists (ACLs).

Stand-in until the pure check of ``federation/core/acl.py`` lands; same rules: the port is
ignored, IP literals are denied unless ``allow_ip_literals`` (default true), a server matching
a ``deny`` glob is denied, else it must match an ``allow`` glob (no ``allow``: nobody).
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
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def _host(server_name: str) -> str:
    if server_name.startswith("["):
        return server_name[: server_name.find("]") + 1] or server_name
    return server_name.rsplit(":", 1)[0] if server_name.count(":") == 1 else server_name


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _matches(patterns: Any, host: str) -> bool:
    if not isinstance(patterns, list):
        return False
    return any(isinstance(p, str) and _glob(p).fullmatch(host) for p in patterns)


def server_allowed_by_acl(content: Mapping[str, Any], server_name: str) -> bool:
    """Whether ``m.room.server_acl`` content lets ``server_name`` in."""
    host = _host(server_name)
    allow_ip = content.get("allow_ip_literals", True)
    if allow_ip is False and _is_ip_literal(host):
        return False
    if _matches(content.get("deny", []), host):
        return False
    return _matches(content.get("allow", []), host)

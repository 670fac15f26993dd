"""Fakes for the federation client's tests: DNS answers and a manual clock."""

from __future__ import annotations

from federation.client.discovery import SrvAnswer, SrvRecord
from federation.client.errors import DestinationUnreachable


class FakeDns:
    """DNS from dictionaries; records every lookup."""

    def __init__(
        self,
        addresses: dict[str, list[str]] | None = None,
        srv: dict[str, list[SrvRecord]] | None = None,
        srv_ttl: float = 300.0,
    ) -> None:
        self.address_map = addresses or {}
        self.srv_map = srv or {}
        self.srv_ttl = srv_ttl
        self.lookups: list[tuple[str, str]] = []

    async def srv(self, name: str) -> SrvAnswer:
        self.lookups.append(("SRV", name))
        return SrvAnswer(tuple(self.srv_map.get(name, [])), self.srv_ttl)

    async def addresses(self, host: str) -> list[str]:
        self.lookups.append(("A", host))
        if host not in self.address_map:
            raise DestinationUnreachable(host, "NXDOMAIN")
        return list(self.address_map[host])


class ManualClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

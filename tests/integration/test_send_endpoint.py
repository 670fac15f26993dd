"""``PUT /rooms/{roomId}/send/{eventType}/{txnId}`` (served as a raw endpoint): bad input gets
the same Matrix errors as on the framework path, and nothing is stored."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.conftest import RunningServer, ServerFactory

V3 = "/_matrix/client/v3"


async def _login(server: RunningServer, name: str) -> tuple[str, dict[str, str]]:
    body = await server.register(name)
    return body["user_id"], {"Authorization": f"Bearer {body['access_token']}"}


async def _room(server: RunningServer, headers: dict[str, str]) -> str:
    async with server.client(headers=headers) as c:
        r = await c.post(f"{V3}/createRoom", json={})
        assert r.status_code == 200, r.text
        room_id: str = r.json()["room_id"]
        return room_id


async def _messages(server: RunningServer, headers: dict[str, str], room_id: str) -> list[Any]:
    async with server.client(headers=headers) as c:
        r = await c.get(f"{V3}/rooms/{room_id}/messages", params={"dir": "b", "limit": 50})
        return [e for e in r.json()["chunk"] if e["type"] == "m.room.message"]


@pytest.mark.parametrize(
    ("content", "status", "errcode"),
    [
        (b"", 400, "M_NOT_JSON"),
        (b"{not json", 400, "M_NOT_JSON"),
        (b"[1, 2]", 400, "M_BAD_JSON"),
        (b'"text"', 400, "M_BAD_JSON"),
        (b'{"body": "' + b"x" * 70_000 + b'"}', 413, "M_TOO_LARGE"),
    ],
)
async def test_bad_bodies(
    homeserver_factory: ServerFactory, content: bytes, status: int, errcode: str
) -> None:
    server = await homeserver_factory(limits={"max_request_body_bytes": 65536})
    _, headers = await _login(server, "alice")
    room_id = await _room(server, headers)
    async with server.client(headers=headers) as c:
        r = await c.put(f"{V3}/rooms/{room_id}/send/m.room.message/t1", content=content)
        assert r.status_code == status, r.text
        assert r.json()["errcode"] == errcode
    assert await _messages(server, headers, room_id) == []


async def test_event_over_65536_bytes_is_too_large(server: RunningServer) -> None:
    _, headers = await _login(server, "alice")
    room_id = await _room(server, headers)
    async with server.client(headers=headers) as c:
        r = await c.put(
            f"{V3}/rooms/{room_id}/send/m.room.message/big",
            json={"msgtype": "m.text", "body": "x" * 66_000},
        )
        assert r.status_code == 413 and r.json()["errcode"] == "M_TOO_LARGE"
    assert await _messages(server, headers, room_id) == []


async def test_tokens_and_path_parameters(server: RunningServer) -> None:
    _, headers = await _login(server, "alice")
    room_id = await _room(server, headers)
    async with server.client() as c:
        url = f"{V3}/rooms/{room_id}/send/m.room.message/t"
        r = await c.put(url, json={"body": "x"})
        assert r.status_code == 401 and r.json()["errcode"] == "M_MISSING_TOKEN"
        r = await c.put(url, json={"body": "x"}, headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401 and r.json()["errcode"] == "M_UNKNOWN_TOKEN"
    async with server.client(headers=headers) as c:
        # a transaction ID with an encoded slash is one segment, and idempotent
        url = f"{V3}/rooms/{room_id}/send/m.room.message/a%2Fb"
        first = await c.put(url, json={"msgtype": "m.text", "body": "slash"})
        again = await c.put(url, json={"msgtype": "m.text", "body": "slash"})
        assert first.status_code == 200 and first.json() == again.json()
        r = await c.put(f"{V3}/rooms/not-a-room/send/m.room.message/t2", json={})
        assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM"
        r = await c.put(f"{V3}/rooms/!nowhere:test.local/send/m.room.message/t3", json={})
        assert r.status_code in (403, 404)
        # CORS headers come from the wrapper on the raw path too
        assert first.headers["access-control-allow-origin"] == "*"
    assert [e["content"]["body"] for e in await _messages(server, headers, room_id)] == ["slash"]


async def test_rate_limited(homeserver_factory: ServerFactory) -> None:
    server = await homeserver_factory(
        rate_limits={"enabled": True, "message": {"per_second": 0.001, "burst_count": 2}}
    )
    _, headers = await _login(server, "alice")
    room_id = await _room(server, headers)
    async with server.client(headers=headers) as c:
        codes = [
            (
                await c.put(
                    f"{V3}/rooms/{room_id}/send/m.room.message/r{i}",
                    json={"msgtype": "m.text", "body": str(i)},
                )
            )
            for i in range(3)
        ]
    assert [r.status_code for r in codes] == [200, 200, 429]
    assert codes[2].json()["errcode"] == "M_LIMIT_EXCEEDED"
    assert "retry-after" in codes[2].headers

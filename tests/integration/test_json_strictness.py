"""Event content must be canonical JSON (room versions 6+), bodies must be JSON: floats,
integers out of ±(2**53-1) and the NaN/Infinity extensions are refused; a PDU over 65536
bytes is 413. Over real sockets, on the send and state endpoints."""

from __future__ import annotations

import pytest

from tests.integration.conftest import RunningServer

V3 = "/_matrix/client/v3"


async def _user_and_room(server: RunningServer, room_version: str) -> tuple[dict[str, str], str]:
    body = await server.register("alice")
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    async with server.client(headers=headers) as c:
        r = await c.post(f"{V3}/createRoom", json={"room_version": room_version})
        assert r.status_code == 200, r.text
        return headers, r.json()["room_id"]


@pytest.mark.parametrize(
    ("value", "errcode"),
    [
        (2**53, "M_BAD_JSON"),
        (-(2**53), "M_BAD_JSON"),
        (10**30, "M_BAD_JSON"),
        (1.1, "M_BAD_JSON"),
        (1.0, "M_BAD_JSON"),
        ({"nested": [1, {"deeper": 0.5}]}, "M_BAD_JSON"),
        (2**53 - 1, None),
        (-(2**53) + 1, None),
    ],
)
async def test_event_content_numbers(server, value, errcode):
    headers, room_id = await _user_and_room(server, "6")
    async with server.client(headers=headers) as c:
        for n, url in enumerate(
            (
                f"{V3}/rooms/{room_id}/send/sytest.dummy/t1",
                f"{V3}/rooms/{room_id}/state/org.example.numbers/k",
            )
        ):
            r = await c.put(url, json={"msgtype": "sytest.dummy", "body": value})
            if errcode is None:
                assert r.status_code == 200, r.text
            else:
                assert (r.status_code, r.json()["errcode"]) == (400, errcode), (n, r.text)
        if errcode is not None:
            r = await c.get(f"{V3}/rooms/{room_id}/state/org.example.numbers/k")
            assert r.status_code == 404


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
async def test_special_values_are_not_json(server, literal):
    headers, room_id = await _user_and_room(server, "6")
    async with server.client(headers=headers) as c:
        r = await c.put(
            f"{V3}/rooms/{room_id}/send/sytest.dummy/t1",
            content=b'{"msgtype": "sytest.dummy", "body": ' + literal + b"}",
            headers={"Content-Type": "application/json"},
        )
        assert (r.status_code, r.json()["errcode"]) == (400, "M_NOT_JSON"), r.text


async def test_state_event_over_65536_bytes_is_too_large(server):
    headers, room_id = await _user_and_room(server, "10")
    async with server.client(headers=headers) as c:
        r = await c.put(f"{V3}/rooms/{room_id}/state/oooooooh", json={"key": "O" * 70_000})
        assert (r.status_code, r.json()["errcode"]) == (413, "M_TOO_LARGE"), r.text
        r = await c.get(f"{V3}/rooms/{room_id}/state/oooooooh")
        assert r.status_code == 404

"""Reporting events, rooms and users over real sockets (SQLite and PostgreSQL), and mautrix."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import trio
from mautrix.api import Method, Path
from mautrix.client import Client

from tests.integration.conftest import RunningServer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
V3 = "/_matrix/client/v3"


def _client(server: RunningServer, login: dict[str, Any]) -> Any:
    return server.client(headers={"Authorization": f"Bearer {login['access_token']}"})


async def test_reports_and_who_may_make_them(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    async with _client(server, alice) as a, _client(server, bob) as b:
        room = (await a.post(f"{V3}/createRoom", json={"preset": "private_chat"})).json()["room_id"]
        r = await a.put(
            f"{V3}/rooms/{room}/send/m.room.message/1", json={"msgtype": "m.text", "body": "x"}
        )
        event_id = r.json()["event_id"]
        caplog.set_level(logging.WARNING, logger="homeserver.services.reporting")

        # an event: only a joined member who can see it
        r = await a.post(
            f"{V3}/rooms/{room}/report/{event_id}", json={"reason": "spam", "score": -50}
        )
        assert r.status_code == 200 and r.json() == {}
        assert any(
            "spam" in rec.getMessage() and event_id in rec.getMessage() for rec in caplog.records
        )
        r = await b.post(f"{V3}/rooms/{room}/report/{event_id}", json={"reason": "x"})
        assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"
        r = await a.post(f"{V3}/rooms/{room}/report/$nope", json={})
        assert r.status_code == 404
        other = (await b.post(f"{V3}/createRoom", json={})).json()["room_id"]
        r = await b.post(f"{V3}/rooms/{other}/report/{event_id}", json={})
        assert r.status_code == 404  # the event is in another room
        # a room: also one the reporter is not in; an unknown one is 404
        assert (await b.post(f"{V3}/rooms/{room}/report", json={"reason": ""})).status_code == 200
        r = await b.post(f"{V3}/rooms/!unknown:test.local/report", json={"reason": "x"})
        assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"
        # a user: local ones must exist, remote ones cannot be checked
        r = await b.post(f"{V3}/users/{alice['user_id']}/report", json={"reason": "rude"})
        assert r.status_code == 200
        r = await b.post(f"{V3}/users/@ghost:test.local/report", json={"reason": "x"})
        assert r.status_code == 404
        r = await b.post(f"{V3}/users/@someone:elsewhere.org/report", json={"reason": "x"})
        assert r.status_code == 200
        r = await b.post(f"{V3}/users/not-a-user/report", json={"reason": "x"})
        assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM"

        # bad input
        for url, body, code in [
            (f"{V3}/rooms/{room}/report", {}, "M_MISSING_PARAM"),
            (f"{V3}/rooms/{room}/report", {"reason": 5}, "M_BAD_JSON"),
            (f"{V3}/users/{alice['user_id']}/report", {}, "M_MISSING_PARAM"),
            (f"{V3}/rooms/{room}/report/{event_id}", {"reason": []}, "M_BAD_JSON"),
            (f"{V3}/rooms/{room}/report/{event_id}", {"score": "bad"}, "M_BAD_JSON"),
            (f"{V3}/rooms/{room}/report/{event_id}", {"score": 5}, "M_INVALID_PARAM"),
        ]:
            r = await a.post(url, json=body)
            assert (r.status_code, r.json()["errcode"]) == (400, code), (url, body)
        r = await a.post(f"{V3}/rooms/{room}/report", content=b"[")
        assert r.status_code == 400 and r.json()["errcode"] == "M_NOT_JSON"
    async with server.client() as anon:
        assert (
            await anon.post(f"{V3}/rooms/{room}/report", json={"reason": "x"})
        ).status_code == 401


async def test_mautrix_reports_an_event(server: RunningServer) -> None:
    login = await server.register("mia")

    async def scenario() -> None:
        client = Client(
            base_url=server.base_url, token=login["access_token"], mxid=login["user_id"]
        )
        try:
            room_id = await client.create_room()
            event_id = await client.send_text(room_id, "something bad")
            await client.api.request(
                Method.POST,
                Path.v3.rooms[room_id].report[event_id],
                {"reason": "bad"},
            )
            await client.api.request(
                Method.POST, Path.v3.rooms[room_id].report, {"reason": "whole room"}
            )
        finally:
            await client.api.session.close()

    await trio.to_thread.run_sync(lambda: asyncio.run(scenario()))

"""POST/GET /user/{userId}/filter over real HTTP (SQLite and PostgreSQL), and matrix-nio's
``upload_filter``."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import pytest
import trio
from nio import (  # type: ignore[import-untyped]
    AsyncClient,
    AsyncClientConfig,
    UploadFilterResponse,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SPEC_EXAMPLE: dict[str, Any] = {
    "room": {
        "state": {"types": ["m.room.*"], "not_rooms": ["!726s6s6q:example.com"]},
        "timeline": {
            "limit": 10,
            "types": ["m.room.message"],
            "not_rooms": ["!726s6s6q:example.com"],
            "not_senders": ["@spam:example.com"],
        },
        "ephemeral": {
            "types": ["m.receipt", "m.typing"],
            "not_rooms": ["!726s6s6q:example.com"],
            "not_senders": ["@spam:example.com"],
        },
    },
    "presence": {"types": ["m.presence"], "not_senders": ["@alice:example.com"]},
    "event_format": "client",
    "event_fields": ["type", "content", "sender"],
}


def _path(user_id: str, filter_id: str | None = None) -> str:
    path = f"/_matrix/client/v3/user/{quote(user_id)}/filter"
    return path if filter_id is None else f"{path}/{quote(filter_id, safe='')}"


async def _account(server, name: str) -> tuple[str, dict[str, str]]:
    creds = await server.register(name)
    return creds["user_id"], {"Authorization": f"Bearer {creds['access_token']}"}


async def test_upload_and_download(server):
    alice, auth = await _account(server, "alice")
    async with server.client() as c:
        r = await c.post(_path(alice), json=SPEC_EXAMPLE, headers=auth)
        assert r.status_code == 200, r.text
        filter_id = r.json()["filter_id"]
        assert isinstance(filter_id, str) and not filter_id.startswith("{")
        assert r.json() == {"filter_id": filter_id}

        r = await c.get(_path(alice, filter_id), headers=auth)
        assert r.status_code == 200 and r.json() == SPEC_EXAMPLE

        # the same filter again: the same ID; another filter: a new one
        r = await c.post(_path(alice), json=SPEC_EXAMPLE, headers=auth)
        assert r.json() == {"filter_id": filter_id}
        r = await c.post(_path(alice), json={}, headers=auth)
        other_id = r.json()["filter_id"]
        assert other_id != filter_id
        assert (await c.get(_path(alice, other_id), headers=auth)).json() == {}

        # stored as given: unknown keys and nulls come back, the limit is not rewritten
        odd = {"org.example.future": [1, {"x": None}], "room": {"timeline": {"limit": 5000}}}
        r = await c.post(_path(alice), json=odd, headers=auth)
        got = await c.get(_path(alice, r.json()["filter_id"]), headers=auth)
        assert got.json() == odd


async def test_filters_belong_to_their_user(server):
    alice, alice_auth = await _account(server, "alice")
    bob, bob_auth = await _account(server, "bob")
    async with server.client() as c:
        r = await c.post(_path(alice), json={"room": {"rooms": ["!a:x"]}}, headers=alice_auth)
        alice_filter = r.json()["filter_id"]
        r = await c.post(_path(bob), json={}, headers=bob_auth)
        bob_filter = r.json()["filter_id"]
        assert alice_filter == bob_filter == "0"  # numbered per user

        # another user's path: 403, whether or not the filter exists
        cases: list[tuple[str, str, dict[str, Any] | None]] = [
            ("POST", _path(bob), {}),
            ("GET", _path(bob, bob_filter), None),
            ("GET", _path(bob, "12345"), None),
            ("POST", _path("@alice:elsewhere.example"), {}),
        ]
        for method, url, body in cases:
            r = await c.request(method, url, json=body, headers=alice_auth)
            assert (r.status_code, r.json()["errcode"]) == (403, "M_FORBIDDEN"), (method, url)

        # Bob's filter 0 is a different filter from Alice's 0
        assert (await c.get(_path(bob, "0"), headers=bob_auth)).json() == {}
        assert (await c.get(_path(alice, "0"), headers=alice_auth)).json() == {
            "room": {"rooms": ["!a:x"]}
        }


async def test_unknown_filter_is_404(server):
    alice, auth = await _account(server, "alice")
    async with server.client() as c:
        await c.post(_path(alice), json={}, headers=auth)
        for filter_id in ["1", "999999", "abc", "-1", "{}", "0x0", "1" * 30, "٣"]:
            r = await c.get(_path(alice, filter_id), headers=auth)
            assert (r.status_code, r.json()["errcode"]) == (404, "M_NOT_FOUND"), filter_id


async def test_auth_required(server):
    alice, _ = await _account(server, "alice")
    async with server.client() as c:
        r = await c.post(_path(alice), json={})
        assert (r.status_code, r.json()["errcode"]) == (401, "M_MISSING_TOKEN")
        r = await c.get(_path(alice, "0"), headers={"Authorization": "Bearer nope"})
        assert (r.status_code, r.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN")


BAD_FILTERS = [
    (b"{not json", 400, "M_NOT_JSON"),
    (b"", 400, "M_NOT_JSON"),
    (b"[]", 400, "M_BAD_JSON"),
    (b'"filter"', 400, "M_BAD_JSON"),
    (b'{"room": []}', 400, "M_BAD_JSON"),
    (b'{"room": {"timeline": {"types": "m.room.message"}}}', 400, "M_BAD_JSON"),
    (b'{"room": {"timeline": {"limit": "10"}}}', 400, "M_BAD_JSON"),
    (b'{"room": {"include_leave": "yes"}}', 400, "M_BAD_JSON"),
    (b'{"event_fields": "content"}', 400, "M_BAD_JSON"),
    (b'{"room": {"timeline": {"limit": -1}}}', 400, "M_INVALID_PARAM"),
    (b'{"room": {"timeline": {"limit": 9007199254740992}}}', 400, "M_INVALID_PARAM"),
    (b'{"event_format": "xml"}', 400, "M_INVALID_PARAM"),
    (b'{"presence": {"senders": ["alice"]}}', 400, "M_INVALID_PARAM"),
    (b'{"room": {"rooms": ["#alias:test.local"]}}', 400, "M_INVALID_PARAM"),
]


async def test_bad_filters(server):
    alice, auth = await _account(server, "alice")
    headers = {**auth, "Content-Type": "application/json"}
    async with server.client() as c:
        for content, status, errcode in BAD_FILTERS:
            r = await c.post(_path(alice), content=content, headers=headers)
            assert (r.status_code, r.json()["errcode"]) == (status, errcode), (content, r.text)
            assert r.json()["error"]
        # nothing was stored
        r = await c.get(_path(alice, "0"), headers=auth)
        assert r.status_code == 404


async def test_body_over_the_limit(homeserver_factory):
    srv = await homeserver_factory(limits={"max_request_body_bytes": 2048})
    alice, auth = await _account(srv, "alice")
    big = {"room": {"not_rooms": [f"!room{i}:test.local" for i in range(400)]}}
    async with srv.client() as c:
        r = await c.post(_path(alice), json=big, headers=auth)
    assert (r.status_code, r.json()["errcode"]) == (413, "M_TOO_LARGE")


async def test_matrix_nio_upload_filter(server):
    creds = await server.register("nio")

    async def scenario(base_url: str) -> tuple[Any, Any]:
        client = AsyncClient(
            base_url, creds["user_id"], config=AsyncClientConfig(store_sync_tokens=False)
        )
        client.access_token = creds["access_token"]
        client.user_id = creds["user_id"]
        try:
            ok = await client.upload_filter(
                event_fields=["type", "content.body", "sender"],
                presence={"not_types": ["*"]},
                account_data={"types": ["m.direct"]},
                room={
                    "timeline": {"limit": 20, "lazy_load_members": True},
                    "state": {"lazy_load_members": True},
                    "include_leave": False,
                },
            )
            bad = await client.upload_filter(room={"timeline": {"limit": -1}})
            return ok, bad
        finally:
            await client.close()

    ok, bad = await trio.to_thread.run_sync(lambda: asyncio.run(scenario(server.base_url)))
    assert isinstance(ok, UploadFilterResponse), ok
    assert not isinstance(bad, UploadFilterResponse)
    assert bad.status_code == "M_INVALID_PARAM"
    async with server.client() as c:
        r = await c.get(
            _path(creds["user_id"], ok.filter_id),
            headers={"Authorization": f"Bearer {creds['access_token']}"},
        )
    assert r.json() == {
        "event_fields": ["type", "content.body", "sender"],
        "event_format": "client",
        "presence": {"not_types": ["*"]},
        "account_data": {"types": ["m.direct"]},
        "room": {
            "timeline": {"limit": 20, "lazy_load_members": True},
            "state": {"lazy_load_members": True},
            "include_leave": False,
        },
    }

"""Identifiers are checked as whole strings: a trailing newline never passes (Python's ``$``
matches before one, so every check uses ``fullmatch``). Over real sockets where a client can
send one, and the config and protocol parsers directly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from federation.core.errors import InvalidIdentifier
from federation.core.ids import (
    check_new_localpart,
    parse_event_id,
    parse_room_alias,
    parse_room_id,
    parse_server_name,
    parse_user_id,
)
from homeserver.config import ConfigError, load_config
from tests.integration.conftest import RunningServer

V3 = "/_matrix/client/v3"
REGISTER = f"{V3}/register"


def _dummy(username: str) -> dict[str, Any]:
    return {"username": username, "password": "sUp3rs3kr1t", "auth": {"type": "m.login.dummy"}}


async def test_registration_refuses_a_trailing_newline(server: RunningServer) -> None:
    async with server.client() as c:
        r = await c.post(REGISTER, json=_dummy("chrtestuser-10-"))
        assert r.status_code == 200, r.text
        for username in ("chrtestuser-10-\n", "newline\n", "@newline:test.local\n", "a\nb"):
            r = await c.post(REGISTER, json=_dummy(username))
            assert r.status_code == 400, (username, r.text)
            assert r.json()["errcode"] == "M_INVALID_USERNAME"
            r = await c.get(f"{V3}/register/available", params={"username": username})
            assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_USERNAME"
        # nothing was made under the name
        r = await c.get(f"{V3}/register/available", params={"username": "newline"})
        assert r.status_code == 200 and r.json() == {"available": True}
        # and the existing account is not reached through its name plus a newline
        r = await c.post(
            f"{V3}/login",
            json={
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": "chrtestuser-10-\n"},
                "password": "sUp3rs3kr1t",
            },
        )
        assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"


async def test_client_api_refuses_identifiers_with_a_trailing_newline(
    server: RunningServer,
) -> None:
    login = await server.register("alice")
    headers = {"Authorization": f"Bearer {login['access_token']}"}
    async with server.client(headers=headers) as a:
        for name in ("nl\n", "nl\r", "n\x0bl", "n\x01l", "n l"):
            r = await a.post(f"{V3}/createRoom", json={"room_alias_name": name})
            assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM", name
        r = await a.post(f"{V3}/createRoom", json={})
        room_id = r.json()["room_id"]

        # room IDs (the server part)
        r = await a.get(f"{V3}/rooms/{room_id}%0A/state")
        assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM"
        # event IDs
        r = await a.get(f"{V3}/rooms/{room_id}/event/$abc%0A")
        assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM"
        r = await a.get(f"{V3}/rooms/{room_id}/event/$unknown")
        assert r.status_code == 404
        # user IDs
        r = await a.post(f"{V3}/rooms/{room_id}/invite", json={"user_id": "@bob:test.local\n"})
        assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM"
        # aliases: neither in the server name nor (for a new alias) in the localpart
        for alias in ("%23n%09l:test.local", "%23nl%0B:test.local", "%23nl%01:test.local"):
            r = await a.put(f"{V3}/directory/room/{alias}", json={"room_id": room_id})
            assert r.status_code == 400, (alias, r.text)
            assert r.json()["errcode"] == "M_INVALID_PARAM"
        # (a newline in this path matches no route at all)
        for alias in ("%23nl:test.local%0A", "%23nl%0A:test.local"):
            r = await a.put(f"{V3}/directory/room/{alias}", json={"room_id": room_id})
            assert r.status_code in (400, 404) and r.json()["errcode"] != "M_NOT_FOUND", r.text
        r = await a.get(f"{V3}/directory/room/%23nl:test.local")
        assert r.status_code == 404
        r = await a.put(f"{V3}/directory/room/%23nl:test.local", json={"room_id": room_id})
        assert r.status_code == 200, r.text
        # media: server names and media IDs
        for path in ("test.local%0A/abcdef", "test.local/abcdef%0A"):
            r = await a.get(f"/_matrix/client/v1/media/download/{path}")
            assert r.status_code in (400, 404), r.text
            assert r.json()["errcode"] in ("M_INVALID_PARAM", "M_NOT_FOUND")
        # a phone verification's client secret
        r = await a.post(
            f"{V3}/register/msisdn/requestToken",
            json={
                "client_secret": "secret\n",
                "country": "DE",
                "phone_number": "0151 23456789",
                "send_attempt": 1,
            },
        )
        assert r.status_code == 400, r.text


@pytest.mark.parametrize(
    "parse",
    [parse_user_id, parse_room_alias, parse_room_id],
)
def test_protocol_parsers_refuse_a_newline_after_the_server(parse: Any) -> None:
    sigil = {parse_user_id: "@", parse_room_alias: "#", parse_room_id: "!"}[parse]
    parse(f"{sigil}abc:example.org")
    with pytest.raises(InvalidIdentifier):
        parse(f"{sigil}abc:example.org\n")


def test_server_names_localparts_and_event_ids_are_whole_strings() -> None:
    with pytest.raises(InvalidIdentifier):
        parse_server_name("example.org\n")
    with pytest.raises(InvalidIdentifier):
        check_new_localpart("alice\n", "example.org")
    event_id = "$" + "a" * 43
    parse_event_id(event_id)
    with pytest.raises(InvalidIdentifier):
        parse_event_id(event_id + "\n")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('server_name: "example.org\\n"\n', "server_name"),
        ('server_name: example.org\ndatabase: {url: "sqlite:///x.db\\n"}\n', "database"),
        (
            'server_name: example.org\nfederation: {trusted_key_servers: [{server_name: "a.org\\n"}]}\n',
            "server_name",
        ),
    ],
)
def test_config_refuses_a_trailing_newline(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "hs.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert problem in str(exc.value)

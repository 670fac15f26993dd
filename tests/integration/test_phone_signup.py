"""Phone number sign-up and login end to end, and their failure modes (real sockets).

The first tests use the file SMS sender; the last ones run a real HTTP server standing in for
the SMS gateway (codes are read from what it received) and walk the registration lock.
"""

from __future__ import annotations

import json
import re
from functools import partial
from typing import Any

import hypercorn.trio
import pytest
import trio
from hypercorn.config import Config as HypercornConfig

NUMBER = "+4915123456789"  # a valid German mobile number
REQUEST = "/_matrix/client/v3/register/msisdn/requestToken"


def token_body(secret: str = "s3cret", attempt: int = 1, **kw):
    return {
        "client_secret": secret,
        "country": "DE",
        "phone_number": "0151 23456789",
        "send_attempt": attempt,
        **kw,
    }


async def submit(c, url: str, sid: str, code: str, secret: str = "s3cret"):
    return await c.post(url, json={"sid": sid, "client_secret": secret, "token": code})


async def test_phone_signup_end_to_end(server):
    async with server.client() as c:
        r = await c.post(REQUEST, json=token_body())
        assert r.status_code == 200, r.text
        sid, url = r.json()["sid"], r.json()["submit_url"]
        assert url.startswith(server.base_url)
        code = server.sms_code(NUMBER)
        assert len(code) == 6 and code.isdigit()

        # registering before the code is submitted fails the msisdn stage
        creds = {"sid": sid, "client_secret": "s3cret"}
        body = {"username": "phoebe", "password": "correct horse", "auth": {}}
        r = await c.post("/_matrix/client/v3/register", json=body)
        assert r.status_code == 401
        flows = [f["stages"] for f in r.json()["flows"]]
        assert ["m.login.msisdn"] in flows
        session = r.json()["session"]
        body["auth"] = {"type": "m.login.msisdn", "threepid_creds": creds, "session": session}
        r = await c.post("/_matrix/client/v3/register", json=body)
        assert (r.status_code, r.json()["errcode"]) == (401, "M_UNAUTHORIZED")

        r = await submit(c, url, sid, code)
        assert r.status_code == 200 and r.json() == {"success": True}
        r = await c.post("/_matrix/client/v3/register", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["user_id"] == "@phoebe:test.local"
        token = r.json()["access_token"]

        # the number is bound
        r = await c.get(
            "/_matrix/client/v3/account/3pid", headers={"Authorization": f"Bearer {token}"}
        )
        assert r.json()["threepids"][0]["medium"] == "msisdn"
        assert r.json()["threepids"][0]["address"] == NUMBER[1:]

        # login by phone: m.id.phone (as typed, with country) and m.id.thirdparty msisdn
        for identifier in (
            {"type": "m.id.phone", "country": "DE", "phone": "0151-2345 6789"},
            {"type": "m.id.thirdparty", "medium": "msisdn", "address": NUMBER[1:]},
        ):
            r = await c.post(
                "/_matrix/client/v3/login",
                json={
                    "type": "m.login.password",
                    "identifier": identifier,
                    "password": "correct horse",
                },
            )
            assert r.status_code == 200, r.text
            assert r.json()["user_id"] == "@phoebe:test.local"

        # the number is taken now: a second sign-up is refused before any SMS goes out
        r = await c.post(REQUEST, json=token_body(secret="other"))
        assert (r.status_code, r.json()["errcode"]) == (400, "M_THREEPID_IN_USE")


async def test_same_secret_and_attempt_gives_same_sid_without_new_sms(server):
    async with server.client() as c:
        r1 = await c.post(REQUEST, json=token_body())
        r2 = await c.post(REQUEST, json=token_body())
        assert r1.json()["sid"] == r2.json()["sid"]
        assert len(server.sms_file.read_text().splitlines()) == 1
        # a higher send_attempt inside the resend interval: 429 with retry_after_ms
        r3 = await c.post(REQUEST, json=token_body(attempt=2))
        assert r3.status_code == 429
        assert r3.json()["errcode"] == "M_LIMIT_EXCEEDED"
        assert 0 < r3.json()["retry_after_ms"] <= 60_000
        assert len(server.sms_file.read_text().splitlines()) == 1


async def test_wrong_code_three_times_burns_it(server):
    async with server.client() as c:
        r = await c.post(REQUEST, json=token_body())
        sid, url = r.json()["sid"], r.json()["submit_url"]
        code = server.sms_code(NUMBER)
        wrong = "000000" if code != "000000" else "111111"
        for _ in range(3):
            r = await submit(c, url, sid, wrong)
            assert (r.status_code, r.json()["errcode"]) == (400, "M_THREEPID_AUTH_FAILED")
        # even the right code no longer works
        r = await submit(c, url, sid, code)
        assert (r.status_code, r.json()["errcode"]) == (400, "M_THREEPID_AUTH_FAILED")
        # a wrong client secret does not find the session
        r = await submit(c, url, sid, code, secret="nope")
        assert (r.status_code, r.json()["errcode"]) == (404, "M_NOT_FOUND")


@pytest.mark.parametrize(
    "overrides, body, status, errcode",
    [
        ({"otp": {"blocked_countries": ["DE"]}}, token_body(), 403, "M_THREEPID_DENIED"),
        ({"otp": {"allowed_countries": ["US"]}}, token_body(), 403, "M_THREEPID_DENIED"),
        ({}, token_body(phone_number="12"), 400, "M_INVALID_PARAM"),
        ({}, token_body(secret="bad secret!"), 400, "M_INVALID_PARAM"),
        ({}, {**token_body(), "send_attempt": "1"}, 400, "M_BAD_JSON"),
        ({}, {"client_secret": "x", "country": "DE"}, 400, "M_MISSING_PARAM"),
        ({"otp": {"enabled": False}}, token_body(), 400, "M_THREEPID_DENIED"),
    ],
)
async def test_request_token_refusals(homeserver_factory, overrides, body, status, errcode):
    srv = await homeserver_factory(**overrides)
    async with srv.client() as c:
        r = await c.post(REQUEST, json=body)
        assert (r.status_code, r.json()["errcode"]) == (status, errcode), r.text
    assert not srv.sms_file.exists()


async def test_add_and_delete_phone_on_existing_account(server):
    reg = await server.register("quinn", "correct horse")
    auth = {"Authorization": f"Bearer {reg['access_token']}"}
    async with server.client(headers=auth) as c:
        r = await c.post("/_matrix/client/v3/account/3pid/msisdn/requestToken", json=token_body())
        sid, url = r.json()["sid"], r.json()["submit_url"]
        assert (await submit(c, url, sid, server.sms_code(NUMBER))).status_code == 200
        add = {"sid": sid, "client_secret": "s3cret"}
        r = await c.post("/_matrix/client/v3/account/3pid/add", json=add)
        assert r.status_code == 401 and r.json()["flows"] == [{"stages": ["m.login.password"]}]
        add["auth"] = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "quinn"},
            "password": "correct horse",
            "session": r.json()["session"],
        }
        r = await c.post("/_matrix/client/v3/account/3pid/add", json=add)
        assert r.status_code == 200, r.text
        r = await c.get("/_matrix/client/v3/account/3pid")
        assert [t["address"] for t in r.json()["threepids"]] == [NUMBER[1:]]
        r = await c.post(
            "/_matrix/client/v3/account/3pid/delete",
            json={"medium": "msisdn", "address": NUMBER[1:]},
        )
        assert r.json() == {"id_server_unbind_result": "no-support"}
        r = await c.get("/_matrix/client/v3/account/3pid")
        assert r.json()["threepids"] == []


# --- through a real SMS gateway, with the registration lock ---------------------------------

PIN_PATH = "/_matrix/client/unstable/org.example.reglock/pin"
LOGIN_TOKEN = "/_matrix/client/unstable/org.example.reglock/login/msisdn/requestToken"
LOGIN = "/_matrix/client/v3/login"


class SmsGateway:
    """A stand-in SMS gateway: an ASGI app served by hypercorn on 127.0.0.1:0.

    Records every request; answers ``fail_status`` while that is set, else 202.
    """

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.fail_status: int | None = None
        self.url = ""

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.received.append(
            {
                "method": scope["method"],
                "path": scope["path"],
                "headers": {k.decode().lower(): v.decode() for k, v in scope["headers"]},
                "json": json.loads(body),
            }
        )
        status = self.fail_status or 202
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"queued": true}'})

    def code(self) -> str:
        """The code in the newest message."""
        text = self.received[-1]["json"]["text"]
        match = re.fullmatch(r"Chat code: (\d{6})", text)
        assert match, text
        return match[1]


@pytest.fixture
async def gateway(nursery):
    gw = SmsGateway()
    config = HypercornConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    stop = trio.Event()
    urls = await nursery.start(
        partial(hypercorn.trio.serve, gw, config, shutdown_trigger=stop.wait)
    )
    gw.url = urls[0]
    yield gw
    stop.set()


@pytest.fixture
async def gw_server(homeserver_factory, gateway):
    return await homeserver_factory(
        otp={
            "sender": "http",
            "gateway_url": gateway.url + "/v1/messages",
            "gateway_token": "gw-secret",
            "gateway_headers": ["X-Api-Key: k-123"],
            "gateway_body_template": (
                '{"recipient": "{number}", "text": "{message}", "meta": {"app": "chat"}}'
            ),
            "message_template": "Chat code: {code}",
            "gateway_retries": 1,
            "gateway_retry_backoff_s": 0,
        }
    )


def pw_auth(session: str, user: str = "rosa") -> dict[str, Any]:
    return {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user},
        "password": "correct horse",
        "session": session,
    }


def phone_login(pin: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.phone", "country": "DE", "phone": "0151 23456789"},
        "password": "correct horse",
    }
    if pin is not None:
        body["org.example.reglock.pin"] = pin
    return body


async def test_phone_flow_through_a_real_gateway_with_registration_lock(gw_server, gateway):
    srv = gw_server
    async with srv.client() as c:
        # --- sign-up: the code arrives at the gateway in the configured shape
        r = await c.post(REQUEST, json=token_body())
        assert r.status_code == 200, r.text
        sid, url = r.json()["sid"], r.json()["submit_url"]
        [sent] = gateway.received
        assert (sent["method"], sent["path"]) == ("POST", "/v1/messages")
        assert sent["headers"]["authorization"] == "Bearer gw-secret"
        assert sent["headers"]["x-api-key"] == "k-123"
        assert sent["json"]["recipient"] == NUMBER and sent["json"]["meta"] == {"app": "chat"}
        code = gateway.code()

        # resend timing: the same attempt is answered without a new SMS; a new attempt
        # inside the interval is 429 with retry_after_ms, and nothing is sent
        r = await c.post(REQUEST, json=token_body())
        assert r.json()["sid"] == sid
        r = await c.post(REQUEST, json=token_body(attempt=2))
        assert (r.status_code, r.json()["errcode"]) == (429, "M_LIMIT_EXCEEDED")
        assert 55_000 < r.json()["retry_after_ms"] <= 60_000
        assert len(gateway.received) == 1

        # attempt limit: wrong codes count down
        wrong = "000000" if code != "000000" else "111111"
        r = await submit(c, url, sid, wrong)
        assert (r.status_code, r.json()["errcode"]) == (400, "M_THREEPID_AUTH_FAILED")
        assert "2 attempts left" in r.json()["error"]
        assert (await submit(c, url, sid, code)).status_code == 200
        creds = {"sid": sid, "client_secret": "s3cret"}
        body: dict[str, Any] = {"username": "rosa", "password": "correct horse"}
        r = await c.post("/_matrix/client/v3/register", json=body)
        body["auth"] = {
            "type": "m.login.msisdn",
            "threepid_creds": creds,
            "session": r.json()["session"],
        }
        r = await c.post("/_matrix/client/v3/register", json=body)
        assert r.status_code == 200, r.text
        me = {"Authorization": f"Bearer {r.json()['access_token']}"}

        # --- set a registration lock PIN (user-interactive auth)
        r = await c.get(PIN_PATH, headers=me)
        assert r.json() == {"enabled": False}
        r = await c.put(PIN_PATH, headers=me, json={"pin": "2468"})
        assert r.status_code == 401
        assert r.json()["flows"] == [
            {"stages": ["m.login.password"]},
            {"stages": ["m.login.msisdn"]},
        ]
        r = await c.put(
            PIN_PATH, headers=me, json={"pin": "2468", "auth": pw_auth(r.json()["session"])}
        )
        assert r.status_code == 200, r.text
        r = await c.get(PIN_PATH, headers=me)
        assert r.json()["enabled"] is True
        assert r.json()["lapses_ts"] - r.json()["set_ts"] >= 7 * 86400 * 1000

        # --- log in on a new device with an SMS code: the PIN is the second step
        r = await c.get(LOGIN)
        assert {"type": "m.login.msisdn"} in r.json()["flows"]
        r = await c.post(LOGIN_TOKEN, json=token_body(secret="login1"))
        assert r.status_code == 200, r.text
        login_sid = r.json()["sid"]
        assert len(gateway.received) == 2
        assert (await submit(c, url, login_sid, gateway.code(), "login1")).status_code == 200
        sms = {
            "type": "m.login.msisdn",
            "threepid_creds": {"sid": login_sid, "client_secret": "login1"},
            "initial_device_display_name": "new phone",
        }
        r = await c.post(LOGIN, json=sms)
        assert r.status_code == 423, r.text
        assert r.json()["errcode"] == "ORG.EXAMPLE.REGLOCK.PIN_REQUIRED"
        assert 0 < r.json()["time_remaining_ms"] <= 7 * 86400 * 1000
        assert r.json()["attempts_remaining"] == 10
        r = await c.post(LOGIN, json={**sms, "org.example.reglock.pin": "1357"})
        assert (r.status_code, r.json()["errcode"]) == (423, "ORG.EXAMPLE.REGLOCK.PIN_INCORRECT")
        assert r.json()["attempts_remaining"] == 9
        r = await c.post(LOGIN, json={**sms, "org.example.reglock.pin": "2468"})
        assert r.status_code == 200, r.text
        assert r.json()["user_id"] == "@rosa:test.local"
        new_device = r.json()["device_id"]
        # one SMS code logs in once
        r = await c.post(LOGIN, json={**sms, "org.example.reglock.pin": "2468"})
        assert (r.status_code, r.json()["errcode"]) == (400, "M_THREEPID_AUTH_FAILED")

        # --- the same for a password login that names the account by its number
        r = await c.post(LOGIN, json=phone_login())
        assert (r.status_code, r.json()["errcode"]) == (423, "ORG.EXAMPLE.REGLOCK.PIN_REQUIRED")
        r = await c.post(LOGIN, json=phone_login("2468"))
        assert r.status_code == 200
        # ... but not for a login by user ID
        r = await c.post(
            LOGIN, json={"type": "m.login.password", "user": "rosa", "password": "correct horse"}
        )
        assert r.status_code == 200

        # --- lock-out: ten wrong PINs in a day, then even the right one is refused
        for n in range(9):
            r = await c.post(LOGIN, json=phone_login(f"00{n:02d}"))
            assert r.json()["errcode"] == "ORG.EXAMPLE.REGLOCK.PIN_INCORRECT"
            assert r.json()["attempts_remaining"] == 9 - n
        r = await c.post(LOGIN, json=phone_login("0099"))
        assert (r.status_code, r.json()["errcode"]) == (
            423,
            "ORG.EXAMPLE.REGLOCK.TOO_MANY_ATTEMPTS",
        )
        assert 86_000_000 < r.json()["retry_after_ms"] <= 86_400_000
        r = await c.post(LOGIN, json=phone_login("2468"))
        assert (r.status_code, r.json()["errcode"]) == (
            423,
            "ORG.EXAMPLE.REGLOCK.TOO_MANY_ATTEMPTS",
        )

        # --- removing the PIN (UIA) lifts the lock
        r = await c.request("DELETE", PIN_PATH, headers=me)
        assert r.status_code == 401
        r = await c.request(
            "DELETE", PIN_PATH, headers=me, json={"auth": pw_auth(r.json()["session"])}
        )
        assert r.status_code == 200, r.text
        r = await c.post(LOGIN, json=phone_login())
        assert r.status_code == 200
        r = await c.get("/_matrix/client/v3/devices", headers=me)
        assert new_device in [d["device_id"] for d in r.json()["devices"]]


async def test_gateway_failure_is_retried_then_reported(gw_server, gateway):
    await gw_server.register("ina")
    async with gw_server.client() as c:
        gateway.fail_status = 503
        r = await c.post(REQUEST, json=token_body())
        assert (r.status_code, r.json()["errcode"]) == (500, "M_UNKNOWN")
        assert "queued" not in r.json()["error"]
        assert len(gateway.received) == 2  # the first try and one retry
        # a refusal (4xx) is not retried
        gateway.fail_status = 400
        r = await c.post(REQUEST, json=token_body())
        assert r.status_code == 500 and len(gateway.received) == 3
        # nothing counted as sent: the client may try again at once
        gateway.fail_status = None
        r = await c.post(REQUEST, json=token_body())
        assert r.status_code == 200 and len(gateway.received) == 4


async def test_sms_login_and_pin_api_bad_input(gw_server, gateway):
    reg = await gw_server.register("ivo")
    me = {"Authorization": f"Bearer {reg['access_token']}"}
    async with gw_server.client() as c:
        # login codes only for numbers that have an account
        r = await c.post(LOGIN_TOKEN, json=token_body())
        assert (r.status_code, r.json()["errcode"]) == (400, "M_THREEPID_NOT_FOUND")
        assert gateway.received == []
        for body, errcode in (
            ({"type": "m.login.msisdn"}, "M_BAD_JSON"),
            ({"type": "m.login.msisdn", "threepid_creds": "x"}, "M_BAD_JSON"),
            ({"type": "m.login.msisdn", "threepid_creds": {"sid": "nope"}}, "M_MISSING_PARAM"),
            (
                {"type": "m.login.msisdn", "threepid_creds": {"sid": "no", "client_secret": "x"}},
                "M_NOT_FOUND",
            ),
            ({**phone_login(), "org.example.reglock.pin": 2468}, "M_BAD_JSON"),
        ):
            r = await c.post(LOGIN, json=body)
            assert r.status_code in (400, 404) and r.json()["errcode"] == errcode, body
        r = await c.put(PIN_PATH, json={"pin": "2468"})
        assert (r.status_code, r.json()["errcode"]) == (401, "M_MISSING_TOKEN")
        for body, errcode in (
            ({"pin": "12"}, "M_INVALID_PARAM"),
            ({"pin": 2468}, "M_BAD_JSON"),
            ({}, "M_MISSING_PARAM"),
        ):
            r = await c.put(PIN_PATH, headers=me, json=body)
            assert (r.status_code, r.json()["errcode"]) == (400, errcode), body
        r = await c.put(PIN_PATH, headers=me, content=b"{")
        assert (r.status_code, r.json()["errcode"]) == (400, "M_NOT_JSON")
        # a UIA session for setting the PIN cannot be used to remove it
        r = await c.put(PIN_PATH, headers=me, json={"pin": "2468"})
        r = await c.request(
            "DELETE",
            PIN_PATH,
            headers=me,
            json={"auth": pw_auth(r.json()["session"], user="ivo")},
        )
        assert (r.status_code, r.json()["errcode"]) == (403, "M_FORBIDDEN")

"""Phone number sign-up end to end, and its failure modes (real sockets, file SMS sender)."""

from __future__ import annotations

import pytest

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

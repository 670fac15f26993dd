"""Email addresses as third-party identifiers end to end (real sockets, a real SMTP server).

The server under test sends its validation mails over SMTP (``smtplib`` in a worker thread) to
a small SMTP receiver this module runs on a Trio socket; tests read the token and the
validation link from the mails it received.
"""

from __future__ import annotations

import email
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx
import pytest
import trio

REGISTER_TOKEN = "/_matrix/client/v3/register/email/requestToken"
ADD_TOKEN = "/_matrix/client/v3/account/3pid/email/requestToken"
RESET_TOKEN = "/_matrix/client/v3/account/password/email/requestToken"


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    subject: str
    body: str

    @property
    def link(self) -> str:
        found = re.search(r"(http\S*)", self.body)
        assert found, self.body
        return found.group(1)

    @property
    def token(self) -> str:
        found = re.search(r"code: (\S+)", self.body)
        assert found, self.body
        return found.group(1)


@dataclass
class SmtpReceiver:
    """A minimal SMTP server (EHLO, MAIL, RCPT, DATA, QUIT) that keeps every mail."""

    port: int = 0
    send: trio.MemorySendChannel[Mail] | None = None
    receive: trio.MemoryReceiveChannel[Mail] | None = None
    received: list[Mail] = field(default_factory=list)
    #: hang up after accepting a mail instead of waiting for QUIT (as SyTest's server does)
    hang_up_after_data: bool = False

    async def next_mail(self) -> Mail:
        assert self.receive is not None
        with trio.fail_after(10):
            return await self.receive.receive()

    async def handle(self, stream: trio.SocketStream) -> None:
        buf = b""

        async def line() -> bytes:
            nonlocal buf
            while b"\r\n" not in buf:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    raise EOFError
                buf += chunk
            out, _, buf = buf.partition(b"\r\n")
            return out

        sender, rcpts = "", []
        await stream.send_all(b"220 test.smtp ESMTP\r\n")
        try:
            while True:
                cmd = (await line()).decode()
                verb = cmd[:4].upper()
                if verb == "EHLO":
                    await stream.send_all(b"250-test.smtp\r\n250 8BITMIME\r\n")
                elif verb == "MAIL":
                    sender, rcpts = cmd.partition(":")[2].strip(" <>"), []
                    await stream.send_all(b"250 OK\r\n")
                elif verb == "RCPT":
                    rcpts.append(cmd.partition(":")[2].strip(" <>"))
                    await stream.send_all(b"250 OK\r\n")
                elif verb == "DATA":
                    await stream.send_all(b"354 go ahead\r\n")
                    lines = []
                    while (data := await line()) != b".":
                        lines.append(data[1:] if data.startswith(b"..") else data)
                    msg = email.message_from_bytes(b"\r\n".join(lines))
                    payload = msg.get_payload(decode=True)
                    assert isinstance(payload, bytes)
                    mail = Mail(sender, rcpts, str(msg["Subject"]), payload.decode())
                    self.received.append(mail)
                    assert self.send is not None
                    self.send.send_nowait(mail)
                    await stream.send_all(b"250 queued\r\n")
                    if self.hang_up_after_data:
                        await stream.aclose()
                        return
                elif verb == "QUIT":
                    await stream.send_all(b"221 bye\r\n")
                    return
                elif verb in ("RSET", "NOOP", "HELO"):
                    await stream.send_all(b"250 OK\r\n")
                else:
                    await stream.send_all(b"502 not implemented\r\n")
        except (EOFError, trio.BrokenResourceError):
            return


@pytest.fixture
async def smtp(nursery: trio.Nursery) -> AsyncIterator[SmtpReceiver]:
    receiver = SmtpReceiver()
    receiver.send, receiver.receive = trio.open_memory_channel[Mail](100)
    listeners = await nursery.start(partial(trio.serve_tcp, receiver.handle, 0, host="127.0.0.1"))
    receiver.port = listeners[0].socket.getsockname()[1]
    yield receiver


@pytest.fixture
async def hs(homeserver_factory: Any, smtp: SmtpReceiver) -> Any:
    return await homeserver_factory(
        email={
            "enabled": True,
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp.port,
            "notif_from": "Test HS <hs@test.local>",
        }
    )


def token_body(address: str, secret: str = "s3cret", attempt: int = 1) -> dict[str, Any]:
    return {"client_secret": secret, "email": address, "send_attempt": attempt}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def validate(
    c: httpx.AsyncClient, smtp: SmtpReceiver, path: str, address: str, secret: str = "s3cret"
) -> str:
    """requestToken, then submit the mailed token; the sid."""
    r = await c.post(path, json=token_body(address, secret))
    assert r.status_code == 200, r.text
    sid = r.json()["sid"]
    mail = await smtp.next_mail()
    r = await c.post(
        r.json()["submit_url"], json={"sid": sid, "client_secret": secret, "token": mail.token}
    )
    assert r.status_code == 200 and r.json() == {"success": True}, r.text
    return str(sid)


async def add_email(
    c: httpx.AsyncClient, smtp: SmtpReceiver, user: dict[str, Any], address: str
) -> None:
    sid = await validate(c, smtp, ADD_TOKEN, address, secret="add" + user["device_id"])
    body: dict[str, Any] = {"sid": sid, "client_secret": "add" + user["device_id"]}
    r = await c.post(
        "/_matrix/client/v3/account/3pid/add", json=body, headers=bearer(user["access_token"])
    )
    assert r.status_code == 401
    body["auth"] = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user["user_id"]},
        "password": "correct horse",
        "session": r.json()["session"],
    }
    r = await c.post(
        "/_matrix/client/v3/account/3pid/add", json=body, headers=bearer(user["access_token"])
    )
    assert r.status_code == 200, r.text


async def login(c: httpx.AsyncClient, password: str, **ident: Any) -> httpx.Response:
    return await c.post(
        "/_matrix/client/v3/login", json={"type": "m.login.password", "password": password, **ident}
    )


async def test_register_with_email_then_log_in_with_it(hs, smtp):
    async with hs.client() as c:
        body: dict[str, Any] = {"username": "emma", "password": "correct horse"}
        r = await c.post("/_matrix/client/v3/register", json=body)
        assert r.status_code == 401
        assert ["m.login.email.identity"] in [f["stages"] for f in r.json()["flows"]]
        session = r.json()["session"]

        secret = "regsecret"
        r = await c.post(REGISTER_TOKEN, json=token_body("Emma@Example.COM", secret))
        assert r.status_code == 200, r.text
        sid = r.json()["sid"]
        assert r.json()["submit_url"].startswith(hs.base_url)
        mail = await smtp.next_mail()
        assert mail.recipients == ["emma@example.com"]
        assert mail.sender == "hs@test.local"
        assert "test.local" in mail.subject

        creds = {"sid": sid, "client_secret": secret}
        auth = {"type": "m.login.email.identity", "threepid_creds": creds, "session": session}
        # not validated yet
        r = await c.post("/_matrix/client/v3/register", json={**body, "auth": auth})
        assert (r.status_code, r.json()["errcode"]) == (401, "M_UNAUTHORIZED"), r.text

        # the link in the mail validates the session
        r = await c.get(mail.link)
        assert r.status_code == 200, r.text
        r = await c.post("/_matrix/client/v3/register", json={**body, "auth": auth})
        assert r.status_code == 200, r.text
        assert r.json()["user_id"] == "@emma:test.local"
        token = r.json()["access_token"]

        r = await c.get("/_matrix/client/v3/account/3pid", headers=bearer(token))
        (tp,) = r.json()["threepids"]
        assert (tp["medium"], tp["address"]) == ("email", "emma@example.com")
        assert isinstance(tp["validated_at"], int) and isinstance(tp["added_at"], int)

        # login by address, case-folded: identifier and the deprecated medium/address
        for ident in (
            {
                "identifier": {
                    "type": "m.id.thirdparty",
                    "medium": "email",
                    "address": "EMMA@example.com",
                }
            },
            {"medium": "email", "address": "emma@example.com"},
        ):
            r = await login(c, "correct horse", **ident)
            assert r.status_code == 200, r.text
            assert r.json()["user_id"] == "@emma:test.local"
        r = await login(c, "wrong password", medium="email", address="emma@example.com")
        assert (r.status_code, r.json()["errcode"]) == (403, "M_FORBIDDEN")
        r = await login(c, "correct horse", medium="email", address="nobody@example.com")
        assert (r.status_code, r.json()["errcode"]) == (403, "M_FORBIDDEN")

        # the address is taken now: no second sign-up and no adding it elsewhere, no mail
        for path in (REGISTER_TOKEN, ADD_TOKEN):
            r = await c.post(path, json=token_body("emma@EXAMPLE.com", "other"))
            assert (r.status_code, r.json()["errcode"]) == (400, "M_THREEPID_IN_USE")
        assert len(smtp.received) == 1


async def test_add_list_and_delete_an_email(hs, smtp):
    user = await hs.register("alice")
    async with hs.client() as c:
        await add_email(c, smtp, user, "alice@example.org")
        r = await c.get("/_matrix/client/v3/account/3pid", headers=bearer(user["access_token"]))
        assert [(t["medium"], t["address"]) for t in r.json()["threepids"]] == [
            ("email", "alice@example.org")
        ]
        r = await login(c, "correct horse", medium="email", address="alice@example.org")
        assert r.status_code == 200, r.text

        r = await c.post(
            "/_matrix/client/v3/account/3pid/delete",
            json={"medium": "email", "address": "Alice@Example.org"},
            headers=bearer(user["access_token"]),
        )
        assert r.status_code == 200, r.text
        r = await c.get("/_matrix/client/v3/account/3pid", headers=bearer(user["access_token"]))
        assert r.json()["threepids"] == []
        r = await login(c, "correct horse", medium="email", address="alice@example.org")
        assert r.status_code == 403


async def test_an_address_binds_to_one_account_only(hs, smtp):
    alice = await hs.register("alice")
    bob = await hs.register("bob")
    async with hs.client() as c:
        # bob validates the address first, alice binds it before bob does
        bob_sid = await validate(c, smtp, ADD_TOKEN, "shared@example.org", secret="bobs")
        await add_email(c, smtp, alice, "shared@example.org")
        body: dict[str, Any] = {"sid": bob_sid, "client_secret": "bobs"}
        r = await c.post(
            "/_matrix/client/v3/account/3pid/add", json=body, headers=bearer(bob["access_token"])
        )
        body["auth"] = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "bob"},
            "password": "correct horse",
            "session": r.json()["session"],
        }
        r = await c.post(
            "/_matrix/client/v3/account/3pid/add", json=body, headers=bearer(bob["access_token"])
        )
        assert (r.status_code, r.json()["errcode"]) == (400, "M_THREEPID_IN_USE")
        r = await login(c, "correct horse", medium="email", address="shared@example.org")
        assert r.json()["user_id"] == "@alice:test.local"


async def test_reset_password_by_email(hs, smtp):
    user = await hs.register("carol")
    async with hs.client() as c:
        await add_email(c, smtp, user, "carol@example.org")
        r = await c.post(RESET_TOKEN, json=token_body("nobody@example.org"))
        assert (r.status_code, r.json()["errcode"]) == (400, "M_THREEPID_NOT_FOUND")

        sid = await validate(c, smtp, RESET_TOKEN, "CAROL@example.org", secret="reset")
        body: dict[str, Any] = {"new_password": "new horse battery"}
        r = await c.post("/_matrix/client/v3/account/password", json=body)
        assert r.status_code == 401
        assert r.json()["flows"] == [{"stages": ["m.login.email.identity"]}]
        body["auth"] = {
            "type": "m.login.email.identity",
            "threepid_creds": {"sid": sid, "client_secret": "reset"},
            "session": r.json()["session"],
        }
        r = await c.post("/_matrix/client/v3/account/password", json=body)
        assert r.status_code == 200, r.text

        r = await login(c, "correct horse", identifier={"type": "m.id.user", "user": "carol"})
        assert r.status_code == 403
        r = await login(c, "new horse battery", medium="email", address="carol@example.org")
        assert r.status_code == 200, r.text
        # every device was logged out
        r = await c.get("/_matrix/client/v3/account/whoami", headers=bearer(user["access_token"]))
        assert r.status_code == 401


async def test_a_validation_for_another_purpose_does_not_reset(hs, smtp):
    """An address validated for sign-up (so bound to nobody) cannot reset anyone's password."""
    await hs.register("dave")
    async with hs.client() as c:
        sid = await validate(c, smtp, REGISTER_TOKEN, "free@example.org", secret="s")
        body: dict[str, Any] = {"new_password": "new horse battery"}
        r = await c.post("/_matrix/client/v3/account/password", json=body)
        body["auth"] = {
            "type": "m.login.email.identity",
            "threepid_creds": {"sid": sid, "client_secret": "s"},
            "session": r.json()["session"],
        }
        r = await c.post("/_matrix/client/v3/account/password", json=body)
        assert (r.status_code, r.json()["errcode"]) == (400, "M_THREEPID_NOT_FOUND")


async def test_wrong_tokens_and_secrets(hs, smtp):
    async with hs.client() as c:
        r = await c.post(REGISTER_TOKEN, json=token_body("x@example.org"))
        sid, url = r.json()["sid"], r.json()["submit_url"]
        mail = await smtp.next_mail()
        # the same secret and send_attempt: the same sid and no second mail
        r = await c.post(REGISTER_TOKEN, json=token_body("x@example.org"))
        assert r.json()["sid"] == sid
        r = await c.post(url, json={"sid": sid, "client_secret": "s3cret", "token": "nope"})
        assert (r.status_code, r.json()["errcode"]) == (400, "M_THREEPID_AUTH_FAILED")
        r = await c.post(url, json={"sid": sid, "client_secret": "other", "token": mail.token})
        assert (r.status_code, r.json()["errcode"]) == (404, "M_NOT_FOUND")
        r = await c.post(url, json={"sid": "nosuch", "client_secret": "s3cret", "token": "x"})
        assert (r.status_code, r.json()["errcode"]) == (404, "M_NOT_FOUND")
        r = await c.post(url, json={"sid": sid, "client_secret": "s3cret", "token": 5})
        assert (r.status_code, r.json()["errcode"]) == (400, "M_BAD_JSON")
        r = await c.get(url, params={"sid": sid})
        assert (r.status_code, r.json()["errcode"]) == (400, "M_MISSING_PARAM")
        # a higher send_attempt sends a new token; the old one is then wrong
        r = await c.post(REGISTER_TOKEN, json=token_body("x@example.org", attempt=2))
        assert r.json()["sid"] == sid
        newer = await smtp.next_mail()
        assert newer.token != mail.token
        r = await c.post(url, json={"sid": sid, "client_secret": "s3cret", "token": mail.token})
        assert (r.status_code, r.json()["errcode"]) == (400, "M_THREEPID_AUTH_FAILED")
        r = await c.post(url, json={"sid": sid, "client_secret": "s3cret", "token": newer.token})
        assert r.status_code == 200
        assert len(smtp.received) == 2


@pytest.mark.parametrize(
    "body, status, errcode",
    [
        (token_body("not-an-address"), 400, "M_INVALID_PARAM"),
        (token_body("a b@example.org"), 400, "M_INVALID_PARAM"),
        (token_body("@example.org"), 400, "M_INVALID_PARAM"),
        (token_body("x@example.org", secret="bad secret!"), 400, "M_INVALID_PARAM"),
        ({**token_body("x@example.org"), "send_attempt": "1"}, 400, "M_BAD_JSON"),
        ({"client_secret": "x", "email": "x@example.org"}, 400, "M_MISSING_PARAM"),
        ({"client_secret": "x", "send_attempt": 1}, 400, "M_MISSING_PARAM"),
        ({**token_body("x@example.org"), "email": 7}, 400, "M_BAD_JSON"),
    ],
)
async def test_request_token_refusals(hs, smtp, body, status, errcode):
    async with hs.client() as c:
        r = await c.post(REGISTER_TOKEN, json=body)
        assert (r.status_code, r.json()["errcode"]) == (status, errcode), r.text
    assert smtp.received == []


async def test_disabled_and_unreachable_smtp(homeserver_factory):
    srv = await homeserver_factory()
    async with srv.client() as c:
        r = await c.post(REGISTER_TOKEN, json=token_body("x@example.org"))
        assert (r.status_code, r.json()["errcode"]) == (400, "M_THREEPID_DENIED")
        r = await c.post("/_matrix/client/v3/register", json={"username": "u", "password": "p" * 9})
        assert ["m.login.email.identity"] not in [f["stages"] for f in r.json()["flows"]]

    # a port nothing listens on: the mail cannot go out, and the attempt can be retried
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    srv = await homeserver_factory(
        email={"enabled": True, "smtp_host": "127.0.0.1", "smtp_port": port}
    )
    async with srv.client() as c:
        r = await c.post(REGISTER_TOKEN, json=token_body("x@example.org"))
        assert (r.status_code, r.json()["errcode"]) == (500, "M_UNKNOWN"), r.text


async def test_deprecated_account_3pid_binds_a_validated_session(hs, smtp):
    user = await hs.register("erin")
    headers = bearer(user["access_token"])
    async with hs.client() as c:
        sid = await validate(c, smtp, ADD_TOKEN, "erin@example.org", secret="old")
        r = await c.post("/_matrix/client/v3/account/3pid", json={}, headers=headers)
        assert (r.status_code, r.json()["errcode"]) == (400, "M_BAD_JSON")
        creds = {"sid": "nosuch", "client_secret": "old", "id_server": "id.example.org"}
        r = await c.post(
            "/_matrix/client/v3/account/3pid", json={"three_pid_creds": creds}, headers=headers
        )
        assert (r.status_code, r.json()["errcode"]) == (404, "M_NOT_FOUND")
        creds["sid"] = sid
        r = await c.post(
            "/_matrix/client/v3/account/3pid", json={"three_pid_creds": creds}, headers=headers
        )
        assert r.status_code == 200, r.text
        r = await c.get("/_matrix/client/v3/account/3pid", headers=headers)
        assert [t["address"] for t in r.json()["threepids"]] == ["erin@example.org"]


async def test_a_server_hanging_up_after_taking_the_mail_is_a_success(hs, smtp):
    smtp.hang_up_after_data = True
    async with hs.client() as c:
        r = await c.post(REGISTER_TOKEN, json=token_body("hangup@example.org"))
        assert r.status_code == 200, r.text
        assert (await smtp.next_mail()).recipients == ["hangup@example.org"]


async def test_deactivation_frees_the_address(hs, smtp):
    user = await hs.register("fay")
    async with hs.client() as c:
        await add_email(c, smtp, user, "fay@example.org")
        url = "/_matrix/client/v3/account/deactivate"
        headers = bearer(user["access_token"])
        r = await c.post(url, json={}, headers=headers)
        auth = {
            "type": "m.login.password",
            "identifier": {
                "type": "m.id.thirdparty",
                "medium": "email",
                "address": "FAY@example.org",
            },
            "password": "correct horse",
            "session": r.json()["session"],
        }
        r = await c.post(url, json={"auth": auth}, headers=headers)
        assert r.status_code == 200, r.text
        r = await login(c, "correct horse", medium="email", address="fay@example.org")
        assert (r.status_code, r.json()["errcode"]) == (403, "M_FORBIDDEN")
        r = await c.post(REGISTER_TOKEN, json=token_body("fay@example.org", "again"))
        assert r.status_code == 200, r.text


async def test_3pid_changes_capability_follows_email(homeserver_factory, smtp):
    for email_on in (False, True):
        srv = await homeserver_factory(
            otp={"enabled": False}, email={"enabled": email_on, "smtp_port": smtp.port}
        )
        user = await srv.register(f"gus{int(email_on)}")
        async with srv.client() as c:
            r = await c.get("/_matrix/client/v3/capabilities", headers=bearer(user["access_token"]))
            assert r.json()["capabilities"]["m.3pid_changes"] == {"enabled": email_on}


async def test_validation_mails_are_rate_limited_per_address(homeserver_factory, smtp):
    srv = await homeserver_factory(
        email={"enabled": True, "smtp_host": "127.0.0.1", "smtp_port": smtp.port},
        rate_limits={
            "enabled": True,
            "email_per_address": {"per_second": 0.001, "burst_count": 2},
        },
    )
    async with srv.client() as c:
        for secret in ("one", "two"):
            r = await c.post(REGISTER_TOKEN, json=token_body("many@example.org", secret))
            assert r.status_code == 200, r.text
        # a retry of an earlier request sends nothing and is not counted
        r = await c.post(REGISTER_TOKEN, json=token_body("many@example.org", "one"))
        assert r.status_code == 200, r.text
        r = await c.post(REGISTER_TOKEN, json=token_body("MANY@example.org", "three"))
        assert (r.status_code, r.json()["errcode"]) == (429, "M_LIMIT_EXCEEDED")
        assert r.json()["retry_after_ms"] > 0
        r = await c.post(REGISTER_TOKEN, json=token_body("other@example.org", "three"))
        assert r.status_code == 200, r.text
    assert len(smtp.received) == 3

"""SMS senders: the HTTP gateway sender (httpx.MockTransport) and the file sender."""

from __future__ import annotations

import json

import httpx
import pytest
import trio

from homeserver.config import ConfigError, parse_config
from homeserver.services.sms import FileSmsSender, HttpSmsSender, LogSmsSender, SmsDeliveryFailed


async def test_http_sender_posts_json_with_bearer_token():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202, json={"id": "1"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        sender = HttpSmsSender(
            client, "https://gw.example/send", token="t0k", timeout_s=5, template="Code: {code}"
        )
        await sender.send_code("+4915123456789", "123456")
    [request] = seen
    assert request.method == "POST" and str(request.url) == "https://gw.example/send"
    assert request.headers["Authorization"] == "Bearer t0k"
    assert json.loads(request.content) == {"to": "+4915123456789", "body": "Code: 123456"}


@pytest.mark.parametrize(
    "handler",
    [
        lambda r: httpx.Response(500, text="boom"),
        lambda r: httpx.Response(401),
        lambda r: (_ for _ in ()).throw(httpx.ConnectError("refused")),
        lambda r: (_ for _ in ()).throw(httpx.ReadTimeout("slow")),
    ],
)
async def test_http_sender_maps_errors(handler):
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        sender = HttpSmsSender(client, "https://gw.example/send", token=None, timeout_s=1)
        with pytest.raises(SmsDeliveryFailed) as info:
            await sender.send_code("+4915123456789", "123456")
    assert (info.value.status, info.value.errcode) == (500, "M_UNKNOWN")
    assert "boom" not in info.value.msg


async def test_file_sender_appends_lines(tmp_path):
    path = tmp_path / "sub" / "sms.log"
    sender = FileSmsSender(path)
    await sender.send_code("+1", "111111")
    await sender.send_code("+2", "222222")
    assert path.read_text().splitlines() == ["+1 111111", "+2 222222"]


async def test_http_sender_template_method_headers():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        sender = HttpSmsSender(
            client,
            "https://gw.example/messages",
            token=None,
            timeout_s=5,
            template='Code "{code}"',
            method="PUT",
            headers=["X-Api-Key: k1", "X-Tenant:  t "],
            body_template='{"msg": {"to": ["{number}"], "text": "{message}"}, "n": 1, "c": "{code}"}',
        )
        await sender.send_code("+4915123456789", "123456")
    [request] = seen
    assert request.method == "PUT"
    assert request.headers["X-Api-Key"] == "k1" and request.headers["X-Tenant"] == "t"
    assert "Authorization" not in request.headers
    # values are substituted after parsing: quotes in the message stay inside the string
    assert json.loads(request.content) == {
        "msg": {"to": ["+4915123456789"], "text": 'Code "123456"'},
        "n": 1,
        "c": "123456",
    }


async def test_http_sender_retries_transient_failures(autojump_clock):
    answers: list[httpx.Response | Exception] = [
        httpx.ConnectError("refused"),
        httpx.Response(503),
        httpx.Response(202),
    ]
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        sender = HttpSmsSender(
            client, "https://gw.example/send", token=None, timeout_s=1, retries=2, backoff_s=1
        )
        start = trio.current_time()
        await sender.send_code("+4915123456789", "123456")
        assert trio.current_time() - start == pytest.approx(3)  # waited 1 s, then 2 s
    assert calls == 3


@pytest.mark.parametrize("status, calls", [(400, 1), (429, 3), (500, 3)])
async def test_http_sender_gives_up(status, calls, autojump_clock):
    seen = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal seen
        seen += 1
        return httpx.Response(status)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        sender = HttpSmsSender(
            client, "https://gw.example/send", token=None, timeout_s=1, retries=2, backoff_s=0.5
        )
        with pytest.raises(SmsDeliveryFailed):
            await sender.send_code("+4915123456789", "123456")
    assert seen == calls


async def test_log_sender_writes_the_code_to_the_log(caplog):
    await LogSmsSender().send_code("+4915123456789", "654321")
    assert "+4915123456789" in caplog.text and "654321" in caplog.text


@pytest.mark.parametrize("sender", ["file", "log"])
def test_development_senders_need_a_development_deployment(sender):
    with pytest.raises(ConfigError, match=f"otp.sender: '{sender}' does not send SMS"):
        parse_config({"server_name": "x", "otp": {"enabled": True, "sender": sender}}, "f")
    cfg = parse_config(
        {"server_name": "x", "otp": {"enabled": True, "sender": sender, "development": True}}, "f"
    )
    assert cfg.otp.sender == sender
    # a disabled otp section may keep the default sender
    parse_config({"server_name": "x", "otp": {"enabled": False, "sender": sender}}, "f")


@pytest.mark.parametrize(
    "otp, problem",
    [
        ({"gateway_headers": ["no colon"]}, "otp.gateway_headers"),
        ({"gateway_body_template": "{not json"}, "otp.gateway_body_template: not valid JSON"),
        ({"gateway_body_template": "[1]"}, "otp.gateway_body_template: must be a JSON object"),
        ({"gateway_method": "GET"}, "otp.gateway_method"),
        ({"gateway_retries": -1}, "otp.gateway_retries"),
        ({"enabled": True, "sender": "http"}, "otp.gateway_url: required"),
    ],
)
def test_gateway_config_problems(otp, problem):
    with pytest.raises(ConfigError, match=problem):
        parse_config({"server_name": "x", "otp": otp}, "f")

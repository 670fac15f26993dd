"""SMS senders: the HTTP gateway sender (httpx.MockTransport) and the file sender."""

from __future__ import annotations

import json

import httpx
import pytest

from homeserver.services.sms import FileSmsSender, HttpSmsSender, SmsDeliveryFailed


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

"""Sending verification codes by SMS, behind one small interface.

:class:`SmsSender` is what the phone verification service sees. Two implementations:

- :class:`HttpSmsSender` sends a JSON body built from a template (default
  ``{"to": "+4915…", "body": "…"}``) to an SMS gateway with a configurable method, headers and
  bearer token (httpx). Connection errors, timeouts, 5xx and 429 are retried with exponential
  backoff; what still fails (and any other non-2xx) becomes :class:`SmsDeliveryFailed` (a
  ``500 M_UNKNOWN`` to the client; the gateway's answer is logged, never forwarded).
- :class:`FileSmsSender` appends ``<number> <code>`` lines to a file, and :class:`LogSmsSender`
  writes the code to the log: for development and tests (which read the code back). The config
  refuses both unless ``otp.development`` says this is a development deployment.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import httpx
import trio

from homeserver.errors import UnknownError

__all__ = [
    "DEFAULT_BODY_TEMPLATE",
    "FileSmsSender",
    "HttpSmsSender",
    "LogSmsSender",
    "SmsDeliveryFailed",
    "SmsSender",
    "render_body",
]

logger = logging.getLogger(__name__)

DEFAULT_BODY_TEMPLATE = '{"to": "{number}", "body": "{message}"}'


class SmsDeliveryFailed(UnknownError):
    """The SMS could not be handed to the gateway."""

    def __init__(self, msg: str = "Could not send the verification code; try again later") -> None:
        super().__init__(msg)


class SmsSender(Protocol):
    """Delivers a verification code to a phone number."""

    async def send_code(self, number: str, code: str) -> None:
        """Send ``code`` to ``number`` (E.164).

        Raises:
            SmsDeliveryFailed: the message could not be handed over for delivery.
        """
        ...


def render_body(template: Any, values: Mapping[str, str]) -> Any:
    """``template`` (parsed JSON) with ``{name}`` replaced by ``values[name]`` in every string.

    Substitution happens after parsing, so a value can never change the JSON structure.
    """
    if isinstance(template, str):
        for name, value in values.items():
            template = template.replace("{" + name + "}", value)
        return template
    if isinstance(template, list):
        return [render_body(v, values) for v in template]
    if isinstance(template, dict):
        return {k: render_body(v, values) for k, v in template.items()}
    return template


class HttpSmsSender:
    """Sends each message as one JSON request to an HTTP SMS gateway.

    Args:
        client: the shared HTTP client (tests pass one with ``httpx.MockTransport``).
        url: the gateway endpoint.
        token: sent as ``Authorization: Bearer``; None sends no header.
        timeout_s: overall timeout of one request.
        template: the message text; ``{code}`` is replaced.
        method: ``POST`` or ``PUT``.
        headers: extra headers (``"Name: value"``).
        body_template: the JSON body as text; ``{number}``, ``{message}``, ``{code}`` are
            replaced in its strings.
        retries: further attempts after a connection error, timeout, 5xx or 429.
        backoff_s: wait before the first retry, doubled for each further one.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        url: str,
        *,
        token: str | None,
        timeout_s: float,
        template: str = "Your verification code is {code}",
        method: str = "POST",
        headers: Sequence[str] = (),
        body_template: str = DEFAULT_BODY_TEMPLATE,
        retries: int = 0,
        backoff_s: float = 0.5,
    ) -> None:
        self._client = client
        self._url = url
        self._headers: dict[str, str] = {}
        for header in headers:
            name, _, value = header.partition(":")
            self._headers[name.strip()] = value.strip()
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._timeout = timeout_s
        self._template = template
        self._method = method
        self._body_template = json.loads(body_template)
        self._retries = retries
        self._backoff = backoff_s

    async def send_code(self, number: str, code: str) -> None:
        message = self._template.replace("{code}", code)
        body = render_body(
            self._body_template, {"number": number, "message": message, "code": code}
        )
        delay = self._backoff
        for attempt in range(self._retries + 1):
            last = attempt == self._retries
            try:
                response = await self._client.request(
                    self._method, self._url, json=body, headers=self._headers, timeout=self._timeout
                )
            except httpx.HTTPError as e:
                logger.warning(
                    "SMS gateway unreachable (attempt %d): %s", attempt + 1, type(e).__name__
                )
            else:
                if 200 <= response.status_code < 300:
                    return
                logger.warning(
                    "SMS gateway answered %d (attempt %d): %s",
                    response.status_code,
                    attempt + 1,
                    response.text[:200],
                )
                if response.status_code < 500 and response.status_code != 429:
                    break  # the gateway refused this message: retrying will not help
            if not last:
                await trio.sleep(delay)
                delay *= 2
        raise SmsDeliveryFailed()


class FileSmsSender:
    """Appends ``<number> <code>`` lines to a file (development and tests only)."""

    def __init__(self, path: Path) -> None:
        self._path = path

    async def send_code(self, number: str, code: str) -> None:
        await trio.to_thread.run_sync(self._append, f"{number} {code}\n")

    def _append(self, line: str) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._path, "a", encoding="utf-8") as fh:
            fh.write(line)


class LogSmsSender:
    """Writes each code to the log at WARNING (development only)."""

    async def send_code(self, number: str, code: str) -> None:
        logger.warning("development SMS sender: code for %s is %s", number, code)

"""Sending verification codes by SMS, behind one small interface.

:class:`SmsSender` is what the phone verification service sees. Two implementations:

- :class:`HttpSmsSender` posts ``{"to": "+4915…", "body": "…"}`` as JSON to an SMS gateway with
  a bearer token (httpx); transport errors, timeouts and non-2xx answers become
  :class:`SmsDeliveryFailed` (a ``500 M_UNKNOWN`` to the client; the gateway's answer is logged,
  never forwarded).
- :class:`FileSmsSender` appends ``<number> <code>`` lines to a file: for development and
  tests, which read the code back from it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import httpx
import trio

from homeserver.errors import UnknownError

__all__ = ["FileSmsSender", "HttpSmsSender", "SmsDeliveryFailed", "SmsSender"]

logger = logging.getLogger(__name__)


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


class HttpSmsSender:
    """POSTs each message to an HTTP SMS gateway.

    Args:
        client: the shared HTTP client (tests pass one with ``httpx.MockTransport``).
        url: the gateway endpoint.
        token: sent as ``Authorization: Bearer``; None sends no header.
        timeout_s: overall timeout of one request.
        template: the message text; ``{code}`` is replaced.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        url: str,
        *,
        token: str | None,
        timeout_s: float,
        template: str = "Your verification code is {code}",
    ) -> None:
        self._client = client
        self._url = url
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = timeout_s
        self._template = template

    async def send_code(self, number: str, code: str) -> None:
        body = self._template.replace("{code}", code)
        try:
            response = await self._client.post(
                self._url,
                json={"to": number, "body": body},
                headers=self._headers,
                timeout=self._timeout,
            )
        except httpx.HTTPError as e:
            logger.warning("SMS gateway unreachable: %s", type(e).__name__)
            raise SmsDeliveryFailed() from None
        if not 200 <= response.status_code < 300:
            logger.warning("SMS gateway answered %d: %s", response.status_code, response.text[:200])
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

"""Sending validation mails over SMTP, behind one small interface.

:class:`EmailSender` is what the email validation service sees; :class:`SmtpEmailSender` sends
through the standard library's :mod:`smtplib` in a worker thread (``trio.to_thread``), one
connection per mail (validation mails are rare). An SMTP or connection error before the server
accepted the mail becomes :class:`EmailDeliveryFailed` (``500 M_UNKNOWN`` to the client; the
details are logged, never forwarded).
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Protocol

import trio

from homeserver.config import EmailConfig
from homeserver.errors import UnknownError

__all__ = ["EmailDeliveryFailed", "EmailSender", "SmtpEmailSender"]

logger = logging.getLogger(__name__)


class EmailDeliveryFailed(UnknownError):
    """The mail could not be handed to the SMTP server."""

    def __init__(self, msg: str = "Could not send the validation email; try again later") -> None:
        super().__init__(msg)


class EmailSender(Protocol):
    """Delivers one text mail."""

    async def send(self, to: str, subject: str, body: str) -> None:
        """Send a plain-text mail to ``to``.

        Raises:
            EmailDeliveryFailed: the SMTP server did not accept it.
        """
        ...


class SmtpEmailSender:
    """Sends each mail in its own SMTP conversation, in a worker thread.

    Args:
        config: the ``email`` section (server, login, STARTTLS, sender address, timeout).
    """

    def __init__(self, config: EmailConfig) -> None:
        self._cfg = config

    async def send(self, to: str, subject: str, body: str) -> None:
        msg = EmailMessage()
        msg["From"] = self._cfg.notif_from
        msg["To"] = to
        msg["Subject"] = subject
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = make_msgid(domain=self._cfg.smtp_host)
        msg.set_content(body)
        try:
            await trio.to_thread.run_sync(self._send_sync, msg, abandon_on_cancel=True)
        except (OSError, smtplib.SMTPException) as e:
            logger.warning("sending a validation email failed: %s: %s", type(e).__name__, e)
            raise EmailDeliveryFailed() from None

    def _send_sync(self, msg: EmailMessage) -> None:
        cfg = self._cfg
        smtp = smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=cfg.smtp_timeout_s)
        try:
            smtp.ehlo()
            if cfg.require_transport_security:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if cfg.smtp_user is not None and cfg.smtp_password is not None:
                smtp.login(cfg.smtp_user, cfg.smtp_password)
            smtp.send_message(msg)
        except BaseException:
            smtp.close()
            raise
        # The mail was accepted: a server that hangs up instead of answering QUIT (SyTest's
        # does) has still taken it.
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            smtp.close()

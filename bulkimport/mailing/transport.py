"""Delivering messages: over one SMTP connection with timeouts, or into instance/outbox/.

Every failure is classified by what it means for the invariant "the password of the last
accepted e-mail logs in": was the message certainly not accepted, or may it have been?
"""

from __future__ import annotations

import os
import smtplib
import socket
import ssl
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from ..models import utcnow


@dataclass
class SendFailure(Exception):
    """A message was not (certainly) delivered.

    kind: "temporary" (4xx, connection trouble: retry later), "permanent" (5xx: give up),
    or "config" (authentication or TLS: pause all sending until an administrator fixes it).
    maybe_accepted: True when the server may have accepted the message without our knowing
    (the connection died or timed out after the message was handed over).
    server_down: True when no connection could be made at all.
    """

    kind: str
    reason: str
    maybe_accepted: bool = False
    server_down: bool = False

    def __str__(self) -> str:
        return self.reason


def build_message(*, sender: str, recipient: str, subject: str, text: str, html: str
                  ) -> EmailMessage:
    """A multipart/alternative message with a text and an HTML part."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2].strip("> ") or None)
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message


class SMTPTransport:
    """One SMTP connection, opened on first use and reused for a whole chunk of messages."""

    def __init__(self, config: dict):
        self.config = config
        self.connection: smtplib.SMTP | None = None

    def __enter__(self) -> SMTPTransport:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def open(self) -> None:
        """Connect, say hello, upgrade to TLS and log in as configured."""
        config = self.config
        timeout = config["MAIL_TIMEOUT"]
        try:
            if config["MAIL_USE_SSL"]:
                connection: smtplib.SMTP = smtplib.SMTP_SSL(
                    config["MAIL_SERVER"], config["MAIL_PORT"], timeout=timeout,
                    context=ssl.create_default_context())
            else:
                connection = smtplib.SMTP(config["MAIL_SERVER"], config["MAIL_PORT"],
                                          timeout=timeout)
        except OSError as exc:  # smtplib's errors are OSErrors too
            if isinstance(exc, ssl.SSLError):
                raise SendFailure("config", f"TLS failed: {exc}") from None
            raise SendFailure("temporary", f"Cannot connect to {config['MAIL_SERVER']}:"
                              f"{config['MAIL_PORT']}: {_describe(exc)}",
                              server_down=True) from None
        self.connection = connection
        try:
            connection.ehlo_or_helo_if_needed()
            if config["MAIL_USE_TLS"]:
                connection.starttls(context=ssl.create_default_context())
                connection.ehlo()
            if config["MAIL_USERNAME"]:
                connection.login(config["MAIL_USERNAME"], config["MAIL_PASSWORD"])
        except smtplib.SMTPAuthenticationError as exc:
            self.close()
            raise SendFailure("config", "The SMTP server refused the login: "
                              f"{exc.smtp_code} {_text(exc.smtp_error)}") from None
        except (ssl.SSLError, smtplib.SMTPNotSupportedError) as exc:
            self.close()
            raise SendFailure("config", f"TLS failed: {exc}") from None
        except OSError as exc:
            self.close()
            raise SendFailure("temporary", f"SMTP greeting failed: {_describe(exc)}") from None

    def send(self, message: EmailMessage) -> None:
        """Hand one message to the server; returns only once the server accepted it (250)."""
        if self.connection is None:
            self.open()
        assert self.connection is not None
        try:
            refused = self.connection.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()))
            self._reset()
            raise _reply_failure(code, reply, "recipient") from None
        except smtplib.SMTPSenderRefused as exc:
            self._reset()
            raise _reply_failure(exc.smtp_code, exc.smtp_error, "sender") from None
        except smtplib.SMTPDataError as exc:
            self._reset()
            raise _reply_failure(exc.smtp_code, exc.smtp_error, "message") from None
        except OSError as exc:  # includes SMTPServerDisconnected, timeouts, resets
            self.close()
            raise SendFailure("temporary", f"The connection was lost while sending: "
                              f"{_describe(exc)}", maybe_accepted=True) from None
        if refused:  # only possible with several recipients; we send to one
            code, reply = next(iter(refused.values()))
            raise _reply_failure(code, reply, "recipient")

    def close(self) -> None:
        """Say QUIT if the connection still works, and forget it."""
        if self.connection is not None:
            try:
                self.connection.quit()
            except OSError:
                self.connection.close()
            self.connection = None

    def _reset(self) -> None:
        """After a refused message, make the connection ready for the next one."""
        try:
            self.connection.rset()
        except OSError:
            self.close()


class OutboxTransport:
    """The embedded default: every message becomes an .eml file under instance/outbox/."""

    def __init__(self, directory: Path):
        self.directory = directory

    def __enter__(self) -> OutboxTransport:
        self.directory.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc_info) -> None:
        pass

    def send(self, message: EmailMessage) -> None:
        """Write the message atomically (temporary name, then rename)."""
        stamp = utcnow().strftime("%Y%m%dT%H%M%S%f")
        name = f"{stamp}-{uuid.uuid4().hex[:8]}.eml"
        partial = self.directory / (name + ".part")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # it holds a password
        with os.fdopen(fd, "wb") as handle:
            handle.write(bytes(message))
        partial.rename(self.directory / name)

    def close(self) -> None:
        """Nothing to close."""


def transport_for(config: dict, instance_path: str):
    """SMTP when a server is configured, else the outbox folder."""
    if config["MAIL_SERVER"]:
        return SMTPTransport(config)
    return OutboxTransport(Path(instance_path) / "outbox")


def _reply_failure(code: int, reply: bytes | str, what: str) -> SendFailure:
    text = f"{code} {_text(reply)}"
    if 400 <= code < 500:
        return SendFailure("temporary", f"The server deferred the {what}: {text}")
    return SendFailure("permanent", f"The server refused the {what}: {text}")


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError) or str(exc).endswith("timed out"):
        return "no answer within the timeout"  # smtplib reports some timeouts as disconnects
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__

"""Delivering messages through Flask-Mail: over one SMTP connection with timeouts, or into
instance/outbox/ when no SMTP server is configured.

Every failure is classified by what it means for the invariant "the password of the last
accepted e-mail logs in": was the message certainly not accepted, or may it have been? Anything
that goes wrong before the DATA command began leaves the message certainly not sent.
"""

from __future__ import annotations

import email.charset
import enum
import html
import json
import os
import secrets
import smtplib
import socket
import ssl
import time
import urllib.parse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from email.utils import formataddr, formatdate, make_msgid, parseaddr
from pathlib import Path

import idna
import markupsafe
from flask import current_app
from flask_mail import Connection, Message

from ..models import utcnow
from . import outbox_index
from .outbox_index import OUTBOX_FILE, STAMP_FORMAT

# SMTP allows 998 characters a line (RFC 5321 4.5.3.1.6). Flask-Mail sends UTF-8 bodies as 8bit
# without wrapping, so an HTML template with one long line would be refused ("500 Line too
# long"); such messages go as quoted-printable instead, whose lines are short.
MAX_LINE = 998
UTF8_QUOTED_PRINTABLE = email.charset.Charset("utf-8")
UTF8_QUOTED_PRINTABLE.header_encoding = email.charset.SHORTEST
UTF8_QUOTED_PRINTABLE.body_encoding = email.charset.QP

MASK = "••••••••"  # what the outbox viewer shows instead of a password


class FailureKind(enum.StrEnum):
    """What a failed send means for the next attempt."""

    TEMPORARY = "temporary"  # 4xx, connection trouble: retry later
    PERMANENT = "permanent"  # 5xx, an address that cannot be sent to: give up
    CONFIG = "config"  # authentication or TLS: pause all sending until an admin fixes it


TEMPORARY, PERMANENT, CONFIG = FailureKind


@dataclass
class SendFailure(Exception):
    """A message was not (certainly) delivered.

    kind: a FailureKind.
    maybe_accepted: True when the server may have accepted the message without our knowing
    (the connection died or timed out after the DATA command began).
    server_down: True when no connection could be made at all.
    """

    kind: FailureKind
    reason: str
    maybe_accepted: bool = False
    server_down: bool = False

    def __str__(self) -> str:
        return self.reason


class OutgoingMessage(Message):
    """Flask-Mail's Message, also knowing which values (the password) the outbox viewer must
    mask."""

    def __init__(self, *, secret_values: tuple[str, ...] = (), **fields):
        super().__init__(**fields)
        self.secret_values = tuple(value for value in secret_values if value)

    def _message(self):
        """Flask-Mail's MIME tree, each multipart given a boundary of 128 random bits. Left to
        itself, Python's generator makes one and compiles a regular expression to prove it
        absent from the parts, a quarter of the CPU of an e-mail; a part cannot hold this one
        by chance, and a template is written before its message's boundary exists."""
        message = super()._message()
        for part in message.walk():
            if part.is_multipart():
                part.set_boundary(f"=_{secrets.token_hex(16)}")
        return message


def build_message(*, sender: str, recipient: str, subject: str, text: str, html: str,
                  secret_values: tuple[str, ...] = ()) -> OutgoingMessage:
    """A multipart/alternative message (text, then HTML) to `recipient`, built by Flask-Mail;
    raises SendFailure ("permanent", certainly not sent) for an address it cannot carry."""
    long_lines = any(len(line.encode()) > MAX_LINE
                     for part in (text, html) for line in part.splitlines())
    message = OutgoingMessage(
        subject=subject, recipients=[smtp_address(recipient)], body=text, html=html,
        sender=sender, date=time.time(), secret_values=secret_values,
        charset=UTF8_QUOTED_PRINTABLE if long_lines else None)
    # Flask-Mail names the Message-ID after this machine (socket.getfqdn()), an internal host
    # name the recipient has no business seeing; the sender's domain names it as before.
    domain = parseaddr(sender)[1].rpartition("@")[2]
    message.msgId = make_msgid(domain=smtp_domain(domain) if domain else None)
    return message


def smtp_address(address: str) -> str:
    """`address` as an SMTP exchange without SMTPUTF8 carries it: an internationalised domain as
    punycode. Raises SendFailure ("permanent", certainly not sent) for a local part that is not
    ASCII: Flask-Mail 0.10 cannot address one, even to a server that offers SMTPUTF8."""
    local, _, domain = address.rpartition("@")
    if not local.isascii():
        raise SendFailure(PERMANENT, f"Not sent: the address {address} has characters that "
                          "are not plain ASCII before the @, which this mail path cannot send; "
                          "change the user's e-mail address.")
    try:
        return f"{local}@{smtp_domain(domain)}"
    except idna.IDNAError as exc:
        raise SendFailure(PERMANENT, f"Not sent: the domain of {address} cannot be written "
                          f"in ASCII (IDNA): {exc}") from None


def smtp_domain(domain: str) -> str:
    """An internationalised domain as punycode by IDNA 2008 (as email-validator checked it).
    Not Python's "idna" codec, which Flask-Mail uses: that is IDNA 2003, and it turns
    straße.de into strasse.de, another domain."""
    if domain.isascii():
        return domain
    return idna.encode(domain, uts46=True).decode("ascii")


class _PhaseTracking:
    """smtplib client mixin: remembers how far the current message got, because a failure
    before DATA began means "certainly not sent" and one after it "maybe accepted"."""

    phase = "envelope"  # then "data" once DATA began, "accepted" once the server said 250

    def data(self, msg):
        """Send DATA and the message, noting the phase before and after."""
        self.phase = "data"
        code, reply = super().data(msg)
        if code == 250:
            self.phase = "accepted"
        return code, reply


class _SMTP(_PhaseTracking, smtplib.SMTP):
    pass


class _SMTP_SSL(_PhaseTracking, smtplib.SMTP_SSL):
    pass


class SMTPTransport(Connection):
    """Flask-Mail's Connection to the configured relay, opened on first use and reused for a
    whole chunk of messages, with a timeout on every socket operation and each failure
    classified as a SendFailure.

    Flask-Mail 0.10's own Connection opens `smtplib.SMTP(server, port)` with no timeout and
    STARTTLS with smtplib's default context, which checks no certificate; `configure_host`
    fixes both. The relay's settings are Flask-Mail's (`mail.init_app` in create_app); only
    MAIL_TIMEOUT is read from `config`, so that a health check can shorten it.
    """

    def __init__(self, config: Mapping):
        super().__init__(current_app.extensions["mail"])
        self.timeout = config["MAIL_TIMEOUT"]

    def __enter__(self) -> SMTPTransport:
        return self  # the connection opens with the first message, not before

    def __exit__(self, *exc_info) -> None:
        self.close()

    def open(self) -> None:
        """Connect, say hello, upgrade to TLS and log in as configured."""
        self.host = self.configure_host()
        self.num_emails = 0

    def configure_host(self) -> smtplib.SMTP:
        """A logged-in smtplib client (called by Flask-Mail too, after MAIL_MAX_EMAILS)."""
        mail = self.mail
        try:
            if mail.use_ssl:
                host: smtplib.SMTP = _SMTP_SSL(mail.server, mail.port, timeout=self.timeout,
                                               context=ssl.create_default_context())
            else:
                host = _SMTP(mail.server, mail.port, timeout=self.timeout)
        except OSError as exc:  # smtplib's errors are OSErrors too
            if isinstance(exc, ssl.SSLError):
                raise SendFailure(CONFIG, f"TLS failed: {exc}") from None
            raise SendFailure(TEMPORARY, f"Cannot connect to {mail.server}:{mail.port}: "
                              f"{_describe(exc)}", server_down=True) from None
        # No set_debuglevel(MAIL_DEBUG), whatever Flask-Mail does: smtplib's debug output
        # prints every message, and so every password, to stderr.
        try:
            host.ehlo_or_helo_if_needed()
            if mail.use_tls:
                host.starttls(context=ssl.create_default_context())
                host.ehlo()
            if mail.username:
                host.login(mail.username, mail.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            host.close()
            raise SendFailure(CONFIG, "The SMTP server refused the login: "
                              f"{exc.smtp_code} {_text(exc.smtp_error)}") from None
        except (ssl.SSLError, smtplib.SMTPNotSupportedError) as exc:
            host.close()
            raise SendFailure(CONFIG, f"TLS failed: {exc}") from None
        except OSError as exc:
            host.close()
            raise SendFailure(TEMPORARY, f"SMTP greeting failed: {_describe(exc)}") from None
        return host

    def send(self, message: Message, envelope_from: str | None = None) -> None:
        """Hand one message to the server through Flask-Mail; returns only once the server
        accepted it (250), else raises SendFailure."""
        if self.host is None and not self.mail.suppress:
            self.open()
        if self.host is not None:
            self.host.phase = "envelope"
        try:
            super().send(message, envelope_from)
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
        except Exception as exc:
            phase = getattr(self.host, "phase", "envelope")
            if phase == "accepted":  # something after the 250 failed: the message is taken
                self.close()
                return
            if phase == "data":
                self.close()
                raise SendFailure(TEMPORARY, "The connection was lost while sending: "
                                  f"{_describe(exc)}", maybe_accepted=True) from None
            # Before DATA the server holds nothing of the message: certainly not sent.
            if isinstance(exc, OSError) and not isinstance(exc, smtplib.SMTPNotSupportedError):
                self.close()
                raise SendFailure(TEMPORARY, "The connection was lost before the message was "
                                  f"handed over: {_describe(exc)}") from None
            self._reset()  # the message itself cannot go (SMTPUTF8 needed, a bad header, …)
            raise SendFailure(PERMANENT, "Not sent: this server cannot take the message or "
                              f"its address: {_describe(exc)}") from None

    def close(self) -> None:
        """Say QUIT if the connection still works, and forget it."""
        if self.host is not None:
            try:
                self.host.quit()
            except OSError:
                self.host.close()
            self.host = None

    def _reset(self) -> None:
        """After a refused message, make the connection ready for the next one."""
        if self.host is None:
            return
        try:
            self.host.rset()
        except OSError:
            self.close()


class OutboxTransport:
    """The embedded default, for trying the product: every message becomes an .eml file under
    instance/outbox/ (readable by the process owner only), beside a .json copy of its headers
    and its text and HTML parts with the password masked, which is all the outbox pages read,
    and a row in the outbox's index (`outbox_index`), which lets them page and search."""

    def __init__(self, directory: Path, retention_days: float):
        self.directory = directory
        self.retention_days = retention_days
        self.index = outbox_index.OutboxIndex(directory)

    def __enter__(self) -> OutboxTransport:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        purge_outbox(self.directory, self.retention_days)
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def send(self, message: Message) -> None:
        """Write the message and its masked view, each atomically (temporary name, rename), then
        index it."""
        if message.has_bad_headers():
            raise SendFailure(PERMANENT, "Not sent: a header holds a line break.")
        if message.date is None:
            message.date = time.time()
        raw = message.as_bytes()
        secrets = getattr(message, "secret_values", ())
        sender = message.sender
        view = {"to": ", ".join(message.recipients),
                "from": formataddr(sender) if isinstance(sender, tuple) else sender or "",
                "subject": mask(message.subject, secrets),
                "date": formatdate(message.date, localtime=True),
                "text": mask(message.body or "", secrets)}
        if message.html:
            view["html"] = mask_markup(message.html, secrets)
        name = f"{utcnow().strftime(STAMP_FORMAT)}-{uuid.uuid4().hex[:8]}"
        _write_private(self.directory / f"{name}.json", json.dumps(view).encode())
        _write_private(self.directory / f"{name}.eml", raw)  # last: it makes the message appear
        self.index.record(outbox_index.indexed_message(f"{name}.eml", view))

    def close(self) -> None:
        """Close the index (it opens again with the next message)."""
        self.index.close()


def mask(text: str, secret_values: tuple[str, ...]) -> str:
    """`text` with every secret value in it replaced by MASK."""
    for value in secret_values:
        text = text.replace(value, MASK)
    return text


def mask_markup(markup: str, secret_values: tuple[str, ...]) -> str:
    """The HTML `markup` with every secret value replaced by MASK, whether it stands there as
    itself, HTML-escaped (as a template writes `{{ password }}`) or URL-encoded (in a link)."""
    for value in secret_values:
        written_forms = {str(markupsafe.escape(value)), html.escape(value),
                         html.escape(value, quote=False), urllib.parse.quote(value, safe=""),
                         urllib.parse.quote_plus(value, safe=""), value}
        for form in sorted(written_forms, key=len, reverse=True):  # "a&amp;b" before "a&b"
            markup = markup.replace(form, MASK)
    return markup


def purge_outbox(directory: Path, retention_days: float) -> int:
    """Delete the outbox files written more than `retention_days` ago by the application's
    clock (their names carry the time they were written) and their rows of the outbox's index;
    returns how many files."""
    if retention_days <= 0 or not directory.is_dir():
        return 0
    oldest = utcnow() - timedelta(days=retention_days)
    # The names start with the time in a fixed-width form: comparing them as text is comparing
    # the times, without parsing thousands of dates.
    oldest_name = oldest.strftime(STAMP_FORMAT)
    deleted = 0
    for path in directory.iterdir():
        if OUTBOX_FILE.match(path.name) and path.name < oldest_name:
            path.unlink(missing_ok=True)
            deleted += 1
    # After the files: a page that reconciles the index meanwhile forgets them as well.
    outbox_index.forget_written_before(directory, oldest)
    return deleted


def _write_private(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".part")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # it may hold a password
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    partial.rename(path)


def transport_for(config: Mapping, instance_path: str):
    """SMTP when a server is configured, else the outbox folder."""
    if config["MAIL_SERVER"]:
        return SMTPTransport(config)
    return OutboxTransport(Path(instance_path) / "outbox", config["OUTBOX_RETENTION_DAYS"])


def _reply_failure(code: int, reply: bytes | str, what: str) -> SendFailure:
    text = f"{code} {_text(reply)}"
    if 400 <= code < 500:
        return SendFailure(TEMPORARY, f"The server deferred the {what}: {text}")
    return SendFailure(PERMANENT, f"The server refused the {what}: {text}")


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError) or str(exc).endswith("timed out"):
        return "no answer within the timeout"  # smtplib reports some timeouts as disconnects
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__

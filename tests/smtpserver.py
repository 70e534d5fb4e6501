"""A real SMTP server for the tests (aiosmtpd), with faults injected per recipient.

Each recipient may have a list of actions, one consumed per delivery attempt: "rcpt451",
"rcpt550", "data451", "data554", "hang" (never answer DATA), "drop" (take the message, then
close the connection without answering), "droprcpt" (close the connection at RCPT, before any
DATA). Without an action the message is accepted.
`accepted` records, in order, every message the server took: that is what the invariant
"the last accepted e-mail's password logs in" is checked against.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import socket
import threading
import time
from email import policy
from email.parser import BytesParser

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


class FaultyHandler:
    """aiosmtpd handler that records accepted messages and plays the injected faults."""

    def __init__(self):
        self.rules: dict[str, list[str]] = {}
        self.accepted: list[tuple[float, str, bytes]] = []
        self.lock = threading.Lock()
        self.hang_seconds = 5.0
        self.delay = 0.0
        self.connections = 0  # counted by CountingController (its own start-up probe excluded)

    def _next(self, address: str, consume: bool) -> str | None:
        with self.lock:
            actions = self.rules.get(address.lower())
            if not actions:
                return None
            return actions.pop(0) if consume else actions[0]

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        action = self._next(address, consume=False)
        if action == "rcpt451":
            self._next(address, consume=True)
            return "451 4.3.0 Try again later"
        if action == "rcpt550":
            self._next(address, consume=True)
            return "550 5.1.1 No such user here"
        if action == "droprcpt":
            self._next(address, consume=True)
            server.transport.close()  # the connection ends before the message was handed over
            return "250 OK"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        address = envelope.rcpt_tos[0]
        action = self._next(address, consume=True)
        if action == "data451":
            return "451 4.3.0 Mailbox busy, try later"
        if action == "data554":
            return "554 5.7.1 Message refused by policy"
        if action == "hang":
            await asyncio.sleep(self.hang_seconds)
            return "451 4.4.2 Too late"
        if self.delay:
            await asyncio.sleep(self.delay)
        with self.lock:
            self.accepted.append((time.time(), address.lower(), envelope.original_content))
        if action == "drop":
            server.transport.close()  # the message is taken, the 250 never arrives
        return "250 OK"

    def last_password(self, address: str) -> str | None:
        """The password in the last message accepted for `address`, if any."""
        with self.lock:
            messages = [m for _, a, m in self.accepted if a == address.lower()]
        return password_in(messages[-1]) if messages else None

    def last_credential(self, address: str) -> str | None:
        """The password, or the set-password link's token, in the last message accepted for
        `address`, if any."""
        with self.lock:
            messages = [m for _, a, m in self.accepted if a == address.lower()]
        return credential_in(messages[-1]) if messages else None

    def count_for(self, address: str) -> int:
        """How many messages were accepted for `address`."""
        with self.lock:
            return sum(1 for _, a, _ in self.accepted if a == address.lower())


def parse_message(raw: bytes):
    """A raw message as an EmailMessage, headers and parts decoded."""
    return BytesParser(policy=policy.default).parsebytes(raw)


def password_in(raw: bytes) -> str:
    """The password written in an invitation's text part."""
    message = BytesParser(policy=policy.default).parsebytes(raw)
    text = message.get_body(preferencelist=("plain",)).get_content()
    return re.search(r"Password: (\S+)", text).group(1)


LINK = re.compile(r"/set-password/([A-Za-z0-9_-]+)")


def link_token_in(raw: bytes) -> str:
    """The token of the set-password link in an invitation's text part."""
    message = BytesParser(policy=policy.default).parsebytes(raw)
    return LINK.search(message.get_body(preferencelist=("plain",)).get_content()).group(1)


def credential_in(raw: bytes) -> str:
    """What an invitation gives: its password, or its link's token (prefixed "link:")."""
    message = BytesParser(policy=policy.default).parsebytes(raw)
    text = message.get_body(preferencelist=("plain",)).get_content()
    found = LINK.search(text)
    return f"link:{found.group(1)}" if found else re.search(r"Password: (\S+)", text).group(1)


class Authenticator:
    """Accepts the login `user`/`secret` once `open` is True."""

    def __init__(self):
        self.open = False
        self.logins = 0  # successful AUTH exchanges

    def __call__(self, server, session, envelope, mechanism, auth_data):
        ok = self.open and auth_data.login == b"user" and auth_data.password == b"secret"
        self.logins += ok
        return AuthResult(success=ok, handled=False)  # unhandled: aiosmtpd answers 535


class CountingController(Controller):
    """A Controller that counts the connections its handler is given (aiosmtpd builds one SMTP
    protocol object per connection)."""

    def factory(self):
        self.handler.connections += 1
        return super().factory()


def free_port() -> int:
    """A TCP port nobody listens on right now (another process may take it at any moment: to
    keep one that refuses connections, hold a `refusing_port`)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def refusing_port() -> socket.socket:
    """A socket bound to a free port of 127.0.0.1 but not listening: connections to it are
    refused, and no other test or xdist worker can take the port until it is closed."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def start_server(authenticator: Authenticator | None = None, *,
                 handler: FaultyHandler | None = None, port: int | None = None, **options):
    """Start an SMTP server on 127.0.0.1 (on `port`, or a free one); returns (controller,
    handler). `options` go to aiosmtpd (enable_SMTPUTF8=True, tls_context=… for STARTTLS,
    ssl_context=… for TLS)."""
    handler = handler or FaultyHandler()
    kwargs = dict(options)
    if authenticator is not None:
        # PLAIN only: after a refused PLAIN, smtplib would try LOGIN, which aiosmtpd leaves
        # waiting for a second line until the client times out.
        kwargs.update({"authenticator": authenticator, "auth_require_tls": False,
                       "auth_required": True, "auth_exclude_mechanism": ["LOGIN"]})
    for attempt in itertools.count(1):
        controller = CountingController(handler, hostname="127.0.0.1",
                                        port=port or free_port(), **kwargs)
        try:
            controller.start()
        except OSError:  # a free port taken by another process in the meantime: take another
            if port or attempt == 5:
                raise
            continue
        handler.connections = 0  # start() connects once to see that the server answers
        return controller, handler

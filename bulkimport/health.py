"""`/healthz`: liveness (the process answers and the database can be reached) for anyone, and the
reachability of Redis and the SMTP relay for administrators and monitoring that sends the
configured token. It names no host, URL or secret."""

from __future__ import annotations

import hmac
import threading
import time

from flask import current_app
from sqlalchemy import text

from .clock import clock
from .extensions import db
from .mailing.transport import SendFailure, SMTPTransport

HEALTH_TIMEOUT = 3.0
# How long one SMTP check (connect, EHLO, TLS, login) answers for: a monitor polling every few
# seconds must not make the relay see a login each time, nor queue behind a slow relay.
SMTP_CHECK_SECONDS = 60.0
_CACHE_KEY = "bulkimport.health"


def _timed(check) -> dict:
    started = time.perf_counter()
    try:
        detail = check()
    except Exception as exc:  # noqa: BLE001 (any failure is the answer, never the details)
        return {"ok": False, "error": exc.__class__.__name__,
                "ms": round(1000 * (time.perf_counter() - started), 1)}
    return {"ok": True, **(detail or {}), "ms": round(1000 * (time.perf_counter() - started), 1)}


def _database() -> None:
    db.session.execute(text("SELECT 1"))
    db.session.rollback()


def _redis() -> dict | None:
    if not current_app.config["REDIS_URL"]:
        return {"mode": "in-process jobs (no Redis configured)"}
    from redis import Redis

    Redis.from_url(current_app.config["REDIS_URL"], socket_timeout=HEALTH_TIMEOUT,
                   socket_connect_timeout=HEALTH_TIMEOUT).ping()
    return None


def _smtp() -> dict | None:
    config = current_app.config
    if not config["MAIL_SERVER"]:
        return {"mode": "outbox folder (no SMTP server configured)"}
    transport = SMTPTransport({**config, "MAIL_TIMEOUT": min(config["MAIL_TIMEOUT"],
                                                             HEALTH_TIMEOUT)})
    try:
        transport.open()  # connect, EHLO, STARTTLS and login as configured; sends nothing
    except SendFailure as failure:
        raise ConnectionError(failure.kind) from None
    finally:
        transport.close()
    return None


class _SMTPCheckCache:
    """The last SMTP check of this process and when it was made; the lock makes concurrent
    requests wait for one check instead of each opening a connection."""

    def __init__(self):
        self.lock = threading.Lock()
        self.checked_at: float | None = None
        self.result: dict = {}


def _cached_smtp() -> dict:
    """The SMTP check, made at most once per SMTP_CHECK_SECONDS (failures too: a relay that is
    down must not cost every poll a connect timeout)."""
    cache = current_app.extensions.setdefault(_CACHE_KEY, _SMTPCheckCache())
    with cache.lock:
        now = clock().monotonic()
        if cache.checked_at is None or now - cache.checked_at >= SMTP_CHECK_SECONDS:
            cache.result = _timed(_smtp)
            cache.checked_at = clock().monotonic()
            now = cache.checked_at
        return {**cache.result, "age_s": round(now - cache.checked_at, 1)}


def token_matches(presented: str | None, configured: str | None) -> bool:
    """Whether `presented` is the configured health token, compared in constant time; never true
    when no token is configured."""
    if not presented or not configured:
        return False
    return hmac.compare_digest(presented.encode(), configured.encode())


def health(detailed: bool) -> tuple[dict, int]:
    """The state of each part and the HTTP status: 200 when all are reachable, else 503.

    Without `detailed`, only liveness: the process and the database (what a load balancer needs,
    and all an anonymous caller may cause). With it, Redis and the SMTP relay as well, the SMTP
    check cached for SMTP_CHECK_SECONDS.
    """
    checks = {"database": _timed(_database)}
    if detailed:
        checks.update(redis=_timed(_redis), smtp=_cached_smtp())
    healthy = all(check["ok"] for check in checks.values())
    return {"status": "ok" if healthy else "unhealthy", "checks": checks}, 200 if healthy else 503

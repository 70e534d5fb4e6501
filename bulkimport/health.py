"""`/healthz`: whether the database, Redis and the SMTP relay can be reached, for load balancers
and monitoring. It needs no login and names no host, URL or secret."""

from __future__ import annotations

import time

from flask import current_app
from sqlalchemy import text

from .extensions import db
from .mailing.transport import SendFailure, SMTPTransport

HEALTH_TIMEOUT = 3.0


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


def health() -> tuple[dict, int]:
    """The state of each part and the HTTP status: 200 when all are reachable, else 503."""
    checks = {"database": _timed(_database), "redis": _timed(_redis), "smtp": _timed(_smtp)}
    healthy = all(check["ok"] for check in checks.values())
    return {"status": "ok" if healthy else "unhealthy", "checks": checks}, 200 if healthy else 503

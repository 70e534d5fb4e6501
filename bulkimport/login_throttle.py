"""Login throttling: failures are counted per account and per address; past a first threshold
each further attempt must wait (1 s, doubling, at most a minute), past a second the key is locked
for `LOGIN_LOCK_MINUTES`. Counters live in the database so that every process sees them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .audit_trail import record_event
from .models import LoginFailures, fold_key

MAX_DELAY_SECONDS = 60


@dataclass(frozen=True)
class Limits:
    """When a key starts to slow down and when it locks."""

    slowdown_after: int
    lock_after: int
    lock_minutes: int


def login_keys(username: str, address: str | None) -> dict[str, Limits]:
    """The throttling keys of one attempt with their limits: the account (whether or not it
    exists, so that the answers reveal nothing) and the client's address."""
    config = current_app.config
    minutes = config["LOGIN_LOCK_MINUTES"]
    keys = {"account:" + fold_key(username.strip())[:150]: Limits(
        config["LOGIN_SLOWDOWN_AFTER"], config["LOGIN_LOCK_AFTER"], minutes)}
    if address:
        keys["address:" + address[:150]] = Limits(
            config["LOGIN_ADDRESS_SLOWDOWN_AFTER"], config["LOGIN_ADDRESS_LOCK_AFTER"], minutes)
    return keys


def _current(row: LoginFailures | None, limits: Limits, now: datetime) -> LoginFailures | None:
    """`row` unless its failures are forgotten: a lock that has run out, or failures older than
    the lock duration."""
    if row is None:
        return None
    if row.locked_until is not None:
        return row if row.locked_until > now else None
    if row.last_failure_at <= now - timedelta(minutes=limits.lock_minutes):
        return None
    return row


def refusal(session: Session, keys: dict[str, Limits], now: datetime) -> str | None:
    """Why an attempt must not even be checked now (a lock, or too soon after the last failure),
    or None."""
    wait_locked = wait_slow = 0.0
    for key, limits in keys.items():
        row = _current(session.get(LoginFailures, key), limits, now)
        if row is None:
            continue
        if row.locked_until is not None:
            wait_locked = max(wait_locked, (row.locked_until - now).total_seconds())
        elif row.failures >= limits.slowdown_after:
            delay = min(2 ** (row.failures - limits.slowdown_after), MAX_DELAY_SECONDS)
            ready = row.last_failure_at + timedelta(seconds=delay)
            wait_slow = max(wait_slow, (ready - now).total_seconds())
    if wait_locked > 0:
        minutes = math.ceil(wait_locked / 60)
        return (f"Too many failed logins. Try again in {minutes} minute"
                f"{'s' * (minutes != 1)}, or ask an administrator.")
    if wait_slow > 0:
        seconds = math.ceil(wait_slow)
        return f"Too many failed logins. Wait {seconds} second{'s' * (seconds != 1)} and try again."
    return None


def failures_of(session: Session, key: str, limits: Limits, now: datetime) -> int:
    """The failures that currently count for `key`."""
    row = _current(session.get(LoginFailures, key), limits, now)
    return row.failures if row else 0


def record_failure(session: Session, keys: dict[str, Limits], now: datetime,
                   address: str | None) -> None:
    """Count one failed attempt against every key, locking those that reach their limit (and
    writing an audit event when a lock begins)."""
    for key, limits in keys.items():
        row = session.get(LoginFailures, key, with_for_update=True)
        if row is None:
            try:
                with session.begin_nested():
                    row = LoginFailures(key=key, failures=0, last_failure_at=now)
                    session.add(row)
            except IntegrityError:  # another process counted a failure of this key first
                row = session.get(LoginFailures, key, with_for_update=True, populate_existing=True)
        if _current(row, limits, now) is None:
            row.failures, row.locked_until = 0, None
        row.failures += 1
        row.last_failure_at = now
        if row.failures >= limits.lock_after and row.locked_until is None:
            row.locked_until = now + timedelta(minutes=limits.lock_minutes)
            record_event(session, "login_locked", address=address, key=key,
                         failures=row.failures, minutes=limits.lock_minutes)


def clear_failures(session: Session, key: str) -> None:
    """Forget an account's failures after a successful login (addresses keep theirs, so that a
    valid login does not reset a guessing address)."""
    row = session.get(LoginFailures, key)
    if row is not None:
        session.delete(row)

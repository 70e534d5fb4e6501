"""Login throttling. Every attempt is counted before its password is checked, in a short
transaction of its own that holds the counters' rows, so that N simultaneous attempts cost what N
sequential ones do; a correct password then takes its count back.

Three counters, none of which lets one address lock a user out from elsewhere:

- an account from one address: past `LOGIN_SLOWDOWN_AFTER` failures each further attempt from
  there must wait (1 s, doubling, at most a minute); past `LOGIN_LOCK_AFTER` that address is
  locked out of that account for `LOGIN_LOCK_MINUTES`;
- an address, whatever the account: the same with `LOGIN_ADDRESS_*`;
- an account from everywhere, counting the addresses that failed on it: past
  `LOGIN_ACCOUNT_LOCK_ADDRESSES` (a distributed guess) it is locked for addresses it has not
  logged in from in the last `LOGIN_KNOWN_ADDRESS_DAYS`; its owner still gets in from those.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import case, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Row
from sqlalchemy.orm import Session

from .audit_trail import record_event
from .clock import utcnow
from .models import LoginFailures, fold_key

MAX_DELAY_SECONDS = 60
# The three counters of an attempt, as named in audit events.
ACCOUNT_ADDRESS, ADDRESS, ACCOUNT = "account_address", "address", "account"
_TABLE = LoginFailures.__table__


@dataclass(frozen=True)
class Limits:
    """When a counter starts to slow attempts down (never, for None) and when it locks."""

    slowdown_after: int | None
    lock_after: int
    lock_minutes: int


@dataclass(frozen=True)
class Attempt:
    """One login attempt as `count_attempt` saw it: why it must not be checked, or the counters
    it was counted under (scope → key), their counts with it, and the locks it began."""

    refusal: str | None = None
    keys: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    locks_begun: tuple[str, ...] = ()

    @property
    def first_failure(self) -> bool:
        """Whether no other failure of this account is remembered, from here or elsewhere."""
        return self.counts.get(ACCOUNT_ADDRESS) == 1 and self.counts.get(ACCOUNT) == 1


def account_digest(username: str) -> str:
    """The name of an account in the counters: a digest of the typed username keyed with the
    secret key, so that the table never holds what was typed (sometimes a password)."""
    secret = str(current_app.config["SECRET_KEY"]).encode()
    typed = fold_key(username.strip()).encode()
    return hmac.new(secret, b"login throttle\0" + typed, hashlib.sha256).hexdigest()[:40]


def throttle_keys(username: str, address: str | None) -> dict[str, str]:
    """The counters of an attempt on `username` from `address` (scope → key): the account
    whether or not it exists, so that the answers reveal nothing."""
    account = account_digest(username)
    where = (address or "unknown")[:150]
    keys = {ACCOUNT: f"account:{account}", ACCOUNT_ADDRESS: f"pair:{account}@{where}"}
    if address:
        keys[ADDRESS] = f"address:{where}"
    return keys


def _limits() -> dict[str, Limits]:
    config = current_app.config
    minutes = config["LOGIN_LOCK_MINUTES"]
    return {
        ACCOUNT_ADDRESS: Limits(config["LOGIN_SLOWDOWN_AFTER"], config["LOGIN_LOCK_AFTER"],
                                minutes),
        ADDRESS: Limits(config["LOGIN_ADDRESS_SLOWDOWN_AFTER"],
                        config["LOGIN_ADDRESS_LOCK_AFTER"], minutes),
        ACCOUNT: Limits(None, config["LOGIN_ACCOUNT_LOCK_ADDRESSES"], minutes),
    }


def count_attempt(session: Session, username: str, address: str | None) -> Attempt:
    """Count an attempt on `username` from `address` before its password is checked, or refuse
    it (a lock, or too soon after the last failure) without counting it. The count is committed
    at once on a connection of its own, so that simultaneous attempts see it; `session`'s
    transaction is left alone. The caller settles the attempt with `settle_success` or
    `settle_failure`."""
    now = utcnow()
    keys = throttle_keys(username, address)
    limits = _limits()
    with session.get_bind().connect() as connection:
        transaction = connection.begin()
        # Rows are created and locked in key order, so that two attempts never wait on each
        # other in a circle.
        rows = {scope: _locked_row(connection, key, now)
                for scope, key in sorted(keys.items(), key=lambda item: item[1])}
        last_success = rows[ACCOUNT_ADDRESS].last_success_at
        known_days = current_app.config["LOGIN_KNOWN_ADDRESS_DAYS"]
        known = last_success is not None and last_success > now - timedelta(days=known_days)
        refusal = _refusal({scope: row for scope, row in rows.items()
                            if scope != ACCOUNT or not known}, limits, now)
        if refusal:
            transaction.rollback()
            return Attempt(refusal=refusal)
        # The account counts addresses: only the first failure of this address adds to it.
        new_address = _remembered(rows[ACCOUNT_ADDRESS], limits[ACCOUNT_ADDRESS], now) == 0
        counts: dict[str, int] = {}
        begun: list[str] = []
        for scope, row in rows.items():
            failures = _remembered(row, limits[scope], now)
            locked_until = row.locked_until if failures else None
            if scope == ACCOUNT and not new_address:
                counts[scope] = failures
                continue
            failures += 1
            if failures >= limits[scope].lock_after and locked_until is None:
                locked_until = now + timedelta(minutes=limits[scope].lock_minutes)
                begun.append(scope)
            connection.execute(update(_TABLE).where(_TABLE.c.key == row.key).values(
                failures=failures, last_failure_at=now, locked_until=locked_until))
            counts[scope] = failures
        transaction.commit()
    return Attempt(keys=keys, counts=counts, locks_begun=tuple(begun))


def _locked_row(connection: Connection, key: str, now: datetime) -> Row:
    """The counter row of `key`, created if missing and locked until the transaction ends (on
    SQLite the insert already holds the database's write lock)."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    connection.execute(dialect.insert(_TABLE).values(key=key, failures=0, last_failure_at=now)
                       .on_conflict_do_nothing(index_elements=["key"]))
    return connection.execute(select(_TABLE).where(_TABLE.c.key == key).with_for_update()).one()


def _remembered(row: Row, limits: Limits, now: datetime) -> int:
    """The failures of `row` that still count: none once a lock has run out, or once the last
    failure is older than the lock duration."""
    if row.locked_until is not None:
        return row.failures if row.locked_until > now else 0
    if row.last_failure_at <= now - timedelta(minutes=limits.lock_minutes):
        return 0
    return row.failures


def _refusal(rows: dict[str, Row], limits: dict[str, Limits], now: datetime) -> str | None:
    """Why an attempt must not even be checked now (a lock, or too soon after the last
    failure), or None."""
    wait_locked = wait_slow = 0.0
    for scope, row in rows.items():
        failures = _remembered(row, limits[scope], now)
        if not failures:
            continue
        slowdown_after = limits[scope].slowdown_after
        if row.locked_until is not None:
            wait_locked = max(wait_locked, (row.locked_until - now).total_seconds())
        elif slowdown_after is not None and failures >= slowdown_after:
            delay = min(2 ** min(failures - slowdown_after, 16), MAX_DELAY_SECONDS)
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


def settle_success(session: Session, attempt: Attempt) -> None:
    """Take back a correct attempt's count: its account forgets this address's failures (and
    remembers the address as one it logs in from); the address and the account each lose one
    failure, and a lock the attempt began ends. The caller commits."""
    now = utcnow()
    for scope, key in sorted(attempt.keys.items(), key=lambda item: item[1]):
        if scope == ACCOUNT_ADDRESS:
            values = {"failures": 0, "locked_until": None, "last_success_at": now}
        else:
            values = {"failures": case((LoginFailures.failures > 0, LoginFailures.failures - 1),
                                       else_=0)}
            if scope in attempt.locks_begun:
                values["locked_until"] = None
        session.execute(update(LoginFailures).where(LoginFailures.key == key).values(**values)
                        .execution_options(synchronize_session=False))


def settle_failure(session: Session, attempt: Attempt, *, user_id: int | None,
                   address: str | None) -> None:
    """A wrong password keeps its count; write an audit event for each lock it began. The
    caller commits."""
    limits = _limits()
    for scope in attempt.locks_begun:
        record_event(session, "login_locked", user_id=user_id, address=address, scope=scope,
                     failures=attempt.counts[scope], minutes=limits[scope].lock_minutes)

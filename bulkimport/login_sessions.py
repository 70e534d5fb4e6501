"""Server-side sessions: the signed session cookie carries a random token, the `sessions` table
its SHA-256. A session ends when its row is deleted (logout, a password change, a resend, an
expired temporary password, a blocked account), after `SESSION_IDLE_MINUTES` without a request,
and `SESSION_MAX_HOURS` after login however active."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from .clock import utcnow
from .models import LoginSession, User

# The key of the token in Flask's signed session cookie.
TOKEN_KEY = "session_token"
# last_seen_at is written at most this often (or a tenth of the idle time, if shorter), not on
# every request; an active session is therefore never taken for an idle one.
TOUCH_EVERY = timedelta(seconds=60)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _limits() -> tuple[timedelta, timedelta]:
    config = current_app.config
    return (timedelta(minutes=config["SESSION_IDLE_MINUTES"]),
            timedelta(hours=config["SESSION_MAX_HOURS"]))


def _expired(created_at: datetime, last_seen_at: datetime, now: datetime) -> bool:
    idle, lifetime = _limits()
    return last_seen_at + idle <= now or created_at + lifetime <= now


def open_session(session: Session, user: User, address: str | None,
                 replacing: str | None = None) -> str:
    """Start a session for `user` and return its new token for the cookie; the session of
    `replacing` (the token the browser had) ends, and so do the user's expired sessions. The
    caller commits."""
    now = utcnow()
    idle, lifetime = _limits()
    end_session(session, replacing)
    session.execute(delete(LoginSession).where(
        LoginSession.user_id == user.id,
        or_(LoginSession.last_seen_at <= now - idle, LoginSession.created_at <= now - lifetime))
        .execution_options(synchronize_session=False))
    token = secrets.token_urlsafe(32)
    session.add(LoginSession(id=_digest(token), user_id=user.id, created_at=now,
                             last_seen_at=now, address=(address or "")[:64] or None))
    return token


def end_session(session: Session, token: str | None) -> None:
    """End the session of `token`, if there is one. The caller commits."""
    if token:
        session.execute(delete(LoginSession).where(LoginSession.id == _digest(str(token)))
                        .execution_options(synchronize_session=False))


def end_sessions_of(session: Session, user_ids: Iterable[int]) -> None:
    """End every session of these users. The caller commits."""
    ids = sorted(set(user_ids))
    for start in range(0, len(ids), 10_000):  # well under PostgreSQL's parameter limit
        session.execute(delete(LoginSession)
                        .where(LoginSession.user_id.in_(ids[start:start + 10_000]))
                        .execution_options(synchronize_session=False))


def session_user(session: Session, token: str | None) -> User | None:
    """The user of the live session `token`, or None. A session past its idle or absolute
    lifetime opens nothing; every session of a blocked user or of one whose temporary password
    has expired ends here. Its last request is noted (at most once a minute) in a short
    transaction of its own, since no view commits on a plain page view."""
    if not token:
        return None
    now = utcnow()
    digest = _digest(str(token))
    # One query for the session and its user, in the request's own session (the user is the
    # one Flask-Login keeps); a connection of its own only when there is something to write.
    found = session.execute(
        select(User, LoginSession.created_at, LoginSession.last_seen_at)
        .join(LoginSession, LoginSession.user_id == User.id)
        .where(LoginSession.id == digest)).first()
    if found is None or _expired(found.created_at, found.last_seen_at, now):
        return None
    user = found.User
    expires = user.temp_password_expires_at
    if not user.active or (expires is not None and expires <= now):
        with session.get_bind().begin() as connection:
            connection.execute(delete(LoginSession).where(LoginSession.user_id == user.id))
        return None
    if now - found.last_seen_at >= min(TOUCH_EVERY, _limits()[0] / 10):
        with session.get_bind().begin() as connection:
            connection.execute(update(LoginSession).where(LoginSession.id == digest)
                               .values(last_seen_at=now))
    return user

"""Logging in and changing one's password, as plain functions for the views and the tests."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from .audit_trail import record_event
from .login_throttle import clear_failures, failures_of, login_keys, record_failure, refusal
from .models import User, fold_key, utcnow
from .password_policy import check_password, failure_messages, load_policy
from .security import hash_cost, hash_password, new_session_epoch, verify_password

INVALID = "Invalid username or password."
EXPIRED = ("Your temporary password has expired. Ask an administrator to send you a new one "
           "(Admin > People > Invitations > Resend).")

# Checked when the username is unknown, so that an unknown name costs the same time as a wrong
# password and response times do not reveal which usernames exist.
_DUMMY_HASH = "$2b$12$zxysWemXWIHVGU/3VCMPJOMJqAzMxI0gVP0MXt/xXBaRN.XJy6mNq"


@dataclass(frozen=True)
class LoginResult:
    """What one login attempt gave: the user, or the message to show instead."""

    user: User | None = None
    message: str | None = None


def log_in(session: Session, username: str, password: str, address: str | None) -> LoginResult:
    """Check one login attempt under the throttle: locked or too-early attempts are refused
    without checking the password; failures are counted per account and per address. The caller
    commits."""
    now = utcnow()
    keys = login_keys(username, address)
    refused = refusal(session, keys, now)
    if refused:
        return LoginResult(message=refused)
    user, expired, known_id = check_credentials(session, username, password)
    account_key, account_limits = next(iter(keys.items()))
    if user is not None:
        clear_failures(session, account_key)
        rounds = current_app.config["BCRYPT_ROUNDS"]
        if hash_cost(user.password_hash) != rounds:  # the cost setting changed since it was made
            user.password_hash = hash_password(password, rounds)
        return LoginResult(user=user)
    # The expiry is told only to a first attempt: it confirms the password was right, which a
    # guesser who has already failed must not learn.
    first_failure = failures_of(session, account_key, account_limits, now) == 0
    record_failure(session, keys, now, address)
    record_event(session, "login_failed", user_id=known_id, address=address,
                 username=username.strip()[:100], **({"expired": True} if expired else {}))
    return LoginResult(message=EXPIRED if expired and first_failure else INVALID)


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The active user with these credentials, or None (no throttling: see `log_in`)."""
    return check_credentials(session, username, password)[0]


def check_credentials(session: Session, username: str,
                      password: str) -> tuple[User | None, bool, int | None]:
    """(the active user with these credentials, or None; whether the password was right but was
    a generated temporary one past its validity; the id of the account named, if it exists).
    A matching pending invitation password becomes the user's password."""
    user = session.scalar(select(User).where(User.username_key == fold_key(username.strip())))
    known_id = user.id if user is not None else None
    if user is None or not (user.password_hash or any(i.pending_hashes for i in user.invitations)):
        verify_password(password, _DUMMY_HASH)
        return None, False, known_id
    if not user.active:
        return None, False, known_id
    expires = user.temp_password_expires_at
    expired = expires is not None and expires <= utcnow()
    if verify_password(password, user.password_hash):
        return (None, True, known_id) if expired else (user, False, known_id)
    candidate = _pending_match(user, password)
    if candidate is None or expired:
        return None, candidate is not None, known_id
    user.password_hash = candidate
    return user, False, known_id


def _pending_match(user: User, password: str) -> str | None:
    """The pending invitation hash `password` matches, if any: one whose e-mail may have been
    accepted without the worker learning so (see bulkimport.mailing.sending)."""
    for invitation in user.invitations:
        for candidate in invitation.pending_hashes or []:
            if verify_password(password, candidate):
                return candidate
    return None


def temporary_password_notice(user: User) -> str | None:
    """A reminder for a user who logged in with a generated password that will expire."""
    if user.temp_password_expires_at is None or user.must_change_password:
        return None
    return (f"You logged in with a temporary password; it stops working on "
            f"{user.temp_password_expires_at:%Y-%m-%d %H:%M} UTC. Choose your own on the Account "
            "page.")


def change_password(session: Session, user: User, current: str, new: str, confirm: str,
                    address: str | None) -> dict[str, list[str]]:
    """Change `user`'s password after checking the current one and the policy; returns the
    problems by form field (empty when changed). On success every session of the user ends
    (the caller logs this one in again), pending e-mailed passwords stop working, and an audit
    event is written; the caller commits."""
    problems: dict[str, list[str]] = {}
    if not verify_password(current, user.password_hash):
        problems["current_password"] = ["This is not your current password."]
    failures = check_password(new, load_policy(session), username=user.username,
                              firstname=user.firstname, surname=user.surname, email=user.email,
                              current_hash=user.password_hash)
    if failures:
        problems["new_password"] = failure_messages(failures)
    if new != confirm:
        problems["confirm_password"] = ["The two new passwords are not the same."]
    if problems:
        return problems
    user.password_hash = hash_password(new, current_app.config["BCRYPT_ROUNDS"])
    was_forced = user.must_change_password
    user.must_change_password = False
    user.temp_password_expires_at = None
    user.session_epoch = new_session_epoch()
    for invitation in user.invitations:
        invitation.pending_hashes = []
    record_event(session, "password_changed", actor_id=user.id, user_id=user.id,
                 address=address, forced=was_forced)
    return {}

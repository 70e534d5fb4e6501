"""Logging in and changing one's password, as plain functions for the views and the tests."""

from __future__ import annotations

import functools
import secrets
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from .audit_trail import record_event
from .login_sessions import end_sessions_of
from .login_throttle import count_attempt, settle_failure, settle_success
from .models import Invitation, InviteMode, User, fold_key, utcnow
from .password_links import end_links_of
from .password_policy import check_password, failure_messages, load_policy
from .security import hash_cost, hash_password, verify_password

INVALID = "Invalid username or password."
EXPIRED = ("Your temporary password has expired. Ask an administrator to send you a new one "
           "(Admin > People > Invitations > Resend).")
BLOCKED = "This account is blocked. Ask an administrator to unblock it."


@functools.lru_cache(maxsize=4)
def decoy_hash(rounds: int) -> str:
    """A hash of a random password at cost `rounds`, checked when there is no real hash to
    check (an unknown username, an account with no password yet), so that such an answer takes
    as long as a wrong password and response times do not reveal which usernames exist."""
    return hash_password(secrets.token_urlsafe(24), rounds)


@dataclass(frozen=True)
class LoginResult:
    """What one login attempt gave: the user, or the message to show instead."""

    user: User | None = None
    message: str | None = None


def log_in(session: Session, username: str, password: str, address: str | None) -> LoginResult:
    """Check one login attempt under the throttle: the attempt is counted before its password
    is checked (a locked or too early one is refused unchecked), and a correct password takes
    its count back. The caller commits."""
    attempt = count_attempt(session, username, address)
    if attempt.refusal:
        return LoginResult(message=attempt.refusal)
    user, expired, known, pending = check_credentials(session, username, password)
    if user is not None and not user.active:  # the right password of a blocked account
        settle_failure(session, attempt, user_id=user.id, address=address)
        record_event(session, "login_failed", user_id=user.id, address=address,
                     username=user.username, blocked=True)
        # Told only to a first attempt, like the expiry: it confirms the password.
        return LoginResult(message=BLOCKED if attempt.first_failure else INVALID)
    if user is not None:
        if pending is not None:  # the e-mail of that password was accepted after all
            user.password_hash = pending
        rounds = current_app.config["BCRYPT_ROUNDS"]
        if hash_cost(user.password_hash) != rounds:  # the cost setting changed since it was made
            user.password_hash = hash_password(password, rounds)
        # Settled after the re-hash: the counters' rows stay locked until the caller commits.
        settle_success(session, attempt)
        return LoginResult(user=user)
    known_id = known.id if known is not None else None
    settle_failure(session, attempt, user_id=known_id, address=address)
    # What was typed is recorded only when it names an account: otherwise it may be a password
    # typed into the wrong field, and every administrator reads the audit log.
    named = {"username": known.username} if known is not None else {"unknown_username": True}
    record_event(session, "login_failed", user_id=known_id, address=address, **named,
                 **({"expired": True} if expired else {}))
    # The expiry is told only to a first attempt: it confirms the password was right, which a
    # guesser who has already failed must not learn.
    return LoginResult(message=EXPIRED if expired and attempt.first_failure else INVALID)


def check_credentials(session: Session, username: str, password: str
                      ) -> tuple[User | None, bool, User | None, str | None]:
    """(the user with these credentials, or None; whether the password was right but was a
    generated temporary one past its validity; the account named, if it exists; the pending
    invitation hash the password matched, which `log_in` makes the user's password). A blocked
    user is returned too, for `log_in` to refuse with its own message. Reads only: no
    throttling, no write."""
    named = session.scalar(select(User).where(User.username_key == fold_key(username.strip())))
    if named is None or not (
            named.password_hash or any(_password_hashes(i) for i in named.invitations)):
        verify_password(password, decoy_hash(current_app.config["BCRYPT_ROUNDS"]))
        return None, False, named, None
    expires = named.temp_password_expires_at
    expired = expires is not None and expires <= utcnow()
    if verify_password(password, named.password_hash):
        return (None, True, named, None) if expired else (named, False, named, None)
    candidate = _pending_match(named, password)
    if candidate is None or expired:
        return None, candidate is not None, named, None
    return named, False, named, candidate


def _pending_match(user: User, password: str) -> str | None:
    """The pending invitation hash `password` matches, if any: one whose e-mail may have been
    accepted without the worker learning so (see bulkimport.mailing.sending)."""
    for invitation in user.invitations:
        for candidate in _password_hashes(invitation):
            if verify_password(password, candidate):
                return candidate
    return None


def _password_hashes(invitation: Invitation) -> list[str]:
    """The pending password hashes of an invitation (a link invitation's are link digests, which
    open the set-password page, never a login)."""
    return (invitation.pending_hashes or []) if invitation.mode == InviteMode.PASSWORD else []


def temporary_password_notice(user: User) -> str | None:
    """A reminder for a user who logged in with a generated password that will expire."""
    if user.temp_password_expires_at is None or user.must_change_password:
        return None
    return (f"You logged in with a temporary password; it stops working on "
            f"{user.temp_password_expires_at:%Y-%m-%d %H:%M} UTC. Choose your own on the Account "
            "page.")


def change_password(session: Session, user: User, current: str, new: str, confirm: str,
                    address: str | None) -> dict[str, list[str]]:
    """Change `user`'s password after checking the current one, counted like a login, and the
    policy; returns the problems by form field (empty when changed). A wrong current password
    is audited. On success every session of the user ends (the caller opens a new one), pending
    e-mailed passwords stop working, and an audit event is written; the caller commits, also
    when there are problems."""
    problems: dict[str, list[str]] = {}
    attempt = count_attempt(session, user.username, address)
    current_is_right = attempt.refusal is None and verify_password(current, user.password_hash)
    if attempt.refusal:
        problems["current_password"] = [attempt.refusal]
    elif not current_is_right:
        problems["current_password"] = ["This is not your current password."]
    # The reuse rule compares the new password with the current hash: only after the current
    # password was given, or it would be a second, uncounted way of guessing it.
    failures = check_password(new, load_policy(session), username=user.username,
                              firstname=user.firstname, surname=user.surname, email=user.email,
                              current_hash=user.password_hash if current_is_right else None)
    if failures:
        problems["new_password"] = failure_messages(failures)
    if new != confirm:
        problems["confirm_password"] = ["The two new passwords are not the same."]
    if not problems:
        user.password_hash = hash_password(new, current_app.config["BCRYPT_ROUNDS"])
        was_forced = user.must_change_password
        user.must_change_password = False
        user.temp_password_expires_at = None
        end_sessions_of(session, [user.id])
        for invitation in user.invitations:
            invitation.pending_hashes = []
        end_links_of(session, user.id)
        record_event(session, "password_changed", actor_id=user.id, user_id=user.id,
                     address=address, forced=was_forced)
    # Settled last, after every bcrypt: the counters' rows stay locked until the caller commits.
    if current_is_right:
        settle_success(session, attempt)
    elif attempt.refusal is None:
        settle_failure(session, attempt, user_id=user.id, address=address)
        record_event(session, "password_change_failed", actor_id=user.id, user_id=user.id,
                     address=address)
    return problems

"""One-time links to choose a password, e-mailed instead of a generated password: making them,
keeping the last accepted one working (see mailing.sending), opening one and using it.

A link's token has 256 random bits from `secrets` and is stored only as its SHA-256: a guess is
hopeless, so no slow hash is needed, and a copy of the table opens nothing. What a dead link says
depends only on the link, never on whether some account exists.
"""

from __future__ import annotations

import hashlib
import secrets

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .audit_trail import record_event
from .login_sessions import end_sessions_of
from .models import Invitation, SetPasswordLink, User, utcnow
from .password_policy import check_password, failure_messages, load_policy
from .security import hash_password

TOKEN_BYTES = 32
ASK_AGAIN = "Ask your administrator to send you a new invitation."
NOT_VALID = f"This link is not valid. Check that you copied all of it from the e-mail. {ASK_AGAIN}"
USED = ("This link has already been used to choose a password: log in with that password. If "
        "you forgot it, ask your administrator to send you a new invitation.")
SUPERSEDED = ("This link was replaced by a newer one: use the link in the most recent e-mail "
              f"you received. {ASK_AGAIN}")
EXPIRED = f"This link has expired. {ASK_AGAIN}"
BLOCKED = "This account is blocked. Ask an administrator to unblock it."
WORKING = (SetPasswordLink.PENDING, SetPasswordLink.LIVE)


def new_token() -> tuple[str, str]:
    """A fresh token for a link and the digest under which it is stored."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    return token, digest_of(token)


def digest_of(token: str) -> str:
    """The SHA-256 (hex) under which a link's token is stored."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def link_url(token: str) -> str:
    """The address an e-mail gives for `token`."""
    return current_app.config["BASE_URL"].rstrip("/") + "/set-password/" + token


def accept(session: Session, accepted: list[tuple[int, str, list[str]]]) -> None:
    """The e-mails with these links were accepted, each given as (user id, digest, the digests
    to keep): each link becomes its user's link, and every other working link of those users
    stops, except the ones to keep (e-mails begun after it, which may yet have been accepted
    later). Two statements for the lot. The caller commits."""
    if not accepted:
        return
    users = {user_id for user_id, _, _ in accepted}
    digests = {digest for _, digest, _ in accepted}
    kept = digests.union(*(keep for _, _, keep in accepted))
    session.execute(update(SetPasswordLink).where(
        SetPasswordLink.user_id.in_(users), SetPasswordLink.state.in_(WORKING),
        SetPasswordLink.digest.not_in(kept))
        .values(state=SetPasswordLink.SUPERSEDED).execution_options(synchronize_session=False))
    session.execute(update(SetPasswordLink).where(SetPasswordLink.digest.in_(digests))
                    .values(state=SetPasswordLink.LIVE)
                    .execution_options(synchronize_session=False))


def keep_working(session: Session, digest: str) -> None:
    """An e-mail with link `digest` was accepted after another worker took its invitation over:
    the link works again even if the other worker's success superseded it. The caller commits."""
    session.execute(update(SetPasswordLink).where(
        SetPasswordLink.digest == digest, SetPasswordLink.state == SetPasswordLink.SUPERSEDED)
        .values(state=SetPasswordLink.PENDING).execution_options(synchronize_session=False))


def refuse(session: Session, digest: str) -> None:
    """The mail server certainly did not accept the e-mail with link `digest`. The caller
    commits."""
    session.execute(update(SetPasswordLink).where(
        SetPasswordLink.digest == digest, SetPasswordLink.state == SetPasswordLink.PENDING)
        .values(state=SetPasswordLink.REFUSED).execution_options(synchronize_session=False))


def end_links_of(session: Session, user_id: int, *, but: str | None = None) -> None:
    """Stop every working link of the user (they chose a password), except `but`. The caller
    commits."""
    query = update(SetPasswordLink).where(SetPasswordLink.user_id == user_id,
                                          SetPasswordLink.state.in_(WORKING))
    if but is not None:
        query = query.where(SetPasswordLink.digest != but)
    session.execute(query.values(state=SetPasswordLink.SUPERSEDED)
                    .execution_options(synchronize_session=False))


def find(session: Session, token: str, *, lock: bool = False
         ) -> tuple[SetPasswordLink | None, str | None]:
    """(the working link of `token`, None) or (None, why it does not work)."""
    if not token or len(token) > 100:
        return None, NOT_VALID
    query = select(SetPasswordLink).where(SetPasswordLink.digest == digest_of(token))
    link = session.scalar(query.with_for_update() if lock else query)
    if link is None or link.state == SetPasswordLink.REFUSED:
        return None, NOT_VALID
    if link.state == SetPasswordLink.USED:
        return None, USED
    if link.state == SetPasswordLink.SUPERSEDED:
        return None, SUPERSEDED
    if link.expires_at <= utcnow():
        return None, EXPIRED
    if not link.user.active:
        return None, BLOCKED
    return link, None


def set_password(session: Session, token: str, new: str, confirm: str,
                 address: str | None) -> tuple[User | None, dict[str, list[str]]]:
    """Choose the password of the link's user: checked against the policy, stored as a bcrypt
    hash; the link is used, the user's other links and pending e-mailed passwords stop, every
    session ends and an audit event is written. Returns (the user, no problems) or (None,
    problems by form field, "link" when the link itself no longer works). The caller commits."""
    link, why = find(session, token, lock=True)
    if link is None:
        return None, {"link": [why]}
    user = link.user
    problems: dict[str, list[str]] = {}
    failures = check_password(new, load_policy(session), username=user.username,
                              firstname=user.firstname, surname=user.surname, email=user.email,
                              current_hash=user.password_hash)
    if failures:
        problems["new_password"] = failure_messages(failures)
    if new != confirm:
        problems["confirm_password"] = ["The two passwords are not the same."]
    if problems:
        return None, problems
    user.password_hash = hash_password(new, current_app.config["BCRYPT_ROUNDS"])
    user.must_change_password = False
    user.temp_password_expires_at = None
    link.state, link.used_at = SetPasswordLink.USED, utcnow()
    end_links_of(session, user.id, but=link.digest)
    session.execute(update(Invitation).where(Invitation.user_id == user.id)
                    .values(pending_hashes=[]).execution_options(synchronize_session=False))
    end_sessions_of(session, [user.id])
    record_event(session, "password_set_by_link", actor_id=user.id, user_id=user.id,
                 address=address, invitation_id=link.invitation_id)
    return user, {}

"""Blocking and unblocking accounts: a blocked user cannot log in, their sessions end at once,
and their invitations wait (see `mailing.sending`) until they are unblocked. An administrator
can block neither their own account nor the last active administrator, however they ask."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from .audit_trail import record_event
from .login_sessions import end_sessions_of
from .lookups import CHUNK
from .models import Invitation, User, utcnow
from .security import new_session_epoch

SELF = "You cannot block your own account: another administrator can."
LAST_ADMIN = ("{username} is the last active administrator: unblock or make another "
              "administrator first, or nobody could administer the site.")


def block_refusal(session: Session, actor_id: int, users: Iterable[User]) -> str | None:
    """Why blocking `users` must be refused, or None: the actor's own account, or every
    active administrator at once."""
    users = list(users)
    if any(user.id == actor_id for user in users):
        return SELF
    admins = [user for user in users if user.is_admin and user.active]
    if admins:
        active_admins = session.scalar(select(func.count()).select_from(User)
                                       .where(User.is_admin, User.active)) or 0
        if active_admins <= len(admins):
            return LAST_ADMIN.format(username=admins[-1].username)
    return None


def set_blocked(session: Session, actor_id: int, users: Iterable[User],
                blocked: bool) -> list[User]:
    """Block or unblock `users` (those already so are left alone) and return those changed.
    Blocking ends every session of theirs; unblocking makes their waiting invitations due now
    (the caller wakes the mail queue after committing). Each change is an audit event naming
    the actor. The caller checks `block_refusal` first, and commits."""
    changed = [user for user in users if user.active == blocked]
    if not changed:
        return []
    now = utcnow()
    for user in changed:
        user.active = not blocked
        user.updated_at = now
        record_event(session, "user_blocked" if blocked else "user_unblocked",
                     actor_id=actor_id, user_id=user.id)
    ids = [user.id for user in changed]
    after_state_change(session, blocked=ids if blocked else [],
                       unblocked=[] if blocked else ids)
    return changed


def after_state_change(session: Session, blocked: list[int], unblocked: list[int]) -> None:
    """What follows a change of account state, however it was made (a page, a file): every
    session of the `blocked` users ends (a new session epoch, and their session rows gone), and
    the waiting invitations of the `unblocked` ones are due now (the caller wakes the mail
    queue after committing)."""
    if blocked:
        session.execute(update(User), [{"id": user_id, "session_epoch": new_session_epoch()}
                                       for user_id in blocked])
    end_sessions_of(session, blocked)
    for start in range(0, len(unblocked), CHUNK):
        session.execute(update(Invitation).where(
            Invitation.user_id.in_(unblocked[start:start + CHUNK]),
            Invitation.status == Invitation.QUEUED)
            .values(next_attempt_at=utcnow(), enqueued_at=None, last_error=None)
            .execution_options(synchronize_session=False))

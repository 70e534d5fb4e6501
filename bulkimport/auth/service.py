"""Checking credentials, as a plain function for the login view and the tests."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import User, fold_key
from ..security import verify_password

# Checked when the username is unknown, so that an unknown name costs the same time as a wrong
# password and response times do not reveal which usernames exist.
_DUMMY_HASH = "$2b$12$zxysWemXWIHVGU/3VCMPJOMJqAzMxI0gVP0MXt/xXBaRN.XJy6mNq"


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The active user with these credentials, or None."""
    user = session.scalar(select(User).where(User.username_key == fold_key(username.strip())))
    if user is None or not (user.password_hash or any(i.pending_hashes for i in user.invitations)):
        verify_password(password, _DUMMY_HASH)
        return None
    if not user.active:
        return None
    if verify_password(password, user.password_hash) or _pending_match(user, password):
        return user
    return None


def _pending_match(user: User, password: str) -> bool:
    """Whether `password` is one whose e-mail may have been accepted without the worker learning
    so (see bulkimport.mailing.sending); if so it becomes the user's password."""
    for invitation in user.invitations:
        for candidate in invitation.pending_hashes or []:
            if verify_password(password, candidate):
                user.password_hash = candidate
                return True
    return False

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
    if user is None or not user.password_hash:
        verify_password(password, _DUMMY_HASH)
        return None
    if not user.active or not verify_password(password, user.password_hash):
        return None
    return user

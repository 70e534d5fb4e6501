"""Creating administrators, for the `create-admin` command and the first start of `make run`."""

from __future__ import annotations

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from .columns import check_email, username_problems
from .models import User, fold_key
from .password_policy import check_password, failure_messages, generate_password, load_policy
from .security import hash_password

FIRST_ADMIN = "admin"


class AccountError(Exception):
    """An account cannot be created; the message is one sentence for the console."""


def create_admin(session: Session, username: str, email: str, password: str, *,
                 firstname: str = "Site", surname: str = "Administrator",
                 must_change_password: bool = False) -> User:
    """Add an administrator after checking the username, e-mail and password like an import."""
    problems = username_problems(username)
    email, email_problem = check_email(email.strip(), tuple(
        current_app.config["ALLOWED_EMAIL_DOMAINS"]))
    problems += [email_problem] if email_problem else []
    problems += failure_messages(check_password(
        password, load_policy(session), username=username, firstname=firstname, surname=surname,
        email=email))
    if problems:
        raise AccountError(" ".join(problems))
    if session.scalar(select(User.id).where(User.username_key == fold_key(username))):
        raise AccountError(f"The username “{username}” is already taken.")
    if session.scalar(select(User.id).where(User.email_key == fold_key(email))):
        raise AccountError(f"The e-mail address “{email}” already belongs to another user.")
    user = User(firstname=firstname, surname=surname, is_admin=True,
                must_change_password=must_change_password,
                password_hash=hash_password(password, current_app.config["BCRYPT_ROUNDS"]))
    user.set_identity(username, email)
    session.add(user)
    session.flush()
    return user


def ensure_first_admin(session: Session, email: str) -> str | None:
    """Create the administrator `admin` with a generated password if there is no administrator
    yet; returns that password (to be shown once), or None when an administrator exists."""
    if session.scalar(select(User.id).where(User.is_admin).limit(1)):
        return None
    password = generate_password(load_policy(session), username=FIRST_ADMIN, firstname="Site",
                                 surname="Administrator", email=email)
    create_admin(session, FIRST_ADMIN, email, password, must_change_password=True)
    return password

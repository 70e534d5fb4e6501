"""Password hashing, the password rules, and encryption of passwords staged from a CSV file."""

from __future__ import annotations

import base64
import hashlib
import secrets

import bcrypt
from cryptography.fernet import Fernet, InvalidToken

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_BYTES = 72  # bcrypt ignores what follows; we refuse rather than truncate


def hash_password(password: str, rounds: int) -> str:
    """bcrypt hash of `password`; raises ValueError for passwords bcrypt would truncate."""
    data = password.encode("utf-8")
    if len(data) > MAX_PASSWORD_BYTES:
        raise ValueError(f"passwords longer than {MAX_PASSWORD_BYTES} bytes are not accepted")
    return bcrypt.hashpw(data, bcrypt.gensalt(rounds)).decode("ascii")


def verify_password(password: str, password_hash: str | None) -> bool:
    """Whether `password` matches `password_hash`; False for users without a password yet."""
    data = password.encode("utf-8")
    if not password_hash or len(data) > MAX_PASSWORD_BYTES:
        return False
    return bcrypt.checkpw(data, password_hash.encode("ascii"))


def password_problems(password: str, *, username: str = "") -> list[str]:
    """Every rule `password` breaks, each as a sentence; an empty list means it is acceptable."""
    problems = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(f"The password must be at least {MIN_PASSWORD_LENGTH} characters long.")
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        problems.append(f"The password must be at most {MAX_PASSWORD_BYTES} bytes long "
                        "(fewer characters if it uses accents or other scripts).")
    if username and username.casefold() in password.casefold():
        problems.append("The password must not contain the username.")
    return problems


def _fernet(secret_key: str) -> Fernet:
    digest = hashlib.sha256(b"bulkimport staged passwords\0" + secret_key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def seal_password(password: str, secret_key: str) -> str:
    """Encrypt a password taken from a CSV file while its batch waits for review, so that no
    plaintext password is stored even temporarily."""
    return _fernet(secret_key).encrypt(password.encode("utf-8")).decode("ascii")


def unseal_password(token: str, secret_key: str) -> str:
    """Decrypt a password sealed by `seal_password`; raises ValueError if the key has changed."""
    try:
        return _fernet(secret_key).decrypt(token.encode("ascii")).decode("utf-8")
    except InvalidToken:
        raise ValueError("a staged password cannot be decrypted (SECRET_KEY changed?)") from None


# No look-alikes (0/O, 1/l/I) so that a password read from an e-mail can be typed without doubt.
PASSWORD_ALPHABET = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def generate_password(length: int = 20) -> str:
    """A random password from `secrets`, at least 16 characters of an alphabet without
    look-alike characters."""
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(max(length, 16)))

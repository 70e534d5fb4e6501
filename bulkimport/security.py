"""Password hashing and encryption of passwords staged from a CSV file."""

from __future__ import annotations

import base64
import hashlib
import secrets
import zlib

import bcrypt
from cryptography.fernet import Fernet, InvalidToken

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


def seal_file(data: bytes, secret_key: str) -> bytes:
    """Compress and encrypt an uploaded file kept while its batch is open (it may hold
    passwords). Compressed first: a CSV shrinks about fivefold, and so do the copies that
    encryption makes, which count in an upload's peak memory."""
    return _fernet(secret_key).encrypt(zlib.compress(data, 1))


def unseal_file(token: bytes, secret_key: str) -> bytes:
    """Decrypt a file sealed by `seal_file`; raises ValueError if the key has changed."""
    try:
        return zlib.decompress(_fernet(secret_key).decrypt(token))
    except InvalidToken:
        raise ValueError("a staged file cannot be decrypted (SECRET_KEY changed?)") from None


# No look-alikes (0/O, 1/l/I) so that a password read from an e-mail can be typed without doubt.
PASSWORD_ALPHABET = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"



def new_session_epoch() -> int:
    """A new random session epoch for a user (see User.get_id): every session made before it
    stops loading the user."""
    return secrets.randbelow(2**31 - 1) + 1


def hash_cost(password_hash: str) -> int | None:
    """The bcrypt cost factor of a hash ("$2b$12$…" gives 12), or None if it is not bcrypt's."""
    parts = password_hash.split("$")
    return int(parts[2]) if len(parts) > 3 and parts[2].isdigit() else None

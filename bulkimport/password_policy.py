"""The password policy: one function checks a password against the rules administrators set and
returns every rule it breaks; every place a password is chosen (a CSV file, the change-password
page, `create-admin`, the generated invitation passwords) goes through it."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy.orm import Session

from .audit_trail import record_event
from .models import PasswordPolicy
from .security import MAX_PASSWORD_BYTES, PASSWORD_ALPHABET, verify_password

# Bounds the policy form accepts: generated passwords need at least 16 characters (DESIGN.md), and
# bcrypt reads at most 72 bytes.
MIN_LENGTH_RANGE = (8, 64)
MAX_LENGTH_RANGE = (16, MAX_PASSWORD_BYTES)
TEMP_DAYS_RANGE = (1, 90)
# Personal details shorter than this are not looked for: refusing every password that contains
# "Al" or "Li" would refuse good passwords and protect nothing.
PERSONAL_MIN_CHARS = 3
# Symbols added to generated passwords when the policy requires one: easy to type on any keyboard.
GENERATED_SYMBOLS = "-_.!#%+="
GENERATED_LENGTH = 20


@dataclass(frozen=True)
class PolicyFailure:
    """One broken rule: a stable code (for tests and logs) and the sentence shown to people."""

    code: str
    message: str


def default_policy() -> PasswordPolicy:
    """A policy with the defaults of the model's columns (not added to any session)."""
    policy = PasswordPolicy(id=1)
    for column in PasswordPolicy.__table__.columns:  # column defaults apply on insert only
        if column.default is not None and not callable(column.default.arg):
            setattr(policy, column.key, column.default.arg)
    return policy


def load_policy(session: Session) -> PasswordPolicy:
    """The policy in force: the saved row, or the defaults when none was saved yet."""
    return session.get(PasswordPolicy, 1) or default_policy()


POLICY_FIELDS = ("min_length", "max_length", "require_lowercase", "require_uppercase",
                 "require_digit", "require_symbol", "refuse_personal", "refuse_common",
                 "refuse_reuse", "temp_password_days")


def save_policy(session: Session, values: dict, *, actor_id: int,
                address: str | None) -> dict[str, list]:
    """Store the policy (the values were validated by the form) and write an audit event naming
    each change; returns {field: [old, new]} of what changed. The caller commits."""
    policy = load_policy(session)
    changes = {name: [getattr(policy, name), values[name]] for name in POLICY_FIELDS
               if getattr(policy, name) != values[name]}
    if changes:
        for name, (_, new) in changes.items():
            setattr(policy, name, new)
        policy.updated_by_id = actor_id
        session.add(policy)
        record_event(session, "password_policy_changed", actor_id=actor_id, address=address,
                     changes=changes)
    return changes


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The 30,000 most common passwords of zxcvbn's frequency lists (lower case); loaded once."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"])


def check_password(password: str, policy: PasswordPolicy, *, username: str = "",
                   firstname: str = "", surname: str = "", email: str = "",
                   current_hash: str | None = None) -> list[PolicyFailure]:
    """Every rule of `policy` that `password` breaks, in the order the rules are listed; an empty
    list means the password is acceptable. `current_hash` enables the no-reuse rule."""
    failures = []
    length = len(password)
    if length < policy.min_length:
        failures.append(PolicyFailure(
            "min_length", f"The password must be at least {policy.min_length} characters long "
            f"(it has {length})."))
    if length > policy.max_length:
        failures.append(PolicyFailure(
            "max_length", f"The password must be at most {policy.max_length} characters long "
            f"(it has {length})."))
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        failures.append(PolicyFailure(
            "max_bytes", f"The password must be at most {MAX_PASSWORD_BYTES} bytes long (fewer "
            "characters if it uses accents or other scripts)."))
    classes = (
        ("lowercase", policy.require_lowercase, str.islower, "a lower-case letter"),
        ("uppercase", policy.require_uppercase, str.isupper, "an upper-case letter"),
        ("digit", policy.require_digit, str.isdigit, "a digit"),
        ("symbol", policy.require_symbol, _is_symbol, "a symbol (a character that is neither "
                                                      "a letter, a digit nor a space)"),
    )
    for code, required, test, what in classes:
        if required and not any(test(char) for char in password):
            failures.append(PolicyFailure(code, f"The password must contain {what}."))
    if policy.refuse_personal:
        folded = password.casefold()
        local_part = email.rpartition("@")[0] if "@" in email else ""
        personal = (("username", username, "the username"),
                    ("firstname", firstname, "the first name"),
                    ("surname", surname, "the surname"),
                    ("email", local_part, "the part of the e-mail address before the @"))
        for code, value, what in personal:
            value = value.strip().casefold()
            if len(value) >= PERSONAL_MIN_CHARS and value in folded:
                failures.append(PolicyFailure(code, f"The password must not contain {what}."))
    if policy.refuse_common and password.casefold() in common_passwords():
        failures.append(PolicyFailure(
            "common", "The password is one of the most common passwords; choose another."))
    if policy.refuse_reuse and current_hash and verify_password(password, current_hash):
        failures.append(PolicyFailure(
            "reuse", "The new password must be different from the current one."))
    return failures


def failure_messages(failures: list[PolicyFailure]) -> list[str]:
    """The sentences of `failures`, for forms and import rows."""
    return [failure.message for failure in failures]


def rules_in_force(policy: PasswordPolicy, *, choosing_first: bool = False) -> list[str]:
    """The policy as sentences, for the pages where people choose or set passwords; with
    `choosing_first` (a user choosing through an invitation's link), only the rules about the
    password being chosen."""
    rules = [f"At least {policy.min_length} and at most {policy.max_length} characters "
             f"(and at most {MAX_PASSWORD_BYTES} bytes: accented letters and other scripts count "
             "2 to 4)."]
    required = [what for flag, what in (
        (policy.require_lowercase, "a lower-case letter"),
        (policy.require_uppercase, "an upper-case letter"),
        (policy.require_digit, "a digit"),
        (policy.require_symbol, "a symbol")) if flag]
    if required:
        rules.append("At least " + ", ".join(required) + ".")
    if policy.refuse_personal:
        rules.append("Must not contain the username, first name, surname or the part of the "
                     f"e-mail address before the @ ({PERSONAL_MIN_CHARS} characters or more).")
    if policy.refuse_common:
        rules.append("Must not be one of the 30,000 most common passwords.")
    if choosing_first:
        return rules
    if policy.refuse_reuse:
        rules.append("A new password must differ from the current one.")
    days = policy.temp_password_days
    rules.append(f"Generated passwords sent by e-mail work for {days} day{'s' * (days != 1)}.")
    return rules


def generate_password(policy: PasswordPolicy, **personal: str) -> str:
    """A random password from `secrets` that passes `policy` for the person described by
    `personal` (username, firstname, surname, email): at least 16 characters, without look-alike
    characters, with a symbol only when the policy requires one."""
    length = min(max(GENERATED_LENGTH, policy.min_length), policy.max_length)
    alphabet = PASSWORD_ALPHABET + (GENERATED_SYMBOLS if policy.require_symbol else "")
    for _ in range(1000):
        password = "".join(secrets.choice(alphabet) for _ in range(length))
        if not check_password(password, policy, **personal):
            return password
    raise RuntimeError("no generated password passes the password policy")  # pragma: no cover


def _is_symbol(char: str) -> bool:
    return not char.isalnum() and not char.isspace()

"""The standard columns of a user file, declared once: key, label, heading aliases, how a cell is
cleaned and checked, and whether the column is required, compared, updatable and exported.

The reader maps headings with it, validation cleans and checks cells with it, apply writes what
it calls updatable, the export writes what it calls exported, and the pages show its labels.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from email_validator import EmailNotValidError, validate_email

from .models import fold_key

MAX_NAME_LENGTH = 100
MAX_EMAIL_LENGTH = 254
STAND_IN = "example.com"  # replaces an allowed intranet domain while email-validator checks
# The yes/no words of every yes/no cell: the change-password flag and yes/no profile fields.
TRUE_WORDS = frozenset({"1", "yes", "y", "true"})
FALSE_WORDS = frozenset({"0", "no", "n", "false"})
# The words of an account state, as other systems write it: Google's Active/Suspended, Moodle's
# suspended, AD's enabled/disabled.
ACTIVE_WORDS = frozenset({"active", "enabled", "enable"})
BLOCKED_WORDS = frozenset({"blocked", "block", "suspended", "disabled", "inactive", "locked"})

_USERNAME = re.compile(r"^[^\W_][\w.@-]*$")
LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}([_-][A-Za-z0-9]{2,8})?$")
# Scripts whose letters imitate each other; mixing them in one name is refused.
_CONFUSABLE_SCRIPTS = {"LATIN", "CYRILLIC", "GREEK", "ARMENIAN", "CHEROKEE", "COPTIC"}
# Lower-case letters of other scripts that look like a Latin letter.
_SKELETON = str.maketrans({
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i", "ј": "j",
    "ѕ": "s", "һ": "h", "ԁ": "d", "ԛ": "q", "ԝ": "w", "ӏ": "l", "к": "k", "в": "b", "м": "m",
    "н": "h", "т": "t", "α": "a", "ο": "o", "ν": "v", "ρ": "p", "τ": "t", "ι": "i", "κ": "k",
    "υ": "u", "χ": "x", "ε": "e", "β": "b", "η": "n", "μ": "u", "ω": "w",
})


@dataclass(frozen=True)
class CheckContext:
    """What checking a cell may need besides the cell: the allowed intranet e-mail domains."""

    allowed_domains: tuple[str, ...] = ()


# A cleaner turns a stripped cell into the value to store and the problems it has, as sentences.
Cleaner = Callable[[str, CheckContext], tuple[Any, list[str]]]


@dataclass(frozen=True)
class Column:
    """One standard column. `aliases` are other headings for it (compared without case, spaces,
    '-' or '_'); `compared` columns are compared with the stored user to find an Update's
    changes, `updatable` ones are written by an Update, `exported` ones are in Export users."""

    key: str
    label: str
    clean: Cleaner
    aliases: tuple[str, ...] = ()
    required: bool = False
    compared: bool = False
    updatable: bool = False
    exported: bool = False
    flag: bool = False  # a yes/no column: exported as 1/0
    words: tuple[str, str] | None = None  # how a yes/no value is shown and exported: (yes, no)

    def export_value(self, value: Any) -> str:
        """The stored `value` as the export writes it, in the form the import reads back."""
        if self.words:
            return self.words[0] if value else self.words[1]
        if self.flag:
            return "1" if value else "0"
        return "" if value is None else str(value)


def normalise_heading(heading: str) -> str:
    """The form in which headings are compared: no case, spaces, '-' or '_'."""
    return re.sub(r"[\s_\-]+", "", heading).casefold()


def username_problems(username: str) -> list[str]:
    """Every rule an (NFKC-normalised) username breaks, each as a sentence."""
    problems = []
    if len(username) > MAX_NAME_LENGTH:
        problems.append(f"username is longer than {MAX_NAME_LENGTH} characters.")
    elif len(fold_key(username)) > MAX_NAME_LENGTH:  # its unique key, where ß counts as ss
        problems.append(f"username is longer than {MAX_NAME_LENGTH} characters once case is "
                        f"ignored ({len(fold_key(username))}: ß becomes ss, for example).")
    if not _USERNAME.match(username):
        bad = sorted({c for c in username if not (c.isalnum() or c in "._-@")})
        found = ", ".join("space" if c == " " else f"“{c}”" for c in bad) or "a leading symbol"
        problems.append("username may only contain letters, digits and . _ - @, and must start "
                        f"with a letter or digit (found {found}).")
    scripts = _scripts(username)
    if len(scripts) > 1:
        names = " and ".join(sorted(s.title() for s in scripts))
        problems.append(f"username mixes {names} letters, which can imitate another name.")
    return problems


def _scripts(text: str) -> set[str]:
    if text.isascii():
        return {"LATIN"} if any(c.isalpha() for c in text) else set()
    found = set()
    for char in text:
        if char.isalpha():
            script = unicodedata.name(char, "UNKNOWN").split(" ", 1)[0]
            if script in _CONFUSABLE_SCRIPTS:
                found.add(script)
    return found


def skeleton(username: str) -> str:
    """The Latin look-alike of a username written in another script, for spotting imitations."""
    return fold_key(username).translate(_SKELETON)


def check_email(value: str, allowed: tuple[str, ...]) -> tuple[str, str | None]:
    """The normalised address and a problem sentence (None when the address is good)."""
    if "<" in value or ">" in value or '"' in value:
        return value, (f"email “{value}” must be a bare address such as name@example.com, "
                       "without a display name, quotes or angle brackets.")
    if any(sep in value for sep in ",; "):
        return value, f"email “{value}” must hold exactly one address, without spaces or lists."
    local, _, domain = value.rpartition("@")
    if not local.isascii():  # needs SMTPUTF8, which many relays and our mail path lack
        found = " ".join(dict.fromkeys(c for c in local if not c.isascii()))
        return value, (f"email “{value}” has characters other than plain ASCII letters, digits "
                       f"and punctuation before the @ ({found}); many mail servers cannot "
                       "deliver to such an address, so it cannot be imported. (Accented letters "
                       "after the @ are fine.)")
    intranet = next((d for d in allowed
                     if domain.lower() == d or domain.lower().endswith("." + d)), None)
    # email-validator refuses special-use domains (.local, .test) whatever its options: an
    # allowed intranet domain is swapped for a public stand-in while the rest is checked.
    checked = f"{local}@{domain[:len(domain) - len(intranet)]}{STAND_IN}" if intranet else value
    try:
        result = validate_email(checked, check_deliverability=False, allow_smtputf8=False,
                                allow_display_name=False)
    except EmailNotValidError as exc:
        hint = ""
        if "special-use or reserved" in str(exc):
            hint = " An intranet domain can be allowed with BULKIMPORT_ALLOWED_EMAIL_DOMAINS."
        return value, f"email “{value}” is not a valid e-mail address: {exc}{hint}"
    if intranet:
        address = result.normalized.removesuffix(STAND_IN) + intranet
        if len(address) > MAX_EMAIL_LENGTH:
            return value, (f"email “{value}” is not a valid e-mail address: it is longer than "
                           f"{MAX_EMAIL_LENGTH} characters.")
        return address, None
    return result.normalized, None


def yes_no(word: str) -> bool | None:
    """True or False for a yes/no word (any case), None for anything else."""
    word = word.lower()
    return True if word in TRUE_WORDS else False if word in FALSE_WORDS else None


def _clean_username(value: str, _context: CheckContext) -> tuple[Any, list[str]]:
    if not value:
        return value, []
    value = unicodedata.normalize("NFKC", value)
    return value, username_problems(value)


def _clean_name(key: str) -> Cleaner:
    def clean(value: str, _context: CheckContext) -> tuple[Any, list[str]]:
        if len(value) > MAX_NAME_LENGTH:
            return value, [f"{key} is longer than {MAX_NAME_LENGTH} characters."]
        return value, []
    return clean


def _clean_email(value: str, context: CheckContext) -> tuple[Any, list[str]]:
    if not value:
        return value, []
    email, problem = check_email(value, context.allowed_domains)
    return email, [problem] if problem else []


def _clean_change_password(value: str, _context: CheckContext) -> tuple[Any, list[str]]:
    if value == "":
        return None, []  # the stored value stays
    answer = yes_no(value)
    if answer is None:
        return value, [f"Change password next time is “{value}”; use 1 or 0 (yes/no, "
                       "true/false, y/n also work), or leave it empty."]
    return answer, []


def account_state(word: str) -> bool | None:
    """True (active) or False (blocked) for an account-state word or a yes/no word meaning
    "active" (any case), None for anything else."""
    word = word.lower()
    if word in ACTIVE_WORDS:
        return True
    return False if word in BLOCKED_WORDS else yes_no(word)


def _clean_account_state(value: str, _context: CheckContext) -> tuple[Any, list[str]]:
    if value == "":
        return None, []  # the stored value stays (a new user is active)
    active = account_state(value)
    if active is None:
        return value, [f"Account state is “{value}”; use Active or Blocked (yes/no, true/false "
                       "and 1/0 also work, yes meaning active), or leave it empty."]
    return active, []


def _clean_blocked(value: str, _context: CheckContext) -> tuple[Any, list[str]]:
    """A column that says whether the account is blocked (Entra's Block sign in, Moodle's
    suspended): cleaned into the account state (True = active), yes meaning blocked."""
    if value == "":
        return None, []
    active = account_state(value)
    if active is None:
        return value, [f"Blocked is “{value}”; use yes or no (true/false and 1/0 also work, yes "
                       "meaning blocked), or leave it empty."]
    # "yes" means blocked here; the state words (Active, Suspended) keep their own meaning
    word = value.lower()
    return (not active if word not in ACTIVE_WORDS | BLOCKED_WORDS else active), []


def _clean_language(value: str, _context: CheckContext) -> tuple[Any, list[str]]:
    if value and not LANGUAGE_CODE.match(value):
        return value, [f"language “{value}” is not a language code such as en, fr or pt_BR."]
    return value, []


def _as_is(value: str, _context: CheckContext) -> tuple[Any, list[str]]:
    return value, []


COLUMNS: tuple[Column, ...] = (
    Column("username", "username", _clean_username,
           ("user", "login", "loginname", "userid", "userlogin", "samaccountname",
            "accountname"),
           required=True, compared=True, updatable=True, exported=True),
    Column("firstname", "firstname", _clean_name("firstname"),
           ("givenname", "forename", "first"),
           required=True, compared=True, updatable=True, exported=True),
    Column("surname", "surname", _clean_name("surname"),
           ("lastname", "familyname", "sn", "last"),
           required=True, compared=True, updatable=True, exported=True),
    Column("email", "email", _clean_email,
           ("emailaddress", "mail", "useremail", "mailaddress", "emailid"),
           required=True, compared=True, updatable=True, exported=True),
    Column("language", "language", _clean_language, ("lang", "locale", "preferredlanguage"),
           compared=True, updatable=True, exported=True),
    Column("must_change_password", "Change password next time", _clean_change_password,
           ("mustchangepassword", "forcepasswordchange", "changepasswordatnextsignin",
            "changepasswordatnextlogon", "forcechangepassword"),
           compared=True, updatable=True, exported=True, flag=True),
    Column("active", "Account state", _clean_account_state,
           ("accountstate", "accountstatus", "status", "newstatus", "enabled", "accountenabled",
            "isactive"),
           compared=True, updatable=True, exported=True, words=("Active", "Blocked")),
    # Yes means blocked: read into the account state (validation turns it round).
    Column("blocked", "Blocked (yes = cannot log in)", _clean_blocked,
           ("isblocked", "suspended", "issuspended", "blocksignin", "disabled",
            "accountdisabled")),
    # Checked against the password policy with the whole row, then sealed (see validation).
    Column("password", "password", _as_is, ("userpass", "initialpassword", "pass", "pwd")),
)

BY_KEY: dict[str, Column] = {column.key: column for column in COLUMNS}
REQUIRED: tuple[str, ...] = tuple(c.key for c in COLUMNS if c.required)
COMPARED: tuple[str, ...] = tuple(c.key for c in COLUMNS if c.compared)
UPDATABLE: frozenset[str] = frozenset(c.key for c in COLUMNS if c.updatable)
EXPORTED: tuple[Column, ...] = tuple(c for c in COLUMNS if c.exported)
# Normalised heading → key, for the key, the label and every alias.
HEADING_ALIASES: dict[str, str] = {
    normalise_heading(name): column.key
    for column in COLUMNS for name in (column.key, column.label, *column.aliases)
}


def shown_value(value: Any, key: str = "") -> str:
    """A stored value of column `key` in words, as the review and the audit log show it: the
    column's own words (Active/Blocked) or yes/no for a yes/no value, (empty) for nothing."""
    if value is True or value is False:
        column = BY_KEY.get(key)
        return ((column.words if column and column.words else None) or ("yes", "no"))[
            0 if value else 1]
    return "(empty)" if value is None or value == "" else str(value)


def label(key: str) -> str:
    """The label of a standard column, or `key` itself for a profile field."""
    column = BY_KEY.get(key)
    return column.label if column else key

"""Table + existing users → one RowPlan per row: Add, Update, No change or Error with reasons.

Existing users are looked up with a handful of set-based queries, never one query per row.
Messages are written for the administrator who will fix the file, and never contain a password.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..csvfiles import restore
from ..lookups import matching
from ..mailing.languages import language_codes, language_key
from ..models import ImportRow, PasswordPolicy, ProfileField, ProfileValue, User, fold_key
from ..password_policy import check_password, failure_messages, load_policy
from ..profile import active_fields, parse_value, values_of
from ..security import seal_password
from .reader import FileProblem, Table

MAX_NAME_LENGTH = 100
MAX_EMAIL_LENGTH = 254
STAND_IN = "example.com"  # replaces an allowed intranet domain while email-validator checks

TRUE_WORDS = {"1", "yes", "y", "true"}
FALSE_WORDS = {"0", "no", "n", "false", ""}
FIELD_LABELS = {
    "username": "username", "firstname": "firstname", "surname": "surname", "email": "email",
    "must_change_password": "Change password next time", "language": "language",
    "password": "password",
}
# Fields compared with the stored user to find what an Update changes, in display order.
COMPARED_FIELDS = ("username", "firstname", "surname", "email", "language",
                   "must_change_password")
# What a file may not change of an administrator: with them, one administrator could take over
# another's account (set the password or the reset address, then log in as them).
ADMIN_CREDENTIALS = frozenset({"username", "email", "password"})
ADMIN_CHANGE_REFUSED = ("administrators are changed one at a time, by themselves or on their "
                        "own page.")

_USERNAME = re.compile(r"^[^\W_][\w.@-]*$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}([_-][A-Za-z0-9]{2,8})?$")
# Scripts whose letters imitate each other; mixing them in one name is refused.
_CONFUSABLE_SCRIPTS = {"LATIN", "CYRILLIC", "GREEK", "ARMENIAN", "CHEROKEE", "COPTIC"}
# Lower-case letters of other scripts that look like a Latin letter.
_SKELETON = str.maketrans({
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i", "ј": "j",
    "ѕ": "s", "һ": "h", "ԁ": "d", "ԛ": "q", "ԝ": "w", "ӏ": "l", "к": "k", "в": "b", "м": "m",
    "н": "h", "т": "t", "α": "a", "ο": "o", "ν": "v", "ρ": "p", "τ": "t", "ι": "i", "κ": "k",
    "υ": "u", "χ": "x", "ε": "e", "β": "b", "η": "n", "μ": "u", "ω": "w",
})


@dataclass(slots=True)
class RowPlan:
    """What validation proposes for one row. `values` holds the cleaned values of known columns
    (a file password already sealed); `changes` maps a field to [old, new] for an Update."""

    line: int
    end_line: int
    raw: list[str]
    username: str
    values: dict[str, Any] = field(default_factory=dict)
    action: str = ImportRow.ADD
    user_id: int | None = None
    changes: dict[str, list[Any]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    duplicate: bool = False


@dataclass
class Plan:
    """The plans of every row with the counts the review page puts first."""

    rows: list[RowPlan]

    @property
    def counts(self) -> dict[str, int]:
        """Rows per proposed action, plus rows involved in duplicates inside the file."""
        counts = {ImportRow.ADD: 0, ImportRow.UPDATE: 0, ImportRow.NOCHANGE: 0,
                  ImportRow.ERROR: 0, "duplicate": 0, "total": len(self.rows)}
        for row in self.rows:
            counts[row.action] += 1
            counts["duplicate"] += row.duplicate
        return counts


def plan_table(
    table: Table,
    session: Session,
    *,
    generate_passwords: bool,
    allowed_domains: Iterable[str] = (),
    secret_key: str,
    clear_empty: bool = False,
    fields: list[ProfileField] | None = None,
) -> Plan:
    """Validate every row of `table` and propose an action for it against the users in the
    database; raises FileProblem when an option makes the whole file unusable. `fields` are the
    active custom profile fields (loaded when None); `clear_empty` makes an empty cell of an
    optional column clear the stored value."""
    if generate_passwords and table.column("password") is not None:
        raise FileProblem(
            "The file has a password column, but “Generate random passwords and send login "
            "credentials via email” is ticked. Remove the password column, or untick the option "
            "to use the passwords in the file.", 1)
    allowed = tuple(d.lower().lstrip(".") for d in allowed_domains)
    columns = {f: i for i, f in enumerate(table.fields) if f is not None}

    rows = [_check_row(record, columns, table.headings, allowed) for record in table.records]
    _check_languages(rows, language_codes(session))
    custom = _custom_fields(table, session if fields is None else None, fields)
    _check_custom_values(rows, custom)
    _mark_duplicates(rows)
    existing = _existing_users(session, {fold_key(r.values["username"]) for r in rows
                                         if r.values.get("username")})
    context = _CustomContext(
        fields=custom, required=[f for f in (fields if fields is not None
                                             else active_fields(session)) if f.required],
        stored=values_of(session, [u["id"] for u in existing.values()], list(custom.values())),
        owners=_unique_owners(session, rows, custom), clear_empty=clear_empty,
        has_language="language" in columns)
    owners = _email_owners(session, {fold_key(r.values["email"]) for r in rows
                                     if r.values.get("email")})
    lookalikes = _lookalikes(session, rows)
    policy = load_policy(session)
    for row in rows:
        _decide(row, existing, owners, lookalikes, generate_passwords, secret_key, policy)
        if row.action != ImportRow.ERROR:
            _decide_custom(row, existing, context)
    return Plan(rows)


def _check_row(record, columns: dict[str, int], headings: list[str],
               allowed: tuple[str, ...]) -> RowPlan:
    cells = record.cells
    width = len(headings)
    username_cell = cells[columns["username"]].strip() if columns["username"] < len(cells) else ""
    row = RowPlan(record.line, record.end_line, cells, username_cell)
    if len(cells) != width:
        more_or_fewer = "more" if len(cells) > width else "fewer"
        row.errors.append(f"The row has {len(cells)} fields, {more_or_fewer} than the {width} "
                          "columns of the heading line (a stray delimiter or a missing quote?).")
        return row

    values: dict[str, Any] = {f: restore(cells[i].strip()) for f, i in columns.items()}
    fields = {i: f for f, i in columns.items()}
    for index, cell in enumerate(cells):
        # Every column, imported or not: a quote left open swallows the next lines into a cell.
        if "\n" in cell.strip() or "\r" in cell.strip():
            name = (FIELD_LABELS.get(fields[index], fields[index]) if index in fields
                    else f"column “{headings[index]}”")
            span = f"lines {record.line}–{record.end_line}"
            row.errors.append(f"{name} contains a line break ({span}); "
                              "perhaps a quote is not closed.")
    for name in ("username", "firstname", "surname", "email"):
        if not values[name]:
            row.errors.append(f"{FIELD_LABELS[name]} is missing.")
    if values["username"]:
        values["username"] = unicodedata.normalize("NFKC", values["username"])
        row.username = values["username"]
        row.errors.extend(username_problems(values["username"]))
    for name in ("firstname", "surname"):
        if len(values[name]) > MAX_NAME_LENGTH:
            row.errors.append(f"{name} is longer than {MAX_NAME_LENGTH} characters.")
    if values["email"]:
        email, problem = check_email(values["email"], allowed)
        values["email"] = email
        if problem:
            row.errors.append(problem)
    if "must_change_password" in values:
        word = values["must_change_password"].lower()
        if word in TRUE_WORDS:
            values["must_change_password"] = True
        elif word in FALSE_WORDS:
            values["must_change_password"] = None if word == "" else False
        else:
            row.errors.append(f"Change password next time is “{values['must_change_password']}”; "
                              "use 1 or 0 (yes/no, true/false, y/n also work), or leave it empty.")
    if values.get("language") and not _LANGUAGE.match(values["language"]):
        row.errors.append(f"language “{values['language']}” is not a language code such as en, "
                          "fr or pt_BR.")
    row.values = values
    return row


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


def _mark_duplicates(rows: list[RowPlan]) -> None:
    for name in ("username", "email"):
        groups: dict[str, list[RowPlan]] = defaultdict(list)
        for row in rows:
            if row.values.get(name):
                groups[fold_key(row.values[name])].append(row)
        for group in groups.values():
            if len(group) > 1:
                lines = ", ".join(str(r.line) for r in group)
                for row in group:
                    row.duplicate = True
                    row.errors.append(
                        f"{name} “{row.values[name]}” appears {len(group)} times in the file, "
                        f"ignoring case (lines {lines}).")


def _existing_users(session: Session, keys: set[str]) -> dict[str, dict[str, Any]]:
    found = {}
    columns = (User.id, User.username_key, User.username, User.firstname, User.surname,
               User.email, User.language, User.must_change_password, User.is_admin)
    for condition in matching(session, User.username_key, keys):
        for row in session.execute(select(*columns).where(condition)):
            found[row.username_key] = row._asdict()
    return found


def _email_owners(session: Session, keys: set[str]) -> dict[str, tuple[int, str]]:
    owners = {}
    for condition in matching(session, User.email_key, keys):
        query = select(User.email_key, User.id, User.username).where(condition)
        for email_key, user_id, username in session.execute(query):
            owners[email_key] = (user_id, username)
    return owners


def _lookalikes(session: Session, rows: list[RowPlan]) -> dict[str, str]:
    """Map the skeleton of each non-ASCII username to an existing or in-file name it imitates."""
    wanted = {}
    for row in rows:
        name = row.values.get("username")
        if name and not name.isascii():
            shape = skeleton(name)
            if shape != fold_key(name):
                wanted[shape] = name
    if not wanted:
        return {}
    names = {fold_key(r.values["username"]): r.values["username"] for r in rows
             if r.values.get("username")}
    for condition in matching(session, User.username_key, wanted):
        query = select(User.username_key, User.username).where(condition)
        names.update(dict(session.execute(query).all()))
    return {shape: names[shape] for shape in wanted if shape in names}


@dataclass
class _CustomContext:
    """What deciding the custom fields of a row needs besides the row."""

    fields: dict[str, ProfileField]  # the custom columns of the file
    required: list[ProfileField]  # every active required field, in the file or not
    stored: dict[int, dict[str, str]]  # user id → field name → stored value
    owners: dict[tuple[str, str], tuple[int, str]]  # (field, unique key) → (user id, username)
    clear_empty: bool
    has_language: bool


def _custom_fields(table: Table, session: Session | None,
                   fields: list[ProfileField] | None) -> dict[str, ProfileField]:
    """The custom fields that columns of the file name, by name."""
    known = {f.name: f for f in (fields if fields is not None else active_fields(session))}
    return {name: known[name] for name in table.fields if name in known}


def _check_custom_values(rows: list[RowPlan], fields: dict[str, ProfileField]) -> None:
    """Read each custom cell by its field's type (an empty cell is None), and refuse values of
    unique fields that appear twice in the file."""
    groups: dict[tuple[str, str], list[RowPlan]] = defaultdict(list)
    for row in rows:
        for name, field_ in fields.items():
            if name not in row.values:
                continue  # a row with the wrong number of cells
            value, problem = parse_value(field_, row.values[name])
            row.values[name] = value
            if problem:
                row.errors.append(problem)
            elif field_.unique and value is not None:
                groups[(name, fold_key(value))].append(row)
    for (name, _), group in groups.items():
        if len(group) > 1:
            lines = ", ".join(str(r.line) for r in group)
            for row in group:
                row.duplicate = True
                row.errors.append(f"{name} “{row.values[name]}” appears {len(group)} times in "
                                  f"the file, ignoring case (lines {lines}); it must be unique.")


def _unique_owners(session: Session, rows: list[RowPlan],
                   fields: dict[str, ProfileField]) -> dict[tuple[str, str], tuple[int, str]]:
    """Who already holds each value of a unique field that the file uses."""
    owners = {}
    for name, field_ in fields.items():
        if not field_.unique:
            continue
        keys = {fold_key(r.values[name]) for r in rows if r.values.get(name)}
        for condition in matching(session, ProfileValue.unique_key, keys):
            query = (select(ProfileValue.unique_key, User.id, User.username)
                     .join(User, User.id == ProfileValue.user_id)
                     .where(ProfileValue.field_id == field_.id, condition))
            for key, user_id, username in session.execute(query):
                owners[(name, key)] = (user_id, username)
    return owners


def _decide_custom(row: RowPlan, existing, context: _CustomContext) -> None:
    """Required and unique checks of the custom fields, and their changes for an Update; an
    empty cell leaves the stored value alone unless `clear_empty`."""
    values = row.values
    current = existing.get(fold_key(values["username"]))
    for field_ in context.required:
        value = values.get(field_.name)
        if current is None and value is None:
            where = "" if field_.name in context.fields else " (the file has no such column)"
            row.errors.append(f"{field_.name} is required for a new user{where}.")
        elif current is not None and value is None and field_.name in context.fields \
                and context.clear_empty:
            row.errors.append(f"{field_.name} is required: an empty cell cannot clear it.")
    for name in context.fields:
        value = values.get(name)
        owner = context.owners.get((name, fold_key(value))) if value is not None else None
        if owner and (current is None or owner[0] != current["id"]):
            row.errors.append(f"{name} “{value}” already belongs to the user “{owner[1]}”; it "
                              "must be unique.")
    if row.errors:
        row.action, row.changes = ImportRow.ERROR, {}
        return
    if current is None:
        return
    stored = context.stored.get(current["id"], {})
    if context.clear_empty and context.has_language and not values.get("language") \
            and current["language"]:
        row.changes["language"] = [current["language"], None]
    for name in context.fields:
        value, old = values.get(name), stored.get(name)
        if value is None and not context.clear_empty:
            continue
        if value != old:
            row.changes[name] = [old, value]
    if row.changes:
        row.action = ImportRow.UPDATE


def _check_languages(rows: list[RowPlan], codes: dict[str, str]) -> None:
    """A language must be one of the site's (Admin > System > Localisation); it is stored as
    the site writes it (pt_BR in the file is the site's pt-br)."""
    for row in rows:
        value = row.values.get("language")
        if not value or not _LANGUAGE.match(value):
            continue
        code = codes.get(language_key(value))
        if code is None:
            row.errors.append(f"language “{value}” is not a language of this site (it has "
                              f"{', '.join(sorted(codes.values()))}); add it under Admin > "
                              "System > Localisation first.")
        else:
            row.values["language"] = code


def _password_errors(password: str, values: dict, policy: PasswordPolicy) -> list[str]:
    """The policy rules a password from the file breaks, named for the row's person (the no-reuse
    rule is the users' own business: checking it would cost a bcrypt check per row)."""
    return failure_messages(check_password(
        password, policy, username=values.get("username") or "",
        firstname=values.get("firstname") or "", surname=values.get("surname") or "",
        email=values.get("email") or ""))


def _decide(row: RowPlan, existing, owners, lookalikes, generate_passwords, secret_key,
            policy: PasswordPolicy) -> None:
    values = row.values
    password = values.pop("password", "")  # first: a row in error keeps no plaintext password
    username = values.get("username")
    if username and not username.isascii() and skeleton(username) in lookalikes:
        row.errors.append(f"username “{username}” looks like the username "
                          f"“{lookalikes[skeleton(username)]}” (letters of another script).")
    if row.errors:
        row.action = ImportRow.ERROR
        return

    current = existing.get(fold_key(username))
    owner = owners.get(fold_key(values["email"]))
    if owner and (current is None or owner[0] != current["id"]):
        row.errors.append(f"email “{values['email']}” already belongs to the user “{owner[1]}”.")

    if current is None:
        if not generate_passwords:
            if not password:
                row.errors.append("password is missing: a new user needs one, or tick “Generate "
                                  "random passwords and send login credentials via email”.")
            else:
                row.errors.extend(_password_errors(password, values, policy))
    elif password:
        row.errors.extend(_password_errors(password, values, policy))
    if row.errors:
        row.action = ImportRow.ERROR
        return
    if password:
        values["password"] = seal_password(password, secret_key)

    if current is None:
        row.action = ImportRow.ADD
        return
    row.user_id = current["id"]
    for name in COMPARED_FIELDS:
        new = values.get(name)
        if new is None or new == "":
            continue  # the column is absent or the cell empty: the stored value stays
        if new != current[name]:
            row.changes[name] = [current[name], new]
    if password:
        row.changes["password"] = ["", "(set from the file)"]
    if current["is_admin"] and ADMIN_CREDENTIALS.intersection(row.changes):
        row.errors.append(ADMIN_CHANGE_REFUSED)
        row.action, row.changes = ImportRow.ERROR, {}
        values.pop("password", None)
        return
    row.action = ImportRow.UPDATE if row.changes else ImportRow.NOCHANGE

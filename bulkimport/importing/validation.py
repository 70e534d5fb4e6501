"""Table + existing users → one RowPlan per row: Add, Update, No change or Error with reasons.

Existing users are looked up with a handful of set-based queries, never one query per row.
Messages are written for the administrator who will fix the file, and never contain a password.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..columns import (
    BY_KEY,
    COMPARED,
    LANGUAGE_CODE,
    REQUIRED,
    CheckContext,
    label,
    skeleton,
)
from ..csvfiles import restore
from ..lookups import matching
from ..mailing.languages import language_codes, language_key
from ..models import ImportRow, PasswordPolicy, ProfileField, ProfileValue, User, fold_key
from ..password_policy import check_password, failure_messages, load_policy
from ..profile import active_fields, parse_value, values_of
from ..security import seal_password
from .defaults import fill_defaults
from .mapping import FULL_NAME, Mapping, derive
from .reader import FileProblem, Table

# What a file may not change of an administrator: with them, one administrator could take over
# another's account (set the password or the reset address, then log in as them).
# Blocking is among them: an administrator is never blocked by a file (neither oneself nor the
# last active one), only on their own page, where the guards of `account_state` apply.
ADMIN_CREDENTIALS = frozenset({"username", "email", "password", "active"})
ADMIN_CHANGE_REFUSED = ("administrators are changed one at a time, by themselves or on their "
                        "own page.")


# Stages of a background reading as its progress page names them, and how often it is told.
READING, CHECKING, LOOKING_UP, SAVING = ("Reading the file", "Checking the rows",
                                         "Looking up existing users", "Saving the rows for review")
PROGRESS_EVERY = 5000
Progress = Callable[[str, int, int], None]  # told a stage, how far it is and of how many


@dataclass(frozen=True)
class Wording:
    """How messages name the options, on the web form or on the command line."""

    password_missing: str
    password_column_conflict: str


WEB = Wording(
    password_missing="password is missing: a new user needs one, or tick “Generate random "
                     "passwords and send login credentials via email”.",
    password_column_conflict="The file has a password column (“{heading}”), but “Generate "
                             "random passwords and send login credentials via email” is ticked. "
                             "Ignore the column and generate passwords, or untick the option to "
                             "use the passwords in the file.")
CLI = Wording(
    password_missing="password is missing: a new user needs one, or use --generate-passwords.",
    password_column_conflict="The file has a password column (“{heading}”), but "
                             "--generate-passwords is given. Leave the column out with --map "
                             "\"{heading}=\", or drop --generate-passwords to use the passwords "
                             "in the file.")


class PasswordColumnConflict(FileProblem):
    """Generated passwords were asked for, but the file has passwords of its own."""


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
    short: bool = False  # fewer cells than headings: the missing trailing cells read as empty
    password_missing: str | None = None  # the error of a new user without a password
    password_ignored: bool = False  # an existing user's password in the file, left alone
    derived: tuple[str, ...] = ()  # keys the mapping filled in (shared empty: 100,000 rows)
    defaulted: tuple[str, ...] = ()  # keys a default of the upload form filled in


@dataclass
class Plan:
    """The plans of every row with the counts the review page puts first."""

    rows: list[RowPlan]
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        """Rows per proposed action, plus rows involved in duplicates inside the file, rows
        that were short of trailing cells, rows in error only for want of a password, and rows
        of existing users whose file password was left alone."""
        counts = {ImportRow.ADD: 0, ImportRow.UPDATE: 0, ImportRow.NOCHANGE: 0,
                  ImportRow.ERROR: 0, "duplicate": 0, "short": 0, "need_password": 0,
                  "password_ignored": 0, "total": len(self.rows)}
        for row in self.rows:
            counts[row.action] += 1
            counts["duplicate"] += row.duplicate
            counts["short"] += row.short
            counts["need_password"] += row.errors == [row.password_missing]
            counts["password_ignored"] += row.password_ignored
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
    update_passwords: bool = False,
    wording: Wording = WEB,
    progress: Progress | None = None,
    defaults: dict[str, str] | None = None,
) -> Plan:
    """Validate every row of `table` and propose an action for it against the users in the
    database; raises FileProblem when an option makes the whole file unusable. `fields` are the
    active custom profile fields (loaded when None); `clear_empty` makes an empty cell of an
    optional column clear the stored value; `update_passwords` sets the file's passwords of
    existing users too (else they are for new users only). `progress(stage, done, total)` is
    told how far the checks are, for a background reading's progress page. `defaults` fill
    what a row leaves out (see `importing.defaults`)."""
    notes: dict[str, Any] = {}
    password_column = table.column("password")
    if password_column is not None and not any(
            password_column < len(r.cells) and r.cells[password_column].strip()
            for r in table.records):
        notes["empty_password_column"] = table.headings[password_column]
        table.fields[password_column] = None  # nothing to read: the column is ignored
    elif generate_passwords and password_column is not None:
        raise PasswordColumnConflict(wording.password_column_conflict.format(
            heading=table.headings[password_column]), 1)
    allowed = tuple(d.lower().lstrip(".") for d in allowed_domains)
    columns = {f: i for i, f in enumerate(table.fields) if f is not None}

    context = CheckContext(allowed)
    report = progress or (lambda stage, done, total: None)
    total = len(table.records)
    rows = []
    for done, record in enumerate(table.records):
        if done % PROGRESS_EVERY == 0:
            report(CHECKING, done, total)
        rows.append(_check_row(record, columns, table.headings, context, table.mapping,
                               defaults or {}))
    report(LOOKING_UP, 0, total)
    _check_languages(rows, language_codes(session))
    custom = _custom_fields(table, session if fields is None else None, fields, defaults or {})
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
    passwords = _PasswordRules(generate_passwords, update_passwords, secret_key, policy, wording)
    for row in rows:
        _decide(row, existing, owners, lookalikes, passwords)
        if row.values:  # every check at once: a row learns all its problems in one upload
            _decide_custom(row, existing, context)
    return Plan(rows, notes)


def _check_row(record, columns: dict[str, int], headings: list[str], context: CheckContext,
               mapping: Mapping | None, defaults: dict[str, str]) -> RowPlan:
    """Clean and check the cells of one record. Short rows are read with their missing trailing
    cells empty, except in a file with passwords, where a cell out of place could be one."""
    cells = record.cells
    width = len(headings)
    row = RowPlan(record.line, record.end_line, cells, "")
    if len(cells) > width or (len(cells) < width and "password" in columns):
        more_or_fewer = "more" if len(cells) > width else "fewer"
        row.username = _cell(cells, columns.get("username"))
        row.errors.append(f"The row has {len(cells)} fields, {more_or_fewer} than the {width} "
                          "columns of the heading line (a stray delimiter or a missing quote?).")
        return row
    if len(cells) < width:  # a spreadsheet leaves out a row's empty trailing cells
        row.short = True
        cells = [*cells, *([""] * (width - len(cells)))]

    values: dict[str, Any] = {f: restore(cells[i].strip()) for f, i in columns.items()}
    full_name = values.pop(FULL_NAME, None)
    fields = {i: f for f, i in columns.items()}
    for index, cell in enumerate(cells):
        # Every column, imported or not: a quote left open swallows the next lines into a cell.
        if "\n" in cell.strip() or "\r" in cell.strip():
            name = label(fields[index]) if index in fields else f"column “{headings[index]}”"
            span = f"lines {record.line}–{record.end_line}"
            row.errors.append(f"{name} contains a line break ({span}); "
                              "perhaps a quote is not closed.")
    if mapping is not None:
        row.derived = derive(values, mapping, full_name)
    row.defaulted = tuple(fill_defaults(values, defaults))
    for name in REQUIRED:
        if not values.get(name):
            row.errors.append(f"{label(name)} is missing.")
    for name in values:
        if name in BY_KEY:
            values[name], problems = BY_KEY[name].clean(values[name], context)
            row.errors.extend(problems)
    if "blocked" in values:  # cleaned into the account state, yes meaning blocked
        blocked_column_state = values.pop("blocked")
        if values.get("active") is None:
            values["active"] = blocked_column_state
    row.username = values.get("username") or ""
    row.values = values
    return row


def _cell(cells: list[str], index: int | None) -> str:
    return cells[index].strip() if index is not None and index < len(cells) else ""


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
               User.email, User.language, User.must_change_password, User.active,
               User.is_admin)
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


def _custom_fields(table: Table, session: Session | None, fields: list[ProfileField] | None,
                   defaulted: Iterable[str] = ()) -> dict[str, ProfileField]:
    """The custom fields that columns of the file name, or that a default fills, by name."""
    known = {f.name: f for f in (fields if fields is not None else active_fields(session))}
    return {name: known[name] for name in (*table.fields, *defaulted) if name in known}


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
        if not value or not LANGUAGE_CODE.match(value):
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


@dataclass(frozen=True)
class _PasswordRules:
    """What deciding a row's password needs: the options, the key that seals it, the policy."""

    generate: bool
    update_existing: bool
    secret_key: str
    policy: PasswordPolicy
    wording: Wording


def _decide(row: RowPlan, existing, owners, lookalikes, rules: _PasswordRules) -> None:
    values = row.values
    password = values.pop("password", "")  # first: a row in error keeps no plaintext password
    username = values.get("username")
    if username and not username.isascii() and skeleton(username) in lookalikes:
        row.errors.append(f"username “{username}” looks like the username "
                          f"“{lookalikes[skeleton(username)]}” (letters of another script).")
    current = existing.get(fold_key(username)) if username else None
    email = values.get("email")
    owner = owners.get(fold_key(email)) if email else None
    if owner and (current is None or owner[0] != current["id"]):
        row.errors.append(f"email “{email}” already belongs to the user “{owner[1]}”.")

    if current is None:
        if not rules.generate:
            if not password:
                row.password_missing = rules.wording.password_missing
                row.errors.append(row.password_missing)
            elif values:
                row.errors.extend(_password_errors(password, values, rules.policy))
    elif password and not rules.update_existing:
        password, row.password_ignored = "", True  # a file's passwords are for new users
    elif password:
        row.errors.extend(_password_errors(password, values, rules.policy))
    if row.errors:
        row.action = ImportRow.ERROR
        return
    if password:
        values["password"] = seal_password(password, rules.secret_key)

    if current is None:
        row.action = ImportRow.ADD
        return
    row.user_id = current["id"]
    for name in COMPARED:
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

"""Staging and review of an upload: store the plan of every row, page through it, record the
administrator's choices, and purge what is no longer needed.

Services add and flush; the view or the job that calls them owns the transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session, defer

from ..columns import BY_KEY
from ..models import (
    ImportBatch,
    ImportRow,
    InviteMode,
    ProfileField,
    UploadFile,
    User,
    fold_key,
    utcnow,
)
from ..profile import active_fields
from ..security import seal_file, seal_password, unseal_file, unseal_password
from .apply import result_message
from .mapping import (
    FULL_NAME,
    NOT_IMPORTED,
    Mapping,
    apply_settings,
)
from .reader import WORKBOOK, FileProblem, check_headings, missing_message, read_table
from .saved_mappings import apply_saved
from .schedule import Schedule, mark_rows
from .validation import (
    SAVING,
    WEB,
    PasswordColumnConflict,
    Plan,
    Progress,
    Wording,
    plan_table,
)

# Which proposed actions each choice applies to ("skip" applies to every row not in error).
APPLICABLE = {
    ImportRow.ADD: (ImportRow.ADD,),
    ImportRow.UPDATE: (ImportRow.UPDATE,),
    ImportRow.BLOCK: (ImportRow.MISSING,),
    ImportRow.SKIP: (ImportRow.ADD, ImportRow.UPDATE, ImportRow.NOCHANGE, ImportRow.MISSING),
}
FILTERS = ("all", ImportRow.ADD, ImportRow.UPDATE, ImportRow.NOCHANGE, ImportRow.ERROR,
           ImportRow.MISSING)
# The line of a leaver's row: the file has none, and the rows sort after the file's by line
# (the indexed order of the review) and then by id.
MISSING_LINE = 2**31 - 1
ROWS_PER_PAGE = 100
STAGE_CHUNK = 5000


class BatchClosed(Exception):
    """The batch was submitted (or expired) meanwhile, by another request or tab."""


@dataclass
class UploadOptions:
    """What the upload form (or the CLI) asks besides the file; None means detect."""

    generate_passwords: bool = False  # new users are invited by e-mail
    encoding: str | None = None
    delimiter: str | None = None
    clear_empty: bool = False  # "Empty cells clear values"
    update_passwords: bool = False  # "Also set the passwords of existing users"
    sheet: str | None = None  # a workbook's sheet (the first by default)
    mapping: Mapping | None = None  # the administrator's mapping; None: preset, saved or headings
    map_settings: tuple[str, ...] = ()  # the CLI's --map settings, applied over the proposal
    # Values for what rows leave out (see `importing.defaults`), as cells: {key: text}.
    defaults: dict[str, str] = field(default_factory=dict)
    list_missing: bool = False  # "Users missing from this file: list them" (leavers)
    invite_mode: InviteMode = InviteMode.PASSWORD  # what the invitations carry
    schedule: dict[str, Any] | None = None  # when they go: `schedule.Schedule.to_json()`
    # The web asks about columns nobody recognised; the CLI leaves them out (and says so).
    ask_unresolved: bool = True
    wording: Wording = WEB

    @classmethod
    def of_batch(cls, batch: ImportBatch, mapping: Mapping | None = None) -> UploadOptions:
        """The options a batch was staged with, to read its kept file again: what the
        administrator forced, rather than what was detected."""
        chosen = batch.notes or {}
        return cls(batch.generate_passwords, chosen.get("encoding_chosen"),
                   chosen.get("delimiter_chosen"), batch.clear_empty, batch.update_passwords,
                   batch.sheet, mapping, defaults=chosen.get("defaults", {}),
                   list_missing=bool(chosen.get("list_missing")), invite_mode=batch.invite_mode,
                   schedule=chosen.get("schedule"))


def stage_upload(session: Session, owner_id: int, filename: str, data: bytes,
                 options: UploadOptions) -> ImportBatch:
    """Read, validate and stage an uploaded file, keeping it (encrypted) so that a changed
    mapping or option reads it again; raises FileProblem (writing nothing) when the file as a
    whole cannot be used."""
    config = current_app.config
    now = utcnow()
    batch = ImportBatch(
        owner_id=owner_id, filename=filename[:255] or "upload.csv",
        sha256=hashlib.sha256(data).hexdigest(), size=len(data), created_at=now,
        expires_at=now + timedelta(hours=config["BATCH_TTL_HOURS"]))
    sealed = seal_file(data, config["SECRET_KEY"])  # before the plan: its copies are transient
    plan = plan_into(session, batch, data, options)
    session.add(batch)
    session.flush()
    session.add(UploadFile(batch_id=batch.id, sealed=sealed))
    del sealed
    insert_rows(session, batch, plan)
    return batch


def replan(session: Session, batch: ImportBatch, **changes: Any) -> None:
    """Read the batch's kept file again with changed options (`mapping`, `encoding`,
    `generate_passwords`, `update_passwords`, `sheet`), replacing its staged rows and choices;
    raises FileProblem (the caller rolls back) when the file cannot be used that way."""
    status = session.scalar(select(ImportBatch.status).where(ImportBatch.id == batch.id)
                            .with_for_update())  # a submit in another tab waits, or wins
    stored = session.get(UploadFile, batch.id)
    if stored is None or status not in (ImportBatch.STAGED, ImportBatch.FAILED):
        raise BatchClosed(batch.id)
    data = unseal_file(stored.sealed, current_app.config["SECRET_KEY"])
    mapping = Mapping.from_json(batch.mapping) if batch.mapping else None
    options = UploadOptions.of_batch(batch, mapping)
    for name, value in changes.items():
        setattr(options, name, value)
    if "encoding" in changes or "sheet" in changes:
        options.delimiter = None  # detected again, as on upload
    session.execute(delete(ImportRow).where(ImportRow.batch_id == batch.id))
    insert_rows(session, batch, plan_into(session, batch, data, options))


def column_samples(session: Session, batch: ImportBatch, count: int = 3) -> list[list[str]]:
    """Up to `count` example values of every column of the batch's kept file, for the mapping
    step (the values of a password column are masked)."""
    stored = session.get(UploadFile, batch.id)
    if stored is None:
        raise BatchClosed(batch.id)
    data = unseal_file(stored.sealed, current_app.config["SECRET_KEY"])
    mapping = Mapping.from_json(batch.mapping) if batch.mapping else None
    table = read_table(data, encoding=None if batch.encoding == WORKBOOK else batch.encoding,
                       delimiter=batch.delimiter or None,
                       mapping=mapping, require_mapped=False, sheet=batch.sheet,
                       max_columns=current_app.config["MAX_COLUMNS"])
    samples: list[list[str]] = [[] for _ in table.headings]
    for record in table.records:
        for index, cell in enumerate(record.cells[:len(samples)]):
            if cell.strip() and len(samples[index]) < count:
                samples[index].append(cell.strip()[:80])
        if all(len(values) >= count for values in samples):
            break
    password = table.column("password")
    if password is not None:
        samples[password] = ["••••••••" for _ in samples[password]]
    return samples


def plan_into(session: Session, batch: ImportBatch, data: bytes, options: UploadOptions,
              progress: Progress | None = None) -> Plan | None:
    """Read and check `data`, describing it on `batch`; the plan of its rows, or None when
    they wait for a mapping or an option. `progress` is told each stage (background reading)."""
    config = current_app.config
    fields = active_fields(session)
    table = read_table(data, encoding=options.encoding, delimiter=options.delimiter,
                       fallbacks=config["ENCODING_FALLBACKS"],
                       custom_fields=[f.name for f in fields],
                       max_columns=config["MAX_COLUMNS"], mapping=_usable(options.mapping, fields),
                       require_mapped=False, sheet=options.sheet)
    mapping = table.mapping
    assert mapping is not None
    if options.mapping is None:
        apply_saved(session, mapping, usable_targets(fields))
    if options.map_settings:
        apply_settings(mapping, options.map_settings, _target_names(fields))
    if not options.ask_unresolved:
        mapping.targets = [NOT_IMPORTED if t is None else t for t in mapping.targets]
    table.remap(mapping)
    check_headings(table.headings, mapping)
    batch.generate_passwords = options.generate_passwords
    batch.invite_mode = options.invite_mode
    batch.clear_empty = options.clear_empty
    batch.update_passwords = options.update_passwords
    batch.sheet = options.sheet
    batch.encoding, batch.delimiter = table.encoding, table.delimiter
    batch.mapping = mapping.to_json()
    batch.columns = [{"heading": h, "field": f}
                     for h, f in zip(table.headings, table.fields, strict=True)]
    notes: dict[str, Any] = {"encoding_chosen": options.encoding,
                             "delimiter_chosen": options.delimiter}
    if options.defaults:
        notes["defaults"] = options.defaults
    if options.list_missing:
        notes["list_missing"] = True
    if options.schedule:
        notes["schedule"] = options.schedule
    if table.skipped_first_line:
        notes["skipped_first_line"] = True
    if len(table.sheets) > 1:
        notes["sheets"] = table.sheets
    if table.alternatives:
        notes["alternatives"] = [
            {"codec": a.codec, "words": [[ours, theirs] for ours, theirs in a.words]}
            for a in table.alternatives]
    batch.counts, batch.notes = _empty_counts(len(table.records)), notes
    if not mapping.complete:
        if not options.ask_unresolved:
            raise FileProblem(missing_message(mapping, hint=MAP_HINT), 1)
        notes["needs_mapping"] = True
        return None
    try:
        plan = plan_table(table, session, generate_passwords=options.generate_passwords,
                          allowed_domains=config["ALLOWED_EMAIL_DOMAINS"],
                          secret_key=config["SECRET_KEY"], clear_empty=options.clear_empty,
                          fields=fields, update_passwords=options.update_passwords,
                          wording=options.wording, progress=progress,
                          defaults=options.defaults)
    except PasswordColumnConflict as conflict:
        if not options.ask_unresolved:
            raise
        notes["blocked"] = conflict.message
        return None
    if options.generate_passwords:
        mark_rows(plan.rows, table.headings, Schedule.from_json(options.schedule),
                  config["DATE_ORDER"])
    notes.update(plan.notes)
    batch.counts = plan.counts
    return plan


MAP_HINT = " Name a column's field with --map \"HEADING=field\"."


def _stored_values(row) -> dict | None:
    """A row's values as staged, with the keys derived by the mapping and filled by a default
    (for the review to mark them)."""
    marks = {name: list(keys) for name, keys in (("_derived", row.derived),
                                                   ("_defaulted", row.defaulted)) if keys}
    return ({**row.values, **marks} if marks else row.values) or None


def _empty_counts(total: int) -> dict[str, int]:
    return {**Plan([]).counts, "total": total}


def _target_names(fields: list[ProfileField]) -> list[str]:
    return [*BY_KEY, FULL_NAME, *(f.name for f in fields)]


def usable_targets(fields: list[ProfileField]) -> set[str]:
    """Every target a column can have with these profile fields."""
    return set(_target_names(fields))


def _usable(mapping: Mapping | None, fields: list[ProfileField]) -> Mapping | None:
    if mapping is not None:
        mapping.forget_unknown(usable_targets(fields))
    return mapping


def insert_rows(session: Session, batch: ImportBatch, plan: Plan | None,
                progress: Progress | None = None) -> None:
    """Stage the rows of `plan`, each on Skip until the administrator chooses; `progress` is
    told after each chunk."""
    if plan is None:
        return
    secret_key = current_app.config["SECRET_KEY"]
    has_passwords = any(column["field"] == "password" for column in batch.columns)
    # render_nulls: one executemany per chunk, whatever mix of NULLs the rows have
    add_rows = insert(ImportRow).execution_options(render_nulls=True)
    for start in range(0, len(plan.rows), STAGE_CHUNK):  # dicts per chunk: less memory
        session.execute(add_rows, [
            {"batch_id": batch.id, "line": r.line, "end_line": r.end_line,
             "username": r.username[:255], "proposed": r.action, "choice": ImportRow.SKIP,
             "user_id": r.user_id,
             "values": _stored_values(r),
             "changes": r.changes or None, "errors": r.errors or None,
             # the cells as uploaded, only for `Download rows with errors`
             "raw": (_stored_cells(r.raw, has_passwords, secret_key)
                     if r.action == ImportRow.ERROR else None)}
            for r in plan.rows[start:start + STAGE_CHUNK]])
        if progress:
            progress(SAVING, min(start + STAGE_CHUNK, len(plan.rows)), len(plan.rows))
    if (batch.notes or {}).get("list_missing"):
        _insert_missing(session, batch, {fold_key(r.username) for r in plan.rows
                                         if r.username})


def _insert_missing(session: Session, batch: ImportBatch, named: set[str]) -> None:
    """Stage a row for every active user other than an administrator whom the file does not
    name, proposed as missing and on Skip until the administrator chooses Block."""
    people = [person for person in session.execute(
        select(User.id, User.username, User.username_key, User.firstname, User.surname,
               User.email).where(User.active, ~User.is_admin).order_by(User.username_key))
        if person.username_key not in named]
    add_rows = insert(ImportRow).execution_options(render_nulls=True)
    for start in range(0, len(people), STAGE_CHUNK):
        session.execute(add_rows, [
            {"batch_id": batch.id, "line": MISSING_LINE, "end_line": MISSING_LINE,
             "username": p.username, "proposed": ImportRow.MISSING, "choice": ImportRow.SKIP,
             "user_id": p.id, "values": {"firstname": p.firstname, "surname": p.surname,
                                         "email": p.email},
             "changes": None, "errors": None, "raw": None}
            for p in people[start:start + STAGE_CHUNK]])
    batch.counts = {**batch.counts, ImportRow.MISSING.value: len(people)}

def _stored_cells(cells: list[str], has_passwords: bool, secret_key: str) -> list[str]:
    """The cells as stored: in a file with a password column the whole row is encrypted, since
    in a row with too many or too few fields the password may be in any cell."""
    if not has_passwords:
        return cells
    return [seal_password(json.dumps(cells), secret_key)]


def owned_batch(session: Session, batch_id: int, owner_id: int) -> ImportBatch | None:
    """The batch if it exists and belongs to `owner_id` (reviews stay with their owner)."""
    batch = session.get(ImportBatch, batch_id)
    return batch if batch is not None and batch.owner_id == owner_id else None


def expire_if_due(session: Session, batch: ImportBatch) -> bool:
    """Expire `batch` (purging its staged rows) if it is open past its time to live; True if it
    was. The caller commits."""
    if batch.is_open and batch.expires_at <= utcnow():
        expire_batch(session, batch)
        return True
    return False


def purge_expired(session: Session) -> int:
    """Expire every open batch past its time to live, deleting its staged rows; returns how many."""
    batches = session.scalars(select(ImportBatch).where(
        ImportBatch.status.in_((ImportBatch.STAGED, ImportBatch.FAILED, ImportBatch.READING)),
        ImportBatch.expires_at <= utcnow()))
    count = 0
    for batch in batches:
        expire_batch(session, batch)
        count += 1
    return count


def discard_surplus_batches(session: Session, owner_id: int, keep: int) -> list[ImportBatch]:
    """Expire the open batches of `owner_id` beyond the newest `keep`, deleting their staged
    rows, and return them (oldest first). An administrator who uploads again has moved on from
    their oldest draft; refusing the new file instead would leave them hunting for old ones."""
    surplus = list(session.scalars(
        select(ImportBatch).options(defer(ImportBatch.columns, raiseload=True))
        .where(ImportBatch.owner_id == owner_id,
               ImportBatch.status.in_((ImportBatch.STAGED, ImportBatch.FAILED)))
        .order_by(ImportBatch.id.desc()).offset(max(keep, 1))))
    for batch in surplus:
        expire_batch(session, batch)
    return surplus[::-1]


def expire_batch(session: Session, batch: ImportBatch) -> None:
    """Delete a batch's staged rows and kept file and mark it expired (the caller commits)."""
    session.execute(delete(ImportRow).where(ImportRow.batch_id == batch.id))
    session.execute(delete(UploadFile).where(UploadFile.batch_id == batch.id))
    batch.status = ImportBatch.EXPIRED


def rows_query(batch_id: int, show: str):
    """The select() of a batch's rows under a review filter, in file order."""
    query = select(ImportRow).where(ImportRow.batch_id == batch_id).order_by(ImportRow.line,
                                                                             ImportRow.id)
    if show != "all":
        query = query.where(ImportRow.proposed == show)
    return query


def choice_counts(session: Session, batch_id: int) -> dict[str, int]:
    """How many rows are currently chosen for add, update and skip (rows in error excluded)."""
    query = (select(ImportRow.choice, func.count()).where(
        ImportRow.batch_id == batch_id, ImportRow.proposed != ImportRow.ERROR)
        .group_by(ImportRow.choice))
    counts = {ImportRow.ADD: 0, ImportRow.UPDATE: 0, ImportRow.BLOCK: 0, ImportRow.SKIP: 0}
    counts.update(dict(session.execute(query).all()))
    return counts


def heading_states(batch: ImportBatch, chosen: dict[str, int]) -> dict[str, bool]:
    """Whether each column-heading checkbox shows as ticked: every row it applies to has it."""
    counts = batch.counts
    applicable = {action: sum(counts.get(p, 0) for p in proposed)
                  for action, proposed in APPLICABLE.items()}
    return {action: applicable[action] > 0 and chosen[action] == applicable[action]
            for action in APPLICABLE}


def save_choices(session: Session, batch: ImportBatch, headings: dict[str, tuple[bool, bool]],
                 rows: Iterable[tuple[int, str]]) -> None:
    """Record the administrator's choices.

    `headings` maps an action to (was ticked, is ticked) for its column-heading checkbox: newly
    ticked selects that action for every row of the batch it applies to; newly unticked sends
    those rows back to Skip. `rows` then gives (row id, choice) for each radio the administrator
    changed on the visible page, which wins over the heading. Raises BatchClosed if the batch
    is no longer open (checked under a row lock, so a concurrent submit cannot be changed).
    """
    status = session.scalar(select(ImportBatch.status).where(ImportBatch.id == batch.id)
                            .with_for_update())
    if status not in (ImportBatch.STAGED, ImportBatch.FAILED):
        raise BatchClosed(batch.id)
    for action, (was, now) in headings.items():
        if now == was:
            continue
        if now:
            session.execute(update(ImportRow).where(
                ImportRow.batch_id == batch.id,
                ImportRow.proposed.in_(APPLICABLE[action])).values(choice=action))
        elif action != ImportRow.SKIP:
            session.execute(update(ImportRow).where(
                ImportRow.batch_id == batch.id, ImportRow.choice == action)
                .values(choice=ImportRow.SKIP))
    by_choice: dict[str, list[int]] = {}
    for row_id, choice in rows:
        by_choice.setdefault(choice, []).append(row_id)
    for choice, ids in by_choice.items():
        session.execute(update(ImportRow).where(
            ImportRow.batch_id == batch.id, ImportRow.id.in_(ids),
            ImportRow.proposed.in_(APPLICABLE[choice])).values(choice=choice))


def result_lines(session: Session, batch: ImportBatch):
    """The results CSV of an applied batch, as rows: line (empty for a user missing from the
    file), username, action, outcome, message; never a password."""
    yield ["line", "username", "action", "outcome", "message"]
    query = rows_query(batch.id, "all").execution_options(yield_per=2000)
    for row in session.scalars(query):
        action = row.choice if row.proposed != ImportRow.ERROR else "error"
        yield ["" if row.line == MISSING_LINE else row.line, row.username, action, row.outcome,
               result_message(row, batch.generate_passwords)]


def rows_with_errors(session: Session, batch: ImportBatch):
    """(cells as uploaded, error text, line) of every row in error, for `Download rows with
    errors`; the administrator gets back the file's own passwords, decrypted."""
    query = rows_query(batch.id, ImportRow.ERROR).with_only_columns(
        ImportRow.raw, ImportRow.errors, ImportRow.line)
    sealed = any(column["field"] == "password" for column in batch.columns)
    secret_key = current_app.config["SECRET_KEY"]
    for raw, errors, line in session.execute(query):
        cells = json.loads(unseal_password(raw[0], secret_key)) if sealed and raw else raw or []
        yield cells, " ".join(errors or []), line

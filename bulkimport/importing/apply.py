"""Apply a reviewed batch: claim it once, then write every chosen row in one transaction with
bulk statements; the database's unique keys re-check uniqueness inside that transaction, and a
refusal is traced back to the line that caused it.

Passwords from the file are hashed before the transaction opens (bcrypt is slow by design), on
every CPU of the machine, and batches that need hashing or are large are applied by a background
job.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from flask import current_app
from sqlalchemy import (
    JSON,
    DateTime,
    bindparam,
    case,
    delete,
    insert,
    literal,
    null,
    select,
    update,
)
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from ..account_state import after_state_change
from ..columns import BY_KEY, UPDATABLE
from ..lookups import CHUNK, matching
from ..models import (
    AuditEvent,
    ImportBatch,
    ImportRow,
    Invitation,
    ProfileField,
    ProfileValue,
    RowOutcome,
    UploadFile,
    User,
    fold_key,
    utcnow,
)
from ..profile import unique_key
from ..security import hash_password, new_session_epoch, unseal_password
from .mapping import FULL_NAME
from .schedule import Schedule, send_time
from .validation import Progress

OPEN_STATES = (ImportBatch.STAGED, ImportBatch.FAILED)
HASH_CHUNK = 25  # passwords one thread hashes between two progress reports
WRITE_CHUNK = 1000  # rows a statement writes between two progress reports (and SQLAlchemy's
                    # page for a bulk INSERT: smaller chunks cost no extra round trips)

# The stages of an apply, in plain words and in order, as the progress page lists them. Those
# from ADDING on happen inside the writing transaction (see `live_progress`).
WAITING = "Waiting for a worker"
HASHING = "Hashing passwords"
WRITING = "Writing users"  # committed when the writing transaction starts
ADDING = "Adding users"
UPDATING = "Updating users"
BLOCKING = "Blocking users missing from the file"
PROFILE = "Saving profile fields"
INVITING = "Queueing invitations"
AUDITING = "Recording the audit trail"
FINISHING = "Recording the results"
WRITING_STAGES = (ADDING, UPDATING, BLOCKING, PROFILE, INVITING, AUDITING, FINISHING)
APPLY_STAGES = (WAITING, HASHING, *WRITING_STAGES)


class ApplyError(Exception):
    """The batch cannot be applied as reviewed; the message says why, naming the line."""


class NothingSelected(ApplyError):
    """No row is chosen for Add or Update."""


def selected_rows(session: Session, batch_id: int) -> list[Row]:
    """The rows chosen for Add, Update or Block, in file order (leavers last): only the columns
    apply reads."""
    return list(session.execute(select(
        ImportRow.id, ImportRow.line, ImportRow.username, ImportRow.choice, ImportRow.user_id,
        ImportRow.values, ImportRow.changes).where(
        ImportRow.batch_id == batch_id,
        ImportRow.choice.in_((ImportRow.ADD, ImportRow.UPDATE, ImportRow.BLOCK)))
        .order_by(ImportRow.line, ImportRow.id)))


def claim(session: Session, batch: ImportBatch, to_status: str,
          from_states: tuple[str, ...] = OPEN_STATES) -> bool:
    """Move the batch from one of `from_states` to `to_status` with one conditional UPDATE;
    False when another request (a double click, a second tab, a second job) claimed it first.
    This is what makes submit idempotent."""
    result = session.execute(update(ImportBatch).where(
        ImportBatch.id == batch.id, ImportBatch.status.in_(from_states))
        .values(status=to_status, error=None, updated_at=utcnow())
        .execution_options(synchronize_session=False))
    session.refresh(batch)
    return result.rowcount == 1


def needs_background(session: Session, batch: ImportBatch, selected: int) -> bool:
    """Whether the batch (with `selected` rows chosen for Add or Update) is large or carries
    passwords to hash, and so goes to a job."""
    if selected >= current_app.config["BACKGROUND_ROWS"]:
        return True
    if not any(column["field"] == "password" for column in batch.columns):
        return False
    return any(row.values and row.values.get("password")
               for row in selected_rows(session, batch.id))


def sealed_passwords(rows: list[Row]) -> list[tuple[int, str]]:
    """(row id, sealed password) of the rows that carry a password from the file."""
    return [(r.id, r.values["password"]) for r in rows if r.values and r.values.get("password")]


def hash_file_passwords(sealed: list[tuple[int, str]],
                        on_progress: Callable[[int], None] | None = None,
                        threads: int | None = None) -> dict[int, str]:
    """bcrypt hashes of the passwords staged from the file, by row id, on `threads` threads (by
    default one per CPU of this machine: bcrypt releases the GIL, so they hash in parallel). Run
    outside any write transaction, since each hash takes a noticeable fraction of a second;
    `on_progress` is told, on the calling thread, how many are done."""
    config = current_app.config
    secret_key, rounds = config["SECRET_KEY"], config["BCRYPT_ROUNDS"]

    def hash_chunk(chunk: list[tuple[int, str]]) -> list[tuple[int, str]]:
        return [(row_id, hash_password(unseal_password(token, secret_key), rounds))
                for row_id, token in chunk]

    chunks = [sealed[start:start + HASH_CHUNK] for start in range(0, len(sealed), HASH_CHUNK)]
    hashes: dict[int, str] = {}
    workers = min(threads or available_cpus(), len(chunks))
    if workers <= 1:
        results = map(hash_chunk, chunks)
        pool = None
    else:
        pool = ThreadPoolExecutor(workers, thread_name_prefix="bulkimport-bcrypt")
        results = pool.map(hash_chunk, chunks)
    try:
        for chunk_hashes in results:
            hashes.update(chunk_hashes)
            if on_progress:
                on_progress(len(hashes))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)  # after a failure, hash nothing more
    return hashes


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity, which a container may narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def apply_rows(session: Session, batch: ImportBatch, hashes: dict[int, str] | None = None,
               report: Progress | None = None) -> dict:
    """Write the chosen rows of a claimed batch: users added and updated, one invitation per new
    user when passwords are generated, outcomes recorded and staged values purged; `report` is
    told each stage and how far it is. Raises ApplyError, or IntegrityError when the database's
    unique keys refuse a row (explained by `conflict_reason`), and leaves the rollback to the
    caller."""
    hashes = hashes or {}
    report = report or (lambda stage, done, total: None)
    rows = selected_rows(session, batch.id)
    adds = [r for r in rows if r.choice == ImportRow.ADD]
    updates = [r for r in rows if r.choice == ImportRow.UPDATE]
    blocks = [r for r in rows if r.choice == ImportRow.BLOCK]
    missing = [r for r in rows if r.values and r.values.get("password") and r.id not in hashes]
    if missing:
        raise ApplyError(f"Line {missing[0].line}: the password from the file was not hashed.")
    _check_updated_users_exist(session, updates)

    now = utcnow()
    # render_nulls: rows with and without NULLs go in one executemany, not many small ones
    add_users = insert(User).execution_options(render_nulls=True)
    records = [_new_user(r, hashes.get(r.id), now) for r in adds]
    for start in range(0, len(records), WRITE_CHUNK):
        report(ADDING, start, len(records))
        session.execute(add_users, records[start:start + WRITE_CHUNK])
    done = 0
    for changes in _update_groups(updates, hashes, now):
        for start in range(0, len(changes), WRITE_CHUNK):
            report(UPDATING, done, len(updates))
            session.execute(update(User), changes[start:start + WRITE_CHUNK])
            done += len(changes[start:start + WRITE_CHUNK])
    if blocks:
        report(BLOCKING, 0, len(blocks))
    blocked = _block_leavers(session, batch, blocks, now)
    _write_profile_values(session, batch, adds, updates, report)
    states = {row.user_id: row.changes["active"][1] for row in updates
              if "active" in (row.changes or {})}
    states.update(dict.fromkeys(blocked, False))
    after_state_change(session, blocked=[i for i, active in states.items() if not active],
                       unblocked=[i for i, active in states.items() if active])
    session.flush()

    invitations = 0
    if batch.generate_passwords and adds:
        report(INVITING, 0, len(adds))
        _queue_invitations(session, batch, adds, now)
        invitations = len(adds)  # one for each user just added

    report(AUDITING, 0, 0)
    _audit(session, batch, adds, updates, now)
    report(FINISHING, 0, 0)
    _record_outcomes(session, batch.id)
    errors = batch.counts[ImportRow.ERROR]
    result = {"added": len(adds), "updated": len(updates),
              "skipped": batch.counts["total"] - len(adds) - len(updates) - errors,
              "errors": errors, "invitations": invitations,
              "unblocked": sum(1 for active in states.values() if active),
              "blocked": len(blocked)}
    batch.status = ImportBatch.APPLIED
    batch.applied_at = now
    batch.result = result
    batch.error = None
    session.flush()
    return result


def _queue_invitations(session: Session, batch: ImportBatch, adds: list[Row], now) -> None:
    """One invitation for each user just added, in the batch's mode, due now or when the
    batch's schedule says (the database is the outbox: a scheduled one survives restarts and a
    queue that lost its data). Rows that go at the same time are written by one statement."""
    schedule = Schedule.from_json((batch.notes or {}).get("schedule"))
    groups: dict[datetime | None, list[str]] = {}
    for row in adds:
        groups.setdefault(send_time(schedule, row.values), []).append(
            fold_key(row.values["username"]))
    columns = ("user_id", "batch_id", "mode", "status", "attempts", "created_at", "started_at",
               "next_attempt_at", "scheduled_at", "pending_hashes")
    for when, keys in groups.items():
        # the give-up window of a scheduled invitation starts when it goes, not at the import
        due = when or now
        for condition in matching(session, User.username_key, keys):
            # INSERT … SELECT: the new users' ids never travel to Python and back
            new_users = select(
                User.id, literal(batch.id), literal(batch.invite_mode.value),
                literal(Invitation.QUEUED.value), literal(0), literal(now, DateTime),
                literal(due, DateTime), literal(due, DateTime), literal(when, DateTime),
                literal([], JSON)).where(condition)
            session.execute(insert(Invitation).from_select(columns, new_users))


def _block_leavers(session: Session, batch: ImportBatch, blocks: list[Row], now) -> list[int]:
    """Block the users missing from the file that the administrator chose, with an audit event
    each, and return their ids; checked inside the transaction: none may have become an
    administrator, and one blocked meanwhile is left as it is. Their sessions end with the other
    blocked users' (`after_state_change`)."""
    if not blocks:
        return []
    chosen = [row.user_id for row in blocks]
    found: dict[int, tuple[bool, bool]] = {}
    for start in range(0, len(chosen), CHUNK):
        found.update((user_id, (is_admin, active)) for user_id, is_admin, active in
                     session.execute(select(User.id, User.is_admin, User.active).where(
                         User.id.in_(chosen[start:start + CHUNK]))))
    for row in blocks:
        if row.user_id not in found:
            raise ApplyError(f"The user “{row.username}” to block was deleted after this file "
                             "was reviewed; nothing was written. Upload the file again.")
        if found[row.user_id][0]:
            raise ApplyError(f"“{row.username}” became an administrator after this file was "
                             "reviewed and is not blocked by a file; nothing was written.")
    ids = [user_id for user_id in chosen if found[user_id][1]]
    if not ids:
        return []
    session.execute(update(User), [{"id": user_id, "active": False, "updated_at": now}
                                   for user_id in ids])
    session.execute(insert(AuditEvent), [
        {"created_at": now, "action": "user_blocked", "actor_id": batch.owner_id,
         "user_id": user_id, "address": None,
         "detail": {"batch_id": batch.id, "missing_from_file": True}} for user_id in ids])
    return ids


def _audit(session: Session, batch: ImportBatch, adds: list[Row], updates: list[Row],
           now) -> None:
    """One audit event per user added, by INSERT … SELECT, one per user updated naming the
    changed fields (never a value), and one for the batch's queued invitations (each
    invitation's sending writes its own)."""
    columns = ("created_at", "action", "actor_id", "user_id", "detail")
    detail = literal({"batch_id": batch.id}, JSON)

    def events(user_id):
        return select(literal(now, DateTime), literal("user_created"), literal(batch.owner_id),
                      user_id, detail)

    if batch.generate_passwords:  # the batch's invitations name exactly the users it added
        session.execute(insert(AuditEvent).from_select(columns, events(Invitation.user_id)
                                                       .where(Invitation.batch_id == batch.id)))
    else:
        for condition in matching(session, User.username_key,
                                  [fold_key(r.values["username"]) for r in adds]):
            session.execute(insert(AuditEvent).from_select(columns, events(User.id)
                                                           .where(condition)))
    if batch.generate_passwords and adds:
        session.add(AuditEvent(created_at=now, action="invitations_queued",
                               actor_id=batch.owner_id,
                               detail={"batch_id": batch.id, "count": len(adds)}))
    records = [{"created_at": now, "action": "user_updated", "actor_id": batch.owner_id,
                "user_id": row.user_id, "address": None,
                "detail": {"batch_id": batch.id, "fields": sorted(row.changes or {})}}
               for row in updates]
    for start in range(0, len(records), CHUNK):
        session.execute(insert(AuditEvent), records[start:start + CHUNK])


def _write_profile_values(session: Session, batch: ImportBatch, adds: list[Row],
                          updates: list[Row], report: Progress) -> None:
    """Store the custom profile values of the added users and the changed values of the updated
    ones (a changed value is deleted, then inserted unless it was cleared)."""
    defaulted = set((batch.notes or {}).get("defaults", {}))
    names = ({c["field"] for c in batch.columns if c["field"]} | defaulted) \
        - {*BY_KEY, FULL_NAME}
    if not names:
        return
    fields = {f.name: f for f in session.scalars(select(ProfileField).where(
        ProfileField.name.in_(names), ProfileField.retired.is_(False)))}
    missing = sorted(names - set(fields))
    if missing:
        raise ApplyError(f"The profile field “{missing[0]}” was renamed or retired after this "
                         "file was reviewed; nothing was written. Upload the file again.")
    ids = {}
    for condition in matching(session, User.username_key,
                              [fold_key(r.values["username"]) for r in adds]):
        ids.update(session.execute(select(User.username_key, User.id).where(condition)).all())
    records, removed = [], []
    for row in adds:
        user_id = ids[fold_key(row.values["username"])]
        records += [_profile_record(user_id, fields[n], row.values.get(n)) for n in fields
                    if row.values.get(n) is not None]
    for row in updates:
        for name, (_, new) in (row.changes or {}).items():
            if name in fields:
                removed.append({"uid": row.user_id, "fid": fields[name].id})
                if new is not None:
                    records.append(_profile_record(row.user_id, fields[name], new))
    table = ProfileValue.__table__
    report(PROFILE, 0, len(records))
    if removed:
        session.execute(table.delete().where(table.c.user_id == bindparam("uid"),
                                             table.c.field_id == bindparam("fid")), removed)
    for start in range(0, len(records), WRITE_CHUNK):
        report(PROFILE, start, len(records))
        session.execute(insert(ProfileValue), records[start:start + WRITE_CHUNK])


def _profile_record(user_id: int, field: ProfileField, value: str) -> dict:
    return {"user_id": user_id, "field_id": field.id, "value": value,
            "unique_key": unique_key(field, value)}


def _new_user(row: Row, password_hash: str | None, now) -> dict:
    values = row.values or {}
    return {
        "username": values["username"], "username_key": fold_key(values["username"]),
        "firstname": values["firstname"], "surname": values["surname"],
        "email": values["email"], "email_key": fold_key(values["email"]),
        "language": values.get("language") or None,
        "must_change_password": bool(values.get("must_change_password")),
        "password_hash": password_hash, "is_admin": False,
        "active": values.get("active") is not False,  # active unless the file blocks it
        "created_at": now, "updated_at": now,
    }


def _update_groups(rows: list[Row], hashes: dict[int, str], now):
    """Bulk-update parameter lists, grouped so that each executemany sets the same columns."""
    groups: dict[tuple[str, ...], list[dict]] = {}
    for row in rows:
        change = {"id": row.user_id, "updated_at": now}
        for name, (_, new) in (row.changes or {}).items():
            if name in UPDATABLE:
                change[name] = new
        if "username" in change:
            change["username_key"] = fold_key(change["username"])
        if "email" in change:
            change["email_key"] = fold_key(change["email"])
        if row.id in hashes:  # a new password from the file: old sessions and e-mails end
            change.update(password_hash=hashes[row.id], temp_password_expires_at=None,
                          session_epoch=new_session_epoch())
        groups.setdefault(tuple(sorted(change)), []).append(change)
    return groups.values()


def _check_updated_users_exist(session: Session, updates: list[Row]) -> None:
    """Refuse the batch if a user to update was deleted since the review (an UPDATE of a
    missing row would silently change nothing)."""
    by_id = {r.user_id: r for r in updates}
    found: set[int] = set()
    for condition in matching(session, User.id, by_id):
        found.update(session.scalars(select(User.id).where(condition)))
    for user_id in sorted(set(by_id) - found):
        row = by_id[user_id]
        raise ApplyError(f"Line {row.line}: the user “{row.username}” was deleted after this "
                         "file was reviewed. Upload it again.")


def conflict_reason(session: Session, batch_id: int) -> str:
    """After the database refused the batch (and the caller rolled back): the line whose
    username or e-mail address was taken since the review, as a sentence."""
    rows = selected_rows(session, batch_id)
    adds = [r for r in rows if r.choice == ImportRow.ADD]
    updates = [r for r in rows if r.choice == ImportRow.UPDATE]
    return _recheck(session, adds, updates) or (
        "Another change to the same usernames or e-mail addresses was saved while this batch "
        "was being applied; nothing was written. Upload the file again to review it against "
        "the current users.")


def _recheck(session: Session, adds: list[Row], updates: list[Row]) -> str | None:
    names = {fold_key(r.values["username"]): r for r in adds}
    for condition in matching(session, User.username_key, names):
        for key in session.scalars(select(User.username_key).where(condition)):
            row = names[key]
            return (f"Line {row.line}: the username “{row.username}” was created by someone "
                    "else after this file was reviewed. Upload it again.")
    emails = {fold_key(r.values["email"]): r for r in adds}
    emails.update({fold_key(r.values["email"]): r for r in updates
                   if "email" in (r.changes or {})})
    for condition in matching(session, User.email_key, emails):
        for key, owner_id in session.execute(select(User.email_key, User.id).where(condition)):
            row = emails[key]
            if row.user_id != owner_id:
                return (f"Line {row.line}: the e-mail address “{row.values['email']}” now "
                        "belongs to another user. Upload the file again.")
    return None


def _record_outcomes(session: Session, batch_id: int) -> None:
    """Set every row's outcome and purge the staged values (in one set-based statement) and the
    kept file."""
    outcome = case((ImportRow.choice == ImportRow.ADD, RowOutcome.ADDED.value),
                   (ImportRow.choice == ImportRow.UPDATE, RowOutcome.UPDATED.value),
                   (ImportRow.choice == ImportRow.BLOCK, RowOutcome.BLOCKED.value),
                   (ImportRow.proposed == ImportRow.ERROR, RowOutcome.ERROR.value),
                   else_=RowOutcome.SKIPPED.value)
    session.execute(update(ImportRow).where(ImportRow.batch_id == batch_id)
                    .values(outcome=outcome, values=null(), raw=null())
                    .execution_options(synchronize_session=False))
    session.execute(delete(UploadFile).where(UploadFile.batch_id == batch_id))


def result_message(row: ImportRow, generate_passwords: bool) -> str:
    """The sentence of the results CSV for one row; never contains a password."""
    if row.outcome == RowOutcome.ADDED:
        return "Added; invitation queued." if generate_passwords else "Added."
    if row.outcome == RowOutcome.UPDATED:
        return "Updated: " + ", ".join(sorted(row.changes or {})) + "."
    if row.outcome == RowOutcome.BLOCKED:
        return "Blocked: missing from the file."
    if row.outcome == RowOutcome.ERROR:
        return " ".join(row.errors or [])
    if row.proposed == ImportRow.NOCHANGE:
        return "No change."
    if row.proposed == ImportRow.MISSING:
        return "Missing from the file; left active."
    return "Skipped."

"""Submitting a reviewed batch and the background job that applies large ones.

These functions own their transactions: they commit, unlike the services they call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from ..background import enqueue
from ..extensions import db
from ..mailing.dispatch import wake
from ..models import ImportBatch, utcnow
from .apply import (
    OPEN_STATES,
    ApplyError,
    NothingSelected,
    apply_rows,
    claim,
    conflict_reason,
    hash_file_passwords,
    needs_background,
    sealed_passwords,
    selected_rows,
)
from .staging import choice_counts

# A callback told the stage of an apply, how far it is and of how many.
Progress = Callable[[str, int, int], None]

log = logging.getLogger(__name__)

PROGRESS_EVERY = 25
STALE_QUEUED = timedelta(minutes=10)  # no worker took the job: it was lost
STALE_APPLYING = timedelta(minutes=30)  # no progress: the worker died (jobs report every 25 hashes)


def submit_batch(batch: ImportBatch) -> str:
    """Apply `batch` now, or hand it to a background job; returns "applied", "queued", or
    "already" when another request submitted it first. Raises ApplyError with the reason when
    it cannot be applied; then nothing is written and the batch stays open (failed, with the
    reason)."""
    session = db.session
    chosen = choice_counts(session, batch.id)
    if not chosen["add"] and not chosen["update"]:
        raise NothingSelected("No row is selected for Add or Update: tick Add or Update for the "
                              "rows to import (or a column heading to select them all).")
    if needs_background(session, batch, chosen["add"] + chosen["update"]):
        if not claim(session, batch, ImportBatch.QUEUED):
            session.rollback()
            return "already"
        batch.progress_stage, batch.progress_done = "Waiting for a worker", 0
        session.commit()
        try:
            enqueue("apply_batch", batch.id)
        except Exception as exc:  # the queue is unreachable: leave the batch open to retry
            log.exception("Could not enqueue batch %s", batch.id)
            batch.status = ImportBatch.FAILED
            batch.error = f"The job queue could not be reached ({exc}); nothing was written."
            session.commit()
            raise ApplyError(batch.error) from None
        return "queued"
    result = apply_batch(batch.id, inline=True)
    if result is None:
        return "already"
    if result["invitations"]:
        wake()
    return "applied"


def apply_batch(batch_id: int, *, from_states: tuple[str, ...] = OPEN_STATES,
                progress: Progress | None = None, inline: bool = False) -> dict | None:
    """The one way a batch is applied (web, background job, CLI): claim it, hash the file's
    passwords outside any transaction, write every chosen row in one transaction. Returns the
    counts, or None when someone else claimed it first. On any failure nothing is written, the
    batch is marked failed with the reason, and ApplyError is raised. `inline` (a web request,
    nothing to hash) keeps the claim in the writing transaction, so that a crash leaves the
    batch open; elsewhere the claim is committed first, for the progress page and the
    stale-batch sweep to see."""
    session = db.session
    batch = session.get(ImportBatch, batch_id)
    if batch is None or not claim(session, batch, ImportBatch.APPLYING, from_states):
        session.rollback()
        return None
    report = progress or (lambda stage, done, total: None)
    try:
        rows = selected_rows(session, batch_id)
        sealed = sealed_passwords(rows)
        if sealed or not inline:
            session.commit()  # the claim: no transaction stays open while bcrypt runs
        hashes = {}
        if sealed:
            report("Hashing passwords", 0, len(sealed))
            hashes = hash_file_passwords(
                sealed, lambda done: report("Hashing passwords", done, len(sealed)))
        report("Writing users", 0, len(rows))
        result = apply_rows(session, batch, hashes)
        report("Done", len(rows), len(rows))
        session.commit()
    except Exception as exc:
        session.rollback()
        if isinstance(exc, ApplyError):
            reason = str(exc)
        elif isinstance(exc, IntegrityError):
            reason = conflict_reason(session, batch_id)
        else:
            log.exception("Applying batch %s failed", batch_id)
            reason = f"Applying failed ({exc.__class__.__name__}); nothing was written."
        batch = session.get(ImportBatch, batch_id)
        batch.status, batch.error, batch.progress_stage = ImportBatch.FAILED, reason, None
        session.commit()
        log.warning("Batch %s failed: %s", batch_id, reason)
        raise ApplyError(reason) from exc
    log.info("Batch %s applied: %s", batch_id, result)
    return result


def apply_batch_job(batch_id: int) -> None:
    """Background job: apply a queued batch, committing its progress as it goes (the progress
    bar of the result page reads it)."""
    def progress(stage: str, done: int, total: int) -> None:
        if done % PROGRESS_EVERY == 0 or done == total:
            _progress(batch_id, stage, done, total)

    try:
        result = apply_batch(batch_id, from_states=(ImportBatch.QUEUED,), progress=progress)
    except ApplyError:
        return  # recorded on the batch, which the result page shows
    if result is None:  # a second job for the same batch (a re-enqueue after a lost job)
        log.info("Batch %s is not waiting to be applied; nothing to do", batch_id)
    elif result["invitations"]:
        wake()


def recover_stale_batches() -> None:
    """Batches whose job was lost: queued ones are enqueued again (Redis lost the job, or the
    enqueue failed); applying ones whose worker died are failed — applying is one transaction,
    so nothing was written — and can be submitted again."""
    session = db.session
    now = utcnow()
    lost = session.scalars(select(ImportBatch.id).where(
        ImportBatch.status == ImportBatch.QUEUED,
        ImportBatch.updated_at < now - STALE_QUEUED)).all()
    for batch_id in lost:
        session.execute(update(ImportBatch).where(ImportBatch.id == batch_id)
                        .values(updated_at=now).execution_options(synchronize_session=False))
        session.commit()
        log.warning("Batch %s waited too long for a worker; enqueued again", batch_id)
        enqueue("apply_batch", batch_id)
    dead = session.execute(update(ImportBatch).where(
        ImportBatch.status == ImportBatch.APPLYING,
        ImportBatch.updated_at < now - STALE_APPLYING)
        .values(status=ImportBatch.FAILED, progress_stage=None,
                error="The worker applying this file stopped; nothing was written. Submit it "
                      "again.")
        .execution_options(synchronize_session=False)).rowcount
    session.commit()
    if dead:
        log.warning("%s batch(es) were being applied by a worker that stopped", dead)


def _progress(batch_id: int, stage: str, done: int, total: int) -> None:
    """Record the stage of a background apply, committed at once; "Done" is reported inside
    the writing transaction and is committed with the rows (a commit there would split it)."""
    batch = db.session.get(ImportBatch, batch_id)
    batch.progress_stage, batch.progress_done, batch.progress_total = stage, done, total
    if stage != "Done":
        db.session.commit()

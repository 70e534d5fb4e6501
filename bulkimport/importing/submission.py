"""Submitting a reviewed batch and the background job that applies large ones.

These functions own their transactions: they commit, unlike the services they call.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from datetime import timedelta

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from ..background import LOST_JOB_GRACE, Heartbeat, enqueue, ids_in_live_jobs, is_outage
from ..clock import clock
from ..extensions import db
from ..mailing.dispatch import wake
from ..models import ImportBatch, utcnow
from . import live_progress
from .apply import (
    HASHING,
    OPEN_STATES,
    WAITING,
    WRITING,
    ApplyError,
    NothingSelected,
    Progress,
    apply_rows,
    claim,
    conflict_reason,
    hash_file_passwords,
    needs_background,
    sealed_passwords,
    selected_rows,
)
from .staging import choice_counts

log = logging.getLogger(__name__)

PROGRESS_EVERY = 25  # hashes between two committed progress reports, at least
PROGRESS_STEPS = 100  # and at most this many reports per stage: each one is a commit
WORKER_STOPPED = ("The worker applying this file stopped; nothing was written. Submit it "
                  "again.")


def submit_batch(batch: ImportBatch) -> str:
    """Apply `batch` now, or hand it to a background job; returns "applied", "queued", or
    "already" when another request submitted it first. Raises ApplyError with the reason when
    it cannot be applied; then nothing is written and the batch stays open (failed, with the
    reason)."""
    session = db.session
    chosen = choice_counts(session, batch.id)
    if not chosen["add"] and not chosen["update"] and not chosen["block"]:
        raise NothingSelected("No row is selected for Add or Update: tick Add or Update for the "
                              "rows to import (or a column heading to select them all).")
    if needs_background(session, batch, chosen["add"] + chosen["update"] + chosen["block"]):
        if not claim(session, batch, ImportBatch.QUEUED):
            session.rollback()
            return "already"
        batch.progress_stage, batch.progress_done = WAITING, 0
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
    if result["invitations"] or result["unblocked"]:
        wake()
    return "applied"


def apply_batch(batch_id: int, *, from_states: tuple[str, ...] = OPEN_STATES,
                progress: Progress | None = None, inline: bool = False,
                requeue_on_outage: bool = False) -> dict | None:
    """The one way a batch is applied (web, background job, CLI): claim it, hash the file's
    passwords outside any transaction, write every chosen row in one transaction. Returns the
    counts, or None when someone else claimed it first. On any failure nothing is written, the
    batch is marked failed with the reason, and ApplyError is raised. `inline` (a web request,
    nothing to hash) keeps the claim in the writing transaction, so that a crash leaves the
    batch open; elsewhere the claim is committed first, for the progress page and the sweep to
    see, and a heartbeat tells the sweep that this worker is alive. With `requeue_on_outage` (the
    background job), a database or Redis outage puts the batch back in the queue instead, to be
    applied again once the part is back; then None is returned too."""
    session = db.session
    batch = session.get(ImportBatch, batch_id)
    if batch is None or not claim(session, batch, ImportBatch.APPLYING, from_states):
        session.rollback()
        return None
    report = progress or (lambda stage, done, total: None)
    try:
        rows = selected_rows(session, batch_id)
        sealed = sealed_passwords(rows)
        claim_committed = bool(sealed) or not inline
        if claim_committed:
            session.commit()  # the claim: no transaction stays open while bcrypt runs
        stale = current_app.config["APPLY_STALE_SECONDS"]
        with (Heartbeat(lambda: _beat(batch_id), stale / 10, "apply-heartbeat")
              if claim_committed else nullcontext()):
            hashes = {}
            if sealed:
                report(HASHING, 0, len(sealed))
                hashes = hash_file_passwords(
                    sealed, lambda done: report(HASHING, done, len(sealed)))
            report(WRITING, 0, len(rows))
            if not _lock_for_writing(session, batch_id):
                session.rollback()
                log.warning("Batch %s was taken from this worker (its heartbeat stopped for "
                            "%s s); nothing was written", batch_id, stale)
                return None
            result = apply_rows(session, batch, hashes, report)
            # committed with the rows: the batch never says "done" before they are
            batch.progress_stage, batch.progress_done, batch.progress_total = \
                "Done", len(rows), len(rows)
            session.commit()
    except Exception as exc:
        session.rollback()
        if requeue_on_outage and is_outage(exc) and _requeue_after_outage(batch_id, exc):
            return None
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
    """Background job: apply a queued batch, reporting its progress as it goes (the progress
    bar of the result page reads it) in at most PROGRESS_STEPS steps per stage."""
    reported: dict[str, int] = {}

    def progress(stage: str, done: int, total: int) -> None:
        step = max(PROGRESS_EVERY, total // PROGRESS_STEPS)
        if stage not in reported or done - reported[stage] >= step or done == total:
            reported[stage] = done
            _progress(batch_id, stage, done, total)

    try:
        result = apply_batch(batch_id, from_states=(ImportBatch.QUEUED,), progress=progress,
                             requeue_on_outage=True)
    except ApplyError:
        return  # recorded on the batch, which the result page shows
    finally:
        live_progress.clear(batch_id)
    if result is None:  # a second job for the same batch (a re-enqueue after a lost job)
        log.info("Batch %s is not waiting to be applied by this job; nothing to do", batch_id)
    elif result["invitations"] or result["unblocked"]:
        wake()


def recover_stale_batches() -> None:
    """Batches whose job was lost and batches whose worker stopped. A queued batch that no live
    job carries (Redis lost the job, the enqueue failed) is enqueued again a few seconds later;
    a batch being applied whose heartbeat is older than APPLY_STALE_SECONDS is failed — applying
    is one transaction, so nothing was written — and can be submitted again. A batch whose row
    the writing transaction holds is alive whatever its heartbeat says (SKIP LOCKED)."""
    session = db.session
    now = utcnow()
    waiting = session.scalars(select(ImportBatch.id).where(
        ImportBatch.status == ImportBatch.QUEUED,
        ImportBatch.updated_at < now - LOST_JOB_GRACE)).all()
    session.rollback()  # no transaction stays open while the queue is read
    carried = ids_in_live_jobs("apply_batch") if waiting else set()
    for batch_id in waiting if carried is not None else ():
        if batch_id in carried:
            continue
        touched = session.execute(update(ImportBatch).where(
            ImportBatch.id == batch_id, ImportBatch.status == ImportBatch.QUEUED,
            ImportBatch.updated_at < now - LOST_JOB_GRACE)
            .values(updated_at=now).execution_options(synchronize_session=False)).rowcount
        session.commit()
        if touched:  # not already enqueued again by another worker's sweep
            log.warning("Batch %s was in no live job (lost with Redis's data, or the enqueue "
                        "failed); enqueued again", batch_id)
            enqueue("apply_batch", batch_id)
    stale = now - timedelta(seconds=current_app.config["APPLY_STALE_SECONDS"])
    abandoned = (select(ImportBatch.id).where(ImportBatch.status == ImportBatch.APPLYING,
                                              ImportBatch.updated_at < stale)
                 .with_for_update(skip_locked=True))
    dead = session.execute(update(ImportBatch).where(
        ImportBatch.id.in_(abandoned.scalar_subquery()))
        .values(status=ImportBatch.FAILED, progress_stage=None, error=WORKER_STOPPED)
        .execution_options(synchronize_session=False)).rowcount
    session.commit()
    if dead:
        log.warning("%s batch(es) were being applied by a worker that stopped", dead)


def _beat(batch_id: int) -> None:
    """The heartbeat of a batch being applied: its updated_at, unless the writing transaction
    holds its row (SKIP LOCKED: that lock already tells the sweep the worker is alive)."""
    ours = (select(ImportBatch.id).where(ImportBatch.id == batch_id,
                                         ImportBatch.status == ImportBatch.APPLYING)
            .with_for_update(skip_locked=True))
    db.session.execute(update(ImportBatch).where(ImportBatch.id.in_(ours.scalar_subquery()))
                       .values(updated_at=utcnow()).execution_options(synchronize_session=False))
    db.session.commit()


def _lock_for_writing(session, batch_id: int) -> bool:
    """Lock the batch's row for the writing transaction (so that the sweep sees it alive while a
    long write runs) and check that it is still being applied: False if the sweep failed it
    because this worker's heartbeat stopped for too long."""
    status = session.scalar(select(ImportBatch.status).where(ImportBatch.id == batch_id)
                            .with_for_update())
    return status == ImportBatch.APPLYING


def _requeue_after_outage(batch_id: int, exc: Exception) -> bool:
    """Put a batch whose apply met a database or Redis outage back in the queue (nothing was
    written: the transaction did not commit), for the sweep to enqueue again once the part is
    back. Tried again with growing pauses for half of APPLY_STALE_SECONDS (the database may be
    restarting); False if it never worked, and then the stale-batch sweep fails it."""
    timer = clock()
    give_up = timer.monotonic() + current_app.config["APPLY_STALE_SECONDS"] / 2
    pause_seconds = 0.25
    while True:
        try:
            requeued = db.session.execute(update(ImportBatch).where(
                ImportBatch.id == batch_id, ImportBatch.status == ImportBatch.APPLYING)
                .values(status=ImportBatch.QUEUED, progress_stage=WAITING,
                        progress_done=0, updated_at=utcnow())
                .execution_options(synchronize_session=False)).rowcount
            db.session.commit()
        except Exception as again:
            db.session.rollback()
            if not is_outage(again) or timer.monotonic() + pause_seconds >= give_up:
                return False
            timer.sleep(pause_seconds)
            pause_seconds = min(pause_seconds * 2, 5.0)
            continue
        if requeued:
            log.warning("Applying batch %s met an outage (%s: %s); nothing was written, it "
                        "is queued again", batch_id, exc.__class__.__name__, exc)
        return bool(requeued)


def _progress(batch_id: int, stage: str, done: int, total: int) -> None:
    """Report the stage of a background apply: to `live_progress` always, and before the writing
    transaction also on the batch, committed at once (inside it, a commit would split the
    transaction, so its stages are live only)."""
    live_progress.publish(batch_id, live_progress.Stage(stage, done, total))
    if stage in (HASHING, WRITING):
        batch = db.session.get(ImportBatch, batch_id)
        batch.progress_stage, batch.progress_done, batch.progress_total = stage, done, total
        db.session.commit()

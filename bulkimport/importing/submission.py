"""Submitting a reviewed batch and the background job that applies large ones.

These functions own their transactions: they commit, unlike the services they call.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select, update

from ..background import enqueue
from ..extensions import db
from ..mailing.dispatch import wake
from ..models import ImportBatch, utcnow
from .apply import (
    ApplyError,
    NothingSelected,
    apply_rows,
    claim,
    hash_file_passwords,
    needs_background,
    sealed_passwords,
    selected_rows,
)
from .staging import choice_counts

log = logging.getLogger(__name__)

PROGRESS_EVERY = 25
STALE_QUEUED = timedelta(minutes=10)  # no worker took the job: it was lost
STALE_APPLYING = timedelta(minutes=30)  # no progress: the worker died (jobs report every 25 hashes)


def submit_batch(batch: ImportBatch) -> str:
    """Apply `batch` now, or hand it to a background job; returns "applied", "queued", or
    "already" when another request submitted it first. Raises ApplyError with the reason when
    it cannot be applied; then nothing is written and the batch stays open."""
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
    if not claim(session, batch, ImportBatch.APPLYING):
        session.rollback()
        return "already"
    try:
        result = apply_rows(session, batch)
        session.commit()
    except ApplyError:
        session.rollback()
        raise
    except Exception as exc:
        session.rollback()
        log.exception("Applying batch %s failed", batch.id)
        raise ApplyError(f"The database refused the batch ({exc.__class__.__name__}); nothing "
                         "was written.") from exc
    if result["invitations"]:
        wake()
    return "applied"


def apply_batch_job(batch_id: int) -> None:
    """Background job: hash the file's passwords (progress committed as it goes), then apply
    the batch in one transaction; on any failure the batch is marked failed with the reason."""
    session = db.session
    claimed = session.execute(update(ImportBatch).where(
        ImportBatch.id == batch_id, ImportBatch.status == ImportBatch.QUEUED)
        .values(status=ImportBatch.APPLYING, updated_at=utcnow())
        .execution_options(synchronize_session=False)).rowcount
    session.commit()
    if not claimed:  # a second job for the same batch (a re-enqueue after a lost job)
        log.info("Batch %s is not waiting to be applied; nothing to do", batch_id)
        return
    batch = session.get(ImportBatch, batch_id)
    try:
        rows = selected_rows(session, batch.id)
        total, sealed = len(rows), sealed_passwords(rows)
        with_passwords = len(sealed)
        _progress(batch, "Hashing passwords", 0, with_passwords)

        def hashed(done: int) -> None:
            if done % PROGRESS_EVERY == 0:
                _progress(batch, "Hashing passwords", done, with_passwords)

        hashes = hash_file_passwords(sealed, hashed)
        _progress(batch, "Writing users", 0, total)
        result = apply_rows(session, batch, hashes)
        batch.progress_stage, batch.progress_done = "Done", total
        session.commit()
        log.info("Batch %s applied: %s", batch_id, result)
    except Exception as exc:
        session.rollback()
        batch = session.get(ImportBatch, batch_id)
        batch.status = ImportBatch.FAILED
        batch.error = str(exc) if isinstance(exc, ApplyError) else (
            f"Applying failed ({exc.__class__.__name__}); nothing was written.")
        batch.progress_stage = None
        session.commit()
        log.warning("Batch %s failed: %s", batch_id, batch.error)
        return
    if result["invitations"]:
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


def _progress(batch: ImportBatch, stage: str, done: int, total: int) -> None:
    batch.progress_stage, batch.progress_done, batch.progress_total = stage, done, total
    db.session.commit()

"""Big uploads read and checked in the background: the request keeps the file (encrypted) and
answers at once, a job reads, checks and stages it while its progress page shows the stage and
the rows done, and the review opens when it is ready.

Small files stay immediate (staging.stage_upload); both run the same reading and checks.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from flask import current_app

from ..background import enqueue
from ..extensions import db
from ..models import ImportBatch, UploadFile, utcnow
from ..security import seal_file, unseal_file
from .problems import FileProblem
from .staging import UploadOptions, expire_batch, insert_rows, plan_into
from .validation import CHECKING, LOOKING_UP, READING, SAVING

READING_STAGES = (READING, CHECKING, LOOKING_UP, SAVING)  # as the progress page lists them


def reads_in_background(size: int) -> bool:
    """Whether an upload of `size` bytes is read by a job rather than inside the request."""
    limit = current_app.config["BACKGROUND_UPLOAD_KB"]
    return limit > 0 and size >= limit * 1024


def begin_reading(owner_id: int, filename: str, data: bytes, options: UploadOptions) -> int:
    """Keep the file, create its batch in the reading state, commit, and enqueue the job that
    reads it; returns the batch id. The options are stored on the batch, as a review keeps them."""
    config = current_app.config
    now = utcnow()
    batch = ImportBatch(
        owner_id=owner_id, filename=filename[:255] or "upload.csv",
        sha256=hashlib.sha256(data).hexdigest(), size=len(data), created_at=now,
        expires_at=now + timedelta(hours=config["BATCH_TTL_HOURS"]),
        status=ImportBatch.READING, generate_passwords=options.generate_passwords,
        invite_mode=options.invite_mode,
        clear_empty=options.clear_empty, update_passwords=options.update_passwords,
        sheet=options.sheet, encoding=options.encoding or "", delimiter=options.delimiter or "",
        columns=[], counts={}, progress_stage=READING, progress_done=0, progress_total=0,
        notes={"encoding_chosen": options.encoding, "delimiter_chosen": options.delimiter,
               **({"defaults": options.defaults} if options.defaults else {}),
               **({"list_missing": True} if options.list_missing else {})})
    session = db.session
    session.add(batch)
    session.flush()
    session.add(UploadFile(batch_id=batch.id, sealed=seal_file(data, config["SECRET_KEY"])))
    session.commit()
    enqueue("read_upload", batch.id)
    return batch.id


def read_upload_job(batch_id: int) -> None:
    """Job: read, check and stage a batch in the reading state, committing its progress as it
    goes; a file that cannot be used ends the batch as refused, saying why."""
    session = db.session
    batch = session.get(ImportBatch, batch_id)
    if batch is None or batch.status != ImportBatch.READING:
        return  # expired meanwhile, or read already by a job enqueued twice
    stored = session.get(UploadFile, batch_id)
    data = unseal_file(stored.sealed, current_app.config["SECRET_KEY"])
    options = UploadOptions.of_batch(batch)

    def progress(stage: str, done: int, total: int) -> None:
        # committed at once, so that the progress page sees it: through this session, which
        # may hold the batch's row (a second connection would wait for it, and so for itself)
        batch.progress_stage, batch.progress_done, batch.progress_total = stage, done, total
        session.commit()

    try:
        plan = plan_into(session, batch, data, options, progress)
        insert_rows(session, batch, plan, progress)
    except FileProblem as problem:
        session.rollback()
        refuse(batch_id, problem.message)
        return
    except Exception:
        session.rollback()
        refuse(batch_id, "The file could not be read because of an error on the server; "
                         "nothing was staged. Upload it again, or tell your administrator.")
        raise
    batch.status, batch.progress_stage = ImportBatch.STAGED, None
    session.commit()


def refuse(batch_id: int, message: str) -> None:
    """End a reading batch that cannot be staged: its rows and kept file go, its error says
    why, and its page offers to upload again."""
    session = db.session
    batch = session.get(ImportBatch, batch_id)
    if batch is None or batch.status != ImportBatch.READING:
        return
    expire_batch(session, batch)
    batch.status, batch.error, batch.progress_stage = ImportBatch.FAILED, message, None
    batch.notes = {**(batch.notes or {}), "refused": True}
    session.commit()


def has_stalled(batch: ImportBatch) -> bool:
    """Whether a reading batch's job has reported nothing for longer than a job takes between
    two reports (it stopped: the worker died, or no worker runs)."""
    quiet = timedelta(seconds=current_app.config["READING_STALLED_SECONDS"])
    return batch.status == ImportBatch.READING and batch.updated_at < utcnow() - quiet

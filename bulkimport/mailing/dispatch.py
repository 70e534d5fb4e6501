"""Dispatching invitations to the queue: the mail job, `wake`, which enqueues every due
invitation that no job carries, and `requeue_lost`, which finds the ones whose job was lost.

Jobs carry invitation ids only. Retries are not scheduled in Redis: an invitation's
`next_attempt_at` is the schedule (the database is the outbox), and `bulkimport.sweep` calls
`requeue_lost` and `wake` periodically, so that nothing is lost when Redis loses its data, an
enqueue fails, or a job fails because the database was unreachable.
"""

from __future__ import annotations

import logging

from flask import current_app
from sqlalchemy import update

from ..background import LOST_JOB_GRACE, enqueue, ids_in_live_jobs
from ..extensions import db
from ..models import Invitation, utcnow
from .sending import (
    forget_lost_jobs,
    in_the_queue,
    paused_reason,
    send_invitations,
    take_due_for_enqueue,
)

log = logging.getLogger(__name__)


def send_invitations_job(*invitation_ids: int) -> dict[str, int]:
    """RQ job: send these invitations (those still due and free) over one SMTP connection, then
    top up the window of queued work in the fair order."""
    counts = send_invitations(list(invitation_ids))
    try:
        wake()
    except Exception as exc:  # the sweep tops it up too
        db.session.rollback()
        log.warning("Could not top up the mail queue after a job (%s)", exc)
    return counts


def queue_window() -> tuple[int, int]:
    """(invitations that may be handed to the workers ahead of the rest, chunk size). Under a
    send-rate limit, at most `MAIL_QUEUE_AHEAD` wait or are being sent at any time, so that an
    import submitted later waits at most that many e-mails for its turn; without one, enough
    to keep every worker busy."""
    config = current_app.config
    chunk = config["MAIL_CHUNK_SIZE"]
    if config["MAIL_RATE_PER_MINUTE"] <= 0:
        return 4 * chunk, chunk
    ahead = config["MAIL_QUEUE_AHEAD"]
    return ahead, max(1, min(chunk, ahead // 2))


def wake() -> int:
    """Enqueue jobs for due invitations no job carries, in the fair order and within the queue
    window, in chunks; returns how many. Safe to call any time (after an import, a resend, a
    finished job, at every sweep): duplicates cost nothing, because sending claims each
    invitation once. Nothing is enqueued while sending is paused: a job would only hand its
    chunk back, and the job after it wake again, round and round; the sweep and the Resume
    button wake the queue once the relay works."""
    if paused_reason():
        return 0
    window, size = queue_window()
    ids = take_due_for_enqueue(window - in_the_queue(), size)
    for start in range(0, len(ids), size):
        chunk = ids[start:start + size]
        try:
            enqueue("send_invitations", *chunk)
        except Exception as exc:  # the queue is down: the sweep will try again
            log.warning("Could not enqueue invitations (%s); the sweep will retry", exc)
            db.session.execute(update(Invitation).where(Invitation.id.in_(ids[start:]))
                               .values(enqueued_at=None)
                               .execution_options(synchronize_session=False))
            db.session.commit()
            return start
    return len(ids)


def requeue_lost() -> int:
    """Let `wake` enqueue again the due invitations whose job is gone from the queue (Redis lost
    its data, the job failed because the database could not be reached), a few seconds after
    they were enqueued rather than a lease later; returns how many."""
    lost = forget_lost_jobs(lambda: ids_in_live_jobs("send_invitations"),
                            utcnow() - LOST_JOB_GRACE)
    if lost:
        log.warning("%s due invitation(s) were in no live job (lost with Redis's data or a "
                    "failed job); enqueued again", lost)
    return lost

"""The mail jobs and the sweep that keeps the queue in step with the database (the outbox).

Jobs carry invitation ids only. Retries are not scheduled in Redis: an invitation's
`next_attempt_at` is the schedule, and the sweep enqueues whatever is due and carried by no
job, so that nothing is lost when Redis loses its data or an enqueue fails.
"""

from __future__ import annotations

import logging
import threading

from flask import Flask, current_app
from sqlalchemy import update

from ..extensions import db
from ..jobs import enqueue
from ..models import Invitation
from .sending import (
    paused_reason,
    release_expired_leases,
    send_invitations,
    take_due_for_enqueue,
    try_resume,
)

log = logging.getLogger(__name__)


def send_invitations_job(*invitation_ids: int) -> dict[str, int]:
    """RQ job: send these invitations (those still due and free) over one SMTP connection."""
    return send_invitations(list(invitation_ids))


def sweep() -> None:
    """Take back invitations of dead workers, resume sending if the relay works again, and
    enqueue every due invitation that no job carries; recover import batches whose job was
    lost too."""
    from ..importing.jobs import recover_stale_batches  # importing imports this module

    recover_stale_batches()
    released = release_expired_leases()
    if released:
        log.warning("%s invitation(s) were held by a worker that stopped; queued again", released)
    if paused_reason() and not try_resume():
        return
    wake()


def wake() -> int:
    """Enqueue jobs for the due invitations no job carries, in chunks; returns how many. Safe
    to call any time (after an import, a resend, at worker start): duplicates cost nothing,
    because sending claims each invitation once."""
    ids = take_due_for_enqueue()
    size = current_app.config["MAIL_CHUNK_SIZE"]
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


class Sweeper(threading.Thread):
    """A daemon thread that sweeps every MAIL_SWEEP_SECONDS, in workers and in `make run`."""

    def __init__(self, app: Flask):
        super().__init__(name="bulkimport-sweeper", daemon=True)
        self.app = app
        self.stopped = threading.Event()

    def run(self) -> None:
        """Sweep at once, then at every interval until stopped."""
        interval = self.app.config["MAIL_SWEEP_SECONDS"]
        while not self.stopped.is_set():
            with self.app.app_context():
                try:
                    sweep()
                except Exception:
                    log.exception("Sweep failed; trying again in %s s", interval)
                    db.session.rollback()
                finally:
                    db.session.remove()
            self.stopped.wait(interval)


def start_sweeper(app: Flask) -> Sweeper:
    """Start the sweeper of this process once."""
    sweeper = app.extensions.get("bulkimport_sweeper")
    if sweeper is None:
        sweeper = Sweeper(app)
        app.extensions["bulkimport_sweeper"] = sweeper
        sweeper.start()
    return sweeper

"""The periodic sweep that keeps every background part in step with the database: import
batches whose worker stopped or whose job was lost, invitations of dead workers, paused sending,
invitations whose job was lost, and due invitations no job carries.

It lives here, above `importing` and `mailing`, because it calls both; neither calls it.
"""

from __future__ import annotations

import logging
import threading

from flask import Flask

from .background import is_outage
from .clock import clock_of
from .extensions import db
from .importing.submission import recover_stale_batches
from .mailing.dispatch import requeue_lost, wake
from .mailing.sending import paused_reason, release_expired_leases, try_resume

log = logging.getLogger(__name__)


def sweep() -> None:
    """Take back invitations of dead workers, resume sending if the relay works again, and
    enqueue every due invitation that no live job carries; recover import batches whose worker
    stopped or whose job was lost too."""
    recover_stale_batches()
    released = release_expired_leases()
    if released:
        log.warning("%s invitation(s) were held by a worker that stopped; queued again", released)
    if paused_reason():
        resumed = try_resume()
        db.session.commit()
        if not resumed:
            return
    requeue_lost()
    wake()


class Sweeper(threading.Thread):
    """A daemon thread that sweeps every MAIL_SWEEP_SECONDS of the application's clock, in
    workers and in `make run`."""

    def __init__(self, app: Flask):
        super().__init__(name="bulkimport-sweeper", daemon=True)
        self.app = app
        self.stopped = threading.Event()

    def run(self) -> None:
        """Sweep at once, then at every interval until stopped."""
        interval = self.app.config["MAIL_SWEEP_SECONDS"]
        timer = clock_of(self.app)
        while not self.stopped.is_set():
            with self.app.app_context():
                try:
                    sweep()
                except Exception as exc:
                    if is_outage(exc):  # one line each time, not a traceback per interval
                        log.warning("Sweep failed: %s (%s); trying again in %s s",
                                    exc.__class__.__name__, (str(exc).splitlines() or [""])[0],
                                    interval)
                    else:
                        log.exception("Sweep failed; trying again in %s s", interval)
                    db.session.rollback()
                finally:
                    db.session.remove()
            timer.wait(self.stopped, interval)


def start_sweeper(app: Flask) -> Sweeper:
    """Start the sweeper of this process once."""
    sweeper = app.extensions.get("bulkimport_sweeper")
    if sweeper is None:
        sweeper = Sweeper(app)
        app.extensions["bulkimport_sweeper"] = sweeper
        sweeper.start()
    return sweeper

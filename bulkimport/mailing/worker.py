"""The RQ worker class of `make worker`: runs jobs in its own process (no fork per job, which
drains far more e-mails per second) inside the application, and sweeps in the background.

Start it as `rq worker -w bulkimport.mailing.worker.MailWorker --serializer
rq.serializers.JSONSerializer mail imports`; any number may run on any number of machines.
"""

from __future__ import annotations

from rq.worker import SimpleWorker

from .. import jobs
from .jobs import start_sweeper


class MailWorker(SimpleWorker):
    """A SimpleWorker that builds the application once and starts the sweeper."""

    def work(self, *args, **kwargs):
        """Sweep at start-up (and every MAIL_SWEEP_SECONDS), then work as RQ does."""
        start_sweeper(jobs.worker_app())
        return super().work(*args, **kwargs)

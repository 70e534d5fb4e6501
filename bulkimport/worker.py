"""The RQ worker class of `make worker` (the worker entry point): runs mail and import jobs in
its own process (no fork per job, which drains far more e-mails per second) inside the
application, and sweeps in the background.

Start it as `rq worker -w bulkimport.worker.Worker --serializer
rq.serializers.JSONSerializer mail imports`; any number may run on any number of machines.
"""

from __future__ import annotations

from rq.worker import SimpleWorker

from . import background
from .sweep import start_sweeper


class Worker(SimpleWorker):
    """A SimpleWorker that builds the application once and starts the sweeper."""

    def work(self, *args, **kwargs):
        """Sweep at start-up (and every MAIL_SWEEP_SECONDS), then work as RQ does."""
        start_sweeper(background.worker_app())
        return super().work(*args, **kwargs)

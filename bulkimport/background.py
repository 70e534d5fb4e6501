"""Background jobs: on RQ when `BULKIMPORT_REDIS_URL` is set, else on in-process threads.

Jobs are named functions that take ids only (never objects, never secrets) and are serialized
as JSON; each runs inside an application context and reloads what it needs from the database.
"""

from __future__ import annotations

import importlib
import logging
from concurrent.futures import ThreadPoolExecutor

from flask import Flask, current_app

log = logging.getLogger(__name__)

# Job name → (queue, "module:function"). Names, not callables, so that the queue holds no code.
JOBS = {
    "apply_batch": ("imports", "bulkimport.importing.submission:apply_batch_job"),
    "read_upload": ("imports", "bulkimport.importing.reading:read_upload_job"),
    "send_invitations": ("mail", "bulkimport.mailing.dispatch:send_invitations_job"),
}
JOB_TIMEOUT = 4 * 3600  # a 100,000-row batch with file passwords hashes for a long while
FAILURE_TTL = 7 * 24 * 3600  # RQ keeps failed jobs for a year unless told otherwise

_worker_app: Flask | None = None


def enqueue(name: str, *ids: int) -> None:
    """Run job `name` with `ids` in the background: on RQ if configured, else on a thread."""
    app = current_app._get_current_object()
    queue_name, _ = JOBS[name]
    if app.config["REDIS_URL"]:
        from rq import Queue
        from rq.serializers import JSONSerializer

        queue = Queue(queue_name, connection=redis_connection(app), serializer=JSONSerializer)
        queue.enqueue("bulkimport.background.run", name, *ids, job_timeout=JOB_TIMEOUT,
                      failure_ttl=FAILURE_TTL, result_ttl=3600)
        return
    log.info("No Redis configured: running job %s%s in-process in the background", name, ids)
    executor = app.extensions.setdefault(
        "bulkimport_jobs", ThreadPoolExecutor(max_workers=2, thread_name_prefix="bulkimport-job"))
    futures = app.extensions.setdefault("bulkimport_futures", [])
    futures[:] = [f for f in futures if not f.done()]  # keep only what may still be awaited
    futures.append(executor.submit(_run_in, app, name, ids))


def redis_connection(app: Flask):
    """One Redis client per application, created on first use."""
    if "bulkimport_redis" not in app.extensions:
        from redis import Redis

        app.extensions["bulkimport_redis"] = Redis.from_url(app.config["REDIS_URL"])
    return app.extensions["bulkimport_redis"]


def worker_app() -> Flask:
    """The application of this worker process, built once from its environment."""
    global _worker_app
    if _worker_app is None:
        from . import create_app

        _worker_app = create_app()
    return _worker_app


def run(name: str, *ids: int) -> None:
    """RQ entry point: run job `name` inside the worker's application context."""
    _run_in(worker_app(), name, ids)


def _run_in(app: Flask, name: str, ids: tuple[int, ...]) -> None:
    module, function = JOBS[name][1].split(":")
    target = getattr(importlib.import_module(module), function)
    with app.app_context():
        try:
            target(*ids)
        except Exception:
            log.exception("Job %s%s failed", name, ids[:10])
            raise
        finally:
            from .extensions import db

            db.session.remove()

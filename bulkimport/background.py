"""Background jobs: on RQ when `BULKIMPORT_REDIS_URL` is set, else on in-process threads.

Jobs are named functions that take ids only (never objects, never secrets) and are serialized
as JSON; each runs inside an application context and reloads what it needs from the database.
Besides running them, this module tells which ids the live jobs still carry (so that the sweep
finds a lost job in seconds), keeps a job's heartbeat, and tells an outage of the database or
Redis from a fault of the work itself.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from flask import Flask, current_app

from .clock import clock_of, utcnow

log = logging.getLogger(__name__)

# Job name → (queue, "module:function"). Names, not callables, so that the queue holds no code.
JOBS = {
    "apply_batch": ("imports", "bulkimport.importing.submission:apply_batch_job"),
    "read_upload": ("imports", "bulkimport.importing.reading:read_upload_job"),
    "send_invitations": ("mail", "bulkimport.mailing.dispatch:send_invitations_job"),
}
JOB_TIMEOUT = 4 * 3600  # a 100,000-row batch with file passwords hashes for a long while
FAILURE_TTL = 7 * 24 * 3600  # RQ keeps failed jobs for a year unless told otherwise
# A job is recorded as enqueued (committed) just before it reaches the queue, and a worker takes
# it from the queue just before it records the claim: work younger than this is not yet looked
# for in the queue, so that those few milliseconds never count as a lost job.
LOST_JOB_GRACE = timedelta(seconds=5)
DISCONNECTED_STATES = {"57P01", "57P02", "57P03"}  # admin shutdown, crash, cannot connect now
HEARTBEAT_JOIN_SECONDS = 5.0  # a beat stuck on a lock does not hold up the job that ends

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
    future = executor.submit(_run_in, app, name, ids)
    future.job = (name, ids)  # what `ids_in_live_jobs` reads
    futures.append(future)


def ids_in_live_jobs(name: str) -> set[int] | None:
    """The ids that jobs `name` will still act on: jobs waiting in RQ's queue (or being taken
    from it) and jobs started less than LOST_JOB_GRACE ago, which claim their work at once — or,
    without Redis, this process's unfinished jobs. None when the queue cannot be read. Work that
    is due, recorded as enqueued, and carried by none of these was lost (Redis lost its data, the
    job failed while the database was unreachable) and may be enqueued again."""
    app = current_app._get_current_object()
    if not app.config["REDIS_URL"]:
        return {i for future in app.extensions.get("bulkimport_futures", [])
                if not future.done() and future.job[0] == name for i in future.job[1]}
    from redis.exceptions import RedisError
    from rq import Queue
    from rq.job import Job
    from rq.registry import StartedJobRegistry
    from rq.serializers import JSONSerializer


    connection = redis_connection(app)
    queue = Queue(JOBS[name][0], connection=connection, serializer=JSONSerializer)
    try:
        waiting = queue.get_job_ids() + [
            job_id.decode() for job_id in connection.lrange(queue.intermediate_queue_key, 0, -1)]
        started = StartedJobRegistry(queue=queue).get_job_ids(cleanup=False)
        jobs = []
        for start in range(0, len(waiting) + len(started), 1000):
            jobs += Job.fetch_many((waiting + started)[start:start + 1000], connection,
                                   serializer=JSONSerializer)
    except RedisError as exc:
        log.warning("Cannot read the %s queue (%s); lost jobs are looked for later",
                    JOBS[name][0], exc)
        return None
    recent = utcnow() - LOST_JOB_GRACE
    carried: set[int] = set()
    for job in jobs:
        if job is None or (job.id in started and job.started_at is not None
                           and job.started_at.replace(tzinfo=None) < recent):
            continue  # gone, or started long enough ago to have claimed what it could
        try:
            job_name, *ids = job.args
        except Exception:  # a payload this version cannot read carries nothing of ours
            continue
        if job_name == name:
            carried.update(ids)
    return carried


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


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` says that the database or Redis could not be reached or dropped the
    connection (a restart, a network cut, an administrator ending the session), rather than that
    the work itself is at fault: such work is handed back at once, due again shortly, instead of
    waiting for a lease or a heartbeat to run out. A query the server refused (a timeout, a
    deadlock, a constraint) is not an outage."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError | InterfaceError):
        return False
    # psycopg: no SQLSTATE when libpq lost or never got the connection; class 08 is a connection
    # exception; 57P01-57P03 are the server shutting down or starting up.
    sqlstate = getattr(exc.orig, "sqlstate", "")
    return sqlstate is None or sqlstate.startswith("08") or sqlstate in DISCONNECTED_STATES


class Heartbeat:
    """Calls `beat` every `interval` seconds of the application's clock on a thread of its own
    (with its own application context, so its own database session) for as long as a job works,
    also while the job waits on an SMTP server or sleeps under the send-rate limit. The lease or
    timestamp it renews is how the sweep tells a live worker from a dead one; a failed beat is
    logged and tried again at the next interval."""

    def __init__(self, beat: Callable[[], None], interval: float, name: str = "heartbeat"):
        self.app = current_app._get_current_object()
        self.beat, self.interval = beat, interval
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"bulkimport-{name}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stopped.set()
        self.thread.join(HEARTBEAT_JOIN_SECONDS)

    def _run(self) -> None:
        from .extensions import db

        timer = clock_of(self.app)
        while not timer.wait(self.stopped, self.interval):
            with self.app.app_context():
                try:
                    self.beat()
                except Exception as exc:
                    log.warning("%s failed (%s: %s); trying again in %s s", self.thread.name,
                                exc.__class__.__name__, exc, self.interval)
                    db.session.rollback()
                finally:
                    db.session.remove()


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

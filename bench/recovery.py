"""`python -m bench.recovery`: how long recovery takes with the default settings (issue 17,
point 7), on PostgreSQL and Redis, with real `Worker` processes and a local SMTP sink.

Four faults, each on fresh data, each timed from the fault to the recovery:

- kill: a worker is killed with SIGKILL with 13 invitations of its chunk of 50 unsent (a second
  worker is idle beside it); until the last of them is sent.
- flush: Redis is flushed (FLUSHDB) while 2 workers send 300 invitations; until all are sent.
- outage: PostgreSQL is unreachable for 2.5 s (the workers reach it through a TCP proxy that is
  cut, bench/tcpproxy.py) while 2 workers send 300 invitations; from the cut until all are sent.
- apply: the worker applying a 10,000-row batch is killed with SIGKILL while it writes (a second
  worker is idle beside it); until the batch is failed ("nothing was written; submit again").

The settings are the defaults (MAIL_LEASE_SECONDS, MAIL_SWEEP_SECONDS, APPLY_STALE_SECONDS as
configured) except the throttle off and bcrypt cost 4 (12, the default, in the kill, so that the
chunk takes long enough to be killed in), so that sending the rest is quick and the figure is
the recovery itself. It needs BULKIMPORT_BENCH_DATABASE_URL (a PostgreSQL server where
it may create and drop `bulkimport_recovery`) and Redis (BULKIMPORT_BENCH_REDIS_URL, default
database 14, flushed). `--only kill,apply` runs some of them.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, delete, func, select, text, update
from sqlalchemy.engine import make_url

from bulkimport import create_app
from bulkimport.accounts import create_admin
from bulkimport.config import SETTINGS
from bulkimport.extensions import db
from bulkimport.importing.apply import claim
from bulkimport.importing.staging import UploadOptions, save_choices, stage_upload
from bulkimport.models import AuditEvent, ImportBatch, ImportRow, Invitation, User

from .environment import ENV_URL, PROJECT, SECRET_KEY
from .generate import make_csv
from .mail import Sink, check_redis, redis_url, seed_invitations
from .tcpproxy import TCPProxy

DATABASE = "bulkimport_recovery"
FAULTS = ("kill", "flush", "outage", "apply")
LIMIT_SECONDS = 1800.0  # give up on a recovery after this long (the old apply took 30 min)
POLL_SECONDS = 0.02
DEFAULTS = {s.name: s.default for s in SETTINGS}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The options: which faults to run."""
    parser = argparse.ArgumentParser(prog="python -m bench.recovery", description=__doc__)
    parser.add_argument("--only", default=",".join(FAULTS),
                        help=f"comma-separated faults to run ({', '.join(FAULTS)})")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the faults and print the recovery time of each."""
    args = parse_args(argv)
    faults = [f.strip() for f in args.only.split(",") if f.strip()]
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown:
        raise SystemExit(f"Unknown faults: {', '.join(unknown)}")
    check_redis()
    results = {}
    with recovery_database() as url:
        for fault in faults:
            results[fault] = RUNS[fault](url)
            print(f"{fault}: recovered after {results[fault]:.1f} s", flush=True)
    print()
    print(f"Recovery with the defaults: MAIL_LEASE_SECONDS={DEFAULTS['MAIL_LEASE_SECONDS']:g}, "
          f"MAIL_SWEEP_SECONDS={DEFAULTS['MAIL_SWEEP_SECONDS']:g}, "
          f"APPLY_STALE_SECONDS={DEFAULTS.get('APPLY_STALE_SECONDS', '(none)')} (throttle "
          "off; bcrypt cost 12 in the kill, 4 elsewhere)")
    for fault, seconds in results.items():
        print(f"  {DESCRIPTIONS[fault]:<72} {seconds:7.1f} s")
    return 0


DESCRIPTIONS = {
    "kill": "SIGKILL of a worker holding 13 invitations -> the last of them sent",
    "flush": "FLUSHDB while 2 workers send 300 invitations -> all sent",
    "outage": "PostgreSQL unreachable for 2.5 s, 300 invitations -> all sent",
    "apply": "SIGKILL of the worker writing a 10,000-row batch -> batch failed",
}


@contextmanager
def recovery_database():
    """Yield the URL of a migrated, empty database of our own, dropped at the end."""
    server = os.environ.get(ENV_URL, "").strip()
    if not server or not make_url(server).get_backend_name().startswith("postgresql"):
        raise SystemExit(f"{ENV_URL} must name a PostgreSQL server")
    maintenance = create_engine(make_url(server).set(database="postgres"),
                                isolation_level="AUTOCOMMIT")
    with maintenance.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{DATABASE}"'))
    url = make_url(server).set(database=DATABASE).render_as_string(hide_password=False)
    try:
        app = make_app(url)
        with app.app_context():
            from flask_migrate import upgrade

            upgrade()
            db.engine.dispose()
        yield url
    finally:
        with maintenance.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))
        maintenance.dispose()


def make_app(url: str):
    """The measuring process's application: it enqueues and reads, it does not sweep."""
    return create_app({"DATABASE_URL": url, "SECRET_KEY": SECRET_KEY, "REDIS_URL": redis_url(),
                       "TESTING": True, "LOG_LEVEL": "WARNING", "BCRYPT_ROUNDS": 4})


class Workers:
    """Worker processes with the default settings (bcrypt cost 4, throttle off), their logs
    in a temporary directory; all stopped at the end."""

    def __init__(self, url: str, sink: Sink):
        self.url, self.sink = url, sink
        self.logs = Path(tempfile.mkdtemp(prefix="bulkimport-recovery-"))
        self.processes: list[subprocess.Popen] = []

    def start(self, name: str, database_url: str | None = None,
              rounds: int = 4) -> subprocess.Popen:
        """One `rq worker -w bulkimport.worker.Worker`, as the README starts it, hashing at
        bcrypt cost `rounds`."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("BULKIMPORT_")}
        env.update({"BULKIMPORT_DATABASE_URL": database_url or self.url,
                    "BULKIMPORT_REDIS_URL": redis_url(), "BULKIMPORT_SECRET_KEY": SECRET_KEY,
                    "BULKIMPORT_MAIL_SERVER": "127.0.0.1",
                    "BULKIMPORT_MAIL_PORT": str(self.sink.port),
                    "BULKIMPORT_MAIL_RATE_PER_MINUTE": "0",
                    "BULKIMPORT_BCRYPT_ROUNDS": str(rounds)})
        log = open(self.logs / f"{name}.log", "w")  # noqa: SIM115  (closed with the process)
        process = subprocess.Popen(
            [sys.executable, "-m", "rq.cli", "worker", "-w", "bulkimport.worker.Worker",
             "--url", redis_url(), "--serializer", "rq.serializers.JSONSerializer",
             "--name", f"recovery-{name}-{os.getpid()}-{time.monotonic_ns()}", "mail",
             "imports"], cwd=PROJECT, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process

    def wait_idle(self, count: int) -> None:
        """Wait until `count` workers are registered and idle, and their first sweep is over."""
        from redis import Redis
        from rq import Worker

        redis = Redis.from_url(redis_url())
        deadline = time.monotonic() + 120
        while sum(w.get_state() == "idle" for w in Worker.all(connection=redis)) < count:
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.processes):
                raise SystemExit(f"The workers did not start (logs in {self.logs})")
            time.sleep(0.1)
        time.sleep(1.0)

    def stop(self) -> None:
        """Stop every worker still running."""
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def fresh(url: str):
    """(app, workers, sink) on empty tables and a flushed Redis; everything stopped after."""
    from redis import Redis

    redis = Redis.from_url(redis_url())
    redis.flushdb()
    app = make_app(url)
    with app.app_context():
        for model in (AuditEvent, Invitation, ImportRow, ImportBatch, User):
            db.session.execute(delete(model))
        db.session.commit()
    with Sink() as sink:
        workers = Workers(url, sink)
        try:
            yield app, workers, sink
        finally:
            workers.stop()
            with app.app_context():
                db.session.remove()
                db.engine.dispose()
            redis.flushdb()


def wait_for(condition, what: str, limit: float = LIMIT_SECONDS) -> float:
    """Poll `condition` until it holds; returns when (time.monotonic())."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"Gave up waiting for {what} after {limit:.0f} s")
        time.sleep(POLL_SECONDS)
    return time.monotonic()


def statuses(app, ids=None) -> dict[str, int]:
    """Invitations per status (of `ids`, or all)."""
    with app.app_context():
        query = select(Invitation.status, func.count()).group_by(Invitation.status)
        if ids is not None:
            query = query.where(Invitation.id.in_(ids))
        found = dict(db.session.execute(query).all())
        db.session.remove()
        return found


def invite(app, n: int) -> None:
    """Seed `n` users with a queued invitation each and enqueue their jobs."""
    from bulkimport.mailing.dispatch import wake

    with app.app_context():
        seed_invitations(n)
        wake()
        db.session.remove()


def run_kill(url: str) -> float:
    """A worker is killed with 13 invitations of its chunk of 50 left, as in the issue's run;
    until the last of them is sent. Both workers hash at cost 12 (the default), so that the
    chunk takes long enough to be killed in."""
    with fresh(url) as (app, workers, sink):
        doomed = workers.start("doomed", rounds=12)
        workers.wait_idle(1)
        invite(app, 50)
        wait_for(lambda: sink.accepted >= 2, "a first e-mail")
        workers.start("survivor", rounds=12)
        workers.wait_idle(1)  # idle: the doomed one holds all 50
        wait_for(lambda: sink.accepted >= 37, "37 e-mails")
        doomed.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        doomed.wait()
        with app.app_context():
            held = list(db.session.scalars(select(Invitation.id).where(
                Invitation.status == Invitation.SENDING)))
            db.session.remove()
        if not held:
            raise SystemExit("The worker had sent its whole chunk when it was killed")
        print(f"kill: the killed worker held {len(held)} invitations", flush=True)
        done = wait_for(lambda: statuses(app, held) == {"sent": len(held)},
                        "the held invitations")
        return done - killed


def run_flush(url: str) -> float:
    """Redis is flushed while 2 workers send 300 invitations; until all are sent."""
    from redis import Redis

    with fresh(url) as (app, workers, sink):
        workers.start("one")
        workers.start("two")
        workers.wait_idle(2)
        invite(app, 300)
        wait_for(lambda: sink.accepted >= 20, "a few e-mails")
        Redis.from_url(redis_url()).flushdb()
        flushed = time.monotonic()
        print(f"flush: {statuses(app)} at the flush", flush=True)
        done = wait_for(lambda: statuses(app) == {"sent": 300}, "every invitation")
        return done - flushed


def run_outage(url: str) -> float:
    """PostgreSQL is unreachable for 2.5 s while 2 workers send 300 invitations; from the cut
    until all are sent."""
    direct = make_url(url)
    with fresh(url) as (app, workers, sink), \
            TCPProxy(direct.host or "127.0.0.1", direct.port or 5432) as proxy:
        through = direct.set(host="127.0.0.1", port=proxy.port).render_as_string(
            hide_password=False)
        workers.start("one", through)
        workers.start("two", through)
        workers.wait_idle(2)
        invite(app, 300)
        wait_for(lambda: sink.accepted >= 20, "a few e-mails")
        proxy.cut()
        cut = time.monotonic()
        time.sleep(2.5)
        proxy.restore()
        print(f"outage: {statuses(app)} when the database came back", flush=True)
        done = wait_for(lambda: statuses(app) == {"sent": 300}, "every invitation")
        return done - cut


def run_apply(url: str) -> float:
    """The worker writing a 10,000-row batch is killed; until the batch is failed."""
    from bulkimport.background import enqueue

    with fresh(url) as (app, workers, sink):
        with app.app_context():
            owner = create_admin(db.session, "recovery", "recovery@example.com",
                                 "bench-admin-password")
            batch = stage_upload(db.session, owner.id, "recovery.csv",
                                 make_csv(10_000, start=80_000_000),
                                 UploadOptions(generate_passwords=True))
            db.session.commit()
            save_choices(db.session, batch, {"add": (False, True)}, [])
            claim(db.session, batch, ImportBatch.QUEUED)
            db.session.commit()
            batch_id = batch.id
            db.session.remove()
        doomed = workers.start("doomed")
        workers.wait_idle(1)

        def stage() -> str | None:
            with app.app_context():
                found = db.session.scalar(select(ImportBatch.progress_stage).where(
                    ImportBatch.id == batch_id))
                db.session.remove()
                return found

        with app.app_context():
            enqueue("apply_batch", batch_id)
        wait_for(lambda: stage() == "Writing users", "the writing", limit=120)
        doomed.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        workers.start("survivor")  # it sweeps; the batch's heartbeat decides, not its start
        doomed.wait()

        def failed() -> bool:
            with app.app_context():
                found = db.session.get(ImportBatch, batch_id)
                result = found.status == ImportBatch.FAILED
                if found.status == ImportBatch.APPLIED:
                    raise SystemExit("The batch was applied before the kill; try again")
                db.session.remove()
                return result

        done = wait_for(failed, "the batch to be failed")
        with app.app_context():
            users = db.session.scalar(select(func.count(User.id)))
            db.session.execute(update(ImportBatch).values(status=ImportBatch.EXPIRED))
            db.session.commit()
            db.session.remove()
        print(f"apply: {users - 1} users written (the administrator aside)", flush=True)
        return done - killed


RUNS = {"kill": run_kill, "flush": run_flush, "outage": run_outage, "apply": run_apply}


if __name__ == "__main__":
    sys.exit(main())

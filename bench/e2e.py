"""The end-to-end run on PostgreSQL (`make bench-e2e`): a 100,000-row file uploaded and staged,
its first review page, Add for all, the background apply by an RQ worker with its progress, and
the 100,000 invitations sent by 2 `Worker` processes to a local SMTP sink, throttle off.
Each stage is shown beside its raw floor, measured in the same run, with the peak memory of each
process.

bcrypt runs at cost 4 unless `--bcrypt-rounds` says otherwise: at cost 12 the hashing alone of
100,000 passwords takes about 3 hours on 2 cores, which the mail stage of `make bench` already
measures at cost 12 for 2,000 invitations.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import delete, func, insert, select

from bulkimport import create_app
from bulkimport.accounts import create_admin
from bulkimport.extensions import db
from bulkimport.importing.staging import UploadOptions, rows_query, save_choices, stage_upload
from bulkimport.importing.submission import submit_batch
from bulkimport.models import ImportBatch, Invitation, User

from .__main__ import raw_review_floor
from .environment import ENV_URL, SECRET_KEY, bench_database
from .generate import make_csv, user_record
from .mail import (
    CHUNK_SIZE,
    MailResult,
    Sink,
    _start_worker,
    _stop_workers,
    _wait_for_workers,
    check_redis,
    hash_seconds,
    measure_floor,
    redis_url,
)

FILE_START = 50_000_000  # person numbers of the file, far from every other stage's
FLOOR_START = 60_000_000
POLL_SECONDS = 0.1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The options: rows of the file and bcrypt cost."""
    parser = argparse.ArgumentParser(prog="python -m bench.e2e", description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the file")
    parser.add_argument("--bcrypt-rounds", type=int, default=4, help="bcrypt cost (default 4)")
    return parser.parse_args(argv)


def peak_mib(pid: int | None = None) -> float:
    """Peak resident memory of a process (VmHWM), or of this one, in MiB."""
    if pid is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main(argv: list[str] | None = None) -> int:
    """Run every stage once and print the table."""
    args = parse_args(argv)
    if not os.environ.get(ENV_URL, "").startswith("postgresql"):
        raise SystemExit(f"The end-to-end run is on PostgreSQL: set {ENV_URL}, e.g. "
                         "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    check_redis()
    from redis import Redis

    redis = Redis.from_url(redis_url())
    redis.flushdb()
    data = make_csv(args.rows, FILE_START, extra_columns=False)
    with bench_database() as (url, description), Sink() as sink, \
            tempfile.TemporaryDirectory(prefix="bulkimport-e2e-") as tmp:
        print(f"End-to-end: {args.rows:,} rows ({len(data) / 2**20:.1f} MiB), bcrypt cost "
              f"{args.bcrypt_rounds}, {description}", flush=True)
        config = {"DATABASE_URL": url, "SECRET_KEY": SECRET_KEY, "REDIS_URL": redis_url(),
                  "BCRYPT_ROUNDS": args.bcrypt_rounds, "MAIL_CHUNK_SIZE": CHUNK_SIZE,
                  "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": sink.port,
                  "MAIL_RATE_PER_MINUTE": 0, "BACKGROUND_ROWS": 500, "TESTING": True,
                  "LOG_LEVEL": "WARNING"}
        app = create_app(config)
        with app.app_context():
            from flask_migrate import upgrade

            upgrade()
            owner_id = create_admin(db.session, "bench", "bench@example.com",
                                    "an-e2e-admin-password").id
            db.session.commit()
        env = {k: v for k, v in os.environ.items() if not k.startswith("BULKIMPORT_")}
        env.update({f"BULKIMPORT_{k}": str(v) for k, v in config.items()
                    if k not in ("TESTING",)})
        workers = [_start_worker(n, env, Path(tmp)) for n in range(2)]
        try:
            _wait_for_workers(redis, workers)
            base_mib = peak_mib()
            figures = run_stages(app, owner_id, data, sink, workers)
            figures["web peak"] = peak_mib() - base_mib
            figures["worker peaks"] = [peak_mib(p.pid) for p in workers]
        finally:
            _stop_workers(workers)
        print(f"ours: {figures}", flush=True)  # kept even if a floor fails
        floors = measure_floors(app, data, args, sink)
    redis.flushdb()
    print_table(args, figures, floors)
    return 0


def run_stages(app, owner_id: int, data: bytes, sink: Sink, workers) -> dict:
    """Upload, review, choose, submit, then wait for the apply and for every invitation."""
    figures: dict = {}
    with app.app_context():
        started = time.perf_counter()
        batch = stage_upload(db.session, owner_id, "e2e.csv", data,
                             UploadOptions(generate_passwords=True))
        db.session.commit()
        figures["upload"] = time.perf_counter() - started
        started = time.perf_counter()
        page = db.paginate(rows_query(batch.id, "all"), page=1, per_page=100, error_out=False)
        assert len(page.items) == 100
        figures["review page"] = time.perf_counter() - started
        save_choices(db.session, batch, {"add": (False, True)}, [])
        db.session.commit()
        accepted_before = sink.accepted
        started = time.perf_counter()
        assert submit_batch(batch) == "queued"
        progress: set[tuple[str | None, int]] = set()
        while True:
            time.sleep(POLL_SECONDS)
            state = db.session.execute(select(ImportBatch.status, ImportBatch.progress_stage,
                                              ImportBatch.progress_done)
                                       .where(ImportBatch.id == batch.id)).one()
            db.session.commit()
            progress.add((state.progress_stage, state.progress_done))
            if state.status == ImportBatch.APPLIED:
                break
            if state.status == ImportBatch.FAILED or any(p.poll() is not None for p in workers):
                raise SystemExit(f"The apply failed: {state}")
        figures["apply"] = time.perf_counter() - started
        figures["progress states"] = len(progress)
        applied_at = time.perf_counter()
        total = len(data.splitlines()) - 1
        last_report = applied_at
        while True:
            time.sleep(POLL_SECONDS)
            counts = dict(db.session.execute(select(Invitation.status, func.count())
                                             .group_by(Invitation.status)).all())
            db.session.commit()
            if counts.get(Invitation.FAILED):
                raise SystemExit(f"Invitations failed: {counts}")
            if counts.get(Invitation.SENT, 0) == total:
                break
            if time.perf_counter() - last_report > 60:
                print(f"  mail: {counts} after {time.perf_counter() - applied_at:.0f} s",
                      flush=True)
                last_report = time.perf_counter()
        figures["mail"] = time.perf_counter() - applied_at
        figures["accepted"] = sink.accepted - accepted_before
        figures["users"] = db.session.scalar(select(func.count(User.id)))
        db.session.remove()
    return figures


def measure_floors(app, data: bytes, args, sink: Sink) -> dict:
    """The raw floors: parsing and checking the file; one bulk INSERT of the users; sending the
    e-mails with plain bcrypt + smtplib on 2 processes."""
    floors = {}
    started = time.perf_counter()
    raw_review_floor(data)
    floors["upload"] = time.perf_counter() - started
    n = len(data.splitlines()) - 1
    records = [user_record(FLOOR_START + i) for i in range(n)]
    with app.app_context():
        last_id = db.session.scalar(select(func.max(User.id)))
        started = time.perf_counter()
        db.session.execute(insert(User).execution_options(render_nulls=True), records)
        db.session.commit()
        floors["apply"] = time.perf_counter() - started
        db.session.execute(delete(User).where(User.id > last_id))
        db.session.commit()
        db.session.remove()
    result = MailResult(n, args.bcrypt_rounds, hash_seconds=hash_seconds(args.bcrypt_rounds))
    measure_floor(result, sink)
    floors["mail"] = result.floor
    return floors


def print_table(args, figures: dict, floors: dict) -> None:
    """The stages, their floors and ratios, then the memory and the checks."""
    print()
    print("stage                                    | ours      | raw floor | ratio")
    print("-----------------------------------------|-----------|-----------|------")
    for key, label in (("upload", f"upload + stage {args.rows:,} rows"),
                       ("apply", "apply in the background (RQ worker)"),
                       ("mail", f"{args.rows:,} invitations, 2 workers")):
        print(f"{label:<41}| {figures[key]:8.1f} s | {floors[key]:8.1f} s | "
              f"{figures[key] / floors[key]:.2f}")
    print(f"first review page (100 rows): {figures['review page'] * 1000:.0f} ms; progress bar "
          f"states seen while applying: {figures['progress states']}")
    print(f"peak memory: web/staging process +{figures['web peak']:.0f} MiB; workers "
          + ", ".join(f"{m:.0f} MiB" for m in figures["worker peaks"]))
    print(f"checks: {figures['users']:,} users in the database, the sink accepted "
          f"{figures['accepted']:,} invitation e-mails")


if __name__ == "__main__":
    sys.exit(main())

"""The mail stage: N invitations sent by 2 real RQ worker processes (`Worker`) to a local
SMTP sink with the throttle off, beside the raw floor measured in the same run; once with
generated passwords and once with links to choose one.

The floor is what sending N invitations cannot avoid: on 2 processes, each taking half of the
addresses, a password from `secrets` and `bcrypt.hashpw` at the same cost (in link mode a token
from `secrets` and its SHA-256, no bcrypt) and a simple `EmailMessage` sent with plain `smtplib`
over one reused connection per process. Both send to the same sink, an aiosmtpd server in a
process of its own that only counts what it accepts.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import queue
import secrets
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from sqlalchemy import func, insert, select

from bulkimport import create_app
from bulkimport.extensions import db
from bulkimport.models import Invitation, InviteMode, User, utcnow
from bulkimport.security import PASSWORD_ALPHABET

from .environment import PROJECT, SECRET_KEY
from .generate import user_record

REDIS_URL_ENV = "BULKIMPORT_BENCH_REDIS_URL"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"  # flushed before and after the stage
WORKERS = 2
CHUNK_SIZE = 50  # MAIL_CHUNK_SIZE, the default: invitations per job and per SMTP connection
POLL_SECONDS = 0.1
STALL_SECONDS = 120.0  # no invitation sent for this long: give up and show the workers' logs
MAIL_BASE = 40_000_000  # person numbers of the invited users, far from the other stages'
SPAWN = multiprocessing.get_context("spawn")  # children inherit no connection or engine


@dataclass
class MailResult:
    """The figures of the mail stage: ours and the floor in seconds, and what explains them."""

    invitations: int
    rounds: int
    hash_seconds: float
    mode: InviteMode = InviteMode.PASSWORD
    ours: float = 0.0
    floor: float = 0.0
    ours_cpu: float = 0.0
    floor_cpu: float = 0.0
    parts: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """Ours divided by the floor."""
        return self.ours / self.floor

    @property
    def links(self) -> bool:
        """Whether the invitations carry links (no bcrypt on either side)."""
        return self.mode == InviteMode.LINK

    @property
    def person_base(self) -> int:
        """The person number of the first invited user: each mode invites users of its own."""
        return MAIL_BASE + (5_000_000 if self.links else 0)

    @property
    def estimate(self) -> float:
        """Seconds a side should take if hashing were all there is to it."""
        return 0.0 if self.links else self.invitations * self.hash_seconds / WORKERS

    def summary(self) -> str:
        """The paragraph printed under the table: rates, what each side does, CPU, checks."""
        n = self.invitations
        parts = ", ".join(f"{k} after {v:.2f} s" for k, v in self.parts.items())
        what = ("links to choose a password: a secrets token and its SHA-256, no bcrypt"
                if self.links else
                f"bcrypt cost {self.rounds} ({1000 * self.hash_seconds:.0f} ms a hash here, so "
                f"{self.estimate:.1f} s of hashing a side on {WORKERS} cores)")
        secret = "a secrets token and its SHA-256" if self.links else \
            "a secrets password, bcrypt.hashpw"
        return (
            f"mail, {self.mode.value} mode: {what}, throttle off "
            f"(MAIL_RATE_PER_MINUTE=0), chunks of {CHUNK_SIZE}, a local aiosmtpd sink in a "
            f"process of its own. Ours {n / self.ours:.2f} e-mails/s: {WORKERS} Worker "
            "processes (rq worker -w bulkimport.worker.Worker), started and idle "
            "before the clock; the clock runs from wake() until every invitation is sent "
            f"(database polled every {POLL_SECONDS:g} s); {parts}. Floor "
            f"{n / self.floor:.2f} e-mails/s: {WORKERS} processes, half the addresses each: "
            f"{secret}, a simple EmailMessage and smtplib send_message "
            f"over one reused connection. CPU of the {WORKERS} processes: ours "
            f"{self.ours_cpu:.1f} s ({1000 * self.ours_cpu / n:.0f} ms per e-mail, "
            f"{self.ours_cpu / (WORKERS * self.ours):.0%} of {WORKERS} cores), floor "
            f"{self.floor_cpu:.1f} s ({1000 * self.floor_cpu / n:.0f} ms per e-mail, "
            f"{self.floor_cpu / (WORKERS * self.floor):.0%} of {WORKERS} cores). "
            + "; ".join(self.notes) + ".")


def redis_url() -> str:
    """The Redis database the stage uses and flushes: BULKIMPORT_BENCH_REDIS_URL or db 14."""
    return os.environ.get(REDIS_URL_ENV, "").strip() or DEFAULT_REDIS_URL


def check_redis() -> None:
    """Fail at once, before the long stages, when the stage's Redis cannot be reached."""
    from redis import Redis
    from redis.exceptions import RedisError

    try:
        Redis.from_url(redis_url(), socket_connect_timeout=3).ping()
    except RedisError as exc:
        raise SystemExit(f"The mail stage needs Redis at {redis_url()} ({exc}); set "
                         f"{REDIS_URL_ENV} or pass --skip-mail") from None


class CountingHandler:
    """aiosmtpd handler that accepts every message and counts it in a shared integer."""

    def __init__(self, counter):
        self.counter = counter

    async def handle_DATA(self, server, session, envelope):  # noqa: N802  (aiosmtpd's name)
        """Count the message and accept it."""
        with self.counter.get_lock():
            self.counter.value += 1
        return "250 OK"


def run_sink(port: int, counter, ready, stop) -> None:
    """Body of the sink process: serve SMTP on 127.0.0.1:`port` until `stop` is set."""
    from aiosmtpd.controller import Controller

    # SMTPUTF8, as Postfix and Exchange offer: some generated addresses have an IDN domain.
    controller = Controller(CountingHandler(counter), hostname="127.0.0.1", port=port,
                            enable_SMTPUTF8=True)
    controller.start()
    ready.set()
    stop.wait()
    controller.stop()


class Sink:
    """The SMTP sink in a process of its own, so that it does not compete for the GIL with the
    process that measures; `accepted` is how many messages it has taken so far."""

    def __init__(self):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.counter = SPAWN.Value("q", 0)
        self.ready, self.stop = SPAWN.Event(), SPAWN.Event()
        self.process = SPAWN.Process(target=run_sink, name="bench-smtp-sink", daemon=True,
                                     args=(self.port, self.counter, self.ready, self.stop))

    def __enter__(self) -> Sink:
        self.process.start()
        if not self.ready.wait(60):
            self.process.kill()
            raise SystemExit("The SMTP sink did not start")
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()

    @property
    def accepted(self) -> int:
        """Messages accepted since the sink started."""
        return self.counter.value


def bench_mail(url: str, description: str, invitations: int, rounds: int,
               mode: InviteMode = InviteMode.PASSWORD) -> MailResult:
    """Run ours, then the floor, against one sink, with Redis flushed before and after."""
    from redis import Redis

    redis = Redis.from_url(redis_url())
    redis.flushdb()
    result = MailResult(invitations, rounds, hash_seconds=hash_seconds(rounds), mode=mode)
    print(f"Mail, {mode.value} mode: {invitations:,} invitations, bcrypt cost {rounds} "
          f"({result.hash_seconds:.3f} s a hash here), {WORKERS} workers, Redis {redis_url()} "
          f"(flushed before and after); about {result.estimate:.0f} s of hashing a side",
          flush=True)
    try:
        with Sink() as sink:
            measure_ours(url, result, sink, redis)
            measure_floor(result, sink)
    finally:
        redis.flushdb()
    result.notes.append(f"database: {description}")
    return result


def hash_seconds(rounds: int) -> float:
    """Seconds one bcrypt hash at cost `rounds` takes on this machine (the best of three)."""
    import bcrypt

    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        bcrypt.hashpw(b"0123456789abcdefghij", bcrypt.gensalt(rounds))
        best = min(best, time.perf_counter() - started)
    return best


def measure_ours(url: str, result: MailResult, sink: Sink, redis) -> None:
    """Start 2 Worker processes and let them go idle, seed N users with a queued invitation
    each, then time wake() until every invitation is `sent` (polling every 0.1 s)."""
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": SECRET_KEY, "REDIS_URL": redis_url(),
                      "MAIL_CHUNK_SIZE": CHUNK_SIZE, "TESTING": True, "LOG_LEVEL": "WARNING"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("BULKIMPORT_")}
    env.update({f"BULKIMPORT_{k}": str(v) for k, v in {
        "DATABASE_URL": url, "REDIS_URL": redis_url(), "SECRET_KEY": SECRET_KEY,
        "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": sink.port, "MAIL_USE_TLS": "false",
        "MAIL_USE_SSL": "false", "MAIL_USERNAME": "", "MAIL_PASSWORD": "",
        "MAIL_RATE_PER_MINUTE": 0, "MAIL_CHUNK_SIZE": CHUNK_SIZE,
        "BCRYPT_ROUNDS": result.rounds}.items()})
    with tempfile.TemporaryDirectory(prefix="bulkimport-bench-mail-") as tmp:
        workers = [_start_worker(n, env, Path(tmp)) for n in range(WORKERS)]
        try:
            _wait_for_workers(redis, workers)
            with app.app_context():
                first_id = seed_invitations(result.invitations, result.mode, result.person_base)
                _time_ours(result, first_id, sink, workers)
                db.session.remove()
                db.engine.dispose()
        except BaseException:
            for process in workers:
                process.terminate()
            print(_logs(Path(tmp)), file=sys.stderr)
            raise
        finally:
            _stop_workers(workers)


def _start_worker(number: int, env: dict, logs: Path) -> subprocess.Popen:
    """One `rq worker -w Worker` process, as the README's Production section starts it."""
    log = open(logs / f"worker-{number}.log", "w")  # noqa: SIM115  (closed with the process)
    return subprocess.Popen(
        [sys.executable, "-m", "rq.cli", "worker", "-w", "bulkimport.worker.Worker",
         "--url", redis_url(), "--serializer", "rq.serializers.JSONSerializer",
         "--name", f"bench-mail-{number}-{os.getpid()}", "mail", "imports"],
        cwd=PROJECT, env=env, stdout=log, stderr=subprocess.STDOUT)


def _wait_for_workers(redis, workers: list[subprocess.Popen]) -> None:
    """Wait until every worker has registered with RQ, and a little longer, so that their
    start-up sweeps (which would find nothing yet) are over before the invitations exist."""
    from rq import Worker

    deadline = time.monotonic() + 60
    while len(Worker.all(connection=redis)) < len(workers):
        if any(p.poll() is not None for p in workers) or time.monotonic() > deadline:
            raise SystemExit("The mail workers did not start")
        time.sleep(0.1)
    time.sleep(2.0)


def seed_invitations(n: int, mode: InviteMode = InviteMode.PASSWORD,
                     base: int = MAIL_BASE) -> int:
    """Insert `n` new users and one queued, due invitation of `mode` for each, as an applied
    import leaves them (bulk INSERTs, one commit); returns the first invitation id."""
    now = utcnow()
    last_user = db.session.scalar(select(func.coalesce(func.max(User.id), 0)))
    db.session.execute(insert(User), [user_record(base + i, now=now) for i in range(n)])
    user_ids = db.session.scalars(select(User.id).where(User.id > last_user)
                                  .order_by(User.id)).all()
    last_invitation = db.session.scalar(select(func.coalesce(func.max(Invitation.id), 0)))
    db.session.execute(insert(Invitation), [
        {"user_id": user_id, "mode": mode, "status": Invitation.QUEUED, "attempts": 0,
         "created_at": now,
         "started_at": now, "next_attempt_at": now, "pending_hashes": []}
        for user_id in user_ids])
    db.session.commit()
    return last_invitation + 1


def _time_ours(result: MailResult, first_id: int, sink: Sink,
               workers: list[subprocess.Popen]) -> None:
    from bulkimport.mailing.dispatch import wake

    n = result.invitations
    mine = Invitation.id >= first_id
    accepted_before = sink.accepted
    cpu_before = sum(_cpu_seconds(p.pid) for p in workers)
    started = time.perf_counter()
    enqueued = wake()
    woken = time.perf_counter()
    sent, last_progress, last_report, first_sent = 0, woken, woken, None
    while sent < n:
        time.sleep(POLL_SECONDS)
        counts = dict(db.session.execute(select(Invitation.status, func.count())
                                         .where(mine).group_by(Invitation.status)).all())
        db.session.commit()
        now = time.perf_counter()
        if counts.get(Invitation.SENT, 0) > sent:
            sent, last_progress = counts[Invitation.SENT], now
            first_sent = first_sent or now
        if counts.get(Invitation.FAILED):
            reason = db.session.scalar(select(Invitation.last_error).where(
                mine, Invitation.status == Invitation.FAILED).limit(1))
            raise SystemExit(f"{counts[Invitation.FAILED]} invitation(s) failed: {reason}")
        if now - last_progress > STALL_SECONDS or any(p.poll() is not None for p in workers):
            raise SystemExit(f"The workers stopped sending ({counts})")
        if now - last_report >= 30:
            print(f"  ours: {sent:,}/{n:,} sent after {now - started:.0f} s", flush=True)
            last_report = now
    result.ours = time.perf_counter() - started
    result.ours_cpu = sum(_cpu_seconds(p.pid) for p in workers) - cpu_before
    result.parts = {"wake() returned": woken - started,
                    "the first invitation was sent": (first_sent or woken) - started}
    accepted = sink.accepted - accepted_before
    result.notes.append(f"ours: wake() enqueued {enqueued:,} of {n:,}; the sink accepted "
                        f"{accepted:,} messages")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stop_workers(workers: list[subprocess.Popen]) -> None:
    for process in workers:
        if process.poll() is None:
            process.terminate()  # RQ's warm shutdown: they are idle
    for process in workers:
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _logs(directory: Path, lines: int = 30) -> str:
    parts = []
    for path in sorted(directory.glob("*.log")):
        tail = path.read_text(errors="replace").splitlines()[-lines:]
        parts.append(f"--- last lines of {path.name} ---\n" + "\n".join(tail))
    return "\n".join(parts)


def floor_process(addresses: list[str], rounds: int, port: int, start, results,
                  links: bool = False) -> None:
    """Body of one floor process: once every process is at the `start` barrier, send one
    invitation-like e-mail to each address over one SMTP connection, and put (count, CPU
    seconds) on `results`. With `links`, each carries a token's link instead of a password."""
    import bcrypt

    start.wait()
    cpu = time.process_time()
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        for address in addresses:
            if links:
                token = secrets.token_urlsafe(32)
                hashlib.sha256(token.encode()).hexdigest()
                body = f"Choose your password: https://localhost/set-password/{token}\n"
            else:
                password = "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(20))
                bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds))
                body = f"Password: {password}\n"
            message = EmailMessage()
            message["From"] = "bulkimport <noreply@localhost>"
            message["To"] = address
            message["Subject"] = "Your new account"
            message.set_content(f"Your account is ready.\n\n{body}")
            smtp.send_message(message)
    results.put((len(addresses), time.process_time() - cpu))


def measure_floor(result: MailResult, sink: Sink) -> None:
    """Time the raw floor: 2 processes, started before the clock and waiting for it, each
    sending half of the same N addresses; the clock stops when both are done."""
    addresses = [user_record(result.person_base + i)["email"]
                 for i in range(result.invitations)]
    start, results = SPAWN.Barrier(WORKERS + 1), SPAWN.Queue()
    processes = [SPAWN.Process(target=floor_process, name=f"bench-mail-floor-{n}",
                               args=(addresses[n::WORKERS], result.rounds, sink.port, start,
                                     results, result.links))
                 for n in range(WORKERS)]
    for process in processes:
        process.start()
    accepted_before = sink.accepted
    try:
        start.wait(60)  # both have started and imported what they need
    except threading.BrokenBarrierError:
        for process in processes:
            process.kill()
        raise SystemExit("The floor processes did not start") from None
    started = time.perf_counter()
    done: list[tuple[int, float]] = []
    deadline = started + STALL_SECONDS + 4 * result.estimate
    while len(done) < len(processes):
        try:
            done.append(results.get(timeout=POLL_SECONDS))
        except queue.Empty:
            if any(p.exitcode for p in processes) or time.perf_counter() > deadline:
                for process in processes:
                    process.kill()
                raise SystemExit("A floor process failed or never finished") from None
    result.floor = time.perf_counter() - started
    for process in processes:
        process.join(10)
    result.floor_cpu = sum(cpu for _, cpu in done)
    result.notes.append(f"floor: {sum(n for n, _ in done):,} sent; the sink accepted "
                        f"{sink.accepted - accepted_before:,} messages")

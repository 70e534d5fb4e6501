"""Real RQ worker processes on Redis send to a real SMTP server: faults, a worker killed with
SIGKILL in the middle of a chunk, Redis flushed in the middle of a run, the global throttle
across two workers, and a scan proving no generated password (or link token) is stored or
logged; the fault tests run for both kinds of invitation."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
from conftest import (
    REDIS_URL,
    ROOT,
    import_file,
    login_admin,
    rq_worker_command,
    worker_environment,
)
from sqlalchemy import func, select, text
from test_mailing import FAULTS, assert_invariant, make_csv

from bulkimport.clock import SYSTEM_CLOCK
from bulkimport.extensions import db
from bulkimport.models import Invitation


@pytest.fixture
def setup(app_factory, redis, smtp, tmp_path):
    """An application on Redis and the SMTP server, and a way to start worker processes with
    the same configuration; every worker is stopped at the end."""
    controller, handler = smtp
    processes: list[subprocess.Popen] = []

    def build(**extra):
        config = {"REDIS_URL": REDIS_URL, "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": controller.port,
                  "MAIL_TIMEOUT": 1.0, "MAIL_RETRY_SECONDS": 0.2, "MAIL_SWEEP_SECONDS": 0.5,
                  "MAIL_LEASE_SECONDS": 3.0, "MAIL_RATE_PER_MINUTE": 0, "MAIL_CHUNK_SIZE": 5}
        config.update(extra)
        # the workers are real processes on the real clock: this application shares their time
        app = app_factory(**config, CLOCK=SYSTEM_CLOCK)

        def start_worker(name: str) -> subprocess.Popen:
            log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115  (closed with the process)
            process = subprocess.Popen(rq_worker_command(name=name), cwd=ROOT,
                                       env=worker_environment(app, **config), stdout=log,
                                       stderr=subprocess.STDOUT)
            processes.append(process)
            return process

        return app, start_worker

    yield build, handler, tmp_path
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def wait_until(condition, limit: float = 120.0, what: str = "condition") -> None:
    """Poll `condition` until it holds (bounded, not a timing assertion)."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.2)


def pending(app) -> int:
    with app.app_context():
        count = db.session.scalar(select(func.count(Invitation.id)).where(
            Invitation.status.in_(("queued", "sending"))))
        db.session.remove()
        return count


def test_two_workers_with_faults_and_no_credential_stored_or_logged(setup, redis, caplog,
                                                                    invite_mode):
    build, handler, logs = setup
    handler.hang_seconds = 2.0
    for i, actions in FAULTS.items():
        handler.rules[f"mail{i:03d}@example.com"] = list(actions)
    app, start_worker = build()
    caplog.set_level("DEBUG")
    client = login_admin(app)
    import_file(client, make_csv(30), invite_by=invite_mode)
    start_worker("one")
    start_worker("two")
    wait_until(lambda: pending(app) == 0, what="every invitation to end")
    assert_invariant(app, handler)
    with app.app_context():
        statuses = dict(db.session.execute(select(Invitation.status, func.count())
                                           .group_by(Invitation.status)).all())
    assert statuses == {"sent": 28, "failed": 2}

    # every password, or link token, that any e-mail carried
    passwords = {credential.removeprefix("link:") for credential in _all_credentials(handler)}
    assert len(passwords) >= 28
    haystacks = [_redis_dump(redis), _database_dump(app), caplog.text]
    haystacks += [p.read_text(errors="replace") for p in logs.glob("*.log")]
    for password in passwords:
        for haystack in haystacks:
            assert password not in haystack


def test_worker_killed_in_the_middle_of_a_chunk(setup, invite_mode):
    build, handler, _ = setup
    handler.delay = 0.3
    app, start_worker = build(MAIL_CHUNK_SIZE=50)
    import_file(login_admin(app), make_csv(12), invite_by=invite_mode)
    first = start_worker("doomed")
    wait_until(lambda: len(handler.accepted) >= 3, what="a few e-mails")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    assert pending(app) > 0  # killed with most of its chunk claimed
    start_worker("rescuer")
    wait_until(lambda: pending(app) == 0, what="the rescuer to finish")
    assert_invariant(app, handler)
    with app.app_context():
        assert set(db.session.scalars(select(Invitation.status))) == {"sent"}


def test_redis_flushed_in_the_middle_of_a_run(setup, redis, invite_mode):
    build, handler, _ = setup
    handler.delay = 0.2
    app, start_worker = build(MAIL_CHUNK_SIZE=3)
    import_file(login_admin(app), make_csv(20), invite_by=invite_mode)
    start_worker("one")
    wait_until(lambda: len(handler.accepted) >= 3, what="a few e-mails")
    redis.flushdb()  # every queued job is gone
    start_worker("two")
    wait_until(lambda: pending(app) == 0, what="every invitation to end")
    assert_invariant(app, handler)
    with app.app_context():
        assert set(db.session.scalars(select(Invitation.status))) == {"sent"}


@pytest.mark.parametrize("backend", ["postgresql"])  # a Redis limit: one database is enough
def test_two_workers_respect_the_rate_limit_in_any_minute(setup):
    build, handler, _ = setup
    app, start_worker = build(MAIL_RATE_PER_MINUTE=5, MAIL_CHUNK_SIZE=2)
    import_file(login_admin(app), make_csv(8))
    start_worker("one")
    start_worker("two")
    wait_until(lambda: pending(app) == 0, limit=300, what="the throttled run")
    times = sorted(t for t, _, _ in handler.accepted)
    assert len(times) == 8
    # Slots are reserved 62 s apart; an e-mail reaches the server some time after its slot (a
    # password hashed, a commit, the SMTP exchange), which a busy machine stretches. Windows of
    # 50 s leave 12 s for that and still catch a limit that is not global (8 at once).
    for start in times:
        assert sum(1 for t in times if start <= t < start + 50) <= 5
    assert_invariant(app, handler)


def _all_credentials(handler) -> list[str]:
    from smtpserver import credential_in

    return [credential_in(raw) for _, _, raw in handler.accepted]


def _redis_dump(redis) -> str:
    parts = []
    for key in redis.scan_iter("*"):
        parts.append(key.decode(errors="replace"))
        kind = redis.type(key).decode()
        if kind == "string":
            parts.append(redis.get(key).decode(errors="replace"))
        elif kind == "hash":
            parts.append(repr(redis.hgetall(key)))
        elif kind == "list":
            parts.append(repr(redis.lrange(key, 0, -1)))
        elif kind == "set":
            parts.append(repr(redis.smembers(key)))
        elif kind == "zset":
            parts.append(repr(redis.zrange(key, 0, -1)))
        elif kind == "stream":
            parts.append(repr(redis.xrange(key)))
    return "\n".join(parts)


def _database_dump(app) -> str:
    with app.app_context():
        parts = []
        for table in db.metadata.sorted_tables:
            for row in db.session.execute(text(f"SELECT * FROM {table.name}")):
                parts.append(repr(tuple(row)))
        return "\n".join(parts)


def test_redis_down_at_submit_commits_the_users_and_the_invitations_go_out_when_it_returns(
        setup, redis):
    """The queue is unreachable when the batch is submitted: the users are committed, the
    invitations wait in the database, and a worker started once Redis is back sends them."""
    build, handler, _ = setup
    app, start_worker = build()
    from smtpserver import refusing_port

    with refusing_port() as down:  # Redis is not there
        app.config["REDIS_URL"] = f"redis://127.0.0.1:{down.getsockname()[1]}/0"
        import_file(login_admin(app), make_csv(6))
    with app.app_context():
        invitations = list(db.session.scalars(select(Invitation)))
        assert len(invitations) == 6
        assert all(i.status == "queued" and i.enqueued_at is None for i in invitations)
        db.session.remove()
    app.config["REDIS_URL"] = REDIS_URL  # Redis is back
    start_worker("after-outage")
    wait_until(lambda: pending(app) == 0, what="the invitations to be sent")
    assert_invariant(app, handler)
    assert len(handler.accepted) == 6

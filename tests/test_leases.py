"""Leases and heartbeats that follow the worker's life, on the application's manual clock: a
worker that works keeps its invitations and its batch however long the SMTP server or bcrypt
takes; a dead one loses them after one lease or stale interval; a lost job is found seconds after
it was enqueued; an outage of the database or Redis hands the work back at once; and file
passwords are hashed on several threads."""

from __future__ import annotations

import threading
import time
from datetime import UTC, timedelta

import pytest
from conftest import REDIS_URL, import_file, login_admin, wait_for_jobs
from sqlalchemy import select, text, update
from sqlalchemy.exc import OperationalError
from test_apply import batch, count
from test_apply import make_csv as make_password_csv
from test_mailing import assert_invariant, drain, mail_config, make_csv

from bulkimport.background import LOST_JOB_GRACE, ids_in_live_jobs
from bulkimport.extensions import db
from bulkimport.importing import apply as apply_module
from bulkimport.importing import submission
from bulkimport.mailing import dispatch, sending
from bulkimport.models import ImportBatch, Invitation, User
from bulkimport.security import seal_password, verify_password
from bulkimport.sweep import sweep

# A deadline for a thread to act on a busy machine, never a measured figure: `pytest -n 4` on 2
# cores beside real worker processes once starved the heartbeat for over 30 s.
REAL_SECONDS = 120.0


def eventually(condition, what: str) -> None:
    """Poll `condition` in real time until it holds: a heartbeat thread acts on its own."""
    deadline = time.monotonic() + REAL_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)


def in_new_context(app, function):
    """Run `function` in an application context (and database session) of its own, as another
    process would."""
    with app.app_context():
        try:
            return function()
        finally:
            db.session.remove()


def invitations(app) -> list[Invitation]:
    def read():
        found = list(db.session.scalars(select(Invitation).order_by(Invitation.id)))
        db.session.expunge_all()
        return found
    return in_new_context(app, read)


class SlowTransport:
    """Wraps the real transport: `during_send` runs before each message goes, as if the server
    took that long to answer."""

    def __init__(self, real, during_send):
        self.real, self.during_send = real, during_send

    def __enter__(self):
        self.real.__enter__()
        return self

    def __exit__(self, *exc_info):
        return self.real.__exit__(*exc_info)

    def send(self, message):
        self.during_send()
        self.real.send(message)

    def close(self):
        self.real.close()


def test_the_defaults_take_back_a_dead_workers_work_within_about_a_minute(app):
    assert app.config["MAIL_LEASE_SECONDS"] == 60
    assert app.config["APPLY_STALE_SECONDS"] == 60
    assert app.config["MAIL_SWEEP_SECONDS"] == 10
    assert LOST_JOB_GRACE <= timedelta(seconds=5)


def test_a_lease_is_renewed_while_the_smtp_server_takes_three_leases(app_factory, smtp, clock,
                                                                      monkeypatch):
    controller, handler = smtp
    app = app_factory(**mail_config(controller, MAIL_LEASE_SECONDS=60))
    monkeypatch.setattr(dispatch, "enqueue", lambda *args: None)  # this test sends by hand
    import_file(login_admin(app), make_csv(1))
    lease = app.config["MAIL_LEASE_SECONDS"]
    taken_back = []

    def a_slow_server():
        for _ in range(4):  # three leases in all, in steps the heartbeat sees
            clock.advance(lease * 0.75)
            eventually(lambda: invitations(app)[0].lease_until >= clock.now() + timedelta(
                seconds=lease * 0.7), "the heartbeat to renew the lease")
            taken_back.append(in_new_context(app, sending.release_expired_leases))

    real_transport_for = sending.transport_for
    monkeypatch.setattr(sending, "transport_for", lambda *args: SlowTransport(
        real_transport_for(*args), a_slow_server))
    with app.app_context():
        invitation_id = db.session.scalar(select(Invitation.id))
        assert sending.send_invitations([invitation_id]) == {"sent": 1, "deferred": 0,
                                                              "failed": 0}
    assert taken_back == [0, 0, 0, 0]  # the sweep never took it from the live worker
    assert handler.count_for("mail000@example.com") == 1
    assert_invariant(app, handler)


def test_a_dead_workers_invitations_come_back_after_one_lease(app_factory, smtp, clock,
                                                              monkeypatch):
    controller, handler = smtp
    app = app_factory(**mail_config(controller, MAIL_LEASE_SECONDS=60))
    monkeypatch.setattr(dispatch, "enqueue", lambda *args: None)
    import_file(login_admin(app), make_csv(3))
    with app.app_context():
        ids = list(db.session.scalars(select(Invitation.id)))
        assert sending.claim(ids, "a-worker-that-is-killed-now") == ids  # and no heartbeat
        clock.advance(59)
        assert sending.release_expired_leases() == 0
        clock.advance(2)
        assert sending.release_expired_leases() == 3
    monkeypatch.undo()
    assert drain(app) == {"sent": 3}
    assert_invariant(app, handler)


def test_jobs_lost_before_they_ran_are_enqueued_again_seconds_later(app_factory, smtp, clock,
                                                                   monkeypatch):
    """Without Redis, the jobs of this process are the live ones: invitations recorded as
    enqueued whose job never ran are found once LOST_JOB_GRACE has passed, not a lease later."""
    controller, handler = smtp
    app = app_factory(**mail_config(controller, MAIL_LEASE_SECONDS=600))
    monkeypatch.setattr(dispatch, "enqueue", lambda *args: None)  # the jobs are lost
    import_file(login_admin(app), make_csv(4))
    monkeypatch.undo()
    assert all(i.enqueued_at is not None for i in invitations(app))
    with app.app_context():
        sweep()  # just enqueued: the jobs may still be on their way
    wait_for_jobs(app)
    assert handler.accepted == []
    clock.advance(LOST_JOB_GRACE.total_seconds() + 1)
    with app.app_context():
        sweep()
    wait_for_jobs(app)
    assert {i.status for i in invitations(app)} == {"sent"}
    assert len(handler.accepted) == 4
    assert_invariant(app, handler)


def test_the_ids_live_rq_jobs_carry_are_read_from_the_queue_and_the_started_jobs(
        app_factory, redis, clock):
    from rq import Queue
    from rq.job import Job
    from rq.registry import StartedJobRegistry
    from rq.serializers import JSONSerializer

    app = app_factory(REDIS_URL=REDIS_URL, MAIL_CHUNK_SIZE=2)
    import_file(login_admin(app), make_csv(5))  # no worker runs: the jobs wait in the queue
    ids = {i.id for i in invitations(app)}
    queue = Queue("mail", connection=redis, serializer=JSONSerializer)
    assert len(queue) == 3
    with app.app_context():
        assert ids_in_live_jobs("send_invitations") == ids
        assert ids_in_live_jobs("apply_batch") == set()
        clock.advance(LOST_JOB_GRACE.total_seconds() + 1)
        assert dispatch.requeue_lost() == 0  # all carried: nothing is enqueued twice
        assert len(queue) == 3

        # a worker took the first job: carried while it claims, not once it has long started
        job = Job.fetch(queue.get_job_ids()[0], connection=redis, serializer=JSONSerializer)
        queue.remove(job)
        redis.zadd(StartedJobRegistry(queue=queue).key, {f"{job.id}:execution": 2e9})
        job.started_at = (clock.now() - timedelta(seconds=1)).replace(tzinfo=UTC)
        job.save()
        assert ids_in_live_jobs("send_invitations") == ids
        clock.advance(LOST_JOB_GRACE.total_seconds())
        assert ids_in_live_jobs("send_invitations") == ids - set(job.args[1:])

        redis.flushdb()  # Redis lost its data
        assert ids_in_live_jobs("send_invitations") == set()
        assert dispatch.requeue_lost() == 5
        assert dispatch.wake() == 5
        assert ids_in_live_jobs("send_invitations") == ids
        assert len(queue) == 3


def test_a_queue_that_cannot_be_read_guesses_nothing(app_factory, clock):
    from smtpserver import refusing_port

    with refusing_port() as down:
        app = app_factory(REDIS_URL=f"redis://127.0.0.1:{down.getsockname()[1]}/0")
        with app.app_context():
            assert ids_in_live_jobs("send_invitations") is None


def _database_gone() -> OperationalError:
    """What SQLAlchemy raises when psycopg finds the server gone (no SQLSTATE)."""
    import psycopg

    return OperationalError("SELECT 1", {}, psycopg.OperationalError(
        "connection failed: connection to server at 127.0.0.1, port 5432 failed: Connection "
        "refused"))


def test_only_a_lost_connection_is_an_outage():
    import psycopg
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import ResponseError

    from bulkimport.background import is_outage

    class Refused(psycopg.OperationalError):
        sqlstate = "57014"  # canceling statement due to statement timeout

    assert is_outage(_database_gone())
    assert is_outage(RedisConnectionError("Connection refused"))
    assert not is_outage(OperationalError("SELECT 1", {}, Refused("timeout")))
    assert not is_outage(OperationalError("SELECT 1", {}, Exception("database is locked")))
    assert not is_outage(ResponseError("WRONGTYPE"))
    assert not is_outage(ValueError("a fault of the work itself"))


@pytest.mark.parametrize("part", ["database", "redis"])
def test_an_outage_in_the_middle_of_a_chunk_hands_the_rest_back_at_once(
        app_factory, smtp, clock, monkeypatch, part):
    from redis.exceptions import ConnectionError as RedisConnectionError

    controller, handler = smtp
    app = app_factory(**mail_config(controller, MAIL_LEASE_SECONDS=600, MAIL_CHUNK_SIZE=10))
    monkeypatch.setattr(dispatch, "enqueue", lambda *args: None)
    import_file(login_admin(app), make_csv(4))
    real_record, real_current = sending._record_outcomes, sending.send_rate_limit.current
    calls = []

    def first_record_fails(*args, **kwargs):  # the database goes away after the first e-mail
        calls.append(args[0])
        if len(calls) == 1:
            raise _database_gone()
        return real_record(*args, **kwargs)  # it is back when the chunk is handed back

    class ThrottleGoesAway:
        def reserve(self):
            calls.append(None)
            if len(calls) == 2:
                raise RedisConnectionError("Error 111 connecting to redis: Connection refused")
            return real_current().reserve()

    if part == "database":
        monkeypatch.setattr(sending, "RECORD_EVERY", 1)
        monkeypatch.setattr(sending, "_record_outcomes", first_record_fails)
    else:
        monkeypatch.setattr(sending.send_rate_limit, "current", lambda: ThrottleGoesAway())
    with app.app_context():
        ids = list(db.session.scalars(select(Invitation.id).order_by(Invitation.id)))
        assert sending.send_invitations(ids)["sent"] == 1
    monkeypatch.undo()
    first, *rest = invitations(app)
    assert first.status == "sent"
    sweep_interval = timedelta(seconds=app.config["MAIL_SWEEP_SECONDS"])
    for invitation in rest:  # handed back, not left to a lease of 600 s
        assert invitation.status == "queued" and invitation.lease_token is None
        assert invitation.enqueued_at is None  # the sweep enqueues it
        assert invitation.next_attempt_at == clock.now() + sweep_interval
        assert "could not be reached" in invitation.last_error
        assert invitation.attempts == 0
    assert drain(app) == {"sent": 4}
    assert len(handler.accepted) == 4
    assert_invariant(app, handler)


def test_handing_back_waits_for_the_database_while_the_lease_lasts(app_factory, smtp, clock,
                                                                   monkeypatch):
    controller, _ = smtp
    app = app_factory(**mail_config(controller, MAIL_LEASE_SECONDS=60))
    monkeypatch.setattr(dispatch, "enqueue", lambda *args: None)
    import_file(login_admin(app), make_csv(2))
    real_release = sending.release
    failures = []

    def release_while_restarting(*args, **kwargs):
        if len(failures) < 3:  # the database restarts for a few seconds
            failures.append(clock.now())
            raise _database_gone()
        return real_release(*args, **kwargs)

    with app.app_context():
        ids = list(db.session.scalars(select(Invitation.id)))
        assert sending.claim(ids, "token") == ids
        monkeypatch.setattr(sending, "release", release_while_restarting)
        started = clock.monotonic()
        assert sending.hand_back(ids, sending.Chunk("token"), {}) is True
        assert 0 < clock.monotonic() - started < 60  # pauses, shorter than the lease
        assert {i.status for i in invitations(app)} == {"queued"}

        clock.advance(app.config["MAIL_SWEEP_SECONDS"])  # due again after one sweep
        assert sending.claim(ids, "token-2") == ids
        monkeypatch.setattr(sending, "release", lambda *a, **k: (_ for _ in ()).throw(
            _database_gone()))
        started = clock.monotonic()
        assert sending.hand_back(ids, sending.Chunk("token-2"), {}) is False  # never came back
        assert clock.monotonic() - started <= 60  # then the lease takes over
        assert {i.status for i in invitations(app)} == {"sending"}


def test_the_heartbeat_of_an_apply_keeps_a_long_hashing_alive(app_factory, clock, monkeypatch):
    app = app_factory()
    stale = app.config["APPLY_STALE_SECONDS"]
    real_hash = submission.hash_file_passwords
    seen = []

    def slow_hashing(*args, **kwargs):
        batch_id = in_new_context(app, lambda: db.session.scalar(select(ImportBatch.id).where(
            ImportBatch.status == ImportBatch.APPLYING)))
        for _ in range(4):  # more than two stale intervals of hashing, in steps the heartbeat sees
            clock.advance(stale * 0.6)
            eventually(lambda: batch(app, batch_id).updated_at >= clock.now() - timedelta(
                seconds=stale * 0.2), "the heartbeat of the batch")
            in_new_context(app, submission.recover_stale_batches)
            seen.append(batch(app, batch_id).status)
        return real_hash(*args, **kwargs)

    monkeypatch.setattr(submission, "hash_file_passwords", slow_hashing)
    batch_id = import_file(login_admin(app), make_password_csv(3, password=True), generate=False)
    wait_for_jobs(app)
    assert seen == [ImportBatch.APPLYING] * 4
    assert batch(app, batch_id).status == ImportBatch.APPLIED
    assert count(app, User) == 4


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_batch_whose_row_the_writing_transaction_holds_is_alive(app_factory, clock):
    app = app_factory()
    client = login_admin(app)
    from conftest import batch_id_of, upload

    batch_id = batch_id_of(upload(client, make_password_csv(2)))
    with app.app_context():
        db.session.execute(update(ImportBatch).values(status=ImportBatch.APPLYING,
                                                      updated_at=clock.now()))
        db.session.commit()
        clock.advance(app.config["APPLY_STALE_SECONDS"] + 1)
        writer = db.engine.connect()
        writer.execute(text("SELECT id FROM import_batches WHERE id = :id FOR UPDATE"),
                       {"id": batch_id})  # a long write is under way
        try:
            submission.recover_stale_batches()  # does not wait for it, nor fail it
            assert batch(app, batch_id).status == ImportBatch.APPLYING
        finally:
            writer.rollback()
            writer.close()
        submission.recover_stale_batches()
    assert batch(app, batch_id).status == ImportBatch.FAILED


def test_an_outage_during_an_apply_queues_the_batch_again(app_factory, clock, monkeypatch):
    app = app_factory(BACKGROUND_ROWS=2)
    real_apply_rows = submission.apply_rows
    outages = []

    def apply_rows_once_without_database(*args, **kwargs):
        if not outages:
            outages.append(1)
            raise _database_gone()
        return real_apply_rows(*args, **kwargs)

    monkeypatch.setattr(submission, "apply_rows", apply_rows_once_without_database)
    batch_id = import_file(login_admin(app), make_password_csv(3))
    wait_for_jobs(app)
    queued = batch(app, batch_id)
    assert (queued.status, queued.error, queued.progress_stage) == (
        ImportBatch.QUEUED, None, "Waiting for a worker")
    assert count(app, User) == 1  # nothing was written
    clock.advance(LOST_JOB_GRACE.total_seconds() + 1)
    in_new_context(app, submission.recover_stale_batches)  # the sweep, once it is back
    wait_for_jobs(app)
    assert batch(app, batch_id).status == ImportBatch.APPLIED
    assert count(app, User) == 4


def test_file_passwords_are_hashed_on_several_threads_with_progress(app, monkeypatch):
    secret = app.config["SECRET_KEY"]
    sealed = [(row_id, seal_password(f"pass-phrase-{row_id:03d}", secret))
              for row_id in range(1, 61)]
    threads, progress = set(), []
    real_hash = apply_module.hash_password

    def recording_hash(password, rounds):
        threads.add(threading.current_thread().name)
        return real_hash(password, rounds)

    monkeypatch.setattr(apply_module, "hash_password", recording_hash)
    with app.app_context():
        hashes = apply_module.hash_file_passwords(sealed, progress.append, threads=3)
    assert len(threads) == 3 and all(t.startswith("bulkimport-bcrypt") for t in threads)
    assert progress == sorted(progress) and progress[-1] == 60
    assert len(progress) == 60 // apply_module.HASH_CHUNK + 1
    assert sorted(hashes) == list(range(1, 61))
    for row_id, password_hash in hashes.items():
        assert verify_password(f"pass-phrase-{row_id:03d}", password_hash)

"""Invitations sent to a real SMTP server (aiosmtpd) by the job code in this process: the
password of the last accepted e-mail always logs in, faults are retried or failed with the
server's reason, sending pauses on a refused login, Resend, the outbox mode and the pages."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from conftest import (
    authenticate,
    credential_works,
    import_file,
    login_admin,
    sample,
    wait_for_jobs,
)
from smtpserver import Authenticator, credential_in, password_in, refusing_port, start_server
from sqlalchemy import select

from bulkimport.clock import clock_of
from bulkimport.extensions import db
from bulkimport.mailing.dispatch import wake
from bulkimport.mailing.throttle import LocalThrottle, RedisThrottle
from bulkimport.models import Invitation, User
from bulkimport.sweep import sweep


def make_csv(count: int) -> bytes:
    lines = ["username,firstname,surname,email,Change password next time"]
    lines += [f"mail{i:03d},Given{i},Family{i},mail{i:03d}@example.com,{i % 2}"
              for i in range(count)]
    return ("\n".join(lines) + "\n").encode()


def mail_config(controller, **extra) -> dict:
    """Settings for sending to `controller` (None when `extra` gives the MAIL_PORT)."""
    # MAIL_TIMEOUT: long enough that a busy machine never times out a healthy exchange, since
    # the fault tests count attempts; a "hang" lasts longer still.
    config = {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": controller and controller.port,
              "MAIL_TIMEOUT": 3.0,
              "MAIL_RETRY_SECONDS": 60, "MAIL_RATE_PER_MINUTE": 0, "MAIL_LEASE_SECONDS": 30,
              "BASE_URL": "https://people.example.org", "SITE_NAME": "Example Intranet"}
    config.update(extra)
    return config


def drain(app, rounds: int = 50) -> dict[str, int]:
    """Sweep and run the jobs until no invitation is queued or being sent, moving the clock on
    to the next retry whenever nothing is due (bounded by rounds, not by real time)."""
    clock = clock_of(app)
    for _ in range(rounds):
        with app.app_context():
            sweep()
        wait_for_jobs(app)
        with app.app_context():
            counts = dict(db.session.execute(
                select(Invitation.status, db.func.count()).group_by(Invitation.status)).all())
            due = db.session.scalar(select(db.func.min(Invitation.next_attempt_at)).where(
                Invitation.status == "queued"))
            db.session.remove()
        if not counts.get("queued") and not counts.get("sending"):
            return counts
        clock.set(max(due or clock.now(), clock.now() + timedelta(seconds=1)))
    raise AssertionError(f"invitations still pending after {rounds} rounds: {counts}")


def assert_invariant(app, handler) -> None:
    """For every invited user, the credential of the last accepted e-mail works (the password
    logs in, or the link opens the set-password page); every invitation ended sent, or failed
    with a reason."""
    with app.app_context():
        for invitation in db.session.scalars(select(Invitation)):
            user = invitation.user
            assert invitation.status in ("sent", "failed"), invitation.status
            if invitation.status == "failed":
                assert invitation.last_error
            credential = handler.last_credential(user.email)
            if credential is None:
                assert invitation.status == "failed"
                continue
            assert credential_works(db.session, user.username, credential), user.username
            db.session.rollback()  # authenticate may promote a pending hash: keep the state


def test_invitations_are_sent_and_their_passwords_log_in(app_factory, smtp):
    controller, handler = smtp
    app = app_factory(**mail_config(controller))
    client = login_admin(app)
    batch_id = import_file(client, sample("force-change.csv"))
    assert drain(app) == {"sent": 3}
    assert_invariant(app, handler)
    message = next(m for _, a, m in handler.accepted if a == "li.chen@example.com")
    text = message.decode()
    assert "Subject: Your Example Intranet account" in text
    assert "Hello Li," in text and "Username: lchen" in text
    assert "Log in at https://people.example.org/login" in text
    assert "You will be asked to choose a new password when you first log in." in text
    assert "Content-Type: text/html" in text
    okoh = next(m for _, a, m in handler.accepted if a == "obi.okoh@example.com").decode()
    assert "choose a new password" not in okoh
    assert len(password_in(message)) >= 16
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == "lchen"))
        assert user.temp_password_expires_at is not None and user.must_change_password
    page = client.get(f"/admin/people/import/{batch_id}/invitations").get_data(as_text=True)
    assert re.search(r'data-count="sent">3<', page) and "100 %" in page
    assert client.get(f"/admin/people/import/{batch_id}/invitations.json").get_json()[
        "counts"]["sent"] == 3
    people = client.get("/admin/people").get_data(as_text=True)
    assert people.count('data-invitation="sent"') == 3


FAULTS = {
    0: ["rcpt451"], 1: ["rcpt451", "rcpt451"], 2: ["data451"], 3: ["data451", "data451"],
    4: ["rcpt550"], 5: ["data554"], 6: ["hang"], 7: ["drop"], 8: ["drop", "data451"],
    9: ["hang", "drop"], 10: ["drop", "hang", "data451"],
}


def test_faults_are_retried_or_failed_and_the_last_credential_works(app_factory, smtp,
                                                                     invite_mode):
    controller, handler = smtp
    handler.hang_seconds = 6.0  # twice MAIL_TIMEOUT
    for i, actions in FAULTS.items():
        handler.rules[f"mail{i:03d}@example.com"] = list(actions)
    app = app_factory(**mail_config(controller, MAIL_CHUNK_SIZE=5))
    client = login_admin(app)
    import_file(client, make_csv(16), invite_by=invite_mode)
    counts = drain(app)
    assert counts == {"sent": 14, "failed": 2}
    assert_invariant(app, handler)
    with app.app_context():
        by_user = {i.user.username: i for i in db.session.scalars(select(Invitation))}
        assert by_user["mail004"].last_error == (
            "The server refused the recipient: 550 5.1.1 No such user here")
        assert by_user["mail005"].last_error == (
            "The server refused the message: 554 5.7.1 Message refused by policy")
        assert by_user["mail001"].attempts == 3 and by_user["mail011"].attempts == 1
        # a dropped connection after DATA: the message was taken, then one more was sent
        assert handler.count_for("mail007@example.com") == 2


def test_gives_up_after_the_configured_hours(app_factory, smtp, clock, invite_mode):
    controller, handler = smtp
    handler.rules["mail000@example.com"] = ["data451"] * 1000
    app = app_factory(**mail_config(controller, MAIL_GIVE_UP_HOURS=1))
    started = clock.now()
    import_file(login_admin(app), make_csv(1), invite_by=invite_mode)
    assert drain(app) == {"failed": 1}
    assert timedelta(minutes=20) < clock.now() - started <= timedelta(hours=1)
    with app.app_context():
        invitation = db.session.scalar(select(Invitation))
        assert invitation.last_error.startswith("Gave up after ")
        assert invitation.last_error.endswith("451 4.3.0 Mailbox busy, try later")


def test_server_down_defers_and_sends_when_it_returns(app_factory, invite_mode):
    down = refusing_port()  # the relay's port while it is down: no other test can take it
    port = down.getsockname()[1]
    app = app_factory(**mail_config(None, MAIL_PORT=port))
    client = login_admin(app)
    batch_id = import_file(client, make_csv(4), invite_by=invite_mode)
    with app.app_context():
        sweep()
    wait_for_jobs(app)
    page = client.get(f"/admin/people/import/{batch_id}/invitations").get_data(as_text=True)
    assert "Cannot connect to 127.0.0.1" in page and "connection refused" in page
    down.close()
    back, handler = start_server(port=port)
    try:
        assert drain(app) == {"sent": 4}
        assert_invariant(app, handler)
    finally:
        back.stop()


def test_refused_login_pauses_sending_with_a_banner_until_fixed(app_factory):
    authenticator = Authenticator()
    controller, handler = start_server(authenticator)
    try:
        app = app_factory(**mail_config(controller, MAIL_USERNAME="user",
                                        MAIL_PASSWORD="secret"))
        client = login_admin(app)
        import_file(client, make_csv(3))
        with app.app_context():
            sweep()
        wait_for_jobs(app)
        page = client.get("/admin/people").get_data(as_text=True)
        assert 'id="mail-paused"' in page and "The SMTP server refused the login: 535" in page
        with app.app_context():
            statuses = set(db.session.scalars(select(Invitation.status)))
            assert statuses == {"queued"}
            assert set(db.session.scalars(select(Invitation.attempts))) == {0}
            # While paused nothing is enqueued: a job would hand its chunk back and wake the
            # queue again, round and round (the in-process jobs of `make run` spun for ever).
            assert wake() == 0
        authenticator.open = True
        response = client.post("/admin/system/mail/resume")
        assert "sending has resumed" in client.get(response.location).get_data(as_text=True)
        assert drain(app) == {"sent": 3}
        assert 'id="mail-paused"' not in client.get("/admin/people").get_data(as_text=True)
        assert_invariant(app, handler)
    finally:
        controller.stop()


def test_resend_makes_a_new_credential_and_the_old_one_stops_working(app_factory, smtp,
                                                                      invite_mode):
    controller, handler = smtp
    app = app_factory(**mail_config(controller))
    client = login_admin(app)
    batch_id = import_file(client, make_csv(3), invite_by=invite_mode)
    drain(app)
    old = handler.last_credential("mail000@example.com")
    with app.app_context():
        ids = {i.user.username: i.id for i in db.session.scalars(select(Invitation))}
    response = client.post("/admin/people/invitations/resend",
                            data={"one": str(ids["mail000"]), "batch_id": str(batch_id),
                                  "confirm": "1"})
    assert response.location.endswith(f"/import/{batch_id}/invitations")
    assert drain(app) == {"sent": 3}
    new = handler.last_credential("mail000@example.com")
    assert new != old and handler.count_for("mail000@example.com") == 2
    assert handler.count_for("mail001@example.com") == 1
    with app.app_context():
        assert not credential_works(db.session, "mail000", old)  # superseded
        assert credential_works(db.session, "mail000", new)
    client.post("/admin/people/invitations/resend",
                data={"selected": [str(ids["mail001"]), str(ids["mail002"])], "batch_id": "",
                      "confirm": "1"})
    drain(app)
    assert handler.count_for("mail001@example.com") == 2
    assert handler.count_for("mail002@example.com") == 2
    assert_invariant(app, handler)


def test_resend_all_failed(app_factory, smtp):
    controller, handler = smtp
    handler.rules["mail001@example.com"] = ["rcpt550"]
    handler.rules["mail002@example.com"] = ["data554"]
    app = app_factory(**mail_config(controller))
    client = login_admin(app)
    import_file(client, make_csv(3))
    assert drain(app) == {"sent": 1, "failed": 2}
    page = client.get("/admin/people/invitations?status=failed").get_data(as_text=True)
    assert page.count("<tr data-invitation=") == 2
    client.post("/admin/people/invitations/resend", data={"all_failed": "1", "confirm": "1"})
    assert drain(app) == {"sent": 3}
    assert handler.count_for("mail000@example.com") == 1
    assert_invariant(app, handler)


def test_outbox_mode_writes_eml_files_and_lists_them(app_factory):
    app = app_factory(MAIL_SERVER="")
    client = login_admin(app)
    import_file(client, sample("minimal.csv"))
    drain(app)
    from pathlib import Path

    files = sorted((Path(app.instance_path) / "outbox").glob("*.eml"))
    assert len(files) == 3
    assert oct(files[0].stat().st_mode & 0o777) == "0o600"
    page = client.get("/admin/system/outbox").get_data(as_text=True)
    assert page.count("Your bulkimport account") == 3 and "Admin &gt; System" in page
    message = client.get(f"/admin/system/outbox/{files[0].name}").get_data(as_text=True)
    password = password_in(files[0].read_bytes())  # the file keeps it; the page masks it
    assert password not in message and "Password: ••••••••" in message
    with app.app_context():
        addressee = re.search(r"Hello (\w+)", message).group(1)
        user = db.session.scalar(select(User).where(User.firstname == addressee))
        assert authenticate(db.session, user.username, password) is not None
    assert client.get("/admin/system/outbox/../../secret_key").status_code == 404


def test_outbox_is_absent_with_an_smtp_server(app_factory, smtp):
    controller, _ = smtp
    client = login_admin(app_factory(**mail_config(controller)))
    assert client.get("/admin/system/outbox").status_code == 404
    assert 'href="/admin/system/outbox"' not in client.get("/admin/people").get_data(as_text=True)


def test_invitations_page_filters_and_estimates(app_factory, smtp):
    controller, handler = smtp
    app = app_factory(**mail_config(controller, MAIL_RATE_PER_MINUTE=60))
    client = login_admin(app)
    from unittest import mock

    with mock.patch("bulkimport.importing.submission.wake"):  # nothing sent yet
        batch_id = import_file(client, make_csv(130))
    status = client.get(f"/admin/people/import/{batch_id}/invitations.json").get_json()
    assert status["counts"]["queued"] == 130 and status["percent"] == 0
    assert status["estimate"].startswith("About 3 minutes left at 60 e-mails a minute: the "
                                         "send-rate limit sets the pace")
    page = client.get("/admin/people/invitations?status=queued").get_data(as_text=True)
    assert page.count("<tr data-invitation=") == 100  # paginated
    assert client.get("/admin/people/invitations?status=sent").get_data(
        as_text=True).count("<tr data-invitation=") == 0


def test_redis_throttle_counts_every_worker(app_factory):
    from conftest import REDIS_URL, require

    require(bool(REDIS_URL), "Redis (BULKIMPORT_TEST_REDIS_URL)")
    from redis import Redis

    redis = Redis.from_url(REDIS_URL)
    redis.flushdb()
    try:
        first, second = RedisThrottle(redis, 3), RedisThrottle(redis, 3)
        assert [first.reserve(), second.reserve(), first.reserve()] == [0.0, 0.0, 0.0]
        assert 60 < second.reserve() <= 62
        assert RedisThrottle(redis, 0).reserve() == 0.0
    finally:
        redis.flushdb()


def test_local_throttle():
    throttle = LocalThrottle(2)
    assert [throttle.reserve(), throttle.reserve()] == [0.0, 0.0]
    assert 60 < throttle.reserve() <= 62
    assert LocalThrottle(0).reserve() == 0.0


def test_each_application_has_its_own_local_throttle(app_factory):
    from bulkimport.mailing.throttle import send_rate_limit

    first, second = app_factory(MAIL_RATE_PER_MINUTE=2), app_factory(MAIL_RATE_PER_MINUTE=2)
    with first.app_context():
        assert send_rate_limit.current() is send_rate_limit.current()
        assert [send_rate_limit.current().reserve() for _ in range(2)] == [0.0, 0.0]
        assert send_rate_limit.current().reserve() > 60
    with second.app_context():  # the first application's minute is not the second's
        assert send_rate_limit.current().reserve() == 0.0


def test_a_server_that_never_answers_is_a_timeout_and_a_retry(app_factory, invite_mode):
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    try:
        app = app_factory(MAIL_SERVER="127.0.0.1", MAIL_PORT=listener.getsockname()[1],
                          MAIL_TIMEOUT=0.5, MAIL_RETRY_SECONDS=60, MAIL_RATE_PER_MINUTE=0)
        import_file(login_admin(app), make_csv(2), invite_by=invite_mode)
        wait_for_jobs(app)
        with app.app_context():
            invitations = db.session.scalars(select(Invitation)).all()
            assert {i.status for i in invitations} == {"queued"}
            assert {i.last_error for i in invitations} == {
                f"Cannot connect to 127.0.0.1:{listener.getsockname()[1]}: no answer within the "
                "timeout"}
            assert all(i.next_attempt_at > i.created_at for i in invitations)
    finally:
        listener.close()


class _Takeover:
    """A transport whose first send lets `meanwhile` run (another worker taking the invitation
    over after our lease ran out) before it finishes with `then`."""

    def __init__(self, real, meanwhile, then):
        self.real, self.meanwhile, self.then = real, meanwhile, then

    def send(self, message):
        self.meanwhile()
        self.then(self.real, message)

    def close(self):
        self.real.close()


def _one_invitation(app_factory, controller, invite_mode: str = "password"):
    app = app_factory(**mail_config(controller))
    from unittest import mock

    with mock.patch("bulkimport.importing.submission.wake"):
        import_file(login_admin(app), make_csv(1), invite_by=invite_mode)
    with app.app_context():
        return app, db.session.scalar(select(Invitation.id))


def _let_leases_run_out(app):
    """Move the clock past the lease of every invitation being sent (its worker is gone)."""
    clock_of(app).advance(app.config["MAIL_LEASE_SECONDS"] + 1)


@pytest.mark.parametrize("first_result", ["accepted", "refused"])
def test_a_worker_whose_lease_was_taken_over_keeps_the_invariant(app_factory, smtp,
                                                                   first_result, invite_mode):
    from bulkimport.mailing import sending
    from bulkimport.mailing.transport import SMTPTransport

    controller, handler = smtp
    app, invitation_id = _one_invitation(app_factory, controller, invite_mode)
    with app.app_context():
        assert sending.claim([invitation_id], "worker-a") == [invitation_id]

        def other_worker_sends():
            _let_leases_run_out(app)
            assert sending.release_expired_leases() == 1
            assert sending.claim([invitation_id], "worker-b") == [invitation_id]
            with SMTPTransport(app.config) as transport:
                assert sending.send_one(invitation_id, "worker-b", transport)[0] == "sent"

        def finish(real, message):
            if first_result == "refused":
                raise sending.SendFailure("permanent", "550 refused")
            real.send(message)

        with SMTPTransport(app.config) as real:
            outcome, _ = sending.send_one(invitation_id, "worker-a",
                                          _Takeover(real, other_worker_sends, finish))
        invitation = db.session.get(Invitation, invitation_id)
        assert invitation.status == "sent"  # a late refusal does not undo the other's success
        assert invitation.last_error is None
        assert outcome == ("sent" if first_result == "accepted" else "deferred")
    assert handler.count_for("mail000@example.com") == (2 if first_result == "accepted" else 1)
    assert_invariant(app, handler)
    if first_result == "accepted":  # both e-mails arrived; either may be read last
        with app.app_context():
            for _, _, raw in handler.accepted:
                assert credential_works(db.session, "mail000", credential_in(raw))
                db.session.rollback()


def test_killed_after_the_server_accepted_before_the_commit(app_factory, smtp, monkeypatch,
                                                            invite_mode):
    from bulkimport.mailing import sending

    controller, handler = smtp
    app, invitation_id = _one_invitation(app_factory, controller, invite_mode)

    def die(*args, **kwargs):
        raise SystemExit("worker killed")

    monkeypatch.setattr(sending, "_record_outcomes", die)
    with app.app_context(), pytest.raises(SystemExit):
        sending.send_invitations([invitation_id])
    monkeypatch.undo()
    delivered = handler.last_credential("mail000@example.com")
    with app.app_context():
        invitation = db.session.get(Invitation, invitation_id)
        assert invitation.status == "sending" and len(invitation.pending_hashes) == 1
        assert credential_works(db.session, "mail000", delivered)  # the pending credential
        db.session.rollback()
    _let_leases_run_out(app)
    assert drain(app) == {"sent": 1}  # the sweep takes it back and sends it again
    assert handler.count_for("mail000@example.com") == 2
    assert_invariant(app, handler)


def test_smtp_down_for_an_hour_on_a_simulated_clock(app_factory, clock, invite_mode):
    """The relay is down for an hour of simulated time: each invitation is retried with doubling
    delays (never given up, never sent twice) and all go out once the relay is back."""
    down = refusing_port()
    port = down.getsockname()[1]
    app = app_factory(**mail_config(None, MAIL_PORT=port, MAIL_RETRY_SECONDS=60.0))
    import_file(login_admin(app), make_csv(4), invite_by=invite_mode)
    outage_ends = clock.now() + timedelta(hours=1)

    def next_round() -> int:
        """Sweep and send what is due, then jump the clock to the next due retry; returns how
        many invitations are still queued."""
        with app.app_context():
            sweep()
        wait_for_jobs(app)
        with app.app_context():
            due = db.session.scalar(select(db.func.min(Invitation.next_attempt_at)).where(
                Invitation.status == "queued"))
            db.session.remove()
        if due is not None:
            clock.set(max(due, clock.now()) + timedelta(seconds=1))
        return 0 if due is None else 1

    while clock.now() < outage_ends:
        next_round()
        with app.app_context():
            assert set(db.session.scalars(select(Invitation.status))) == {"queued"}  # none
            db.session.remove()  # sent, none given up
    with app.app_context():
        attempts = max(db.session.scalars(select(Invitation.attempts)))
        db.session.remove()
    assert 5 <= attempts <= 8  # 1, 2, 4, 8, 16, 32 minutes of back-off fit in the hour
    down.close()
    back, handler = start_server(port=port)
    try:
        for _ in range(20):  # bounded: each round sends what is due on the simulated clock
            if not next_round():
                break
        with app.app_context():
            assert set(db.session.scalars(select(Invitation.status))) == {"sent"}
            db.session.remove()
        assert_invariant(app, handler)
        assert sorted(address for _, address, _ in handler.accepted) == sorted(
            f"mail{i:03d}@example.com" for i in range(4))  # one e-mail each
    finally:
        back.stop()

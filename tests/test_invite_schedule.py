"""Invitations sent at a chosen time, or on each row's date from a column of the file, on an
injected clock: due at their time and not before, kept in the database (a flushed Redis loses
nothing), their credential's validity counted from the sending, shown and moved on the
invitations pages, and asked for by the CLI."""

from __future__ import annotations

import re
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import (
    REDIS_URL,
    batch_id_of,
    choose_all,
    credential_works,
    login_admin,
    map_columns,
    rq_worker_command,
    upload,
    wait_for_jobs,
    worker_environment,
)
from sqlalchemy import select
from test_mailing import assert_invariant, drain, mail_config

from bulkimport.config import load_config
from bulkimport.extensions import db
from bulkimport.importing.schedule import AT, COLUMN, NOW, ScheduleError, build
from bulkimport.models import Invitation, SetPasswordLink, User
from bulkimport.sweep import sweep

ROOT = Path(__file__).resolve().parent.parent
BERLIN = "Europe/Berlin"  # UTC+1 in winter, UTC+2 in summer
# The manual clock starts at 2026-12-01 09:00 UTC (10:00 in Berlin).
START_DATES = "\n".join([
    "username,firstname,surname,email,Start date",
    "past,Pat,Past,past@example.com,2026-11-30",          # gone: now
    "blank,Bea,Blank,blank@example.com,",                 # no date: now
    "dated,Dan,Dated,dan@example.com,2026-12-07",         # 08:00 Berlin = 07:00 UTC
    "timed,Tim,Timed,tim@example.com,2026-12-08 14:30",   # 13:30 UTC
    "slashed,Sol,Slash,sol@example.com,03/01/2027",       # 3 January (DMY)
    "summer,Sam,Summer,sam@example.com,2027-07-01",       # 08:00 Berlin = 06:00 UTC
]) + "\n"


def staged(client, data: str, **options) -> int:
    """Upload `data` (the date column left out of the import, as an administrator maps a
    column no field takes); returns the batch id."""
    batch_id = batch_id_of(upload(client, data.encode(), **options))
    assert map_columns(client, batch_id, ["username", "firstname", "surname", "email", ""],
                       remember=False).status_code == 302
    return batch_id


def invitations_by_user(app) -> dict[str, Invitation]:
    with app.app_context():
        found = {i.user.username: i for i in db.session.scalars(select(Invitation))}
        db.session.expunge_all()
        return found


def schedule(client, batch_id: int, **form: str):
    """POST the review's invitations form."""
    data = {"invite_by": "password", "send_when": "now", "send_at": "", "send_column": "",
            "send_time": "08:00", **form}
    return client.post(f"/admin/people/import/{batch_id}/invitations-options", data=data)


def sweep_and_send(app) -> None:
    with app.app_context():
        sweep()
    wait_for_jobs(app)


@pytest.fixture
def berlin(app_factory, smtp):
    controller, handler = smtp
    # sessions that outlast the days this clock jumps
    app = app_factory(**mail_config(controller, TIME_ZONE=BERLIN),
                      SESSION_IDLE_MINUTES=60 * 24 * 60, SESSION_MAX_HOURS=24 * 60)
    return app, login_admin(app), handler


def test_at_a_time_they_are_due_then_and_not_before(berlin, clock, invite_mode):
    app, client, handler = berlin
    batch_id = staged(client, START_DATES, invite_by=invite_mode)
    response = schedule(client, batch_id, send_when="at", send_at="2026-12-03T09:30",
                        invite_by=invite_mode)
    assert response.status_code == 302
    review = client.get(f"/admin/people/import/{batch_id}").get_data(as_text=True)
    assert 'sent <span id="schedule-said">at 2026-12-03 09:30 Europe/Berlin</span>' in review
    assert review.count("Invitation: 2026-12-03 09:30 Europe/Berlin") == 6
    assert choose_all(client, batch_id, "add").status_code == 302
    due = datetime(2026, 12, 3, 8, 30)  # 09:30 in Berlin
    for invitation in invitations_by_user(app).values():
        assert invitation.next_attempt_at == invitation.started_at == due
        assert invitation.scheduled_at == due and invitation.mode == invite_mode
    sweep_and_send(app)
    clock.set(due - timedelta(seconds=1))
    sweep_and_send(app)
    assert handler.accepted == []  # not a second early
    page = client.get(f"/admin/people/import/{batch_id}/invitations").get_data(as_text=True)
    assert "6 invitations are scheduled for later; the first goes at 2026-12-03 09:30" in page
    assert page.count("goes 2026-12-03 09:30 Europe/Berlin") == 6
    clock.set(due)
    assert drain(app) == {"sent": 6}
    assert_invariant(app, handler)
    with app.app_context():  # valid for the policy's 7 days from the sending, not the import
        if invite_mode == "password":
            expires = db.session.scalar(select(User.temp_password_expires_at)
                                        .where(User.username == "past"))
        else:
            expires = db.session.scalar(select(SetPasswordLink.expires_at).join(
                SetPasswordLink.user).where(User.username == "past"))
    assert expires == due + timedelta(days=7)


def test_on_each_rows_date_in_the_sites_time_zone(berlin, clock):
    app, client, handler = berlin
    batch_id = staged(client, START_DATES)
    assert schedule(client, batch_id, send_when="column",
                    send_column="Start date").status_code == 302
    review = client.get(f"/admin/people/import/{batch_id}").get_data(as_text=True)
    for shown in ("2026-12-07 08:00 Europe/Berlin", "2026-12-08 14:30 Europe/Berlin",
                  "2027-01-03 08:00 Europe/Berlin", "2027-07-01 08:00 Europe/Berlin"):
        assert f"Invitation: {shown}" in review
    assert review.count("Invitation: now") == 2
    assert choose_all(client, batch_id, "add").status_code == 302
    found = invitations_by_user(app)
    assert found["past"].scheduled_at is None and found["blank"].scheduled_at is None
    assert found["dated"].next_attempt_at == datetime(2026, 12, 7, 7, 0)
    assert found["timed"].next_attempt_at == datetime(2026, 12, 8, 13, 30)
    assert found["slashed"].next_attempt_at == datetime(2027, 1, 3, 7, 0)
    assert found["summer"].next_attempt_at == datetime(2027, 7, 1, 6, 0)
    sweep_and_send(app)
    assert sorted(a for _, a, _ in handler.accepted) == ["blank@example.com",
                                                         "past@example.com"]
    clock.set(datetime(2026, 12, 7, 7, 0))
    sweep_and_send(app)
    assert handler.count_for("dan@example.com") == 1 and len(handler.accepted) == 3
    with app.app_context():  # the three sent so far work
        for username, address in (("past", "past@example.com"), ("blank", "blank@example.com"),
                                  ("dated", "dan@example.com")):
            assert credential_works(db.session, username, handler.last_credential(address))
    clock.set(datetime(2027, 7, 1, 6, 0))
    assert drain(app) == {"sent": 6}
    with app.app_context():  # the last one works (the first ones expired in the months between)
        assert credential_works(db.session, "summer", handler.last_credential("sam@example.com"))


@pytest.mark.parametrize("cell,said", [
    ("31/02/2027", "Start date “31/02/2027” is not a date for sending the invitation"),
    ("next monday", "Start date “next monday” is not a date for sending the invitation"),
    ("2027-13-01", "Start date “2027-13-01” is not a date for sending the invitation"),
])
def test_a_date_that_cannot_be_read_is_an_error_of_its_row(berlin, cell, said):
    app, client, _ = berlin
    batch_id = staged(client, START_DATES.replace("2026-12-07", cell))
    schedule(client, batch_id, send_when="column", send_column="Start date")
    errors = client.get(f"/admin/people/import/{batch_id}?show=error").get_data(as_text=True)
    row = re.search(r'data-line="4".*?</tr>', errors, re.S).group(0)
    assert said in row.replace("&#34;", '"')
    assert choose_all(client, batch_id, "add").status_code == 302
    assert "dated" not in invitations_by_user(app)  # the row was not added


@pytest.mark.parametrize("form,said", [
    ({"send_when": "at", "send_at": "2026-12-01T09:59"}, "has passed"),  # 08:59 UTC
    ({"send_when": "at", "send_at": "tomorrow"}, "is not a date and time"),
    ({"send_when": "at", "send_at": ""}, "Enter the date and time"),
    ({"send_when": "column", "send_column": "Department"}, "The file has no column"),
    ({"send_when": "column", "send_column": "Start date", "send_time": "25:00"},
     "is not a time of day"),
    ({"send_when": "later"}, "Not a valid choice"),
])
def test_a_schedule_that_cannot_be_used_is_refused_and_changes_nothing(berlin, form, said):
    app, client, _ = berlin
    batch_id = staged(client, START_DATES)
    response = schedule(client, batch_id, **form)
    if said == "Not a valid choice":
        assert response.status_code == 400
    else:
        page = client.get(response.location).get_data(as_text=True)
        assert said in page.replace("&#34;", '"')
    review = client.get(f"/admin/people/import/{batch_id}").get_data(as_text=True)
    assert '<span id="schedule-said">now, as soon as the file is submitted</span>' in review


def test_scheduled_ones_can_be_sent_now_or_moved(berlin, clock):
    app, client, handler = berlin
    batch_id = staged(client, START_DATES)
    schedule(client, batch_id, send_when="at", send_at="2026-12-10T08:00")
    choose_all(client, batch_id, "add")
    found = invitations_by_user(app)
    page = client.get("/admin/people/invitations?status=scheduled").get_data(as_text=True)
    assert "Scheduled (6)" in page and page.count("data-scheduled") == 6
    now = client.post("/admin/people/invitations/schedule",
                      data={"selected": [str(found["past"].id)], "send_now": "1",
                            "batch_id": ""})
    assert now.status_code == 302
    sweep_and_send(app)
    assert [a for _, a, _ in handler.accepted] == ["past@example.com"]
    moved = client.post("/admin/people/invitations/schedule",
                        data={"selected": [str(found["dated"].id), str(found["past"].id)],
                              "move": "1", "send_at": "2026-12-02T10:00", "batch_id": ""})
    assert "1 invitation will be sent at 2026-12-02 10:00 Europe/Berlin" in client.get(
        moved.location).get_data(as_text=True)  # the sent one is left alone
    assert invitations_by_user(app)["dated"].next_attempt_at == datetime(2026, 12, 2, 9, 0)
    refused = client.post("/admin/people/invitations/schedule",
                          data={"selected": [str(found["timed"].id)], "move": "1",
                                "send_at": "2026-11-01T10:00", "batch_id": ""})
    assert "has passed" in client.get(refused.location).get_data(as_text=True)
    clock.set(datetime(2026, 12, 2, 9, 0))
    sweep_and_send(app)
    assert handler.count_for("dan@example.com") == 1 and len(handler.accepted) == 2


def test_scheduled_invitations_survive_redis_losing_its_data(app_factory, redis, smtp, clock):
    controller, handler = smtp
    app = app_factory(**mail_config(controller, REDIS_URL=REDIS_URL))
    client = login_admin(app)
    batch_id = staged(client, START_DATES)
    # 2026-12-01 10:00 UTC: within the hour on this test's clock, past on the workers' own
    schedule(client, batch_id, send_when="at", send_at="2026-12-01T10:00")
    choose_all(client, batch_id, "add")
    with app.app_context():
        sweep()  # not due: nothing is enqueued
    assert all(i.enqueued_at is None for i in invitations_by_user(app).values())
    redis.flushdb()
    clock.set(datetime(2026, 12, 1, 10, 0))
    with app.app_context():
        sweep()
    assert all(i.enqueued_at is not None for i in invitations_by_user(app).values())
    worker = subprocess.run(rq_worker_command("mail", burst=True), cwd=ROOT,
                            env=worker_environment(app, MAIL_SERVER="127.0.0.1",
                                                   MAIL_PORT=controller.port),
                            capture_output=True, text=True, timeout=120)
    assert worker.returncode == 0, worker.stderr[-2000:]
    assert {i.status for i in invitations_by_user(app).values()} == {"sent"}
    assert len(handler.accepted) == 6


def test_the_cli_schedules_at_a_time_and_on_a_column(app, admin, cli, tmp_path, clock):
    people = tmp_path / "people.csv"
    people.write_text(START_DATES)
    refused = cli("people", "import", str(people), "--generate-passwords",
                  "--send-at", "2026-11-01 10:00")
    assert refused.exit_code == 1 and "has passed" in refused.stderr
    missing = cli("people", "import", str(people), "--generate-passwords",
                  "--send-on-column", "Hire date")
    assert missing.exit_code == 1 and "the file has no column “Hire date”" in missing.stderr
    alone = cli("people", "import", str(people), "--send-at", "2026-12-24 09:00")
    assert alone.exit_code == 1 and "add --generate-passwords" in alone.stderr
    dry = cli("people", "import", str(people), "--generate-passwords", "--invite-by", "link",
              "--send-on-column", "Start date", "--send-time", "09:15", "--dry-run")
    assert ("Invitations: a link to choose a password, sent on each row's date in "
            "“Start date”, at 09:15 UTC") in dry.stdout
    done = cli("people", "import", str(people), "--generate-passwords", "--invite-by", "link",
               "--send-on-column", "Start date", "--send-time", "09:15")
    assert done.exit_code == 0, done.stderr
    found = invitations_by_user(app)
    assert found["dated"].next_attempt_at == datetime(2026, 12, 7, 9, 15)  # UTC site
    assert found["past"].scheduled_at is None and found["dated"].mode == "link"


def test_the_cli_writes_nothing_when_a_rows_date_cannot_be_read(app, admin, cli, tmp_path):
    people = tmp_path / "people.csv"
    people.write_text(START_DATES.replace("2026-12-07", "someday"))
    result = cli("people", "import", str(people), "--generate-passwords",
                 "--send-on-column", "Start date")
    assert result.exit_code == 1
    assert "Line 4: Start date “someday” is not a date for sending the invitation" in result.stderr
    with app.app_context():
        assert db.session.scalar(select(db.func.count()).select_from(User)) == 1  # the admin


@pytest.mark.parametrize("when,at,column,time_of_day,said", [
    ("soon", "", "", "", "Choose when the invitations go"),
    (AT, "", "", "", "Enter the date and time"),
    (AT, "soon", "", "", "is not a date and time"),
    (AT, "2026-12-01 08:00", "", "", "has passed"),
    (COLUMN, "", "", "", "The file has no column “”"),
    (COLUMN, "", "Start date", "8 o'clock", "is not a time of day"),
])
def test_build_names_what_is_wrong(app, when, at, column, time_of_day, said):
    with app.app_context(), pytest.raises(ScheduleError) as refused:
        build(when, at, column, time_of_day, ["Start date"])
    assert said in str(refused.value)


def test_now_is_the_default_and_kept_as_nothing(app):
    with app.app_context():
        assert build(NOW).to_json() is None


def test_an_unknown_time_zone_stops_the_configuration(tmp_path, monkeypatch):
    from flask import Config

    monkeypatch.setenv("BULKIMPORT_TIME_ZONE", "Mars/Olympus_Mons")
    with pytest.raises(RuntimeError, match="BULKIMPORT_TIME_ZONE='Mars/Olympus_Mons' is not"):
        load_config(Config(str(tmp_path)), str(tmp_path))

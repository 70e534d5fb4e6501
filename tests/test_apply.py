"""Review choices and apply: all or nothing, once only, in the background when large."""

from __future__ import annotations

import subprocess
import threading

import pytest
from conftest import (
    REDIS_URL,
    ROOT,
    add_user,
    batch_id_of,
    choose_all,
    import_file,
    login_admin,
    rq_worker_command,
    sample,
    table_snapshot,
    upload,
    wait_for_jobs,
    worker_environment,
)
from sqlalchemy import func, select, update

from bulkimport.clock import SYSTEM_CLOCK
from bulkimport.extensions import db
from bulkimport.importing import apply as apply_module
from bulkimport.models import ImportBatch, ImportRow, Invitation, User


def make_csv(count: int, start: int = 0, password: bool = False) -> bytes:
    heading = "username,firstname,surname,email" + (",password" if password else "")
    lines = [heading]
    for i in range(start, start + count):
        line = f"user{i:05d},First{i},Last{i},user{i:05d}@example.com"
        lines.append(line + (f",pass-phrase-{i:05d}-ok" if password else ""))
    return ("\n".join(lines) + "\n").encode()


def count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


def batch(app, batch_id: int) -> ImportBatch:
    with app.app_context():
        found = db.session.get(ImportBatch, batch_id)
        db.session.expunge(found)
        return found


def test_user_created_after_review_fails_the_whole_batch(app, client):
    batch_id = batch_id_of(upload(client, sample("minimal.csv")))
    add_user(app, "MGarcia", "someone.else@example.com")
    before = table_snapshot(app)
    response = choose_all(client, batch_id, "add")
    assert response.location.endswith(f"/import/{batch_id}?show=all&page=1")
    page = client.get(response.location).get_data(as_text=True)
    assert "Line 4: the username “mgarcia” was created by someone else after this file was " \
           "reviewed. Upload it again." in page
    assert table_snapshot(app) == before
    assert batch(app, batch_id).status == ImportBatch.FAILED  # open, with the reason


def test_database_refusal_half_way_rolls_everything_back(app, client, monkeypatch):
    """Even when the re-check is bypassed, the database's own unique keys stop the batch and
    the users already inserted in the same statement are rolled back."""
    batch_id = batch_id_of(upload(client, sample("minimal.csv")))
    add_user(app, "APATEL", "other@example.com")
    monkeypatch.setattr(apply_module, "_recheck", lambda *args: None)
    before = table_snapshot(app)
    response = choose_all(client, batch_id, "add")
    page = client.get(response.location).get_data(as_text=True)
    assert "nothing was written" in page
    assert table_snapshot(app) == before
    with app.app_context():
        rows = db.session.scalars(select(ImportRow).where(ImportRow.batch_id == batch_id)).all()
        assert all(r.outcome is None and r.values for r in rows)  # still staged, can be retried


def test_submitting_twice_applies_once(app, client):
    batch_id = import_file(client, sample("minimal.csv"))
    again = choose_all(client, batch_id, "add")
    assert again.location.endswith(f"/import/{batch_id}/result")
    assert "already submitted" in client.get(again.location).get_data(as_text=True)
    assert count(app, User) == 4 and count(app, Invitation) == 3


def test_concurrent_submits_apply_once(app, admin):
    clients = []
    for _ in range(8):
        c = app.test_client()
        c.post("/login", data={"username": "boss", "password": "admin-password-for-tests"})
        clients.append(c)
    batch_id = batch_id_of(upload(clients[0], make_csv(50)))
    barrier = threading.Barrier(len(clients))
    statuses = []

    def submit(c):
        barrier.wait()
        statuses.append(choose_all(c, batch_id, "add").status_code)

    threads = [threading.Thread(target=submit, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [302] * len(clients)
    assert count(app, User) == 51 and count(app, Invitation) == 50
    assert batch(app, batch_id).result == {"added": 50, "updated": 0, "skipped": 0,
                                           "errors": 0, "invitations": 50, "unblocked": 0,
                                           "blocked": 0}


def test_nothing_selected_is_refused(app, client):
    batch_id = batch_id_of(upload(client, sample("minimal.csv")))
    response = choose_all(client, batch_id)
    page = client.get(response.location).get_data(as_text=True)
    assert "No row is selected for Add or Update" in page
    assert count(app, User) == 1


def test_update_changes_only_the_chosen_rows(app, client):
    add_user(app, "jsmith", "john.smith@example.com", firstname="Johnny", surname="Smith")
    add_user(app, "apatel", "anita.patel@example.com", firstname="Anita", surname="Patel")
    batch_id = batch_id_of(upload(client, sample("minimal.csv")))
    page = client.get(f"/admin/people/import/{batch_id}?show=update").get_data(as_text=True)
    assert '<li>firstname: <span class="old">Johnny</span> → John</li>' in page
    choose_all(client, batch_id, "update")
    with app.app_context():
        found = {u.username: u for u in db.session.scalars(select(User))}
        assert found["jsmith"].firstname == "John"
        assert "mgarcia" not in found  # an Add row left on Skip
    results = client.get(f"/admin/people/import/{batch_id}/results.csv").get_data(as_text=True)
    assert '"2","jsmith","update","updated","Updated: firstname."' in results
    assert '"3","apatel","skip","skipped","No change."' in results
    assert '"4","mgarcia","skip","skipped","Skipped."' in results


def test_heading_selects_every_page_and_a_changed_radio_wins(app, client, monkeypatch):
    # 249 invitations are queued; sending them is test_mailing's business, not this test's
    monkeypatch.setattr("bulkimport.importing.submission.wake", lambda: None)
    batch_id = batch_id_of(upload(client, make_csv(250)))
    choose_all(client, batch_id, "add", submit=False)
    with app.app_context():
        rows = db.session.scalars(select(ImportRow).where(ImportRow.batch_id == batch_id)
                                  .order_by(ImportRow.line)).all()
        assert {r.choice for r in rows} == {"add"}
        last = rows[-1]
    # page 3 without JavaScript: only the radio the administrator changed counts
    client.post(f"/admin/people/import/{batch_id}", data={
        "show": "all", "page": "3", "was_all_add": "1", "all_add": "y",
        f"row_{last.id}": "skip", "save": "1"})
    page = client.get(f"/admin/people/import/{batch_id}?page=3").get_data(as_text=True)
    assert '<strong data-selected="add">249</strong> to add' in page
    response = client.post(f"/admin/people/import/{batch_id}",
                           data={"show": "all", "page": "1", "submit": "1"})
    assert response.status_code == 302
    assert count(app, User) == 250  # 249 + the administrator


def test_scripted_form_takes_every_visible_radio(app, client):
    batch_id = batch_id_of(upload(client, make_csv(3)))
    with app.app_context():
        ids = db.session.scalars(select(ImportRow.id).where(ImportRow.batch_id == batch_id)
                                 .order_by(ImportRow.line)).all()
    client.post(f"/admin/people/import/{batch_id}", data={
        "show": "all", "page": "1", "scripted": "1", "was_all_skip": "1", "all_add": "y",
        f"row_{ids[0]}": "add", f"row_{ids[1]}": "skip", f"row_{ids[2]}": "add", "save": "1"})
    with app.app_context():
        choices = db.session.scalars(select(ImportRow.choice).where(ImportRow.batch_id == batch_id)
                                     .order_by(ImportRow.line)).all()
    assert choices == ["add", "skip", "add"]


def test_a_radio_for_an_action_that_does_not_apply_is_refused(app, client):
    add_user(app, "jsmith", "john.smith@example.com", firstname="Johnny", surname="Smith")
    batch_id = batch_id_of(upload(client, sample("minimal.csv")))
    with app.app_context():
        row_id = db.session.scalar(select(ImportRow.id).where(
            ImportRow.batch_id == batch_id, ImportRow.username == "jsmith"))
    response = client.post(f"/admin/people/import/{batch_id}", data={
        "show": "all", "page": "1", f"row_{row_id}": "add", "save": "1"})
    assert response.status_code == 422
    assert "Some choices could not be saved" in response.get_data(as_text=True)


def test_large_batch_is_applied_in_the_background(app_factory):
    app = app_factory(BACKGROUND_ROWS=10)
    client = login_admin(app)
    batch_id = import_file(client, make_csv(30))
    wait_for_jobs(app)
    status = client.get(f"/admin/people/import/{batch_id}/status.json").get_json()
    assert status["status"] == "applied" and status["done"] == status["total"] == 30
    page = client.get(f"/admin/people/import/{batch_id}/result").get_data(as_text=True)
    assert "30 users added" in page
    assert count(app, User) == 31 and count(app, Invitation) == 30


def test_background_progress_page_shows_a_bar(app_factory, monkeypatch):
    app = app_factory(BACKGROUND_ROWS=1)
    monkeypatch.setattr("bulkimport.importing.submission.enqueue", lambda *args: None)
    client = login_admin(app)
    batch_id = import_file(client, make_csv(2))
    page = client.get(f"/admin/people/import/{batch_id}/result").get_data(as_text=True)
    assert 'role="progressbar"' in page and "Waiting for a worker" in page
    assert f'data-progress-url="/admin/people/import/{batch_id}/status.json"' in page


def test_file_passwords_are_hashed_outside_the_request(app, client):
    batch_id = import_file(client, make_csv(3, password=True), generate=False)
    assert batch(app, batch_id).status in (ImportBatch.QUEUED, ImportBatch.APPLYING,
                                           ImportBatch.APPLIED)
    wait_for_jobs(app)
    assert batch(app, batch_id).status == ImportBatch.APPLIED
    with app.app_context():
        hashes = db.session.scalars(select(User.password_hash).where(~User.is_admin)).all()
        assert len(hashes) == 3 and all(h.startswith("$2b$04$") for h in hashes)


def test_staged_file_passwords_are_encrypted(app, client):
    batch_id = batch_id_of(upload(client, make_csv(1, password=True), generate=False))
    with app.app_context():
        row = db.session.scalar(select(ImportRow).where(ImportRow.batch_id == batch_id))
        assert "pass-phrase" not in str(row.values) and row.values["password"].startswith("gAAAA")


def test_applied_batch_keeps_no_staged_values(app, client):
    batch_id = import_file(client, sample("with-errors.csv"))
    with app.app_context():
        rows = db.session.scalars(select(ImportRow).where(ImportRow.batch_id == batch_id)).all()
        assert rows and all(r.values is None and r.raw is None for r in rows)
    assert client.get(f"/admin/people/import/{batch_id}/errors.csv").status_code == 404


def test_expired_batch_is_purged(app, client, clock):
    # The administrator's session outlives the day here: the batch's expiry is the point.
    app.config.update(SESSION_IDLE_MINUTES=48 * 60, SESSION_MAX_HOURS=48)
    batch_id = batch_id_of(upload(client, sample("minimal.csv")))
    clock.advance(hours=app.config["BATCH_TTL_HOURS"] - 1)
    assert client.get(f"/admin/people/import/{batch_id}").status_code == 200  # not yet
    clock.advance(hours=1)
    response = client.get(f"/admin/people/import/{batch_id}")
    assert response.status_code == 302
    assert "expired" in client.get(response.location).get_data(as_text=True)
    assert batch(app, batch_id).status == ImportBatch.EXPIRED
    assert count(app, ImportRow) == 0
    assert choose_all(client, batch_id, "add").status_code == 302
    assert count(app, User) == 1


def test_purge_command_expires_old_batches(app, client, clock):
    batch_id_of(upload(client, sample("minimal.csv")))
    assert "0 expired upload(s) purged." in app.test_cli_runner().invoke(
        args=["purge-batches"]).output
    clock.advance(hours=app.config["BATCH_TTL_HOURS"] + 1)
    result = app.test_cli_runner().invoke(args=["purge-batches"])
    assert "1 expired upload(s) purged." in result.output
    assert count(app, ImportRow) == 0


def test_another_administrators_batch_is_not_found(app, client):
    batch_id = batch_id_of(upload(client, sample("minimal.csv")))
    with app.app_context():
        from bulkimport.accounts import create_admin

        create_admin(db.session, "other", "other@example.com", "second-admin-secret")
        db.session.commit()
    other = app.test_client()
    other.post("/login", data={"username": "other", "password": "second-admin-secret"})
    assert other.get(f"/admin/people/import/{batch_id}").status_code == 404
    assert choose_all(other, batch_id, "add").status_code == 404
    assert count(app, User) == 2


def test_rq_worker_process_applies_the_batch(app_factory, redis):
    # a real worker process applies the batch, on the real clock: so must this application
    app = app_factory(REDIS_URL=REDIS_URL, BACKGROUND_ROWS=5, CLOCK=SYSTEM_CLOCK)
    client = login_admin(app)
    batch_id = import_file(client, make_csv(20, password=True), generate=False)
    assert batch(app, batch_id).status == ImportBatch.QUEUED
    worker = subprocess.run(rq_worker_command("imports", burst=True), cwd=ROOT,
                            env=worker_environment(app), capture_output=True, text=True,
                            timeout=120)
    assert worker.returncode == 0, worker.stderr[-2000:]
    assert batch(app, batch_id).status == ImportBatch.APPLIED, worker.stderr[-2000:]
    assert count(app, User) == 21
    # the job carried the batch id only: no password reached Redis
    for key in redis.keys("*"):
        dump = redis.dump(key) or b""
        assert b"pass-phrase" not in dump


@pytest.mark.parametrize("rows,given_back", [
    # a row in error with the right number of fields
    (b"gooduser,Good,User,good@example.com,first-secret-phrase\n"
     b"baduser,Bad,User,not-an-email,second-secret-phrase\n",
     ['"baduser","Bad","User","not-an-email","second-secret-phrase",']),
    # ragged rows: the password is not in the password column's cell
    (b"jdoe,John,jdoe@example.com,Sup3r-secret-phrase\n"
     b"asmith,Ann,Smith,Jr,ann@example.com,An0ther-secret-phrase\n",
     # a short row is padded, so that its error lands under `error` when it is uploaded again
     ['"jdoe","John","jdoe@example.com","Sup3r-secret-phrase","","The row has 4 fields',
      '"asmith","Ann","Smith","Jr","ann@example.com","An0ther-secret-phrase",']),
])
def test_file_passwords_of_rows_in_error_are_not_stored_in_clear(app, client, rows, given_back):
    data = b"username,firstname,surname,email,password\n" + rows
    batch_id = batch_id_of(upload(client, data, generate=False))
    with app.app_context():
        stored = " ".join(str((r.values, r.raw)) for r in db.session.scalars(select(ImportRow)))
    assert "secret-phrase" not in stored
    errors_csv = client.get(f"/admin/people/import/{batch_id}/errors.csv").get_data(as_text=True)
    for line in given_back:  # the administrator gets the file's own cells back to fix them
        assert line in errors_csv


def test_a_batch_whose_job_was_lost_is_enqueued_again(app_factory, clock, monkeypatch):
    from bulkimport.background import LOST_JOB_GRACE
    from bulkimport.importing import submission as import_jobs

    app = app_factory(BACKGROUND_ROWS=2)
    client = login_admin(app)
    monkeypatch.setattr(import_jobs, "enqueue", lambda *args: None)  # the job never arrives
    batch_id = import_file(client, make_csv(3))
    assert batch(app, batch_id).status == ImportBatch.QUEUED
    monkeypatch.undo()
    with app.app_context():
        import_jobs.recover_stale_batches()  # just enqueued: the job may be on its way
        assert batch(app, batch_id).status == ImportBatch.QUEUED
        clock.advance(LOST_JOB_GRACE.total_seconds() + 1)  # seconds, not minutes
        import_jobs.recover_stale_batches()
    wait_for_jobs(app)
    assert batch(app, batch_id).status == ImportBatch.APPLIED
    assert count(app, User) == 4


def test_a_queued_batch_whose_job_is_waiting_is_not_enqueued_twice(app_factory, clock,
                                                                   monkeypatch):
    from bulkimport import background
    from bulkimport.background import LOST_JOB_GRACE
    from bulkimport.importing import submission as import_jobs

    app = app_factory(BACKGROUND_ROWS=2)
    client = login_admin(app)
    monkeypatch.setattr(import_jobs, "enqueue", lambda *args: None)
    batch_id = import_file(client, make_csv(3))
    enqueued = []
    monkeypatch.setattr(import_jobs, "enqueue", lambda *args: enqueued.append(args))
    monkeypatch.setattr(import_jobs, "ids_in_live_jobs", lambda name: {batch_id})
    with app.app_context():
        clock.advance(LOST_JOB_GRACE.total_seconds() + 1)
        import_jobs.recover_stale_batches()  # a job in the queue carries it
        assert enqueued == []
        monkeypatch.setattr(import_jobs, "ids_in_live_jobs", lambda name: None)
        import_jobs.recover_stale_batches()  # the queue cannot be read: nothing is guessed
        assert enqueued == []
        monkeypatch.setattr(import_jobs, "ids_in_live_jobs", background.ids_in_live_jobs)
        import_jobs.recover_stale_batches()
        import_jobs.recover_stale_batches()  # the second sweep finds it enqueued just now
    assert enqueued == [("apply_batch", batch_id)]


def test_a_batch_whose_worker_died_is_failed_and_can_be_submitted_again(app, client, clock):
    from bulkimport.importing.submission import recover_stale_batches

    stale = app.config["APPLY_STALE_SECONDS"]
    assert stale == 60  # the default: a minute, not half an hour
    batch_id = batch_id_of(upload(client, sample("minimal.csv")))
    with app.app_context():  # a worker took it, then died without a word
        db.session.execute(update(ImportBatch).values(status=ImportBatch.APPLYING,
                                                      updated_at=clock.now()))
        db.session.commit()
        clock.advance(stale - 1)
        recover_stale_batches()
        assert db.session.get(ImportBatch, batch_id).status == ImportBatch.APPLYING
        clock.advance(2)
        recover_stale_batches()
    status = client.get(f"/admin/people/import/{batch_id}/status.json").get_json()
    assert status["status"] == "failed" and "worker applying this file stopped" in status["error"]
    page = client.get(f"/admin/people/import/{batch_id}/result").get_data(as_text=True)
    assert "The worker applying this file stopped; nothing was written." in page
    choose_all(client, batch_id, "add")
    assert count(app, User) == 4

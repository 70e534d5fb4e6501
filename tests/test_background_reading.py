"""Big uploads are read and checked by a background job: the upload request answers at once
with a progress page, the page shows the stage and the rows done, and the review opens when the
rows are staged; a file refused in the background says why and writes nothing; a worker that
stops is shown as stopped. Small files stay immediate."""

from __future__ import annotations

import html
import subprocess

import pytest
from conftest import (
    REDIS_URL,
    ROOT,
    login_admin,
    rq_worker_command,
    upload,
    wait_for_jobs,
    worker_environment,
)
from sqlalchemy import func, select

from bulkimport.clock import SYSTEM_CLOCK
from bulkimport.extensions import db
from bulkimport.importing import reading
from bulkimport.models import ImportBatch, ImportRow, UploadFile


def make_csv(count: int) -> bytes:
    lines = ["username,firstname,surname,email"]
    lines += [f"big{i:06d},First{i},Last{i},big{i:06d}@example.com" for i in range(count)]
    return ("\n".join(lines) + "\n").encode()


def staged_rows(app, batch_id: int) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(ImportRow)
                                 .where(ImportRow.batch_id == batch_id))


def the_batch(app, batch_id: int) -> ImportBatch:
    with app.app_context():
        batch = db.session.get(ImportBatch, batch_id)
        db.session.expunge(batch)
        return batch


@pytest.fixture
def held(monkeypatch):
    """Jobs enqueued by a reading are held here instead of running, so that a test sees the
    state between the request and the job."""
    jobs: list[int] = []
    monkeypatch.setattr(reading, "enqueue", lambda name, batch_id: jobs.append(batch_id))
    return jobs


def test_a_big_upload_answers_at_once_and_the_job_stages_it(app_factory, held):
    app = app_factory(BACKGROUND_UPLOAD_KB=1)
    client = login_admin(app)
    response = upload(client, make_csv(200))
    batch_id = held[0]
    assert response.location.endswith(f"/import/{batch_id}/reading")
    assert the_batch(app, batch_id).status == ImportBatch.READING
    assert staged_rows(app, batch_id) == 0  # nothing was read inside the request
    page = html.unescape(client.get(response.location).get_data(as_text=True))
    assert "is read and checked in the background" in page and "Reading the file" in page
    assert client.get(f"/admin/people/import/{batch_id}").location.endswith("/reading")
    seen: list[tuple[str, int, int]] = []
    with app.app_context():
        original = db.session.commit

        def watching_commit():
            batch = db.session.get(ImportBatch, batch_id)
            seen.append((batch.progress_stage, batch.progress_done, batch.progress_total))
            original()

        db.session.commit = watching_commit
        try:
            reading.read_upload_job(batch_id)
        finally:
            db.session.commit = original
    stages = [stage for stage, _, _ in seen]
    assert stages.index("Checking the rows") < stages.index("Looking up existing users") \
        < stages.index("Saving the rows for review")
    assert ("Saving the rows for review", 200, 200) in seen
    assert the_batch(app, batch_id).status == ImportBatch.STAGED
    assert client.get(response.location).location.endswith(f"/import/{batch_id}")
    review = client.get(f"/admin/people/import/{batch_id}").get_data(as_text=True)
    assert "The file proposes 200 new users" in review


def test_a_small_upload_stays_immediate(app_factory, held):
    app = app_factory(BACKGROUND_UPLOAD_KB=1024)
    client = login_admin(app)
    response = upload(client, make_csv(3))
    assert response.location.endswith("/import/1") and held == []


@pytest.mark.parametrize(("data", "message"), [
    (b"username,firstname,surname,email\n" + b'ann,"Ann,Lee,ann@example.com\n' * 60,
     "Lines 2–3: a quoted value is not closed properly"),
    (b"PK\x03\x04" + b"\x00" * 2000, "This Excel workbook is damaged and cannot be read."),
])
def test_a_file_refused_in_the_background_says_why_and_writes_nothing(app_factory, held, data,
                                                                      message):
    app = app_factory(BACKGROUND_UPLOAD_KB=1)
    client = login_admin(app)
    response = upload(client, data)
    batch_id = held[0]
    with app.app_context():
        reading.read_upload_job(batch_id)
    page = html.unescape(client.get(response.location).get_data(as_text=True))
    assert "The file was not staged; nothing was written." in page and message in page
    assert client.get(f"/admin/people/import/{batch_id}").location.endswith("/reading")
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(UploadFile)) == 0
    assert staged_rows(app, batch_id) == 0


def test_a_worker_that_stops_is_shown_as_stopped(app_factory, held, clock):
    app = app_factory(BACKGROUND_UPLOAD_KB=1, READING_STALLED_SECONDS=120)
    client = login_admin(app)
    response = upload(client, make_csv(200))
    assert "The worker stopped" not in client.get(response.location).get_data(as_text=True)
    clock.advance(121)
    page = client.get(response.location).get_data(as_text=True)
    assert "The worker stopped" in page


def test_a_100000_row_upload_is_read_in_the_background_and_reaches_the_review(app_factory):
    app = app_factory(BACKGROUND_UPLOAD_KB=1024)
    client = login_admin(app)
    data = make_csv(100_000)
    response = upload(client, data)
    assert "/reading" in response.location  # the request only kept the file
    wait_for_jobs(app)
    assert client.get(response.location).location.endswith("/import/1")
    review = client.get("/admin/people/import/1").get_data(as_text=True)
    assert "The file proposes 100000 new users" in review
    assert staged_rows(app, 1) == 100_000


def test_a_real_rq_worker_reads_the_upload(app_factory, redis):
    app = app_factory(REDIS_URL=REDIS_URL, BACKGROUND_UPLOAD_KB=1, CLOCK=SYSTEM_CLOCK)
    client = login_admin(app)
    response = upload(client, make_csv(300))
    batch_id = int(response.location.split("/")[-2])
    assert the_batch(app, batch_id).status == ImportBatch.READING
    worker = subprocess.run(rq_worker_command("imports", burst=True), cwd=ROOT,
                            env=worker_environment(app), capture_output=True, text=True,
                            timeout=120)
    assert worker.returncode == 0, worker.stderr[-2000:]
    assert the_batch(app, batch_id).status == ImportBatch.STAGED, worker.stderr[-2000:]
    assert staged_rows(app, batch_id) == 300

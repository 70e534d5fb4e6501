"""The progress of a background apply moves while its one transaction writes (issue 14, point
10): each stage in plain words with how far it is, on the page and in its JSON, while nobody
else sees a single row before the commit; the report lives in Redis when the site has it, so
that a worker's report reaches every web process."""

from __future__ import annotations

import re
import threading

import pytest
from conftest import ADMIN_PASSWORD, REDIS_URL, import_file, login_admin, wait_for_jobs
from sqlalchemy import create_engine, func, select
from test_apply import make_csv
from test_browser import (  # noqa: F401 (fixtures)
    GENERATE_LABEL,
    log_in,
    page,
    select_all,
    serving,
)

from bulkimport.importing import apply, live_progress, submission
from bulkimport.importing.apply import (
    ADDING,
    AUDITING,
    FINISHING,
    INVITING,
    PROFILE,
    UPDATING,
    WAITING,
)
from bulkimport.importing.live_progress import Stage
from bulkimport.models import User

ROWS = 30


def _users_seen_from_outside(app) -> int:
    """Users as another connection sees them (not the writing transaction's)."""
    engine = create_engine(app.config["DATABASE_URL"])
    try:
        with engine.connect() as connection:
            return connection.execute(select(func.count()).select_from(User)).scalar_one()
    finally:
        engine.dispose()


def test_the_stages_move_while_the_one_transaction_writes(app_factory, monkeypatch):
    app = app_factory(BACKGROUND_ROWS=5)  # applied by an in-process job
    # the steps of 5,000 rows, in 30: a statement of 10 rows, and every step reported
    monkeypatch.setattr(apply, "WRITE_CHUNK", 10)
    monkeypatch.setattr(submission, "PROGRESS_EVERY", 1)
    reported: list[Stage] = []
    reached, go_on = threading.Event(), threading.Event()
    publish = live_progress.publish

    def publish_and_hold(batch_id: int, stage: Stage) -> None:
        publish(batch_id, stage)
        reported.append(stage)
        if stage == (ADDING, 20, ROWS):  # in the middle of the writing transaction
            reached.set()
            assert go_on.wait(120), "the test never looked"

    monkeypatch.setattr(live_progress, "publish", publish_and_hold)
    client = login_admin(app)
    try:
        batch_id = import_file(client, make_csv(ROWS))
        assert reached.wait(120), "the apply never reached its third statement"
        status = client.get(f"/admin/people/import/{batch_id}/status.json").get_json()
        assert status | {"result": None} == {
            "status": "applying", "stage": ADDING, "done": 20, "total": ROWS,
            "label": "Adding users: 20 of 30", "percent": 66, "error": None,
            "result": None}
        page = client.get(f"/admin/people/import/{batch_id}/result").get_data(as_text=True)
        assert '<p data-progress-label aria-live="polite">Adding users: 20 of 30</p>' in page
        assert 'aria-valuenow="66"' in page and '<li class="fw-bold text-body">Adding users' \
            in page
        # every stage is listed, in order; no file passwords here, so no hashing
        stages = page.split('id="progress-stages"', 1)[1].split("</ol>", 1)[0]
        assert re.findall(r"<li[^>]*>([^<]+)</li>", stages) == [
            WAITING, ADDING, UPDATING, PROFILE, INVITING, AUDITING, FINISHING]
        assert _users_seen_from_outside(app) == 1  # the admin: nothing half-written shows
    finally:
        go_on.set()
    wait_for_jobs(app)
    status = client.get(f"/admin/people/import/{batch_id}/status.json").get_json()
    assert status["status"] == "applied" and status["done"] == status["total"] == ROWS
    assert _users_seen_from_outside(app) == ROWS + 1
    names = list(dict.fromkeys(stage.name for stage in reported))
    assert names == ["Writing users", ADDING, INVITING, AUDITING, FINISHING]
    assert [s.done for s in reported if s.name == ADDING] == [0, 10, 20]
    with app.app_context():
        assert live_progress.read(batch_id) is None  # forgotten once written


def test_profile_fields_and_updates_are_stages_too(app_factory, monkeypatch):
    app = app_factory(BACKGROUND_ROWS=5)
    client = login_admin(app)
    client.post("/admin/people/fields/new", data={
        "name": "department", "label": "Department", "type": "text", "options": ""})
    import_file(client, make_csv(30))
    wait_for_jobs(app)
    reported: list[Stage] = []
    publish = live_progress.publish
    monkeypatch.setattr(live_progress, "publish",
                        lambda batch_id, stage: (publish(batch_id, stage), reported.append(stage)))
    csv = make_csv(30).decode().replace("username,firstname,surname,email",
                                        "username,firstname,surname,email,department")
    lines = csv.splitlines()
    changed = "\n".join([lines[0]] + [line + ",Sales" for line in lines[1:]]) + "\n"
    import_file(client, changed.encode(), "update")
    wait_for_jobs(app)
    names = list(dict.fromkeys(stage.name for stage in reported))
    assert names == ["Writing users", UPDATING, PROFILE, AUDITING, FINISHING]


@pytest.fixture
def two_processes(app_factory, redis):
    """Two applications on one database and one Redis: a worker's and a web process's."""
    worker = app_factory(REDIS_URL=REDIS_URL)
    web = app_factory(REDIS_URL=REDIS_URL)
    return worker, web


def test_a_workers_report_reaches_the_web_process_through_redis(two_processes, redis):
    worker, web = two_processes
    with worker.app_context():
        live_progress.publish(7, Stage(ADDING, 1000, 5000))
    with web.app_context():
        assert live_progress.read(7) == (ADDING, 1000, 5000)
        assert live_progress.read(8) is None
    keys = [key.decode() for key in redis.keys("*")]
    assert len(keys) == 1 and keys[0].startswith("bulkimport:apply-progress:")
    # the key names the database by a digest: its URL (perhaps with a password) stays out
    assert worker.config["DATABASE_URL"] not in keys[0]
    assert 0 < redis.ttl(keys[0]) <= live_progress.KEEP_SECONDS
    with worker.app_context():
        live_progress.clear(7)
    with web.app_context():
        assert live_progress.read(7) is None


def test_a_redis_outage_never_stops_the_write_or_the_page(app_factory):
    app = app_factory(REDIS_URL="redis://127.0.0.1:1/0")  # nothing listens there
    with app.app_context():
        live_progress.publish(3, Stage(ADDING, 0, 10))  # let go, not raised
        assert live_progress.read(3) is None
        live_progress.clear(3)



def test_the_page_follows_the_stages_in_a_browser(app_factory, page, monkeypatch):  # noqa: F811
    from playwright.sync_api import expect

    monkeypatch.setattr(apply, "WRITE_CHUNK", 10)
    monkeypatch.setattr(submission, "PROGRESS_EVERY", 1)
    held = {(ADDING, 10, ROWS): threading.Event(), (AUDITING, 0, 0): threading.Event()}
    reached = {stage: threading.Event() for stage in held}
    publish = live_progress.publish

    def publish_and_hold(batch_id: int, stage: Stage) -> None:
        publish(batch_id, stage)
        if stage in held:
            reached[stage].set()
            assert held[stage].wait(120), "the test never looked"

    monkeypatch.setattr(live_progress, "publish", publish_and_hold)
    app = app_factory(WTF_CSRF_ENABLED=True, BACKGROUND_ROWS=5)
    with serving(app) as base:
        try:
            log_in(page, base, "boss", ADMIN_PASSWORD)
            page.goto(f"{base}/admin/people/import")
            page.get_by_label("CSV file").set_input_files(
                {"name": "staff.csv", "mimeType": "text/csv", "buffer": make_csv(ROWS)})
            page.get_by_label(GENERATE_LABEL, exact=True).check()
            page.get_by_role("button", name="Upload and review").click()
            select_all(page, "add")
            page.get_by_role("button", name="Submit", exact=True).click()
            assert reached[ADDING, 10, ROWS].wait(120)
            label = page.locator("[data-progress-label]")
            expect(label).to_have_text("Adding users: 10 of 30")
            expect(page.locator("#progress-stages li.fw-bold")).to_have_text(ADDING)
            expect(page.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "33")
            page.evaluate("() => { window.sameDocument = true; }")
            held[ADDING, 10, ROWS].set()
            assert reached[AUDITING, 0, 0].wait(120)
            expect(label).to_have_text(AUDITING)
            expect(page.locator("#progress-stages li.fw-bold")).to_have_text(AUDITING)
            assert page.evaluate("() => window.sameDocument")  # the script moved it, no reload
            held[AUDITING, 0, 0].set()
            expect(page.get_by_role("status")).to_contain_text("30 users added")
        finally:  # a job held by the test would hold up the server's end
            for event in held.values():
                event.set()
    assert page.problems == []

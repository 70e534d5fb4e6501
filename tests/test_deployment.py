"""The production parts together (issue 7, points 3 and 5): gunicorn with several workers on
PostgreSQL and Redis, two `rq worker` processes and an aiosmtpd relay, driven over real HTTP
through the forms (CSRF tokens and all)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import (
    ADMIN_PASSWORD,
    POSTGRES_URL,
    REDIS_URL,
    ROOT,
    _empty_tables,
    authenticate,
    make_app,
    require,
    rq_worker_command,
)
from smtpserver import free_port, password_in, start_server
from sqlalchemy import func, select

from bulkimport.accounts import create_admin
from bulkimport.clock import SYSTEM_CLOCK
from bulkimport.extensions import db
from bulkimport.models import ImportBatch, Invitation, User

BIN = Path(sys.executable).parent
CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|'
                  r'name="csrf_token" value="([^"]+)"')


class Browser:
    """A logged-in HTTP session that finds each form's CSRF token as a browser would."""

    def __init__(self, base: str, username: str):
        import requests

        self.base, self.session = base, requests.Session()
        page = self.session.get(f"{base}/login").text
        response = self.session.post(f"{base}/login", data={
            "csrf_token": self.token(page), "username": username, "password": ADMIN_PASSWORD},
            allow_redirects=False)
        assert response.status_code == 302, response.text[:500]

    @staticmethod
    def token(page: str) -> str:
        found = CSRF.search(page)
        assert found, page[:500]
        return found.group(1) or found.group(2)

    def upload(self, data: bytes, name: str) -> str:
        """Upload with generated passwords; returns the review page's URL."""
        page = self.session.get(f"{self.base}/admin/people/import").text
        response = self.session.post(
            f"{self.base}/admin/people/import", allow_redirects=False,
            data={"csrf_token": self.token(page), "generate_passwords": "y"},
            files={"file": (name, data, "text/csv")})
        assert response.status_code == 302, response.text[:1000]
        return self.base + response.headers["Location"]

    def submit_form(self, review_url: str) -> dict:
        """The review form's fields for ticking the Add heading and pressing Submit."""
        token = self.token(self.session.get(review_url).text)
        return {"csrf_token": token, "show": "all", "page": "1", "was_all_skip": "1",
                "all_add": "y", "submit": "1"}


def users_csv(prefix: str, start: int, count: int) -> bytes:
    lines = ["username,firstname,surname,email"]
    lines += [f"{prefix}{i:05d},Given{i},Family{i},{prefix}{i:05d}@example.com"
              for i in range(start, start + count)]
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def stack(migrated, tmp_path):
    """gunicorn (4 workers) + 2 rq workers + aiosmtpd on PostgreSQL and Redis; yields
    (base URL, SMTP handler, app for direct checks)."""
    require(bool(POSTGRES_URL), "PostgreSQL (BULKIMPORT_TEST_POSTGRES_URL)")
    require(bool(REDIS_URL), "Redis (BULKIMPORT_TEST_REDIS_URL)")
    from redis import Redis

    Redis.from_url(REDIS_URL).flushdb()
    controller, handler = start_server()
    url = migrated("postgresql")
    app = make_app(url, tmp_path / "instance", CLOCK=SYSTEM_CLOCK)  # beside real processes
    port = free_port()
    logs = open(tmp_path / "stack.log", "w")  # noqa: SIM115  (closed below)
    processes: list[subprocess.Popen] = []
    try:  # everything started is stopped, and the tables emptied, even if the start fails
        with app.app_context():
            for name in ("boss", "chief"):
                create_admin(db.session, name, f"{name}@example.com", ADMIN_PASSWORD)
            db.session.commit()
        env = {**os.environ, "BULKIMPORT_DATABASE_URL": url, "BULKIMPORT_REDIS_URL": REDIS_URL,
               "BULKIMPORT_SECRET_KEY": "stack-secret", "BULKIMPORT_BCRYPT_ROUNDS": "4",
               "BULKIMPORT_MAIL_SERVER": "127.0.0.1",
               "BULKIMPORT_MAIL_PORT": str(controller.port),
               "BULKIMPORT_MAIL_RATE_PER_MINUTE": "0", "BULKIMPORT_MAIL_CHUNK_SIZE": "50",
               "BULKIMPORT_BACKGROUND_ROWS": "100000", "BULKIMPORT_LOG_FORMAT": "json"}
        processes.append(subprocess.Popen(
            [str(BIN / "gunicorn"), "--workers", "4", "--threads", "4", "--bind",
             f"127.0.0.1:{port}", "wsgi:app"], cwd=ROOT, env=env, stdout=logs,
            stderr=subprocess.STDOUT))
        for n in range(2):
            processes.append(subprocess.Popen(rq_worker_command(name=f"stack-{n}"), cwd=ROOT,
                                              env=env, stdout=logs, stderr=subprocess.STDOUT))
        base = f"http://127.0.0.1:{port}"
        _wait_for(base)
        yield base, handler, app
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        logs.close()
        controller.stop()
        Redis.from_url(REDIS_URL).flushdb()
        _empty_tables(app)


def _wait_for(base: str) -> None:
    """Poll /healthz until the stack answers healthy (a generous bound: four gunicorn workers
    booting on a busy machine may take a while to answer, which is not what is tested)."""
    import requests

    deadline = time.monotonic() + 180
    while True:
        try:
            if requests.get(f"{base}/healthz", timeout=30).status_code == 200:
                return
        except requests.RequestException:  # refused while booting, or slow to answer
            pass
        assert time.monotonic() < deadline, "gunicorn did not come up"
        time.sleep(0.2)


def _count(app, model, *where) -> int:
    with app.app_context():
        value = db.session.scalar(select(func.count()).select_from(model).where(*where))
        db.session.remove()
        return value


def test_2000_users_through_the_forms_each_get_exactly_one_working_password(stack):
    base, handler, app = stack
    browser = Browser(base, "boss")
    review = browser.upload(users_csv("load", 0, 2000), "load.csv")
    response = browser.session.post(review, data=browser.submit_form(review))
    assert response.status_code == 200 and "2000 users added" in response.text
    deadline = time.monotonic() + 300
    while _count(app, Invitation, Invitation.status.in_(("queued", "sending"))):
        assert time.monotonic() < deadline, "invitations still pending"
        time.sleep(0.5)
    assert _count(app, Invitation, Invitation.status == "sent") == 2000
    by_address: dict[str, list[bytes]] = {}
    for _, address, message in handler.accepted:
        by_address.setdefault(address, []).append(message)
    assert len(by_address) == 2000
    assert all(len(messages) == 1 for messages in by_address.values())  # exactly one each
    with app.app_context():  # and every delivered password logs in (bcrypt cost 4 here)
        for address, (message,) in by_address.items():
            username = address.split("@")[0]
            assert authenticate(db.session, username, password_in(message)) is not None
        db.session.rollback()


def test_20_simultaneous_submits_apply_once_and_overlapping_imports_one_wins(stack):
    base, _, app = stack
    boss, chief = Browser(base, "boss"), Browser(base, "chief")
    review = boss.upload(users_csv("race", 0, 300), "race.csv")
    form = boss.submit_form(review)
    statuses: list[int] = []
    barrier = threading.Barrier(20)

    def submit() -> None:
        barrier.wait()
        statuses.append(boss.session.post(review, data=form).status_code)

    threads = [threading.Thread(target=submit) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 20
    assert _count(app, User, User.username.like("race%")) == 300
    assert _count(app, Invitation) == 300

    # Two administrators, two files sharing 100 new usernames, submitted at the same moment.
    first = boss.upload(users_csv("both", 0, 200), "first.csv")
    second = chief.upload(users_csv("both", 100, 200), "second.csv")
    forms = [(boss, first, boss.submit_form(first)), (chief, second, chief.submit_form(second))]
    barrier = threading.Barrier(2)
    pages: list[str] = []

    def race(browser, url, data) -> None:
        barrier.wait()
        pages.append(browser.session.post(url, data=data).text)

    threads = [threading.Thread(target=race, args=f) for f in forms]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with app.app_context():
        statuses = sorted(db.session.scalars(select(ImportBatch.status).where(
            ImportBatch.filename.in_(("first.csv", "second.csv")))))
        db.session.remove()
    # The loser is refused with the reason and stays open to be fixed and submitted again.
    assert statuses == ["applied", "failed"]
    assert _count(app, User, User.username.like("both%")) == 200  # the winner's, nothing more
    refused = [p for p in pages if 'class="alert alert-danger"' in p]
    assert len(refused) == 1, [re.findall(r'alert-\w+" role="alert">([^<]+)', p) for p in pages]
    assert "was created by someone else after this file was reviewed. Upload it again." \
        in refused[0]

"""Shared fixtures: an application on each available database, logged-in clients, users written
straight to the database, and helpers that walk the import journey through the real HTTP views.

Tests run on SQLite always, and on PostgreSQL too when BULKIMPORT_TEST_POSTGRES_URL names a
server (CI sets it). Under CI=true a missing PostgreSQL, Redis or browser fails instead of skipping.
Every application of a test reads the same ManualClock (the `clock` fixture): a test moves the
time with `clock.advance(...)` instead of sleeping or editing timestamps. Only tests that share
the database with real processes (workers, gunicorn) pass `CLOCK=SYSTEM_CLOCK`.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bulkimport import create_app
from bulkimport.accounts import create_admin
from bulkimport.clock import ManualClock
from bulkimport.extensions import db
from bulkimport.models import User, fold_key
from bulkimport.security import hash_password

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
IN_CI = os.environ.get("CI") == "true"
POSTGRES_URL = os.environ.get("BULKIMPORT_TEST_POSTGRES_URL", "")
REDIS_URL = os.environ.get("BULKIMPORT_TEST_REDIS_URL", "")


def _redis_url_of_this_worker(url: str) -> str:
    """Each pytest-xdist worker gets its own Redis database (the given one, then the next)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    if not url or not worker.startswith("gw"):
        return url
    base, _, number = url.rpartition("/")
    return f"{base}/{int(number or 0) + int(worker[2:])}"


REDIS_URL = _redis_url_of_this_worker(REDIS_URL)
ADMIN_PASSWORD = "admin-password-for-tests"
USER_PASSWORD = "plain-user-password"


def require(available: bool, what: str) -> None:
    """Skip a test whose real part is missing on a developer machine; fail it in CI."""
    if not available:
        if IN_CI:
            pytest.fail(f"{what} is required in CI but is not available")
        pytest.skip(f"{what} is not available")


def sample(name: str) -> bytes:
    """The bytes of a sample file committed in tests/data/samples."""
    return (DATA / "samples" / name).read_bytes()


def backends() -> list[str]:
    """The databases the `app` fixture runs on."""
    if IN_CI and not POSTGRES_URL:
        raise RuntimeError("CI=true needs BULKIMPORT_TEST_POSTGRES_URL (see .ci/run)")
    return ["sqlite", "postgresql"] if POSTGRES_URL else ["sqlite"]


def _worker_suffix() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def postgres_database():
    """A database of our own on the PostgreSQL server, created once and dropped at the end."""
    require(bool(POSTGRES_URL), "PostgreSQL (BULKIMPORT_TEST_POSTGRES_URL)")
    server = make_url(POSTGRES_URL)
    # The process id keeps two runs on one server apart; databases of processes that no longer
    # exist (a run that was killed) are dropped here.
    name = f"bulkimport_test_{os.getpid()}_{_worker_suffix()}"
    admin_engine = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as conn:
        for (stale,) in conn.execute(text(
                "SELECT datname FROM pg_database WHERE datname LIKE 'bulkimport\\_test\\_%'")):
            pid = stale.split("_")[2]
            if not pid.isdigit() or not os.path.exists(f"/proc/{pid}"):
                conn.execute(text(f'DROP DATABASE IF EXISTS "{stale}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield server.set(database=name).render_as_string(hide_password=False)
    with admin_engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin_engine.dispose()


def database_url(backend: str, request, tmp_path_factory) -> str:
    """The URL of a migrated, empty database for `backend`."""
    if backend == "postgresql":
        return request.getfixturevalue("postgres_database")
    return f"sqlite:///{tmp_path_factory.getbasetemp() / 'test.sqlite'}"


@pytest.fixture(scope="session")
def migrated(tmp_path_factory, request):
    """Run the real migrations once per backend, returning a function backend → URL."""
    done: dict[str, str] = {}

    def url_for(backend: str) -> str:
        if backend not in done:
            url = database_url(backend, request, tmp_path_factory)
            app = create_app({"DATABASE_URL": url, "TESTING": True,
                              "SECRET_KEY": "test-secret-key"})  # no key file in instance/
            with app.app_context():
                from flask_migrate import upgrade

                upgrade()
                db.engine.dispose()
            done[backend] = url
        return done[backend]

    return url_for


def make_app(url: str, instance: Path, **overrides):
    """An application for tests: fast bcrypt, no CSRF unless asked, its own instance folder, a
    ManualClock unless `CLOCK` is given, and no send-rate limit unless one is asked for (the
    tests of the limit set it; elsewhere its state would tie a test to the ones before it)."""
    config = {"DATABASE_URL": url, "TESTING": True, "WTF_CSRF_ENABLED": False,
              "BCRYPT_ROUNDS": 4, "SECRET_KEY": "test-secret-key", "REDIS_URL": "",
              "CLOCK": ManualClock(), "MAIL_RATE_PER_MINUTE": 0}
    config.update(overrides)
    app = create_app(config)
    app.instance_path = str(instance)
    return app


def _empty_tables(app) -> None:
    with app.app_context():
        names = [t.name for t in reversed(db.metadata.sorted_tables)]
        with db.engine.begin() as conn:
            if db.engine.dialect.name == "postgresql":
                conn.execute(text("TRUNCATE " + ", ".join(names) + " RESTART IDENTITY CASCADE"))
            else:
                for name in names:
                    conn.execute(text(f"DELETE FROM {name}"))
            # the row the migrations seed: English, the default language
            conn.execute(text("INSERT INTO languages (code, name, is_default, created_at) "
                              "VALUES ('en', 'English', true, CURRENT_TIMESTAMP)"))
        db.session.remove()
        db.engine.dispose()


@pytest.fixture(params=backends())
def backend(request) -> str:
    """The database backend of this test run: sqlite or postgresql."""
    return request.param


@pytest.fixture
def app_factory(backend, migrated, tmp_path):
    """Build applications on the migrated database of `backend`, all on one ManualClock (the
    `clock` fixture, also `app_factory.clock`); tables are emptied after."""
    url = migrated(backend)
    made = []
    shared_clock = ManualClock()

    def build(**overrides):
        app = make_app(url, tmp_path / "instance", **{"CLOCK": shared_clock, **overrides})
        made.append(app)
        return app

    build.clock = shared_clock
    yield build

    for app in made:
        wait_for_jobs(app)
    if made:
        _empty_tables(made[0])


@pytest.fixture
def app(app_factory):
    """The application, on each available database backend."""
    return app_factory()


@pytest.fixture
def cli(app):
    """Run a `flask --app wsgi …` command on `app` in this process (Flask's CLI runner), with
    `stdin` as its standard input; returns click's Result (exit_code, stdout, stderr)."""
    runner = app.test_cli_runner()

    def run(*args: str, stdin: str = ""):
        return runner.invoke(args=list(args), input=stdin, catch_exceptions=False)

    return run


@pytest.fixture
def clock(app_factory) -> ManualClock:
    """The clock of this test's applications: `clock.advance(minutes=5)` lets time pass."""
    return app_factory.clock


@pytest.fixture
def admin(app) -> User:
    """An administrator named `boss`."""
    with app.app_context():
        user = create_admin(db.session, "boss", "boss@example.com", ADMIN_PASSWORD)
        db.session.commit()
        db.session.refresh(user)
        db.session.expunge(user)
        return user


@pytest.fixture
def client(app, admin):
    """A test client logged in as the administrator."""
    client = app.test_client()
    response = client.post("/login", data={"username": "boss", "password": ADMIN_PASSWORD})
    assert response.status_code == 302
    return client


def upload(client, data: bytes, filename: str = "users.csv", *, generate: bool = True,
           encoding: str = "", delimiter: str = "", clear_empty: bool = False,
           update_passwords: bool = False, list_missing: bool = False,
           invite_by: str = "password", **defaults: str):
    """POST a file to the upload form; returns the response (302 to the review when staged).
    `defaults` are the form's defaults for what rows leave out, by key."""
    import io

    form = {"file": (io.BytesIO(data), filename), "encoding": encoding, "delimiter": delimiter,
            "invite_by": invite_by}
    form.update({f"default_{key}": value for key, value in defaults.items()})
    if clear_empty:
        form["clear_empty"] = "y"
    if update_passwords:
        form["update_passwords"] = "y"
    if list_missing:
        form["list_missing"] = "y"
    if generate:
        form["generate_passwords"] = "y"
    return client.post("/admin/people/import", data=form, content_type="multipart/form-data")


def batch_id_of(response) -> int:
    """The batch id from the redirect of a successful upload."""
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    return int(re.search(r"/import/(\d+)", response.location).group(1))


def map_columns(client, batch_id: int, targets: list[str], *, username_from_email: bool = False,
                remember: bool = True):
    """POST the mapping step: `targets[i]` is what column i becomes ("" = not imported)."""
    form = {f"column_{i}": target for i, target in enumerate(targets)}
    if username_from_email:
        form["username_from_email"] = "y"
    if remember:
        form["remember"] = "y"
    return client.post(f"/admin/people/import/{batch_id}/columns", data=form)


def choose_all(client, batch_id: int, *actions: str, submit: bool = True):
    """Tick the column headings for `actions` (e.g. "add", "update") and press Submit."""
    form = {"show": "all", "page": "1", "was_all_skip": "1"}
    for action in actions:
        form[f"all_{action}"] = "y"
    form["submit" if submit else "save"] = "1"
    return client.post(f"/admin/people/import/{batch_id}", data=form)


def import_file(client, data: bytes, *actions: str, generate: bool = True,
                invite_by: str = "password"):
    """Upload, tick the headings of `actions` (default Add) and submit; returns the batch id."""
    batch_id = batch_id_of(upload(client, data, generate=generate, invite_by=invite_by))
    response = choose_all(client, batch_id, *(actions or ("add",)))
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    return batch_id


def table_snapshot(app) -> dict[str, list[tuple]]:
    """Every row of the users and invitations tables, to prove that nothing was written."""
    with app.app_context():
        from sqlalchemy import select

        from bulkimport.models import Invitation

        users = db.session.execute(select(User.__table__).order_by(User.id)).all()
        invitations = db.session.execute(select(Invitation.__table__)).all()
        return {"users": [tuple(r) for r in users], "invitations": [tuple(r) for r in invitations]}


def login_admin(app, username: str = "boss"):
    """Create an administrator in `app` and return a test client logged in as it."""
    with app.app_context():
        create_admin(db.session, username, f"{username}@example.com", ADMIN_PASSWORD)
        db.session.commit()
    client = app.test_client()
    response = client.post("/login", data={"username": username, "password": ADMIN_PASSWORD})
    assert response.status_code == 302
    return client


def add_user(app, username: str = "worker", email: str | None = None, *,
             password: str | None = USER_PASSWORD, firstname: str = "Plain",
             surname: str = "User", cost: int = 4, **columns) -> int:
    """A user written straight to the database, as if created earlier (e-mail
    `<username>@example.com` unless given; any other User column by keyword); returns its id."""
    with app.app_context():
        user = User(firstname=firstname, surname=surname, **columns,
                    password_hash=hash_password(password, cost) if password else None)
        user.set_identity(username, email or f"{username}@example.com")
        db.session.add(user)
        db.session.commit()
        return user.id


def add_users(app, people: list[dict]) -> None:
    """Many users in one bulk INSERT, each a dict of username, firstname, surname and email (the
    case-folded keys and the timestamps are filled in)."""
    from sqlalchemy import insert

    from bulkimport.models import utcnow

    with app.app_context():
        now = utcnow()
        db.session.execute(insert(User), [
            {**person, "username_key": fold_key(person["username"]),
             "email_key": fold_key(person["email"]), "created_at": now, "updated_at": now}
            for person in people])
        db.session.commit()


def wait_for_jobs(app, timeout: float | None = None) -> None:
    """Block until every in-process background job started so far has finished."""
    futures = app.extensions.get("bulkimport_futures", [])
    while futures:
        futures.pop(0).result(timeout)


def authenticate(session, username: str, password: str):
    """The user these credentials log in (a pending invitation password counts), or None;
    without the throttle, so that tests can check many delivered passwords."""
    from bulkimport.login import check_credentials

    user = check_credentials(session, username, password)[0]
    return user if user is not None and user.active else None


def credential_works(session, username: str, credential: str) -> bool:
    """Whether an invitation's credential (`smtpserver.credential_in`) works for `username`: the
    password logs in, or the link opens the set-password page. Reads only."""
    from bulkimport.password_links import find

    if credential.startswith("link:"):
        link, _ = find(session, credential.removeprefix("link:"))
        return link is not None and link.user.username == username
    return authenticate(session, username, credential) is not None


@pytest.fixture(params=["password", "link"])
def invite_mode(request) -> str:
    """What the invitations carry: every fault test runs for both (link mode on one database:
    see pytest_collection_modifyitems)."""
    return request.param


def pytest_collection_modifyitems(config, items):
    """With PostgreSQL at hand, the link-mode variants of the mail tests run on it alone: the
    password-mode variants already cover both databases, and the link mode adds no SQL of its
    own that differs between them (its statements run in the link tests on both)."""
    if not POSTGRES_URL:
        return
    kept, dropped = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        twice = params.get("invite_mode") == "link" and params.get("backend") == "sqlite"
        (dropped if twice else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture
def redis():
    """A connection to this xdist worker's Redis database, emptied before and after the test."""
    require(bool(REDIS_URL), "Redis (BULKIMPORT_TEST_REDIS_URL)")
    from redis import Redis

    connection = Redis.from_url(REDIS_URL)
    connection.flushdb()
    yield connection
    connection.flushdb()


def worker_environment(app, **settings) -> dict[str, str]:
    """The environment of a worker process sharing `app`'s database, Redis and secret key, with
    cheap bcrypt and `settings` as BULKIMPORT_ variables."""
    env = {**os.environ, "BULKIMPORT_DATABASE_URL": app.config["DATABASE_URL"],
           "BULKIMPORT_REDIS_URL": REDIS_URL, "BULKIMPORT_SECRET_KEY": app.config["SECRET_KEY"],
           "BULKIMPORT_BCRYPT_ROUNDS": "4", "BULKIMPORT_LOG_LEVEL": "INFO"}
    env.update({f"BULKIMPORT_{key}": str(value) for key, value in settings.items()})
    return env


def rq_worker_command(*queues: str, name: str = "", burst: bool = False) -> list[str]:
    """The command of a real RQ worker on this xdist worker's Redis: the application's worker
    class on both queues (as `make worker`), or with `burst` RQ's own, which forks a process
    per job and stops when the queues are empty."""
    command = [sys.executable, "-m", "rq.cli", "worker", "--url", REDIS_URL,
               "--serializer", "rq.serializers.JSONSerializer"]
    command += ["--burst"] if burst else ["-w", "bulkimport.worker.Worker"]
    if name:  # unique, so that a worker killed by an earlier test does not clash with it
        command += ["--name", f"{name}-{os.getpid()}-{time.monotonic_ns()}"]
    return command + list(queues or ("mail", "imports"))


@pytest.fixture
def smtp():
    """A real SMTP server (aiosmtpd) for one test: (controller, handler)."""
    from smtpserver import start_server

    controller, handler = start_server()  # aiosmtpd does not offer SMTPUTF8 unless told to
    yield controller, handler
    controller.stop()

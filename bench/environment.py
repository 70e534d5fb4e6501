"""The database and application the benchmarks run against.

SQLite in a temporary directory by default; when BULKIMPORT_BENCH_DATABASE_URL names a PostgreSQL
server, a database of our own (`bulkimport_bench`) is created there from the `test` database and
dropped at the end. The schema comes from the real migrations.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bulkimport import create_app

ENV_URL = "BULKIMPORT_BENCH_DATABASE_URL"
BENCH_DATABASE = "bulkimport_bench"
MAINTENANCE_DATABASE = "test"
SECRET_KEY = "bench-secret-key-not-for-production"
PROJECT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


def make_app(url: str):
    """The application on `url`, configured as in production (bcrypt rounds included) except
    that the test client may post without CSRF tokens and TESTING keeps the in-process mail
    sweeper from starting: sending the invitations in the background would skew the timings."""
    return create_app({"DATABASE_URL": url, "SECRET_KEY": SECRET_KEY, "REDIS_URL": "",
                       "TESTING": True, "WTF_CSRF_ENABLED": False, "LOG_LEVEL": "WARNING"})


@contextmanager
def bench_database():
    """Yield (SQLAlchemy URL, description) of an empty database, removed afterwards."""
    server = os.environ.get(ENV_URL, "").strip()  # only its server part is used
    if not server:
        with tempfile.TemporaryDirectory(prefix="bulkimport-bench-") as tmp:
            path = Path(tmp) / "bench.sqlite"
            yield f"sqlite:///{path}", f"SQLite {sqlite3.sqlite_version} (temporary file {path})"
        return
    url = make_url(server)
    if not url.get_backend_name().startswith("postgresql"):
        raise SystemExit(f"{ENV_URL} must name a PostgreSQL server (got {url.get_backend_name()})")
    maintenance = create_engine(url.set(database=MAINTENANCE_DATABASE),
                                isolation_level="AUTOCOMMIT")
    with maintenance.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{BENCH_DATABASE}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{BENCH_DATABASE}"'))
        version = conn.execute(text("SHOW server_version")).scalar()
    bench_url = url.set(database=BENCH_DATABASE)
    try:
        yield (bench_url.render_as_string(hide_password=False),
               f"PostgreSQL {version} ({bench_url.render_as_string(hide_password=True)})")
    finally:
        with maintenance.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{BENCH_DATABASE}" WITH (FORCE)'))
        maintenance.dispose()

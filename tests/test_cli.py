"""The command-line commands: run in this process with Flask's CLI runner on the test database,
and, to prove that `flask --app wsgi …` works end to end, once as a real process on a fresh one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import authenticate
from sqlalchemy import func, select

from bulkimport.extensions import db
from bulkimport.models import User

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def flask_cli(tmp_path):
    """Run `flask --app wsgi …` in a subprocess against a fresh, migrated SQLite database."""
    env = {**os.environ, "BULKIMPORT_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite'}",
           "BULKIMPORT_SECRET_KEY": "cli-test-secret", "BULKIMPORT_BCRYPT_ROUNDS": "4"}

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT,
                              env=env, input=stdin, capture_output=True, text=True, timeout=120)

    assert run("db", "upgrade").returncode == 0
    run.env = env
    return run


def test_a_fresh_database_is_migrated_and_matches_the_models(flask_cli):
    result = flask_cli("db", "check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No new upgrade operations detected" in result.stdout + result.stderr
    created = flask_cli("create-admin", "--username", "alice", "--email", "alice@example.com",
                        stdin="a-good-long-password\n")
    assert created.returncode == 0, created.stderr
    assert "Administrator “alice” created." in created.stdout


def test_create_admin_reads_the_password_from_stdin(app, cli):
    result = cli("create-admin", "--username", "alice", "--email", "alice@example.com",
                 stdin="a-good-long-password\n")
    assert result.exit_code == 0, result.stderr
    assert "Administrator “alice” created." in result.stdout
    again = cli("create-admin", "--username", "ALICE", "--email", "a2@example.com",
                stdin="a-good-long-password\n")
    assert again.exit_code == 1
    assert again.stderr.strip() == "Error: The username “ALICE” is already taken."
    with app.app_context():
        assert authenticate(db.session, "alice", "a-good-long-password") is not None


@pytest.mark.parametrize("username,email,password,message", [
    ("bob", "not-an-email", "a-good-long-password",
     "Error: email “not-an-email” is not a valid e-mail address: An email address must have "
     "an @-sign."),
    ("bob", "Bob <bob@example.com>", "a-good-long-password",
     "Error: email “Bob <bob@example.com>” must be a bare address such as name@example.com, "
     "without a display name, quotes or angle brackets."),
    ("bob", "bob@example.com", "short",
     "Error: The password must be at least 12 characters long (it has 5)."),
    ("bob", "robert@example.com", "bob-is-my-password",
     "Error: The password must not contain the username."),
    ("bob", "bob@example.com", "é" * 40,
     "Error: The password must be at most 72 bytes long (fewer characters if it uses accents "
     "or other scripts)."),
    ("bad name", "bob@example.com", "a-good-long-password",
     "Error: username may only contain letters, digits and . _ - @, and must start with a "
     "letter or digit (found space)."),
])
def test_create_admin_errors_are_one_line_and_exit_1(app, cli, username, email, password,
                                                     message):
    result = cli("create-admin", "--username", username, "--email", email,
                 stdin=password + "\n")
    assert result.exit_code == 1
    assert result.stderr.strip() == message
    with app.app_context():
        assert db.session.scalar(select(func.count(User.id))) == 0


def test_ensure_admin_creates_the_first_admin_once(app, cli):
    first = cli("ensure-admin")
    assert first.exit_code == 0
    assert "username: admin" in first.stdout
    password = first.stdout.split("password: ", 1)[1].split()[0]
    assert len(password) >= 16
    second = cli("ensure-admin")
    assert second.exit_code == 0 and second.stdout == ""
    with app.app_context():
        assert db.session.scalar(select(func.count(User.id)).where(User.is_admin)) == 1
        assert authenticate(db.session, "admin", password) is not None

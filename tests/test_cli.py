"""The command-line commands as a newcomer runs them: real processes on a fresh database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
    return run


def test_migrations_match_the_models(flask_cli):
    result = flask_cli("db", "check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No new upgrade operations detected" in result.stdout + result.stderr


def test_create_admin_reads_the_password_from_stdin(flask_cli):
    result = flask_cli("create-admin", "--username", "alice", "--email", "alice@example.com",
                       stdin="a-good-long-password\n")
    assert result.returncode == 0, result.stderr
    assert "Administrator “alice” created." in result.stdout
    again = flask_cli("create-admin", "--username", "ALICE", "--email", "a2@example.com",
                      stdin="a-good-long-password\n")
    assert again.returncode == 1
    assert again.stderr.strip() == "Error: The username “ALICE” is already taken."


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
def test_create_admin_errors_are_one_line_and_exit_1(flask_cli, username, email, password,
                                                     message):
    result = flask_cli("create-admin", "--username", username, "--email", email,
                       stdin=password + "\n")
    assert result.returncode == 1
    assert result.stderr.strip() == message
    assert "Traceback" not in result.stderr


def test_ensure_admin_creates_the_first_admin_once(flask_cli):
    first = flask_cli("ensure-admin")
    assert first.returncode == 0
    assert "username: admin" in first.stdout
    password = first.stdout.split("password: ", 1)[1].split()[0]
    assert len(password) >= 16
    second = flask_cli("ensure-admin")
    assert second.returncode == 0 and second.stdout == ""
    check = flask_cli("shell", stdin=(
        "from bulkimport.extensions import db\n"
        "from bulkimport.models import User\n"
        "from bulkimport.login import authenticate\n"
        "print('ADMINS', db.session.query(User).filter(User.is_admin).count())\n"
        f"print('LOGIN', authenticate(db.session, 'admin', {password!r}) is not None)\n"))
    assert "ADMINS 1" in check.stdout and "LOGIN True" in check.stdout

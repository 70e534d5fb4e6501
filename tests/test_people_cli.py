"""`flask people import` and `flask people export` as scripts run them, with the exit statuses of
issue 7 (0 done, 1 rows in error, 2 bad usage): in this process with Flask's CLI runner, and once
as a real process on a terminal."""

from __future__ import annotations

import csv
import io

import pytest
from conftest import sample
from test_cli import flask_cli  # noqa: F401  (the fixture of the real-process test)

GOOD = b"username,firstname,surname,email,password\n" \
       b"ann,Ann,Lee,ann@example.com,correct-horse-battery-1\n" \
       b"bob,Bob,Ray,bob@example.com,correct-horse-battery-2\n"


@pytest.fixture
def cli(cli, admin, tmp_path):
    """conftest's `cli` with an administrator `boss`, and a helper that writes a CSV file."""

    def write(name: str, data: bytes):
        path = tmp_path / name
        path.write_bytes(data)
        return str(path)

    cli.write = write
    return cli


def test_dry_run_prints_the_plan_and_writes_nothing(cli):
    result = cli("people", "import", "--dry-run", cli.write("users.csv", GOOD))
    assert result.exit_code == 0, result.stderr
    assert "users.csv: 2 rows: 2 to add, 0 to update, 0 unchanged, 0 in error." in result.stdout
    assert "Dry run: nothing was written." in result.stdout
    assert cli("people", "export", "--columns", "username").stdout == '\ufeff"username"\n"boss"\n'


def test_import_applies_and_writes_results_then_export_reads_back(cli, tmp_path):
    results = tmp_path / "results.csv"
    result = cli("people", "import", cli.write("users.csv", GOOD), "--results", str(results))
    assert result.exit_code == 0, result.stderr
    assert "2 added, 0 updated, 0 skipped; 0 invitation e-mails queued." in result.stdout
    lines = list(csv.reader(io.StringIO(results.read_text(encoding="utf-8-sig"))))
    assert lines == [["line", "username", "action", "outcome", "message"],
                     ["2", "ann", "add", "added", "Added."], ["3", "bob", "add", "added", "Added."]]
    assert "correct-horse" not in results.read_text()
    exported = cli("people", "export", "--search", "ann", "--columns", "username,email")
    assert exported.stdout == '\ufeff"username","email"\n"ann","ann@example.com"\n'
    out = tmp_path / "all.csv"
    assert cli("people", "export", "-o", str(out)).exit_code == 0
    again = cli("people", "import", "--dry-run", str(out))
    assert "3 rows: 0 to add, 0 to update, 3 unchanged, 0 in error." in again.stdout


def test_rows_in_error_write_nothing_and_exit_1(cli):
    data = GOOD + b"carl,Carl,,carl@example.com,correct-horse-battery-3\n"
    result = cli("people", "import", cli.write("bad.csv", data))
    assert result.exit_code == 1
    assert "Line 4: surname is missing." in result.stderr
    assert "Nothing was written: 1 row is in error." in result.stderr
    assert cli("people", "export", "--columns", "username").stdout == '\ufeff"username"\n"boss"\n'


def test_an_unusable_file_exits_1(cli):
    result = cli("people", "import", cli.write("x.csv", b"\n"))
    assert result.exit_code == 1 and result.stderr.strip() == "Error: The file is empty."


@pytest.mark.parametrize("args", [
    ["people", "import", "missing.csv"], ["people", "import", "--actions", "delete", "{file}"],
    ["people", "import", "--delimiter", "colon", "{file}"], ["people", "export", "--columns",
                                                             "shoe_size"],
    ["people", "import", "--as", "nobody", "{file}"]])
def test_bad_usage_exits_2(cli, args):
    file = cli.write("users.csv", GOOD)
    result = cli(*[a.replace("{file}", file) for a in args])
    assert result.exit_code == 2, result.stdout + result.stderr


def test_actions_choose_what_is_applied_and_passwords_can_be_generated(cli):
    cli("people", "import", "--generate-passwords", cli.write("m.csv", sample("minimal.csv")))
    changed = sample("minimal.csv").replace(b"Smith", b"Smyth") + \
        b"new1,New,One,new1@example.com\n"
    result = cli("people", "import", "--generate-passwords", "--actions", "update",
                 cli.write("m2.csv", changed))
    assert result.exit_code == 0, result.stderr
    assert "0 added, 1 updated, 3 skipped" in result.stdout


def test_a_terminal_gets_a_progress_bar_while_passwords_are_hashed(flask_cli, tmp_path):  # noqa: F811
    """A real `flask --app wsgi people import` process whose standard output is a
    pseudo-terminal, as when an administrator runs the command."""
    import os
    import subprocess
    import sys

    from test_cli import ROOT

    assert flask_cli("create-admin", "--username", "boss", "--email", "boss@example.com",
                     stdin="a-good-long-password\n").returncode == 0
    users = tmp_path / "users.csv"
    users.write_bytes(GOOD)
    main, secondary = os.openpty()
    process = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "people", "import", str(users)],
        cwd=ROOT, env=flask_cli.env, stdout=secondary, stderr=subprocess.PIPE, timeout=120)
    os.close(secondary)
    output = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    os.close(main)
    assert process.returncode == 0, process.stderr
    text = output.decode()
    assert "Hashing passwords" in text and "100%" in text
    assert "2 added, 0 updated, 0 skipped" in text

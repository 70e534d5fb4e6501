"""A worker started as the Procfile starts it is one process: killed with SIGKILL, it leaves
nothing behind (RQ's scheduler, a child process, used to outlive it; the application's own
sweep schedules retries, so the scheduler is not run)."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REDIS_URL, require

ROOT = Path(__file__).resolve().parents[1]
STARTUP_SECONDS = 120  # a deadline for a busy machine, not a measured figure


@pytest.mark.parametrize("place", ["Procfile", "Makefile", "README.md",
                                   "deploy/systemd/bulkimport-worker@.service"])
def test_no_start_command_runs_rqs_scheduler(place):
    assert "--with-scheduler" not in (ROOT / place).read_text()


def _procfile_worker() -> list[str]:
    line = next(line for line in (ROOT / "Procfile").read_text().splitlines()
                if line.startswith("worker: "))
    words = shlex.split(line.removeprefix("worker: ").replace('"$BULKIMPORT_REDIS_URL"',
                                                                REDIS_URL))
    assert words[:2] == ["rq", "worker"]
    return [sys.executable, "-m", "rq.cli", *words[1:]]


def _processes_named(name: str) -> list[int]:
    """Pids of live processes whose command line carries `name`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if name in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def test_a_killed_worker_leaves_no_process_behind(app):
    require(bool(REDIS_URL), "Redis (BULKIMPORT_TEST_REDIS_URL)")
    from redis import Redis
    from rq import Worker

    name = f"kill-me-{os.getpid()}-{time.monotonic_ns()}"
    env = {**os.environ, "BULKIMPORT_DATABASE_URL": app.config["DATABASE_URL"],
           "BULKIMPORT_SECRET_KEY": app.config["SECRET_KEY"], "BULKIMPORT_REDIS_URL": REDIS_URL}
    worker = subprocess.Popen([*_procfile_worker(), "--name", name], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    connection = Redis.from_url(REDIS_URL)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not any(w.name == name and w.get_state() == "idle"
                      for w in Worker.all(connection=connection)):
            assert worker.poll() is None, "the worker stopped by itself"
            assert time.monotonic() < deadline, "the worker did not start"
            time.sleep(0.2)
        assert _processes_named(name) == [worker.pid]  # one process, no scheduler child
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    assert _processes_named(name) == []

"""Running in production: /healthz, JSON logs, the configuration checks, the Procfile and systemd
examples, and gunicorn serving the application in real processes (issue 7, point 2)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import REDIS_URL, require
from smtpserver import free_port, refusing_port, start_server

from bulkimport import create_app
from bulkimport.logs import JSONFormatter

ROOT = Path(__file__).resolve().parents[1]
SECRET = "healthz-secret-key-4471"
HEALTH_TOKEN = "healthz-token-5582-monitoring"


def health_of(app_factory, **config):
    """/healthz with the details that monitoring's token gets (see test_health.py)."""
    app = app_factory(SECRET_KEY=SECRET, HEALTH_TOKEN=HEALTH_TOKEN, **config)
    response = app.test_client().get("/healthz",
                                     headers={"Authorization": f"Bearer {HEALTH_TOKEN}"})
    body = response.get_data(as_text=True)
    for secret in (SECRET, HEALTH_TOKEN, app.config["SQLALCHEMY_DATABASE_URI"], "password"):
        assert secret not in body
    return response.status_code, response.get_json()


def test_healthz_in_the_embedded_mode(app_factory):
    status, body = health_of(app_factory)
    assert status == 200 and body["status"] == "ok"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["redis"]["mode"] == "in-process jobs (no Redis configured)"
    assert body["checks"]["smtp"]["mode"] == "outbox folder (no SMTP server configured)"


def test_healthz_reports_unreachable_parts_without_naming_them(app_factory):
    with refusing_port() as redis_port, refusing_port() as smtp_port:
        port = redis_port.getsockname()[1]
        status, body = health_of(app_factory, REDIS_URL=f"redis://127.0.0.1:{port}/0",
                                 MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp_port.getsockname()[1],
                                 MAIL_PASSWORD="smtp-password-9")
    assert status == 503 and body["status"] == "unhealthy"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["redis"] == {"ok": False, "error": "ConnectionError",
                                       "ms": body["checks"]["redis"]["ms"]}
    assert body["checks"]["smtp"]["ok"] is False
    assert str(port) not in json.dumps(body) and "smtp-password-9" not in json.dumps(body)


def test_healthz_with_a_real_smtp_server_and_redis(app_factory):
    require(bool(REDIS_URL), "Redis (BULKIMPORT_TEST_REDIS_URL)")
    controller, handler = start_server()
    try:
        status, body = health_of(app_factory, REDIS_URL=REDIS_URL, MAIL_SERVER="127.0.0.1",
                                 MAIL_PORT=controller.port)
    finally:
        controller.stop()
    assert status == 200, body
    assert handler.accepted == []  # the check sends nothing


def test_json_logs_are_one_object_a_line():
    record = logging.LogRecord("bulkimport.test", logging.WARNING, __file__, 1,
                               "Batch %s failed", (7,), None)
    line = JSONFormatter().format(record)
    entry = json.loads(line)
    assert entry["level"] == "WARNING" and entry["message"] == "Batch 7 failed"
    assert entry["logger"] == "bulkimport.test" and entry["time"].endswith("+00:00")


@pytest.mark.parametrize("setting,value", [("LOG_FORMAT", "xml"), ("DATE_ORDER", "YMD")])
def test_bad_settings_stop_the_start_with_the_reason(tmp_path, setting, value):
    with pytest.raises(RuntimeError, match=f"BULKIMPORT_{setting}='{value}' is not valid"):
        create_app({setting: value, "SECRET_KEY": "x",
                    "DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite'}"})


def test_the_procfile_and_systemd_units_run_the_documented_commands():
    procfile = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines()
                    if line and not line.startswith("#"))
    assert set(procfile) == {"release", "web", "worker"}
    assert procfile["release"] == "flask --app wsgi db upgrade"
    assert "wsgi:app" in procfile["web"]
    logger = "--logger-class bulkimport.access_log.AccessLogger"  # no link token in the log
    assert logger in procfile["web"]
    worker_class = "bulkimport.worker.Worker"
    assert worker_class in procfile["worker"]
    from bulkimport.worker import Worker

    assert Worker.__module__ + ".Worker" == worker_class
    units = {p.name: p.read_text() for p in (ROOT / "deploy" / "systemd").glob("*.service")}
    assert "wsgi:app" in units["bulkimport-web.service"]
    assert logger in units["bulkimport-web.service"]
    assert worker_class in units["bulkimport-worker@.service"]


def test_gunicorn_serves_the_app_with_several_workers(tmp_path):
    """Real gunicorn processes on a migrated SQLite database, with the access log of the
    Procfile: /healthz, the login page, and a set-password link whose token the log hides."""
    env = {**os.environ, "BULKIMPORT_DATABASE_URL": f"sqlite:///{tmp_path / 'g.sqlite'}",
           "BULKIMPORT_SECRET_KEY": "gunicorn-test", "BULKIMPORT_LOG_FORMAT": "json"}
    bin_dir = Path(sys.executable).parent
    subprocess.run([str(bin_dir / "flask"), "--app", "wsgi", "db", "upgrade"], cwd=ROOT,
                   env=env, check=True, capture_output=True, timeout=120)
    port = free_port()
    server = subprocess.Popen(
        [str(bin_dir / "gunicorn"), "--workers", "3", "--bind", f"127.0.0.1:{port}",
         "--access-logfile", "-", "--logger-class", "bulkimport.access_log.AccessLogger",
         "wsgi:app"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        body = _get(f"http://127.0.0.1:{port}/healthz", deadline=time.monotonic() + 60)
        assert json.loads(body)["status"] == "ok"
        assert "Log in" in _get(f"http://127.0.0.1:{port}/login", deadline=time.monotonic() + 60)
        token = "Zk3-secret_token-of-a-link"
        with pytest.raises(urllib.error.HTTPError) as gone:  # no such link: 410
            urllib.request.urlopen(f"http://127.0.0.1:{port}/set-password/{token}?x=1",
                                   timeout=30)
        assert gone.value.code == 410
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=30)
    assert server.returncode == 0, output
    assert output.count("Booting worker") == 3, output
    assert '"GET /set-password/[link]?x=1 HTTP/1.1" 410' in output, output
    assert token not in output


def _get(url: str, deadline: float) -> str:
    """The body of `url`, asked again until `deadline` while the server is not answering yet
    (a generous bound: booting workers on a busy machine is slow, and not what is tested)."""
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)

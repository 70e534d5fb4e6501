"""The embedded outbox (issue 13 point 13): the viewer masks passwords (the files keep them,
readable by the process owner only), files older than BULKIMPORT_OUTBOX_RETENTION_DAYS are
deleted by the application's clock, and the page says the outbox is not for production."""

from __future__ import annotations

from pathlib import Path

from conftest import import_file, login_admin, sample
from smtpserver import password_in
from test_mailing import drain

from bulkimport.mailing.transport import build_message, transport_for


def outbox_files(app) -> list[Path]:
    return sorted((Path(app.instance_path) / "outbox").iterdir())


def test_the_viewer_masks_every_password_that_the_files_keep(app_factory):
    app = app_factory(MAIL_SERVER="")
    client = login_admin(app)
    import_file(client, sample("minimal.csv"))
    assert drain(app) == {"sent": 3}
    emls = [f for f in outbox_files(app) if f.suffix == ".eml"]
    passwords = [password_in(f.read_bytes()) for f in emls]
    assert len(emls) == 3 and all(len(p) >= 16 for p in passwords)
    assert {oct(f.stat().st_mode & 0o777) for f in outbox_files(app)} == {"0o600"}
    page = client.get("/admin/system/outbox").get_data(as_text=True)
    assert page.count("Your bulkimport account") == 3
    assert "for trying the product, not for production" in page
    for f in emls:
        message = client.get(f"/admin/system/outbox/{f.name}").get_data(as_text=True)
        assert "Password: ••••••••" in message and "Hello " in message
        assert not any(p in message or p in page for p in passwords)


def test_a_password_in_the_subject_is_masked_too(app_factory):
    app = app_factory(MAIL_SERVER="")
    client = login_admin(app)
    secret = "Secret-Password-1234567"
    with app.app_context(), transport_for(app.config, app.instance_path) as outbox:
        outbox.send(build_message(sender="noreply@localhost", recipient="a@example.com",
                                  subject=f"Your password is {secret}", text=f"It is {secret}",
                                  html=f"<p>{secret}</p>", secret_values=(secret,)))
    [eml] = [f for f in outbox_files(app) if f.suffix == ".eml"]
    assert secret in eml.read_text()
    page = client.get("/admin/system/outbox").get_data(as_text=True)
    message = client.get(f"/admin/system/outbox/{eml.name}").get_data(as_text=True)
    assert secret not in page + message and "Your password is ••••••••" in page


# The administrator's session outlives the weeks these tests move the clock by.
LONG_SESSION = {"SESSION_IDLE_MINUTES": 60 * 24 * 36500, "SESSION_MAX_HOURS": 24 * 36500}


def test_old_files_are_deleted_when_the_outbox_is_listed_or_written(app_factory, clock):
    app = app_factory(MAIL_SERVER="", OUTBOX_RETENTION_DAYS=7, **LONG_SESSION)
    client = login_admin(app)
    import_file(client, sample("minimal.csv"))
    assert drain(app) == {"sent": 3}
    assert len(outbox_files(app)) == 6  # each .eml with its masked .json
    clock.advance(days=6, hours=23)
    assert client.get("/admin/system/outbox").get_data(as_text=True).count("<tr><td>") == 3
    assert len(outbox_files(app)) == 6  # younger than a week: kept
    clock.advance(hours=1, minutes=1)  # a week and a minute
    with app.app_context(), transport_for(app.config, app.instance_path) as outbox:
        outbox.send(build_message(sender="noreply@localhost", recipient="a@example.com",
                                  subject="New", text="new", html="<p>new</p>"))
    assert [f.suffix for f in outbox_files(app)] == [".eml", ".json"]  # only the new one
    clock.advance(days=8)
    page = client.get("/admin/system/outbox").get_data(as_text=True)
    assert "The outbox is empty." in page and outbox_files(app) == []
    assert "Files older than 7 days\nare deleted" in page


def test_a_retention_of_zero_keeps_every_file(app_factory, clock):
    app = app_factory(MAIL_SERVER="", OUTBOX_RETENTION_DAYS=0, **LONG_SESSION)
    client = login_admin(app)
    import_file(client, sample("minimal.csv"))
    drain(app)
    clock.advance(days=3650)
    assert client.get("/admin/system/outbox").status_code == 200
    assert len(outbox_files(app)) == 6

"""Invitations with a one-time link to choose a password, through a real SMTP server: the link
opens a page that shows the username and the policy, sets the password and logs the user in
once; a used, expired, replaced or unknown link says so and names no account; the token is
stored only as its SHA-256; templates, Resend and the CSV rule follow the mode."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import pytest
from conftest import authenticate, batch_id_of, import_file, login_admin, upload
from smtpserver import link_token_in, parse_message
from sqlalchemy import select, text
from test_mailing import drain, mail_config

from bulkimport.clock import clock_of
from bulkimport.extensions import db
from bulkimport.login import INVALID
from bulkimport.mailing.languages import (
    INVITATION,
    INVITATION_LINK,
    LocalisationError,
    save_template,
)
from bulkimport.mailing.templating import NotificationTemplate
from bulkimport.models import AuditEvent, Invitation, SetPasswordLink, User
from bulkimport.password_links import BLOCKED, EXPIRED, NOT_VALID, SUPERSEDED, USED

PEOPLE = (b"username,firstname,surname,email,Change password next time\n"
          b"ada,Ada,Lovelace,ada@example.com,1\n"
          b"alan,Alan,Turing,alan@example.com,0\n")
GOOD = "correct horse battery staple 42"


@pytest.fixture
def linked(app_factory, smtp):
    """Two users imported in link mode, their e-mails accepted by the SMTP server."""
    controller, handler = smtp
    app = app_factory(**mail_config(controller))
    admin = login_admin(app)
    batch_id = import_file(admin, PEOPLE, invite_by="link")
    assert drain(app) == {"sent": 2}
    return app, admin, handler, batch_id


def token_for(handler, address: str) -> str:
    raw = [m for _, a, m in handler.accepted if a == address][-1]
    return link_token_in(raw)


def problem_of(response) -> str:
    page = response.get_data(as_text=True)
    found = re.search(r'id="link-problem">(.*?)</p>', page, re.S)
    return found.group(1).replace("&#39;", "'").replace("&#34;", '"') if found else ""


def test_the_e_mail_carries_a_link_and_no_password(linked):
    app, _, handler, _ = linked
    raw = [m for _, a, m in handler.accepted if a == "ada@example.com"][-1]
    message = parse_message(raw)
    text_part = message.get_body(preferencelist=("plain",)).get_content()
    html_part = message.get_body(preferencelist=("html",)).get_content()
    token = link_token_in(raw)
    assert f"https://people.example.org/set-password/{token}" in text_part
    assert f'href="https://people.example.org/set-password/{token}"' in html_part
    assert "Password:" not in text_part and "Username: ada" in text_part
    assert message["Subject"] == "Your Example Intranet account: choose your password"
    assert len(token) >= 43  # 32 random bytes: 256 bits
    with app.app_context():
        stored = db.session.scalars(select(SetPasswordLink.digest)).all()
        assert hashlib.sha256(token.encode()).hexdigest() in stored
        # the token itself is nowhere in the database
        for table in ("set_password_links", "invitations", "audit_events", "users"):
            dump = " ".join(str(r) for r in db.session.execute(text(f"SELECT * FROM {table}")))
            assert token not in dump
        ada = db.session.scalar(select(User).where(User.username == "ada"))
        assert ada.password_hash is None and ada.temp_password_expires_at is None
        invitation = db.session.scalar(select(Invitation).where(Invitation.user_id == ada.id))
        assert invitation.mode == "link" and invitation.status == "sent"


def test_the_link_sets_a_password_logs_in_and_then_says_it_was_used(linked):
    app, _, handler, _ = linked
    token = token_for(handler, "ada@example.com")
    visitor = app.test_client()
    opened = visitor.get(f"/set-password/{token}")
    assert opened.status_code == 302 and opened.location == "/set-password"
    page = visitor.get("/set-password")
    body = page.get_data(as_text=True)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert token not in body
    assert '<strong id="link-username">ada</strong>' in body
    assert "At least 12 and at most 64 characters" in body  # the policy's rules are shown
    weak = visitor.post("/set-password", data={"new_password": "short",
                                               "confirm_password": "short"})
    assert weak.status_code == 422 and "at least 12 characters" in weak.get_data(as_text=True)
    mismatch = visitor.post("/set-password", data={"new_password": GOOD,
                                                   "confirm_password": GOOD + "x"})
    assert "The two passwords are not the same." in mismatch.get_data(as_text=True)
    done = visitor.post("/set-password", data={"new_password": GOOD, "confirm_password": GOOD})
    assert done.status_code == 302 and done.location == "/"
    assert visitor.get("/account").status_code == 200  # logged in, and not held to change
    with app.app_context():
        ada = db.session.scalar(select(User).where(User.username == "ada"))
        assert not ada.must_change_password  # the password was just chosen
        assert authenticate(db.session, "ada", GOOD) is not None
        events = db.session.scalars(select(AuditEvent.action).where(
            AuditEvent.user_id == ada.id)).all()
        assert "password_set_by_link" in events
    again = app.test_client().get(f"/set-password/{token}")
    assert again.status_code == 410 and problem_of(again) == USED
    # the form reached with a session of a used link says the same
    assert visitor.get("/set-password").status_code == 410


def test_a_link_expires_after_the_policys_validity(linked):
    app, _, handler, _ = linked
    token = token_for(handler, "alan@example.com")
    clock = clock_of(app)
    clock.advance(timedelta(days=7).total_seconds() - 60)  # the policy's default: 7 days
    assert app.test_client().get(f"/set-password/{token}").status_code == 302
    clock.advance(61)
    expired = app.test_client().get(f"/set-password/{token}")
    assert expired.status_code == 410 and problem_of(expired) == EXPIRED


def test_resend_replaces_the_link_and_the_old_one_says_so(linked):
    app, admin, handler, batch_id = linked
    old = token_for(handler, "ada@example.com")
    with app.app_context():
        invitation_id = db.session.scalar(select(Invitation.id).join(Invitation.user)
                                          .where(User.username == "ada"))
    confirm = admin.post("/admin/people/invitations/resend",
                         data={"one": str(invitation_id), "batch_id": str(batch_id)})
    assert "a new link to choose a password" in confirm.get_data(as_text=True)
    admin.post("/admin/people/invitations/resend",
               data={"one": str(invitation_id), "batch_id": str(batch_id), "confirm": "1"})
    # until the new e-mail is accepted, the old link still works
    assert app.test_client().get(f"/set-password/{old}").status_code == 302
    drain(app)
    new = token_for(handler, "ada@example.com")
    assert new != old  # Resend kept the batch's mode: another link, no password
    replaced = app.test_client().get(f"/set-password/{old}")
    assert replaced.status_code == 410 and problem_of(replaced) == SUPERSEDED
    assert app.test_client().get(f"/set-password/{new}").status_code == 302


@pytest.mark.parametrize("token", ["never-made", "A" * 43, "x" * 101, "%00", "..%2F..%2Fadmin"])
def test_an_unknown_link_says_only_that_it_is_not_valid(linked, token):
    app, _, _, _ = linked
    response = app.test_client().get(f"/set-password/{token}")
    assert response.status_code in (404, 410)
    if response.status_code == 410:
        assert problem_of(response) == NOT_VALID
    for name in ("ada", "alan", "Lovelace", "example.com"):
        assert name not in response.get_data(as_text=True)


def test_the_form_without_an_opened_link_is_refused(linked):
    app, _, _, _ = linked
    visitor = app.test_client()
    assert visitor.get("/set-password").status_code == 410
    response = visitor.post("/set-password", data={"new_password": GOOD,
                                                   "confirm_password": GOOD})
    assert response.status_code == 410
    with app.app_context():
        assert db.session.scalar(select(User.password_hash).where(User.username == "ada")) is None


def test_a_blocked_users_link_does_not_open(linked):
    app, _, handler, _ = linked
    token = token_for(handler, "alan@example.com")
    with app.app_context():
        db.session.scalar(select(User).where(User.username == "alan")).active = False
        db.session.commit()
    response = app.test_client().get(f"/set-password/{token}")
    assert response.status_code == 410 and problem_of(response) == BLOCKED


def test_a_password_change_ends_the_users_other_links(linked):
    app, _, handler, _ = linked
    token = token_for(handler, "ada@example.com")
    visitor = app.test_client()
    visitor.get(f"/set-password/{token}")
    # another tab used the link meanwhile: this tab's form says the link is used
    other = app.test_client()
    other.get(f"/set-password/{token}")
    assert other.post("/set-password", data={"new_password": GOOD,
                                             "confirm_password": GOOD}).status_code == 302
    late = visitor.post("/set-password", data={"new_password": GOOD + "!",
                                               "confirm_password": GOOD + "!"})
    assert late.status_code == 410 and problem_of(late) == USED
    with app.app_context():
        assert authenticate(db.session, "ada", GOOD) is not None
        assert authenticate(db.session, "ada", GOOD + "!") is None


def test_no_link_digest_is_ever_tried_as_a_password(linked):
    app, _, _, _ = linked
    with app.app_context():
        invitation = db.session.scalar(select(Invitation).join(Invitation.user)
                                       .where(User.username == "ada"))
        invitation.pending_hashes = ["0" * 64]  # a link digest waiting for its outcome
        db.session.commit()
        assert authenticate(db.session, "ada", "0" * 64) is None
    response = app.test_client().post("/login", data={"username": "ada", "password": "0" * 64})
    assert response.status_code == 200 and INVALID in response.get_data(as_text=True)


def test_link_mode_refuses_a_file_with_a_password_column_as_password_mode_does(app_factory,
                                                                              smtp):
    from bulkimport.models import ImportBatch

    controller, _ = smtp
    app = app_factory(**mail_config(controller))
    admin = login_admin(app)
    data = b"username,firstname,surname,email,password\nzoe,Zoe,Zed,zoe@example.com,S-12345!x\n"
    said = {}
    for mode in ("password", "link"):
        batch_id = batch_id_of(upload(admin, data, invite_by=mode))
        with app.app_context():
            batch = db.session.get(ImportBatch, batch_id)
            assert batch.invite_mode == mode
            said[mode] = batch.blocked
    assert said["link"] and said["link"] == said["password"]


@pytest.mark.parametrize("name,template,message", [
    (INVITATION_LINK, NotificationTemplate("Hi", "<p>Hello {{ username }}</p>",
                                           "Hello {{ username }}"), "{{ set_password_url }}"),
    (INVITATION, NotificationTemplate("Hi", "<p>{{ set_password_url }}</p>",
                                      "{{ set_password_url }}"), "{{ password }}"),
])
def test_saving_a_template_without_its_modes_credential_is_refused(app, admin, name, template,
                                                                    message):
    with app.app_context(), pytest.raises(LocalisationError) as refused:
        save_template(db.session, name, "en", template, actor_id=admin.id)
    assert f"Neither body uses {message}" in str(refused.value)


def test_a_link_template_in_the_text_body_only_is_saved_and_used(linked):
    app, admin, handler, batch_id = linked
    with app.app_context():
        boss = db.session.scalar(select(User).where(User.username == "boss"))
        save_template(db.session, INVITATION_LINK, "en", NotificationTemplate(
            "Welcome {{ firstname }}", "<p>Welcome</p>", "Open {{ set_password_url }}"),
            actor_id=boss.id)
        db.session.commit()
        invitation_id = db.session.scalar(select(Invitation.id).join(Invitation.user)
                                          .where(User.username == "alan"))
    admin.post("/admin/people/invitations/resend",
               data={"one": str(invitation_id), "batch_id": str(batch_id), "confirm": "1"})
    drain(app)
    raw = [m for _, a, m in handler.accepted if a == "alan@example.com"][-1]
    assert parse_message(raw)["Subject"] == "Welcome Alan"
    assert app.test_client().get(f"/set-password/{link_token_in(raw)}").status_code == 302


def test_the_editor_previews_the_link_template_with_a_sample_link(app, client):
    page = client.get(f"/admin/system/localisation/en/templates/{INVITATION_LINK}")
    body = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "/set-password/sample-token" in body and "set_password_url" in body
    assert "New user invitation with a link" in body


@pytest.mark.parametrize("line", [
    '127.0.0.1 - - "GET /set-password/{token} HTTP/1.1" 302 -',
    '127.0.0.1 - - "GET /set-password/{token}?utm=x HTTP/1.1" 410 -',
    '"GET /set-password/{token}/ HTTP/1.1"',
])
def test_the_development_servers_request_log_hides_link_tokens(line):
    import logging

    from bulkimport.logs import configure_logging

    configure_logging("INFO", "text")  # as the app factory does
    werkzeug = logging.getLogger("werkzeug")
    token = "Zk3-secret_token-of-a-link"
    # werkzeug writes its request line as '%s "%s" %s %s' with arguments
    record = werkzeug.makeRecord("werkzeug", logging.INFO, __file__, 1, "%s",
                                 (line.format(token=token),), None)
    assert all(f.filter(record) for f in werkzeug.filters)
    assert token not in record.getMessage() and "/set-password/[link]" in record.getMessage()

"""Every GET route of the URL map, as an administrator, over realistic data: a submitted batch
with every kind of row, a staged one, invitations in every state, a profile field of every type,
template versions and audit events. No page may fail or print Python internals."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import add_user, batch_id_of, choose_all, login_admin, map_columns, upload
from sqlalchemy import select, update
from test_mailing import drain

from bulkimport.extensions import db
from bulkimport.mailing.languages import INVITATION, INVITATION_LINK, save_template
from bulkimport.mailing.templating import NotificationTemplate
from bulkimport.models import (
    ImportBatch,
    Invitation,
    InvitationStatus,
    ProfileField,
    SetPasswordLink,
    User,
    utcnow,
)
from bulkimport.password_links import new_token
from bulkimport.profile import FieldDefinition, create_field

FIELDS = [("department", "text", []), ("employee_number", "number", []),
          ("start_date", "date", []), ("site", "choice", ["Paris", "Lyon"]),
          ("remote", "yesno", [])]
HEADING = "username,firstname,surname,email,department,employee_number,start_date,site,remote"
FILE = "\n".join([
    HEADING,
    "newbie,Nora,New,nora.new@example.com,Sales,12,2026-01-31,Paris,yes",       # add
    "newer,Omar,Other,omar.other@example.com,IT,13,31.01.2026,lyon,no",          # add
    "jsmith,Johnny,Smith,john.smith@example.com,Finance,7,2025-05-01,Lyon,1",   # update
    "same,Sam,Same,sam.same@example.com,,,,,",                                   # no change
    "broken,Bad,Mail,not-an-address,,,,,",                                       # error
    "newbie,Dup,Licate,dup@example.com,,,,,",                                    # duplicate
]) + "\n"
INTERNALS = ("<built-in", " object at 0x", "Undefined", "Traceback")
RAW_KEYS = ("must_change_password", "nochange", "progress_stage", "invitation_status",
            "fullname", "_derived", "needs_mapping")
HR_EXPORT = (b"Login,Full name,Mail,Office\n"
             b"ann,Ann Lee,ann@example.com,B1\nbob,Bob van Dam,bob@example.com,B2\n")


@pytest.fixture
def realistic(app_factory):
    """An application full of the things the pages show, and an administrator's client."""
    app = app_factory(MAIL_SERVER="", MAIL_RATE_PER_MINUTE=0,
                      SESSION_IDLE_MINUTES=60 * 24 * 60, SESSION_MAX_HOURS=24 * 60)
    client = login_admin(app)
    add_user(app, "jsmith", "john.smith@example.com", firstname="John", surname="Smith")
    add_user(app, "same", "sam.same@example.com", firstname="Sam", surname="Same")
    with app.app_context():
        boss = db.session.scalar(select(User).where(User.username == "boss"))
        for name, kind, options in FIELDS:
            create_field(db.session, FieldDefinition(name, name.replace("_", " ").title(), kind,
                                                     options, False, False), actor_id=boss.id)
        save_template(db.session, INVITATION, "en", NotificationTemplate(
            subject="Welcome, {{ firstname }}", text="Your login: {{ username }} / "
            "{{ password }}\n{{ login_url }}", html="<p>{{ username }} / {{ password }}</p>"),
            actor_id=boss.id)
        db.session.commit()
    applied = batch_id_of(upload(client, FILE.encode(), "monthly.csv"))
    assert choose_all(client, applied, "add", "update").status_code == 302
    drain(app)  # every invitation sent into the outbox
    staged = batch_id_of(upload(client, FILE.encode(), "again.csv"))
    # an export of another system: mapped once (a saved mapping), then waiting at the column step
    mapped = batch_id_of(upload(client, HR_EXPORT, "hr.csv"))
    assert map_columns(client, mapped, ["username", "fullname", "email", ""]).status_code == 302
    asking = batch_id_of(upload(client, HR_EXPORT.replace(b"Office", b"Desk"), "hr2.csv"))
    states = (InvitationStatus.QUEUED, InvitationStatus.SENDING, InvitationStatus.SENT)
    owners = {state: add_user(app, f"state-{state}", f"{state}@example.com") for state in states}
    expired_id = add_user(app, "expired", "expired@example.com")
    with app.app_context():  # one invitation in each other state
        ids = list(db.session.scalars(select(Invitation.id).order_by(Invitation.id)))
        db.session.execute(update(Invitation).where(Invitation.id == ids[0]).values(
            status=InvitationStatus.FAILED, last_error="550 5.1.1 mailbox unknown"))
        for state, user_id in owners.items():
            db.session.add(Invitation(user_id=user_id, batch_id=applied, status=state,
                                      lease_until=utcnow() + timedelta(minutes=5)
                                      if state == InvitationStatus.SENDING else None))
        db.session.get(User, expired_id).temp_password_expires_at = utcnow() - timedelta(days=1)
        db.session.add(Invitation(user_id=expired_id, batch_id=applied,
                                  status=InvitationStatus.SENT, sent_at=utcnow()))
        db.session.commit()
        # set-password links: one that works, one used, and the page of a token never made
        links = {}
        for state in (SetPasswordLink.PENDING, SetPasswordLink.USED):
            token, digest = new_token()
            db.session.add(SetPasswordLink(digest=digest, user_id=owners[InvitationStatus.SENT],
                                           state=state, expires_at=utcnow() + timedelta(days=7)))
            links[state] = token
        db.session.commit()
        field_ids = list(db.session.scalars(select(ProfileField.id)))
        user_ids = list(db.session.scalars(select(User.id)))  # every kind of user and history
        assert db.session.get(ImportBatch, applied).status == "applied"
    outbox = sorted(p.name for p in (Path(app.instance_path) / "outbox").glob("*.eml"))
    assert outbox
    return app, client, {"batch_id": [applied, staged, mapped, asking], "field_id": field_ids,
                         "code": ["en"], "name": [INVITATION, INVITATION_LINK],
                         "token": [*links.values(), "never-made"],
                         "filename": ["bulkimport.css"], "user_id": user_ids}, outbox[0]


def _urls(app, arguments: dict, outbox_name: str) -> list[str]:
    """Every GET URL of the map, with each realistic value of its arguments."""
    urls = []
    with app.test_request_context():
        from flask import url_for

        for rule in app.url_map.iter_rules():
            if "GET" not in rule.methods:
                continue
            if rule.endpoint == "bootstrap.static":
                urls.append(url_for(rule.endpoint, filename="css/bootstrap.min.css"))
                continue
            if rule.endpoint in ("system.outbox_message", "system.outbox_message_html"):
                urls.append(url_for(rule.endpoint, name=outbox_name))
                continue
            choices = [[(name, value) for value in arguments[name]] for name in rule.arguments]
            combos = [[]]
            for options in choices:
                combos = [combo + [option] for combo in combos for option in options]
            urls.extend(url_for(rule.endpoint, **dict(combo)) for combo in combos)
    return urls


def test_every_get_route_renders_realistic_data(realistic):
    app, client, arguments, outbox_name = realistic
    urls = _urls(app, arguments, outbox_name)
    assert len(urls) > 30
    problems = []
    for url in urls:
        response = client.get(url)
        response.close()  # a streamed download left open would pop another request's context
        if response.status_code >= 500:
            problems.append(f"{url}: HTTP {response.status_code}")
            continue
        if response.mimetype != "text/html":
            continue
        page = response.get_data(as_text=True)
        text = re.sub(r"<script.*?</script>|<[^>]+>", " ", page, flags=re.S)
        for internal in INTERNALS:
            if internal in page:
                problems.append(f"{url}: prints {internal!r}")
        if re.search(r"\bNone\b", text):
            problems.append(f"{url}: prints None")
        if "/localisation/" not in url:  # the template editor documents its variables by name
            problems.extend(f"{url}: prints the raw key {key}" for key in RAW_KEYS
                            if re.search(rf"\b{key}\b", text))
    assert problems == []

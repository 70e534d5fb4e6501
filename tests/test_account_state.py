"""Blocked accounts (issue 15, points 1 and 3): a blocked user cannot log in and their open
session ends; their invitations wait and go out once unblocked, or fail at the end of the
give-up window; administrators block and unblock from the user's page and from the list, never
their own account nor the last active administrator; every change is audited with its actor."""

from __future__ import annotations

import pytest
from conftest import (
    ADMIN_PASSWORD,
    USER_PASSWORD,
    add_user,
    import_file,
    login_admin,
    wait_for_jobs,
)
from sqlalchemy import select
from test_mailing import drain, mail_config, make_csv

from bulkimport.account_state import LAST_ADMIN, SELF, block_refusal, set_blocked
from bulkimport.accounts import create_admin
from bulkimport.extensions import db
from bulkimport.mailing.sending import BLOCKED_WAITING
from bulkimport.models import AuditEvent, Invitation, User

BLOCKED = "This account is blocked. Ask an administrator to unblock it."


def user_id(app, username: str) -> int:
    with app.app_context():
        return db.session.scalar(select(User.id).where(User.username == username))


def log_in(app, username: str, password: str):
    client = app.test_client()
    response = client.post("/login", data={"username": username, "password": password})
    return client, response


def test_blocking_ends_the_session_refuses_the_login_and_unblocking_restores_it(app_factory):
    app = app_factory()
    admin = login_admin(app)
    add_user(app, "ann", "ann@example.com")
    ann, response = log_in(app, "ann", USER_PASSWORD)
    assert response.status_code == 302 and ann.get("/account").status_code == 200
    ann_id = user_id(app, "ann")

    response = admin.post(f"/admin/people/users/{ann_id}/state", data={"block": "Block"})
    assert response.location.endswith(f"/admin/people/users/{ann_id}")
    page = admin.get(response.location).get_data(as_text=True)
    assert "Blocked ann: they cannot log in, their sessions have ended" in page
    assert 'value="Unblock"' in page and "Blocked: cannot log in" in page
    assert ann.get("/account").status_code == 302  # her open session ended
    _, refused = log_in(app, "ann", USER_PASSWORD)
    assert BLOCKED in refused.get_data(as_text=True)

    admin.post(f"/admin/people/users/{ann_id}/state", data={"unblock": "Unblock"})
    ann, response = log_in(app, "ann", USER_PASSWORD)
    assert response.status_code == 302 and ann.get("/account").status_code == 200
    with app.app_context():
        events = db.session.execute(select(AuditEvent.action, AuditEvent.actor_id)
                                    .where(AuditEvent.user_id == ann_id,
                                           AuditEvent.action.like("user_%blocked"))
                                    .order_by(AuditEvent.id)).all()
        boss = db.session.scalar(select(User.id).where(User.username == "boss"))
    assert events == [("user_blocked", boss), ("user_unblocked", boss)]
    audit = admin.get("/admin/system/audit").get_data(as_text=True)
    assert "User blocked" in audit and "User unblocked" in audit


def test_an_administrator_cannot_block_their_own_account(app_factory):
    app = app_factory()
    admin = login_admin(app)
    boss_id = user_id(app, "boss")
    response = admin.post(f"/admin/people/users/{boss_id}/state", data={"block": "Block"})
    assert SELF in admin.get(response.location).get_data(as_text=True)
    response = admin.post("/admin/people/users/state",
                          data={"selected": [str(boss_id)], "block": "Block selected"})
    assert SELF in admin.get(response.location).get_data(as_text=True)
    with app.app_context():
        assert db.session.get(User, boss_id).active
        assert db.session.scalar(select(AuditEvent.id).where(
            AuditEvent.action == "user_blocked")) is None


def test_the_last_active_administrator_is_never_blocked(app_factory):
    app = app_factory()
    with app.app_context():
        boss = create_admin(db.session, "boss", "boss@example.com", ADMIN_PASSWORD)
        chief = create_admin(db.session, "chief", "chief@example.com", ADMIN_PASSWORD)
        db.session.commit()
        # one of two may go; both at once (from the command line, with no actor) may not
        assert block_refusal(db.session, -1, [chief]) is None
        assert block_refusal(db.session, -1, [boss, chief]) == LAST_ADMIN.format(
            username="chief")
        set_blocked(db.session, boss.id, [chief], True)
        db.session.commit()
        assert block_refusal(db.session, -1, [boss]) == LAST_ADMIN.format(username="boss")
        assert block_refusal(db.session, boss.id, [boss]) == SELF


def test_the_list_filters_by_state_and_blocks_and_unblocks_the_ticked_users(app_factory):
    app = app_factory()
    admin = login_admin(app)
    for name in ("ann", "bob", "cat"):
        add_user(app, name, f"{name}@example.com")
    ids = {name: str(user_id(app, name)) for name in ("ann", "bob", "cat")}
    response = admin.post("/admin/people/users/state", data={
        "selected": [ids["ann"], ids["bob"], "²", "-1", "999999"], "block": "Block selected",
        "q": "example", "state": "active"})
    assert response.location.endswith("/admin/people?q=example&state=active")
    assert "Blocked ann, bob:" in admin.get(response.location).get_data(as_text=True)
    blocked = admin.get("/admin/people?state=blocked").get_data(as_text=True)
    assert "2 blocked users." in blocked
    assert f'value="{ids["ann"]}"' in blocked and f'value="{ids["cat"]}"' not in blocked
    active = admin.get("/admin/people?state=active").get_data(as_text=True)
    assert f'value="{ids["cat"]}"' in active and f'value="{ids["ann"]}"' not in active

    response = admin.post("/admin/people/users/state", data={
        "selected": [ids["bob"]], "unblock": "Unblock selected"})
    assert "Unblocked bob:" in admin.get(response.location).get_data(as_text=True)
    nothing = admin.post("/admin/people/users/state", data={"block": "Block selected"})
    assert "tick the users to block or unblock first" in admin.get(
        nothing.location).get_data(as_text=True)
    with app.app_context():
        states = dict(db.session.execute(select(User.username, User.active)).all())
    assert states == {"boss": True, "ann": False, "bob": True, "cat": True}


@pytest.mark.parametrize("path", ["/admin/people/users/state", "/admin/people/users/1/state"])
def test_a_plain_user_cannot_block_anyone(app_factory, path):
    app = app_factory()
    login_admin(app)
    add_user(app, "ann", "ann@example.com")
    ann, _ = log_in(app, "ann", USER_PASSWORD)
    assert ann.post(path, data={"selected": ["1"], "block": "Block"}).status_code == 403
    with app.app_context():
        assert all(db.session.scalars(select(User.active)))


def test_invitations_of_a_blocked_user_wait_and_go_out_when_unblocked(app_factory, smtp):
    controller, handler = smtp
    app = app_factory(**mail_config(controller))
    admin = login_admin(app)
    import_file(admin, make_csv(2))
    drain(app)
    mail0 = user_id(app, "mail000")
    with app.app_context():
        invitation_id = db.session.scalar(select(Invitation.id).where(
            Invitation.user_id == mail0))
    admin.post(f"/admin/people/users/{mail0}/state", data={"block": "Block"})
    admin.post("/admin/people/invitations/resend", data={"one": str(invitation_id),
                                                         "confirm": "1"})
    wait_for_jobs(app)
    with app.app_context():
        held = db.session.get(Invitation, invitation_id)
        assert (held.status, held.last_error) == ("queued", BLOCKED_WAITING)
        assert held.pending_hashes == []  # no password was made for it
    assert handler.count_for("mail000@example.com") == 1  # only the first e-mail

    admin.post(f"/admin/people/users/{mail0}/state", data={"unblock": "Unblock"})
    wait_for_jobs(app)
    assert handler.count_for("mail000@example.com") == 2
    password = handler.last_password("mail000@example.com")
    _, response = log_in(app, "mail000", password)
    assert response.status_code == 302


def test_an_invitation_still_blocked_at_the_end_of_its_window_fails_with_the_reason(
        app_factory, smtp):
    controller, handler = smtp
    app = app_factory(**mail_config(controller, MAIL_GIVE_UP_HOURS=1))
    admin = login_admin(app)
    import_file(admin, make_csv(1))
    drain(app)
    mail0 = user_id(app, "mail000")
    with app.app_context():
        invitation_id = db.session.scalar(select(Invitation.id))
    admin.post(f"/admin/people/users/{mail0}/state", data={"block": "Block"})
    admin.post("/admin/people/invitations/resend", data={"one": str(invitation_id),
                                                         "confirm": "1"})
    assert drain(app) == {"failed": 1}  # the clock moves to the end of the window
    with app.app_context():
        failed = db.session.get(Invitation, invitation_id)
        assert failed.last_error == "Not sent: the account was blocked until the sending gave up."
    assert handler.count_for("mail000@example.com") == 1

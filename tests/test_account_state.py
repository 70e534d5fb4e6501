"""Blocked accounts (issue 15, points 1 to 3): a blocked user cannot log in and their open
session ends; their invitations wait and go out once unblocked, or fail at the end of the
give-up window; administrators block and unblock from the user's page and from the list, never
their own account nor the last active administrator; every change is audited with its actor.
A file sets the state on add and on update in every system's spelling, the right way round,
and the export carries it back unchanged."""

from __future__ import annotations

import re

import pytest
from conftest import (
    ADMIN_PASSWORD,
    USER_PASSWORD,
    add_user,
    batch_id_of,
    choose_all,
    import_file,
    login_admin,
    sample,
    upload,
    wait_for_jobs,
)
from sqlalchemy import select
from test_mailing import drain, mail_config, make_csv

from bulkimport.account_state import LAST_ADMIN, SELF, block_refusal, set_blocked
from bulkimport.accounts import create_admin
from bulkimport.extensions import db
from bulkimport.mailing.sending import BLOCKED_WAITING
from bulkimport.models import AuditEvent, ImportRow, Invitation, User

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


@pytest.fixture
def invited(app_factory, smtp):
    """Two users invited through a real SMTP server: (app, admin client, SMTP handler, the id
    of mail000)."""
    controller, handler = smtp
    app = app_factory(**mail_config(controller))
    admin = login_admin(app)
    import_file(admin, make_csv(2))
    drain(app)
    return app, admin, handler, user_id(app, "mail000")


def test_invitations_of_a_blocked_user_wait_and_go_out_when_unblocked(invited):
    app, admin, handler, mail0 = invited
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


# ----- point 2: the account state in a file, in every system's spelling ------------------------

# (heading, cell, active afterwards): each spelling the right way round
SPELLINGS = [
    ("Account state", "Active", True), ("Account state", "Blocked", False),
    ("Account state", "YES", True), ("Account state", "no", False),
    ("active", "yes", True), ("active", "no", False), ("active", "true", True),
    ("active", "false", False), ("active", "1", True), ("active", "0", False),
    ("blocked", "yes", False), ("blocked", "no", True), ("blocked", "1", False),
    ("suspended", "1", False), ("suspended", "0", True),
    ("Status", "Active", True), ("Status", "Suspended", False),
    ("New Status [UPLOAD ONLY]", "Suspended", False), ("New Status [UPLOAD ONLY]", "Active", True),
    ("Block sign in", "Yes", False), ("Block sign in", "No", True),
    ("Block sign in (Yes/No)", "Yes", False),
    ("accountEnabled", "True", True), ("accountEnabled", "False", False),
    ("enabled", "false", False), ("disabled", "TRUE", False), ("disabled", "false", True),
]


def state_file(heading: str, rows: list[tuple[str, str]]) -> bytes:
    lines = [f"username,firstname,surname,email,{heading}"]
    lines += [f"{name},{name.title()},Doe,{name}@example.com,{cell}" for name, cell in rows]
    return ("\n".join(lines) + "\n").encode()


def states(app) -> dict[str, bool]:
    with app.app_context():
        return dict(db.session.execute(select(User.username, User.active)
                                       .where(~User.is_admin)).all())


@pytest.mark.parametrize(("heading", "cell", "active"), SPELLINGS,
                         ids=[f"{h}={c}" for h, c, _ in SPELLINGS])
def test_every_spelling_sets_the_state_on_add_and_on_update(app_factory, heading, cell, active):
    app = app_factory()
    admin = login_admin(app)
    import_file(admin, state_file(heading, [("ann", cell)]))
    assert states(app) == {"ann": active}
    # and the other way round on an existing user, shown as a change
    add_user(app, "bob", "bob@example.com", firstname="Bob", surname="Doe", active=not active)
    response = upload(admin, state_file(heading, [("bob", cell)]))
    review = admin.get(response.location).get_data(as_text=True)
    old, new = ("Blocked", "Active") if active else ("Active", "Blocked")
    assert f'Account state: <span class="old">{old}</span> → {new}' in review
    choose_all(admin, batch_id_of(response), "update")
    assert states(app)["bob"] is active
    audit = admin.get("/admin/system/audit").get_data(as_text=True)
    assert f"{old} → {new}" in audit  # in the state's words, not yes → no


@pytest.mark.parametrize(("heading", "cell", "message"), [
    ("Account state", "maybe", "Account state is “maybe”; use Active or Blocked"),
    ("blocked", "perhaps", "Blocked is “perhaps”; use yes or no"),
    ("Status", "Deleted", "Account state is “Deleted”"),
])
def test_an_unknown_state_is_an_error_naming_the_line_and_field(app_factory, heading, cell,
                                                                 message):
    app = app_factory()
    admin = login_admin(app)
    response = upload(admin, state_file(heading, [("ann", "Active"), ("cat", cell)]))
    review = admin.get(response.location).get_data(as_text=True)
    row = re.search(r'<tr class="table-danger" data-line="3">.*?</tr>', review, re.S).group(0)
    assert message in row
    assert states(app) == {}


def test_the_entra_sample_adds_the_blocked_sign_in_blocked(app_factory):
    app = app_factory()
    admin = login_admin(app)
    batch_id = batch_id_of(upload(admin, sample("entra-bulk-create.csv"), generate=False))
    choose_all(admin, batch_id, "add")
    wait_for_jobs(app)
    assert states(app) == {"marta.kowalczyk": True, "jonas.lindqvist": True,
                           "aiko.tanaka": False}


def test_the_export_carries_the_state_and_reads_back_unchanged(app_factory):
    app = app_factory()
    admin = login_admin(app)
    import_file(admin, state_file("Account state", [("ann", "Active"), ("bob", "Blocked")]))
    exported = admin.get("/admin/people/export?download=1").get_data().decode("utf-8-sig")
    assert "Account state" in exported.splitlines()[0]
    assert '"bob","Bob","Doe","bob@example.com","","0","Blocked"' in exported
    batch_id = batch_id_of(upload(admin, exported.encode()))
    with app.app_context():
        proposed = list(db.session.scalars(select(ImportRow.proposed)
                                           .where(ImportRow.batch_id == batch_id)))
    assert proposed == ["nochange"] * 3  # boss, ann and bob


def test_a_file_never_blocks_an_administrator(app_factory):
    app = app_factory()
    admin = login_admin(app)
    response = upload(admin, state_file("Account state", [("ann", "Active")]).replace(
        b"ann,Ann,Doe,ann@example.com", b"boss,Site,Administrator,boss@example.com")
        .replace(b",Active", b",Blocked"))
    review = admin.get(response.location).get_data(as_text=True)
    row = re.search(r'<tr class="table-danger" data-line="2">.*?</tr>', review, re.S).group(0)
    assert "administrators are changed one at a time" in row
    with app.app_context():
        assert db.session.scalar(select(User.active).where(User.username == "boss"))


def test_blocking_by_file_ends_sessions_and_unblocking_releases_invitations(invited):
    app, admin, handler, mail0 = invited
    mail0_client, _ = log_in(app, "mail000", handler.last_password("mail000@example.com"))
    assert mail0_client.get("/account").status_code == 200
    import_file(admin, state_file("Block sign in", [("mail000", "Yes")])
                .replace(b"Mail000,Doe", b"Given0,Family0"), "update")
    assert states(app)["mail000"] is False
    assert mail0_client.get("/account").status_code == 302  # the session ended with the import
    with app.app_context():
        invitation_id = db.session.scalar(select(Invitation.id).where(
            Invitation.user_id == mail0))
    admin.post("/admin/people/invitations/resend", data={"one": str(invitation_id),
                                                         "confirm": "1"})
    wait_for_jobs(app)
    assert handler.count_for("mail000@example.com") == 1  # held while blocked
    import_file(admin, state_file("Block sign in", [("mail000", "No")])
                .replace(b"Mail000,Doe", b"Given0,Family0"), "update")
    wait_for_jobs(app)
    assert states(app)["mail000"] is True
    assert handler.count_for("mail000@example.com") == 2  # released by the import

"""Issue 14, points 11-13: Resend asks for confirmation and says what happens to the working
password, the rows keep their earlier Sent times; the user page (details, profile fields,
invitation history, audit events, Resend) linked from the user list; the import result lists
who was added and updated and says how many invitations are sent and still queued."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from conftest import (
    USER_PASSWORD,
    add_user,
    authenticate,
    batch_id_of,
    choose_all,
    import_file,
    login_admin,
    upload,
    wait_for_jobs,
)
from sqlalchemy import delete, func, select
from test_mailing import assert_invariant, drain, mail_config, make_csv

from bulkimport.extensions import db
from bulkimport.models import AuditEvent, Invitation, SystemState, User
from bulkimport.profile import FieldDefinition, create_field

RESEND = "/admin/people/invitations/resend"
WARNING = ("keeps working until the mail server accepts the new e-mail, and stops working from "
           "then on")
INTERNALS = ("<built-in", " object at 0x", "Undefined", "Traceback")


def text_of(page: str) -> str:
    """The words of a page, without its tags and with single spaces."""
    return " ".join(re.sub(r"<script.*?</script>|<[^>]+>", " ", page, flags=re.S).split())


def invitation_ids(app) -> dict[str, int]:
    with app.app_context():
        return {i.user.username: i.id for i in db.session.scalars(select(Invitation))}


def user_id_of(app, username: str) -> int:
    with app.app_context():
        return db.session.scalar(select(User.id).where(User.username == username))


def statuses(app) -> dict[str, str]:
    with app.app_context():
        return {i.user.username: str(i.status) for i in db.session.scalars(select(Invitation))}


def pause_sending(app, paused: bool) -> None:
    """Pause sending as a refused SMTP login does (the workers take nothing), or resume it."""
    with app.app_context():
        db.session.execute(delete(SystemState))
        if paused:
            db.session.add(SystemState(key=SystemState.MAIL_PAUSED, value="Paused by the test."))
        db.session.commit()


def log_in(app, username: str, password: str):
    client = app.test_client()
    response = client.post("/login", data={"username": username, "password": password})
    assert response.status_code == 302 and "/login" not in response.location
    return client


# ----- 11. Resend asks first, and says what happens -------------------------------------------

@pytest.mark.parametrize("how", ["one", "selected", "all_failed"])
def test_resend_asks_for_confirmation_and_changes_nothing_before(app_factory, smtp, how):
    controller, handler = smtp
    handler.rules["mail001@example.com"] = ["rcpt550"]
    app = app_factory(**mail_config(controller))
    client = login_admin(app)
    batch_id = import_file(client, make_csv(3))
    assert drain(app) == {"sent": 2, "failed": 1}
    ids = invitation_ids(app)
    worker = log_in(app, "mail000", handler.last_password("mail000@example.com"))
    data = {"one": {"one": str(ids["mail000"])},
            "selected": {"selected": [str(ids["mail000"]), str(ids["mail002"])]},
            "all_failed": {"all_failed": "1"}}[how]
    before = statuses(app)
    response = client.post(RESEND, data={**data, "batch_id": str(batch_id)})
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    words = text_of(page)
    assert WARNING in words and "signed out of every session now" in words
    assert "If the new e-mail cannot be delivered, the password they have now keeps working" \
        in words
    expected = {"one": ["mail000"], "selected": ["mail000", "mail002"],
                "all_failed": ["mail001"]}[how]
    assert sorted(re.findall(r'<tr data-invitation="\d+">\s*<td><a [^>]*>(\w+)<', page)) \
        == expected
    assert 'name="confirm"' in page
    assert not any(internal in page for internal in INTERNALS)
    # nothing happened yet: no status changed, no event, no session ended
    assert statuses(app) == before
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "invitations_resent")) == 0
    assert worker.get("/account").status_code == 200
    assert drain(app) == {"sent": 2, "failed": 1}
    assert handler.count_for("mail000@example.com") == 1

    # the confirmation page's own form resends exactly what it listed
    hidden = re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page)
    form = {"confirm": "Send new passwords", "batch_id": str(batch_id), "user_id": ""}
    if how == "all_failed":
        assert ("all_failed", "1") in hidden
        form["all_failed"] = "1"
    else:
        form["selected"] = [v for k, v in hidden if k == "selected"]
    response = client.post(RESEND, data=form)
    assert response.status_code == 302
    assert response.location.endswith(f"/import/{batch_id}/invitations")
    with app.app_context():
        event = db.session.scalar(select(AuditEvent).where(
            AuditEvent.action == "invitations_resent"))
        assert event.detail["count"] == len(expected)
    drain(app)
    assert all(handler.count_for(f"{u}@example.com") == 2 - (u == "mail001") for u in expected)
    assert_invariant(app, handler)


def test_a_confirmed_resend_replaces_the_working_password_as_the_page_says(app_factory, smtp,
                                                                           clock):
    controller, handler = smtp
    app = app_factory(**mail_config(controller), SESSION_IDLE_MINUTES=60 * 24,
                      SESSION_MAX_HOURS=48)
    client = login_admin(app)
    batch_id = import_file(client, make_csv(2))
    drain(app)
    first_sent = clock.now()
    old = handler.last_password("mail000@example.com")
    worker = log_in(app, "mail000", old)
    clock.advance(hours=2)
    user_id = user_id_of(app, "mail000")
    pause_sending(app, True)  # the new e-mail waits while the old password is tried
    response = client.post(RESEND, data={"one": str(invitation_ids(app)["mail000"]),
                                         "user_id": str(user_id), "confirm": "1"})
    assert response.location.endswith(f"/admin/people/users/{user_id}")
    wait_for_jobs(app)
    # signed out at once; the old password works until the new e-mail is accepted
    assert worker.get("/account").status_code == 302
    with app.app_context():
        assert authenticate(db.session, "mail000", old) is not None
        db.session.rollback()
    pause_sending(app, False)
    clock.advance(minutes=3)
    drain(app)
    new = handler.last_password("mail000@example.com")
    with app.app_context():
        assert authenticate(db.session, "mail000", old) is None
        assert authenticate(db.session, "mail000", new) is not None
        db.session.rollback()
    assert_invariant(app, handler)
    # the earlier Sent time stays in the row's history, on every page that shows the row
    resent, sent_again = first_sent + timedelta(hours=2), first_sent + timedelta(hours=2,
                                                                                minutes=3)
    times = [f"{t:%Y-%m-%d %H:%M}" for t in (first_sent, resent, sent_again)]
    for url in (f"/admin/people/import/{batch_id}/invitations", f"/admin/people/users/{user_id}"):
        page = client.get(url).get_data(as_text=True)
        row = re.search(rf'<tr data-invitation="{invitation_ids(app)["mail000"]}">.*?</tr>',
                        page, re.S).group(0)
        assert text_of(row).count("Sent") == 2, url
        steps = re.findall(r'data-step="(\w+)".*?<time [^>]*>([^<]+)</time>', row, re.S)
        assert steps == [("sent", times[0]), ("resent", times[1]), ("sent", times[2])], url


def test_a_resend_that_cannot_be_delivered_leaves_the_working_password(app_factory, smtp):
    controller, handler = smtp
    app = app_factory(**mail_config(controller))
    client = login_admin(app)
    import_file(client, make_csv(1))
    drain(app)
    old = handler.last_password("mail000@example.com")
    handler.rules["mail000@example.com"] = ["rcpt550"]
    client.post(RESEND, data={"one": str(invitation_ids(app)["mail000"]), "confirm": "1"})
    assert drain(app) == {"failed": 1}
    with app.app_context():
        assert authenticate(db.session, "mail000", old) is not None
    assert_invariant(app, handler)


def test_the_invitations_page_sends_its_resend_buttons_to_the_confirmation(app_factory):
    app = app_factory(MAIL_SERVER="", MAIL_RATE_PER_MINUTE=0)
    client = login_admin(app)
    import_file(client, make_csv(2))
    drain(app)
    page = client.get("/admin/people/invitations").get_data(as_text=True)
    assert page.count(">Resend…</button>") == 2
    unconfirmed = "may have accepted without confirming it keeps its password working too"
    for username, invitation_id in invitation_ids(app).items():
        response = client.post(RESEND, data={"one": str(invitation_id)})
        words = text_of(response.get_data(as_text=True))
        assert response.status_code == 200
        assert f"Resend the invitation of {username}?" in words and unconfirmed not in words
    with app.app_context():  # an e-mail whose acceptance the server never confirmed
        invitation = db.session.get(Invitation, invitation_ids(app)["mail001"])
        invitation.pending_hashes = ["$2b$04$" + "x" * 53]
        db.session.commit()
    response = client.post(RESEND, data={"selected": [str(i) for i in
                                                      invitation_ids(app).values()]})
    words = text_of(response.get_data(as_text=True))
    assert "Resend 2 invitations?" in words and unconfirmed in words
    assert set(statuses(app).values()) == {"sent"}


# ----- 12. The user page ----------------------------------------------------------------------

def test_the_user_page_shows_details_profile_fields_invitations_and_events(app_factory, clock):
    app = app_factory(MAIL_SERVER="", MAIL_RATE_PER_MINUTE=0)
    client = login_admin(app)
    with app.app_context():
        boss = db.session.scalar(select(User.id).where(User.username == "boss"))
        create_field(db.session, FieldDefinition("department", "Department", "text", [], False,
                                                 False), actor_id=boss)
        create_field(db.session, FieldDefinition("start_date", "Start date", "date", [], False,
                                                 False), actor_id=boss)
        create_field(db.session, FieldDefinition("remote", "Works remotely", "yesno", [], False,
                                                 False), actor_id=boss)
        db.session.commit()
    import_file(client, b"username,firstname,surname,email,language,department,start_date\n"
                        b"nora,Nora,New,nora@example.com,en,Sales,2026-01-31\n")
    drain(app)
    clock.advance(minutes=5)
    batch_id = batch_id_of(upload(client, b"username,firstname,surname,email,department,"
                                          b"Change password next time\n"
                                          b"nora,Nora,Newer,nora@example.com,IT,1\n"))
    assert choose_all(client, batch_id, "update").status_code == 302
    user_id = user_id_of(app, "nora")
    response = client.get(f"/admin/people/users/{user_id}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    words = text_of(page)
    for expected in ("Nora Newer", "nora@example.com", "English (en)",
                     "Change password next time Yes: must choose a new password",
                     "Department department IT", "Start date start_date 2026-01-31",
                     "Works remotely remote (empty)", "Temporary, valid until",
                     "No open session"):
        assert expected in words, expected
    assert re.search(r'<tr data-invitation="\d+">.*?>sent<', page, re.S)
    assert "Added by the import of “users.csv”" in words
    assert "Updated by the import of “users.csv”" in words
    assert "Department, Change password next time, surname" in words
    assert "Invitation e-mail accepted by the mail server (attempt 1)" in words
    assert 'name="one"' in page and "Resend invitation…" in page
    assert "must_change_password" not in words
    assert not any(internal in page for internal in INTERNALS)
    # a login shows while its session lasts
    log_in(app, "boss", "admin-password-for-tests")
    assert "2 open sessions" in text_of(client.get(f"/admin/people/users/"
                                                   f"{user_id_of(app, 'boss')}").get_data(
                                                       as_text=True))


def test_the_user_page_of_a_user_without_invitation(app_factory):
    app = app_factory()
    client = login_admin(app)
    user_id = add_user(app, "plain", is_admin=True, active=False)
    page = client.get(f"/admin/people/users/{user_id}").get_data(as_text=True)
    words = text_of(page)
    assert "No invitation" in words and "Resend invitation" not in words
    assert "Administrator" in words and "Blocked: cannot log in" in words
    assert "No profile fields are defined" in words


def test_the_user_list_links_every_row_to_its_page_and_offers_resend(app_factory):
    app = app_factory(MAIL_SERVER="", MAIL_RATE_PER_MINUTE=0)
    client = login_admin(app)
    import_file(client, make_csv(2))
    drain(app)
    page = client.get("/admin/people").get_data(as_text=True)
    with app.app_context():
        users = {u.username: u.id for u in db.session.scalars(select(User))}
    for username, user_id in users.items():
        row = re.search(rf'<tr data-user="{user_id}">.*?</tr>', page, re.S).group(0)
        assert f'href="/admin/people/users/{user_id}"' in row
        assert ("Resend…" in row) == username.startswith("mail")
    ids = invitation_ids(app)
    response = client.post(RESEND, data={"one": str(ids["mail001"]),
                                         "user_id": str(users["mail001"])})
    assert response.status_code == 200 and WARNING in text_of(response.get_data(as_text=True))
    assert f'href="/admin/people/users/{users["mail001"]}">Cancel' in response.get_data(
        as_text=True)


@pytest.mark.parametrize("role", ["anonymous", "user"])
def test_the_user_page_is_for_administrators_only(app_factory, role):
    app = app_factory()
    login_admin(app)
    user_id = add_user(app, "worker")
    client = app.test_client() if role == "anonymous" else log_in(app, "worker", USER_PASSWORD)
    response = client.get(f"/admin/people/users/{user_id}")
    if role == "anonymous":
        assert response.status_code == 302 and "/login" in response.location
    else:
        assert response.status_code == 403


@pytest.mark.parametrize("path", ["/admin/people/users/999999", "/admin/people/users/abc",
                                  "/admin/people/users/-1", "/admin/people/users/",
                                  "/admin/people/users/1.5"])
def test_unknown_user_pages_are_404(app, client, path):
    assert client.get(path).status_code == 404


@pytest.mark.parametrize(("data", "status", "where"), [
    ({"one": "abc"}, 302, "/admin/people/invitations"),
    ({"one": "999999"}, 302, "/admin/people/invitations"),
    ({"selected": ["x", "-1"]}, 302, "/admin/people/invitations"),
    ({}, 302, "/admin/people/invitations"),
    ({"one": "1", "batch_id": "999999"}, 404, None),
    ({"one": "999999", "user_id": "abc"}, 302, "/admin/people/invitations"),
    ({"one": "999999", "user_id": "999999"}, 302, "/admin/people/invitations"),
    ({"one": "999999", "confirm": "1"}, 302, "/admin/people/invitations"),
])
def test_odd_resend_requests_resend_nothing(app_factory, data, status, where):
    app = app_factory(MAIL_SERVER="", MAIL_RATE_PER_MINUTE=0)
    client = login_admin(app)
    import_file(client, make_csv(1))
    drain(app)
    response = client.post(RESEND, data=data)
    assert response.status_code == status
    if where:
        assert response.location.endswith(where)
        assert "Nothing to resend" in client.get(response.location).get_data(as_text=True)
    assert statuses(app) == {"mail000": "sent"}


# ----- 13. The result page --------------------------------------------------------------------

def test_the_result_page_lists_who_was_added_and_updated_and_what_was_sent(app_factory):
    app = app_factory(MAIL_SERVER="", MAIL_RATE_PER_MINUTE=0)
    client = login_admin(app)
    add_user(app, "mail000", firstname="Old", surname="Name")
    pause_sending(app, True)  # every invitation stays queued for now
    batch_id = batch_id_of(upload(client, make_csv(60)))
    assert choose_all(client, batch_id, "add", "update").status_code == 302
    wait_for_jobs(app)
    page = client.get(f"/admin/people/import/{batch_id}/result").get_data(as_text=True)
    words = text_of(page)
    assert ("59 users added , 1 updated, 0 skipped; 59 invitation e-mails queued by this "
            "import.") in words
    assert ("Right now 0 of 59 have been sent (accepted by the mail server), 59 are still "
            "queued. Queued means not sent yet: those users have not received a password.") \
        in words
    assert "All (60) Added (59) Updated (1)" in words
    rows = re.findall(r'<tr data-outcome="(\w+)">', page)
    assert len(rows) == 50 and rows[0] == "updated"
    updated = re.search(r'<tr data-outcome="updated">.*?</tr>', page, re.S).group(0)
    assert f'href="/admin/people/users/{user_id_of(app, "mail000")}">mail000<' in updated
    assert "Updated: firstname, surname" in text_of(updated)
    # the invitation of each added user on the page
    assert len(re.findall(r'class="badge [^"]*">queued<', page)) == 49
    second = client.get(f"/admin/people/import/{batch_id}/result?page=2").get_data(as_text=True)
    assert len(re.findall(r'<tr data-outcome="added">', second)) == 10
    only = client.get(f"/admin/people/import/{batch_id}/result?show=updated").get_data(
        as_text=True)
    assert re.findall(r'<tr data-outcome="(\w+)">', only) == ["updated"]
    pause_sending(app, False)
    drain(app)
    page = client.get(f"/admin/people/import/{batch_id}/result").get_data(as_text=True)
    assert ("Right now 59 of 59 have been sent (accepted by the mail server), 0 are still "
            "queued") in text_of(page)
    assert f"/import/{batch_id}/invitations?status=queued" in page
    assert len(re.findall(r'class="badge [^"]*">sent<', page)) == 49


def test_the_result_page_without_generated_passwords(app_factory):
    app = app_factory()
    client = login_admin(app)
    batch_id = import_file(client, b"username,firstname,surname,email,password\n"
                                   b"ann,Ann,Lee,ann@example.com,Correct-horse-battery-1\n",
                           generate=False)
    wait_for_jobs(app)  # the file's passwords are hashed in the background
    page = client.get(f"/admin/people/import/{batch_id}/result").get_data(as_text=True)
    words = text_of(page)
    assert "0 invitation e-mails queued (passwords were not generated for this file)" in words
    assert "Invitation e-mails" not in words and ">Invitation<" not in page
    assert f'href="/admin/people/users/{user_id_of(app, "ann")}">ann<' in page


@pytest.mark.parametrize("query", ["show=bogus", "show=error", "page=-3", "page=999",
                                   "show=added&page=abc"])
def test_odd_result_page_arguments_show_a_page(app_factory, query):
    app = app_factory(MAIL_SERVER="", MAIL_RATE_PER_MINUTE=0)
    client = login_admin(app)
    batch_id = import_file(client, make_csv(2))
    response = client.get(f"/admin/people/import/{batch_id}/result?{query}")
    assert response.status_code == 200
    assert "2 users added" in text_of(response.get_data(as_text=True))



def test_a_sent_invitation_shows_sent_once_though_its_event_and_row_differ_by_a_moment(
        app_factory, smtp):
    # On the real clock the audit event and the invitation's sent_at are taken a moment apart;
    # the history showed "Sent" twice. The manual clock of the other tests hid it.
    controller, _ = smtp
    app = app_factory(**mail_config(controller))
    client = login_admin(app)
    import_file(client, make_csv(1))
    drain(app)
    with app.app_context():
        invitation = db.session.scalar(select(Invitation))
        invitation.sent_at += timedelta(microseconds=1500)
        user_id = invitation.user_id
        db.session.commit()
    page = client.get(f"/admin/people/users/{user_id}").get_data(as_text=True)
    row = re.search(r'<tr data-invitation="\d+">.*?</tr>', page, re.S).group(0)
    assert re.findall(r'data-step="(\w+)"', row) == ["sent"]

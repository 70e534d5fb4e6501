"""The change-password form after an error (issue 14, point 16): the current password is kept
when it was right, the new ones never come back, the page is not cached, "Show passwords" is
offered by the page script, and the temporary-password reminder is not shown on the very pages it
points to."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from conftest import ADMIN_PASSWORD, USER_PASSWORD, add_user, login_admin
from test_browser import live_server, log_in, page  # noqa: F401 (fixtures)

from bulkimport.accounts import create_admin
from bulkimport.extensions import db

GOOD = "tulip-harbour-47-lantern"


def _flagged_client(app):
    add_user(app, must_change_password=True)
    client = app.test_client()
    assert client.post("/login", data={"username": "worker",
                                       "password": USER_PASSWORD}).status_code == 302
    return client


def _value_of(html: str, name: str) -> str | None:
    tag = re.search(rf'<input[^>]*name="{name}"[^>]*>', html).group(0)
    found = re.search(r'value="([^"]*)"', tag)
    return found.group(1) if found else None


@pytest.mark.parametrize(("current", "new", "confirm", "error"), [
    (USER_PASSWORD, "worker-password-2026", "worker-password-2026", "must not contain"),
    (USER_PASSWORD, GOOD, GOOD + "x", "The two new passwords are not the same."),
    (USER_PASSWORD, "short", "short", "at least"),
])
def test_a_right_current_password_is_kept_and_the_new_ones_are_not(app, current, new, confirm,
                                                                    error):
    client = _flagged_client(app)
    response = client.post("/account/password", data={
        "current_password": current, "new_password": new, "confirm_password": confirm})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert error in html
    assert _value_of(html, "current_password") == current
    assert "It is right, and kept" in html
    assert _value_of(html, "new_password") in (None, "")
    assert _value_of(html, "confirm_password") in (None, "")
    assert response.headers["Cache-Control"] == "no-store"
    assert "Please correct the following" in html  # the summary above the form


def test_a_wrong_current_password_is_not_kept(app):
    client = _flagged_client(app)
    response = client.post("/account/password", data={
        "current_password": "not-my-password", "new_password": GOOD, "confirm_password": GOOD})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "This is not your current password." in html
    assert "not-my-password" not in html and GOOD not in html
    assert _value_of(html, "current_password") in (None, "")
    assert "It is right, and kept" not in html


def test_an_empty_form_keeps_nothing_and_the_page_is_never_cached(app):
    client = _flagged_client(app)
    first = client.get("/account/password")
    assert first.headers["Cache-Control"] == "no-store"
    response = client.post("/account/password", data={"current_password": USER_PASSWORD})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert USER_PASSWORD not in html  # not checked, so not known to be right: not kept
    # without the page script there is no "Show passwords" control that would do nothing
    assert "Show password" not in html


def test_the_reminder_of_a_temporary_password_is_not_shown_where_it_points(app, clock):
    add_user(app, temp_password_expires_at=clock.now() + timedelta(days=7))
    client = app.test_client()
    response = client.post("/login", data={"username": "worker", "password": USER_PASSWORD},
                           follow_redirects=True)
    html = response.get_data(as_text=True)
    assert response.request.path == "/account"
    assert "Choose your own on the Account page" not in html
    assert "You logged in with a temporary password; it stops working on" in html
    assert 'href="/account/password">Choose your own password</a>' in html
    # straight to the change-password page: no reminder either
    client.post("/logout")
    response = client.post("/login?next=/account/password", follow_redirects=True,
                           data={"username": "worker", "password": USER_PASSWORD})
    assert response.request.path == "/account/password"
    assert "Choose your own on the Account page" not in response.get_data(as_text=True)


def test_an_administrator_landing_elsewhere_is_reminded_with_the_way_there(app_factory, clock):
    app = app_factory()
    login_admin(app, "other")  # an administrator whose password is not temporary
    with app.app_context():
        boss = create_admin(db.session, "boss", "boss@example.com", ADMIN_PASSWORD)
        boss.temp_password_expires_at = clock.now() + timedelta(days=7)
        db.session.commit()
    client = app.test_client()
    response = client.post("/login", data={"username": "boss", "password": ADMIN_PASSWORD},
                           follow_redirects=True)
    assert response.request.path == "/admin/people"
    assert "Choose your own on the Account page." in response.get_data(as_text=True)


def test_show_passwords_in_a_browser_and_the_kept_current_password(live_server, page):  # noqa: F811
    from playwright.sync_api import expect

    base = live_server
    log_in(page, base, "boss", ADMIN_PASSWORD)
    expect(page.get_by_text("Signed in as")).to_contain_text("boss")
    page.goto(f"{base}/account/password")
    current = page.get_by_label("Current password")
    new = page.get_by_label("New password", exact=True)
    confirm = page.get_by_label("Confirm the new password")
    show = page.get_by_label("Show passwords")
    expect(show).not_to_be_checked()
    current.fill(ADMIN_PASSWORD)
    new.fill("boss-is-my-password-now")
    confirm.fill("boss-is-my-password-now")
    for field in (current, new, confirm):
        expect(field).to_have_attribute("type", "password")
    show.check()
    for field in (current, new, confirm):
        expect(field).to_have_attribute("type", "text")
    page.get_by_role("button", name="Change password").click()

    expect(page.get_by_text("The password must not contain the username.").first).to_be_visible()
    expect(current).to_have_value(ADMIN_PASSWORD)
    expect(current).to_have_attribute("type", "password")  # hidden again after the round trip
    expect(page.get_by_text("It is right, and kept")).to_be_visible()
    expect(new).to_have_value("")
    expect(confirm).to_have_value("")
    new.fill(GOOD)
    confirm.fill(GOOD)
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("alert").filter(has_text="Your password has been changed")) \
        .to_be_visible()
    assert [p for p in page.problems if "422" not in p] == []

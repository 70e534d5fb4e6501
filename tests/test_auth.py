"""Logging in and out, administrator-only pages, CSRF, and safe redirects."""

from __future__ import annotations

import re

import pytest
from conftest import ADMIN_PASSWORD, upload

from bulkimport.extensions import db
from bulkimport.models import User
from bulkimport.security import hash_password


def add_plain_user(app, username="worker", password="plain-user-password", active=True):
    with app.app_context():
        user = User(firstname="Plain", surname="User", active=active,
                    password_hash=hash_password(password, 4))
        user.set_identity(username, f"{username}@example.com")
        db.session.add(user)
        db.session.commit()


def test_login_page_has_labelled_fields_and_button(app):
    page = app.test_client().get("/login").get_data(as_text=True)
    assert re.search(r'<label[^>]*for="username"[^>]*>Username</label>', page)
    assert re.search(r'<label[^>]*for="password"[^>]*>Password</label>', page)
    assert re.search(r'<input[^>]*type="submit"[^>]*value="Log in"', page)


@pytest.mark.parametrize("username,password", [
    ("boss", "wrong-password-here"), ("nobody", ADMIN_PASSWORD), ("BOSS", "x" * 100)])
def test_failed_login_says_one_generic_thing(app, admin, username, password):
    response = app.test_client().post("/login", data={"username": username, "password": password})
    assert response.status_code == 200
    assert "Invalid username or password." in response.get_data(as_text=True)


def test_username_is_case_insensitive_and_login_lands_on_people(app, admin):
    client = app.test_client()
    response = client.post("/login", data={"username": "BOSS", "password": ADMIN_PASSWORD})
    assert response.location == "/"
    assert client.get("/").location == "/admin/people"


def test_a_blocked_user_cannot_log_in_and_is_told_so_only_with_the_right_password(app):
    add_plain_user(app, active=False)
    right = app.test_client().post(
        "/login", data={"username": "worker", "password": "plain-user-password"})
    page = right.get_data(as_text=True)
    assert right.status_code == 200 and "Signed in as" not in page
    assert "This account is blocked. Ask an administrator to unblock it." in page
    # a wrong password learns nothing, and neither does a guesser after failures
    for password in ("not-the-password", "plain-user-password"):
        refused = app.test_client().post("/login", data={"username": "worker",
                                                         "password": password})
        assert "Invalid username or password." in refused.get_data(as_text=True)


def test_logout_is_a_post(app, client):
    assert client.get("/logout").status_code == 405
    assert client.get("/admin/people").status_code == 200
    response = client.post("/logout")
    assert response.location == "/login"
    assert client.get("/admin/people").status_code == 302


@pytest.mark.parametrize("path", ["/admin/people", "/admin/people/import",
                                  "/admin/people/import/1", "/admin/people/import/1/result"])
def test_admin_pages_send_anonymous_users_to_login(app, path):
    response = app.test_client().get(path)
    assert response.status_code == 302
    assert response.location.startswith("/login?next=")


@pytest.mark.parametrize("path", ["/admin/people", "/admin/people/import",
                                  "/admin/people/import/1", "/admin/people/import/1/results.csv"])
def test_admin_pages_give_others_403(app, path):
    add_plain_user(app)
    client = app.test_client()
    client.post("/login", data={"username": "worker", "password": "plain-user-password"})
    response = client.get(path)
    assert response.status_code == 403
    assert "You are not allowed to see this page" in response.get_data(as_text=True)
    assert client.get("/account").status_code == 200  # their own account page works


@pytest.mark.parametrize("target,expected", [
    ("/admin/people?q=x", "/admin/people?q=x"), ("https://evil.example/", "/"),
    ("//evil.example/", "/"), ("javascript:alert(1)", "/"), ("admin/people", "/"),
    ("/\\evil.example/", "/"), ("/\\\\evil.example/", "/")])
def test_next_only_redirects_inside_the_site(app, admin, target, expected):
    response = app.test_client().post("/login", query_string={"next": target},
                                      data={"username": "boss", "password": ADMIN_PASSWORD})
    assert response.location == expected


@pytest.fixture
def csrf_app(app_factory):
    return app_factory(WTF_CSRF_ENABLED=True)


def test_forms_need_a_csrf_token(csrf_app):
    with csrf_app.app_context():
        from bulkimport.accounts import create_admin

        create_admin(db.session, "boss", "boss@example.com", ADMIN_PASSWORD)
        db.session.commit()
    client = csrf_app.test_client()
    refused = client.post("/login", data={"username": "boss", "password": ADMIN_PASSWORD})
    assert refused.status_code == 400
    assert "The form could not be accepted" in refused.get_data(as_text=True)

    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    response = client.post("/login", data={"username": "boss", "password": ADMIN_PASSWORD,
                                           "csrf_token": token})
    assert response.status_code == 302
    assert upload(client, b"username,firstname,surname,email\n").status_code == 400
    assert client.post("/logout").status_code == 400
    assert client.get("/admin/people").status_code == 200  # still logged in

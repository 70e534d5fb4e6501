"""A CSV update cannot change another administrator's password, e-mail or username — that would
let one administrator log in as another (issue 13, point 12); other users stay updatable."""

from __future__ import annotations

import re

import pytest
from conftest import ADMIN_PASSWORD, batch_id_of, choose_all, upload, wait_for_jobs
from sqlalchemy import select

from bulkimport.accounts import create_admin
from bulkimport.extensions import db
from bulkimport.models import User
from bulkimport.security import hash_password

REFUSED = "administrators are changed one at a time, by themselves or on their own page"
NEW_PASSWORD = "taken-over-password-2026"
HEADINGS = "username,firstname,surname,email,password\n"


@pytest.fixture
def people(app, client):
    """A second administrator `chief` and a plain user `pat`, next to `boss` who imports."""
    with app.app_context():
        create_admin(db.session, "chief", "chief@example.com", ADMIN_PASSWORD,
                     firstname="Carla", surname="Chief")
        user = User(firstname="Pat", surname="Plain",
                    password_hash=hash_password("pat-old-password-1", 4))
        user.set_identity("pat", "pat@example.com")
        db.session.add(user)
        db.session.commit()


def snapshot(app, username: str) -> tuple:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username_key == username.lower()))
        return user.username, user.email, user.password_hash, user.firstname


CHANGES = {
    "password": "{name},{first},{last},{email}," + NEW_PASSWORD,
    "email": "{name},{first},{last},attacker@example.com,",
    "username": "{upper},{first},{last},{email},",
}


@pytest.mark.parametrize("change", CHANGES)
@pytest.mark.parametrize("username", ["chief", "boss"])
def test_a_file_cannot_change_an_administrators_credentials(app, client, people, change,
                                                             username):
    first, last = ("Carla", "Chief") if username == "chief" else ("Site", "Administrator")
    line = CHANGES[change].format(name=username, upper=username.upper(), first=first, last=last,
                                  email=f"{username}@example.com")
    before = snapshot(app, username)
    batch_id = batch_id_of(upload(client, (HEADINGS + line + "\n").encode(), generate=False,
                                  update_passwords=True))
    page = client.get(f"/admin/people/import/{batch_id}?show=error").get_data(as_text=True)
    choose_all(client, batch_id, "update")
    wait_for_jobs(app)
    assert snapshot(app, username) == before
    if change != "email":
        response = app.test_client().post("/login", data={"username": username,
                                                          "password": NEW_PASSWORD})
        assert response.status_code == 200  # still the login form: the takeover failed
    row = re.search(r'<tr class="table-danger" data-line="2">(.*?)</tr>', page, re.S)
    assert row and REFUSED in row.group(1)


@pytest.mark.parametrize("change", CHANGES)
def test_a_plain_user_is_still_updatable(app, client, people, change):
    line = CHANGES[change].format(name="pat", upper="PAT", first="Pat", last="Plain",
                                  email="pat@example.com")
    batch_id = batch_id_of(upload(client, (HEADINGS + line + "\n").encode(), generate=False,
                                  update_passwords=True))
    assert choose_all(client, batch_id, "update").status_code == 302
    wait_for_jobs(app)  # a file's passwords are hashed by a background job
    username, email, password_hash, _ = snapshot(app, "pat")
    if change == "password":
        login = app.test_client().post("/login", data={"username": "pat",
                                                       "password": NEW_PASSWORD})
        assert login.status_code == 302
    elif change == "email":
        assert email == "attacker@example.com"
    else:
        assert username == "PAT"


def test_an_administrators_other_fields_are_still_updatable(app, client, people):
    data = (HEADINGS + "chief,Carolina,Chief,chief@example.com,\n").encode()
    batch_id = batch_id_of(upload(client, data, generate=False))
    choose_all(client, batch_id, "update")
    assert snapshot(app, "chief")[3] == "Carolina"

"""The authorization matrix (issue 7, point 4): every route of Flask's URL map × {anonymous, user,
flagged user, administrator} × {GET, POST without CSRF token, POST with it}, against the table of
expected outcomes in tests/data/authorization.csv. A new route fails this test until its rows
are added to the table (`python tests/test_authorization.py` prints the rows the access rules
below expect, for review)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from conftest import ADMIN_PASSWORD, make_app
from itsdangerous import URLSafeTimedSerializer

from bulkimport.accounts import create_admin
from bulkimport.extensions import db
from bulkimport.login_sessions import TOKEN_KEY, open_session
from bulkimport.models import User
from bulkimport.security import hash_password

TABLE = Path(__file__).parent / "data" / "authorization.csv"
ROLES = ("anonymous", "user", "flagged", "admin")
MODES = ("GET", "POST-no-csrf", "POST-csrf")
SECRET = "authorization-matrix-secret"

# Endpoints anyone may reach, endpoints for any logged-in user, and what a flagged user keeps.
PUBLIC = {"auth.login", "auth.healthz", "auth.open_link", "auth.set_password", "static",
          "bootstrap.static"}
FOR_ANY_USER = {"auth.home", "auth.account", "auth.change_password", "auth.choose_language"}
OPEN_TO_FLAGGED = {"auth.change_password", "auth.logout", "auth.healthz", "auth.open_link",
                   "auth.set_password", "static", "bootstrap.static"}


def expected_outcome(endpoint: str, role: str, mode: str) -> str:
    """What the access rules say should happen (the table is generated from this, reviewed, and
    kept; the test compares what really happens with the table)."""
    if mode == "POST-no-csrf":
        return "csrf-refused"  # CSRFProtect runs before any other check
    if endpoint == "auth.logout":
        return "to-login"  # logging out always lands on the login page
    if role == "flagged" and endpoint not in OPEN_TO_FLAGGED:
        return "to-change-password"
    if endpoint in PUBLIC:
        return "reached"
    if role == "anonymous":
        return "to-login"
    if endpoint in FOR_ANY_USER or role == "admin":
        return "reached"
    return "forbidden"


def matrix_rows(app) -> list[tuple[str, str, str, str]]:
    """(endpoint, role, mode, expected outcome) for every route, role and applicable mode."""
    rows = []
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.endpoint):
        for mode in MODES:
            if mode.split("-")[0] not in rule.methods:
                continue
            for role in ROLES:
                rows.append((rule.endpoint, role, mode, expected_outcome(rule.endpoint, role,
                                                                         mode)))
    return rows


def classify(response) -> str:
    """The outcome class of a response."""
    location = response.headers.get("Location", "")
    if response.status_code == 400 and b"CSRF" in response.data:
        return "csrf-refused"
    if response.status_code == 302 and location.startswith("/login"):
        return "to-login"
    if response.status_code == 302 and location.startswith("/account/password"):
        return "to-change-password"
    if response.status_code == 403 and response.is_json \
            and response.get_json().get("error") == "password_change_required":
        return "to-change-password"
    if response.status_code == 403:
        return "forbidden"
    return "reached"  # the view ran: 200, another redirect, or its own 400/404/422/503


@pytest.fixture
def matrix_app(backend, migrated, tmp_path):
    from conftest import _empty_tables

    app = make_app(migrated(backend), tmp_path / "instance", WTF_CSRF_ENABLED=True,
                   SECRET_KEY=SECRET)
    yield app
    _empty_tables(app)


def _user_ids(app) -> dict[str, int]:
    """Create the administrator, a user and a flagged user; their ids by role."""
    with app.app_context():
        people = {"admin": create_admin(db.session, "boss", "boss@example.com", ADMIN_PASSWORD)}
        for role, flagged in (("user", False), ("flagged", True)):
            user = User(firstname="Role", surname=role, must_change_password=flagged,
                        password_hash=hash_password("role-user-password", 4))
            user.set_identity(role, f"{role}@example.com")
            db.session.add(user)
            people[role] = user
        db.session.commit()
        return {role: person.id for role, person in people.items()}


def _client(app, user_id: int | None):
    """A fresh client whose session holds the CSRF secret and, unless anonymous, a server-side
    session of the user of its own (so that one client's logout ends no other's)."""
    client = app.test_client()
    session_user_id = token = None
    if user_id:
        with app.app_context():
            user = db.session.get(User, user_id)
            token = open_session(db.session, user, None)
            db.session.commit()
            session_user_id = user.get_id()
    with client.session_transaction() as session:
        session["csrf_token"] = "matrix-csrf-token"
        if user_id:
            session["_user_id"], session["_fresh"] = session_user_id, True
            session[TOKEN_KEY] = token
    return client


def _url(app, endpoint: str) -> str:
    from flask import url_for

    rule = next(r for r in app.url_map.iter_rules() if r.endpoint == endpoint)
    values = {name: 1 if type(rule._converters[name]).__name__ == "IntegerConverter"
              else "bulkimport.css" for name in rule.arguments}
    with app.test_request_context():
        return url_for(endpoint, **values)


def test_every_route_role_and_mode_matches_the_table(matrix_app):
    app = matrix_app
    with TABLE.open(newline="") as handle:
        table = {(r["endpoint"], r["role"], r["mode"]): r["expected"]
                 for r in csv.DictReader(handle)}
    generated = {(e, r, m) for e, r, m, _ in matrix_rows(app)}
    missing = sorted(generated - set(table))
    assert not missing, f"routes without rows in {TABLE.name}: {missing[:10]}"
    assert not sorted(set(table) - generated), "rows for routes that no longer exist"

    token = URLSafeTimedSerializer(SECRET, salt="wtf-csrf-token").dumps("matrix-csrf-token")
    user_ids = _user_ids(app)
    unexpected = []
    for (endpoint, role, mode), expected in sorted(table.items()):
        url = _url(app, endpoint)
        client = _client(app, user_ids.get(role))
        if mode == "GET":
            response = client.get(url)
        else:
            data = {"csrf_token": token} if mode == "POST-csrf" else {}
            response = client.post(url, data=data)
        actual = classify(response)
        # A streamed download (a CSV) keeps its request context pushed until it is closed, and
        # the next client's request would run inside it, as the user who downloaded.
        response.close()
        if actual != expected:
            unexpected.append((endpoint, role, mode, expected, actual, response.status_code))
    assert unexpected == [], "\n".join(map(str, unexpected))
    assert len(table) > 200


if __name__ == "__main__":  # print the rows the access rules expect, to review into the table
    import sys

    application = make_app("sqlite://", Path("/tmp/bulkimport-matrix"), SECRET_KEY=SECRET)
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["endpoint", "role", "mode", "expected"])
    writer.writerows(matrix_rows(application))

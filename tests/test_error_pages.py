"""One error path: the friendly 500 page survives a failed flush (the session is rolled back
first), JSON clients get JSON, and the Import history prints counts, never Python internals."""

from __future__ import annotations

import pytest
from conftest import add_user, import_file, login_admin, sample
from sqlalchemy.exc import IntegrityError

from bulkimport.extensions import db
from bulkimport.models import User


@pytest.fixture
def failing_app(app_factory):
    """An application with a route whose flush fails on a unique key (a duplicate username),
    as a view with a bug would, and which lets the exception reach the 500 handler."""
    app = app_factory(PROPAGATE_EXCEPTIONS=False)

    def duplicate_username():
        user = User(firstname="Twin", surname="Boss")
        user.set_identity("boss", "twin@example.com")  # "boss" exists: the flush fails
        db.session.add(user)
        db.session.flush()
        return "unreachable"

    app.add_url_rule("/broken", view_func=duplicate_username)
    return app


def test_a_failed_flush_still_shows_the_friendly_500_page(failing_app):
    client = login_admin(failing_app)  # an administrator: the page's banner queries the database
    response = client.get("/broken")
    page = response.get_data(as_text=True)
    assert response.status_code == 500
    assert "<nav" in page and "Log out" in page  # the site's layout, not Werkzeug's bare page
    assert "PendingRollbackError" not in page and "Traceback" not in page


def test_a_json_client_gets_a_json_500(failing_app):
    client = login_admin(failing_app)
    response = client.get("/broken", headers={"Accept": "application/json"})
    assert response.status_code == 500 and response.get_json() == {"error": "server_error"}


def test_the_import_history_prints_every_count(app, client):
    add_user(app, "jsmith", "john.smith@example.com", firstname="Johnny")
    import_file(client, sample("minimal.csv"), "add", "update")
    page = client.get("/admin/people/imports").get_data(as_text=True)
    assert "3 rows: 2 add, 1 update, 0 no change, 0 errors" in page
    for internal in ("<built-in", " object at 0x", "None", "Undefined"):
        assert internal not in page


def test_integrity_errors_are_what_the_broken_route_raises(failing_app):
    """The fixture really fails on a unique key (so the tests above test what they say)."""
    login_admin(failing_app)
    with failing_app.test_request_context(), pytest.raises(IntegrityError):
        failing_app.view_functions["duplicate_username"]()
    with failing_app.app_context():
        db.session.rollback()

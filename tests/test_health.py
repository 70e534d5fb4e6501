"""/healthz (issue 13, point 4): anonymous callers get liveness only and never make the app open
an SMTP connection; administrators and the health token get Redis and SMTP, the SMTP check made
at most once a minute however often they ask."""

from __future__ import annotations

import threading

import pytest
from conftest import REDIS_URL, login_admin, require
from smtpserver import Authenticator, start_server

from bulkimport.clock import ManualClock
from bulkimport.extensions import db
from bulkimport.models import User
from bulkimport.security import hash_password

TOKEN = "health-token-7f3a9c1e5b2d4f6a8c0e"


@pytest.fixture
def relay():
    """A real SMTP server that needs a login; yields (controller, handler, authenticator)."""
    authenticator = Authenticator()
    authenticator.open = True
    controller, handler = start_server(authenticator)
    try:
        yield controller, handler, authenticator
    finally:
        controller.stop()


@pytest.fixture
def health_app(app_factory, relay):
    """The application sending through `relay` with its login, on a manual clock."""
    controller, _, _ = relay
    return app_factory(MAIL_SERVER="127.0.0.1", MAIL_PORT=controller.port, MAIL_TIMEOUT=5.0,
                       MAIL_USERNAME="user", MAIL_PASSWORD="secret", HEALTH_TOKEN=TOKEN,
                       REDIS_URL=REDIS_URL, CLOCK=ManualClock())


def test_anonymous_polling_opens_no_smtp_connection(health_app, relay):
    _, handler, authenticator = relay
    client = health_app.test_client()
    for _ in range(20):
        response = client.get("/healthz")
        assert response.status_code == 200
        assert response.get_json()["status"] == "ok"
        assert set(response.get_json()["checks"]) == {"database"}
    assert handler.connections == 0 and authenticator.logins == 0


def test_a_user_who_is_not_an_administrator_gets_liveness_only(health_app, relay):
    _, handler, _ = relay
    with health_app.app_context():
        user = User(firstname="Plain", surname="User", password_hash=hash_password("pw-plain-1", 4))
        user.set_identity("plain", "plain@example.com")
        db.session.add(user)
        db.session.commit()
    client = health_app.test_client()
    assert client.post("/login", data={"username": "plain", "password": "pw-plain-1"}) \
        .status_code == 302
    assert set(client.get("/healthz").get_json()["checks"]) == {"database"}
    assert handler.connections == 0


def test_20_administrator_requests_make_one_smtp_login(health_app, relay):
    require(bool(REDIS_URL), "Redis (BULKIMPORT_TEST_REDIS_URL)")
    _, handler, authenticator = relay
    client = login_admin(health_app)
    for _ in range(20):
        response = client.get("/healthz")
        body = response.get_json()
        assert response.status_code == 200, body
        assert set(body["checks"]) == {"database", "redis", "smtp"}
        assert body["checks"]["smtp"]["ok"] is True and body["checks"]["redis"]["ok"] is True
    assert authenticator.logins == 1 and handler.connections == 1
    assert handler.accepted == []  # the check sends nothing

    from bulkimport.health import SMTP_CHECK_SECONDS

    health_app.extensions["bulkimport.clock"].advance(SMTP_CHECK_SECONDS + 1)
    assert client.get("/healthz").get_json()["checks"]["smtp"]["age_s"] == 0
    assert authenticator.logins == 2


def test_the_token_gets_the_details_and_concurrent_polls_share_one_check(health_app, relay):
    _, handler, authenticator = relay
    bodies = []

    def poll():
        response = health_app.test_client().get(
            "/healthz", headers={"Authorization": f"Bearer {TOKEN}"})
        bodies.append(response.get_json())

    threads = [threading.Thread(target=poll) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(bodies) == 8
    assert all(body["checks"]["smtp"]["ok"] for body in bodies)
    assert authenticator.logins == 1 and handler.connections == 1


@pytest.mark.parametrize("authorization", [
    f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", "Bearer ", f"bearer {TOKEN.upper()}"])
def test_a_wrong_token_is_refused_without_touching_the_relay(health_app, relay, authorization):
    _, handler, _ = relay
    response = health_app.test_client().get("/healthz", headers={"Authorization": authorization})
    assert response.status_code == 401
    assert "smtp" not in response.get_data(as_text=True)
    assert handler.connections == 0


@pytest.mark.parametrize("authorization", [f"Basic {TOKEN}", TOKEN, "Negotiate YIIGhgYJKoZI"])
def test_other_authorization_schemes_get_liveness_only(health_app, relay, authorization):
    _, handler, _ = relay
    response = health_app.test_client().get("/healthz", headers={"Authorization": authorization})
    assert response.status_code == 200 and set(response.get_json()["checks"]) == {"database"}
    assert handler.connections == 0


def test_without_a_configured_token_no_bearer_is_accepted(app_factory, relay):
    controller, handler, _ = relay
    app = app_factory(MAIL_SERVER="127.0.0.1", MAIL_PORT=controller.port)
    for token in ("", "anything"):
        response = app.test_client().get("/healthz",
                                         headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401
    assert handler.connections == 0
    from bulkimport.health import token_matches

    assert token_matches("", "") is False and token_matches("a", "") is False

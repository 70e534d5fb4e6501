"""Server-side sessions (issue 13, point 3): logout, idle and absolute lifetimes, a new session at
every login, and the events that end every session of a user (a resend, an expired temporary
password, blocking). Time is a ManualClock, never real seconds."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from conftest import ADMIN_PASSWORD, import_file, login_admin, sample, wait_for_jobs
from sqlalchemy import func, select, update

from bulkimport.accounts import create_admin
from bulkimport.clock import ManualClock
from bulkimport.extensions import db
from bulkimport.login_sessions import TOKEN_KEY
from bulkimport.models import Invitation, LoginSession, User
from bulkimport.security import hash_password

USER_PASSWORD = "plain-user-password"


def clocked_app(app_factory, **overrides):
    """An application on a ManualClock (returned with it)."""
    clock = ManualClock()
    return app_factory(CLOCK=clock, **overrides), clock


def add_admin(app, username="boss") -> int:
    with app.app_context():
        user = create_admin(db.session, username, f"{username}@example.com", ADMIN_PASSWORD)
        db.session.commit()
        return user.id


def add_user(app, username="worker", *, expires=None) -> int:
    with app.app_context():
        user = User(firstname="Plain", surname="User", password_hash=hash_password(
            USER_PASSWORD, 4), temp_password_expires_at=expires)
        user.set_identity(username, f"{username}@example.com")
        db.session.add(user)
        db.session.commit()
        return user.id


def log_in(app, username="boss", password=ADMIN_PASSWORD):
    client = app.test_client()
    response = client.post("/login", data={"username": username, "password": password})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    return client


def sessions_of(app, user_id: int) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(LoginSession)
                                 .where(LoginSession.user_id == user_id))


def opens(client, path="/account") -> bool:
    """Whether `client`'s session still opens a page (rather than being sent to log in)."""
    response = client.get(path)
    if response.status_code == 302:
        assert response.location.startswith("/login"), response.location
        return False
    assert response.status_code == 200
    return True


def test_a_cookie_replayed_after_logout_opens_nothing(app):
    admin_id = add_admin(app)
    client = log_in(app)
    saved = client.get_cookie("session").value
    assert opens(client, "/admin/people")
    assert client.post("/logout").location == "/login"
    assert sessions_of(app, admin_id) == 0
    replay = app.test_client()
    replay.set_cookie("session", saved)
    response = replay.get("/admin/people")
    assert response.status_code == 302 and response.location.startswith("/login")


def test_the_table_holds_a_digest_of_the_token_not_the_token(app):
    admin_id = add_admin(app)
    client = log_in(app)
    cookie = app.session_interface.get_signing_serializer(app).loads(
        client.get_cookie("session").value)
    token = cookie[TOKEN_KEY]
    with app.app_context():
        stored = db.session.scalar(select(LoginSession).where(LoginSession.user_id == admin_id))
        assert len(token) >= 40 and stored.id != token and token not in stored.id


def test_every_login_makes_a_new_session_and_ends_the_browsers_previous_one(app):
    admin_id = add_admin(app)
    client = log_in(app)
    first = client.get_cookie("session").value
    client.post("/login", data={"username": "boss", "password": ADMIN_PASSWORD})
    second = client.get_cookie("session").value
    assert second != first
    assert opens(client) and sessions_of(app, admin_id) == 1
    replay = app.test_client()
    replay.set_cookie("session", first)
    assert not opens(replay)
    other = log_in(app)  # another browser: a session of its own, the first one unaffected
    assert opens(other) and opens(client) and sessions_of(app, admin_id) == 2


def test_a_session_ends_after_the_idle_time(app_factory):
    app, clock = clocked_app(app_factory, SESSION_IDLE_MINUTES=30, SESSION_MAX_HOURS=12)
    add_admin(app)
    client = log_in(app)
    for _ in range(4):  # each request within the idle time keeps the session going
        clock.advance(minutes=29)
        assert opens(client)
    clock.advance(minutes=30)
    assert not opens(client)
    assert opens(log_in(app))  # logging in again works


def test_a_short_idle_time_still_keeps_an_active_session(app_factory):
    app, clock = clocked_app(app_factory, SESSION_IDLE_MINUTES=1)
    add_admin(app)
    client = log_in(app)
    for _ in range(10):
        clock.advance(seconds=50)
        assert opens(client)
    clock.advance(seconds=60)
    assert not opens(client)


def test_a_session_ends_at_its_absolute_lifetime_however_active(app_factory):
    app, clock = clocked_app(app_factory, SESSION_IDLE_MINUTES=60, SESSION_MAX_HOURS=2)
    add_admin(app)
    client = log_in(app)
    for _ in range(5):
        clock.advance(minutes=23)
        assert opens(client)
    clock.advance(minutes=4)  # 1 h 59 min after login
    assert opens(client)
    clock.advance(minutes=1)
    assert not opens(client)


def test_expired_sessions_are_purged_at_the_users_next_login(app_factory):
    app, clock = clocked_app(app_factory, SESSION_IDLE_MINUTES=30)
    admin_id = add_admin(app)
    log_in(app)
    log_in(app)
    clock.advance(minutes=31)
    log_in(app)
    assert sessions_of(app, admin_id) == 1


def send_invitations_now(app) -> None:
    """Run the sweep that enqueues due invitations, and the in-process jobs it starts."""
    from bulkimport.sweep import sweep

    with app.app_context():
        sweep()
    wait_for_jobs(app)


def password_of(app, email: str) -> str:
    """The password of the last e-mail written to `email` in the outbox."""
    texts = [m.read_text() for m in sorted((Path(app.instance_path) / "outbox").glob("*.eml"))]
    return re.search(r"Password: (\S+)", [t for t in texts if email in t][-1]).group(1)


def test_a_resend_ends_every_session_of_its_users(app_factory):
    app = app_factory(MAIL_RATE_PER_MINUTE=0)
    admin = login_admin(app)
    import_file(admin, sample("minimal.csv"))
    send_invitations_now(app)
    with app.app_context():
        invitations = {i.user.username: (i.id, i.user_id)
                       for i in db.session.scalars(select(Invitation))}
    users = {}
    for username in invitations:
        with app.app_context():
            email = db.session.scalar(select(User.email).where(User.username == username))
        users[username] = log_in(app, username, password_of(app, email))
        assert opens(users[username], "/account/password")
    chosen, others = sorted(invitations)[0], sorted(invitations)[1:]
    response = admin.post("/admin/people/invitations/resend",
                          data={"one": str(invitations[chosen][0]), "batch_id": "",
                                "confirm": "1"})
    assert response.status_code == 302
    assert not opens(users[chosen], "/account/password")
    assert sessions_of(app, invitations[chosen][1]) == 0
    for username in others:
        assert opens(users[username], "/account/password")
    assert opens(admin, "/admin/people")


def test_an_expired_temporary_password_ends_the_sessions_it_opened(app_factory):
    app, clock = clocked_app(app_factory, SESSION_IDLE_MINUTES=3 * 24 * 60,
                             SESSION_MAX_HOURS=72)
    user_id = add_user(app, expires=clock.now() + timedelta(days=1))
    client = log_in(app, "worker", USER_PASSWORD)
    clock.advance(hours=23, minutes=59)
    assert opens(client)
    clock.advance(minutes=1)
    assert not opens(client)
    assert sessions_of(app, user_id) == 0


def test_blocking_a_user_ends_their_sessions(app):
    user_id = add_user(app)
    client = log_in(app, "worker", USER_PASSWORD)
    assert opens(client)
    with app.app_context():
        db.session.execute(update(User).where(User.id == user_id).values(active=False))
        db.session.commit()
    assert not opens(client)
    assert sessions_of(app, user_id) == 0

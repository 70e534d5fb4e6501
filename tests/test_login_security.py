"""Attacks on logging in (issue 13, points 2, 5, 8, 9 and 10), each reproduced: simultaneous
guesses, locking a user out from elsewhere, the timing of unknown usernames, guessing through
the change-password page, and passwords typed as usernames in the audit log. Time is a
ManualClock, never real seconds."""

from __future__ import annotations

import threading

import pytest
from conftest import ADMIN_PASSWORD
from sqlalchemy import select

import bulkimport.login
from bulkimport.accounts import create_admin
from bulkimport.clock import ManualClock
from bulkimport.extensions import db
from bulkimport.login import decoy_hash
from bulkimport.login_throttle import ACCOUNT, ACCOUNT_ADDRESS, throttle_keys
from bulkimport.models import AuditEvent, LoginFailures, User
from bulkimport.security import hash_cost, hash_password

USER_PASSWORD = "plain-user-password"
NEW_PASSWORD = "tulip-harbour-47-lantern"
LIMITS = {"LOGIN_SLOWDOWN_AFTER": 3, "LOGIN_LOCK_AFTER": 10, "LOGIN_LOCK_MINUTES": 15,
          "LOGIN_ADDRESS_SLOWDOWN_AFTER": 20, "LOGIN_ADDRESS_LOCK_AFTER": 100,
          "LOGIN_ACCOUNT_LOCK_ADDRESSES": 10}


def clocked_app(app_factory, **overrides):
    """An application with LIMITS on a ManualClock (returned with it)."""
    clock = ManualClock()
    return app_factory(**{**LIMITS, **overrides}, CLOCK=clock), clock


def add_user(app, username="worker", *, admin=False, active=True) -> int:
    with app.app_context():
        if admin:
            user = create_admin(db.session, username, f"{username}@example.com", ADMIN_PASSWORD)
        else:
            user = User(firstname="Plain", surname="User", active=active,
                        password_hash=hash_password(USER_PASSWORD, 4))
            user.set_identity(username, f"{username}@example.com")
            db.session.add(user)
        db.session.commit()
        return user.id


def attempt(app, username, password, address="10.0.0.1"):
    """One login from `address`: (status, page)."""
    response = app.test_client().post("/login", data={"username": username,
                                                      "password": password},
                                      environ_base={"REMOTE_ADDR": address})
    return response.status_code, response.get_data(as_text=True)


class CountedChecks:
    """Stands in for bulkimport.login.verify_password: counts the passwords checked and, with
    `expected` attempts under way, holds each check until every attempt has either reached its
    check or been answered, so that all the checks that will happen overlap (the widest race
    the old read-check-write order allowed), without sleeping."""

    def __init__(self, real, expected: int = 0):
        self.real, self.expected = real, expected
        self.checked = 0
        self.answered = 0
        self.condition = threading.Condition()

    def __call__(self, password, password_hash):
        with self.condition:
            self.checked += 1
            self.condition.notify_all()
            self.condition.wait_for(lambda: self.checked + self.answered >= self.expected,
                                    timeout=5)
        return self.real(password, password_hash)

    def answer(self) -> None:
        """One attempt has its answer."""
        with self.condition:
            self.answered += 1
            self.condition.notify_all()


def burst(app, checks: CountedChecks, addresses: list[str], username="worker"):
    """len(addresses) simultaneous wrong-password attempts, each from its address, in threads
    of their own (each request has its own application context and database session): the
    status of each, or the exception's name."""
    checks.expected, checks.checked, checks.answered = len(addresses), 0, 0
    outcomes: list = []
    start = threading.Barrier(len(addresses))

    def one(address: str) -> None:
        client = app.test_client()
        start.wait()
        try:
            response = client.post("/login", data={"username": username,
                                                   "password": f"wrong-{address}"},
                                   environ_base={"REMOTE_ADDR": address})
            outcomes.append(response.status_code)
        except Exception as exc:  # a 500: TESTING lets the exception through
            outcomes.append(type(exc).__name__)
        finally:
            checks.answer()

    threads = [threading.Thread(target=one, args=(address,)) for address in addresses]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


# ----- point 2: simultaneous attempts cost what sequential ones do -----------------------------

@pytest.mark.parametrize("spread,first_burst,second_burst", [
    # One address: 3 checks, then waits; a minute later one more check (the wait was 1 s) and
    # the next must wait 2 s.
    ("one address", 3, 1),
    # Forty addresses: the tenth failing address locks the account for new addresses.
    ("forty addresses", 10, 0)])
def test_forty_simultaneous_attempts_check_no_more_passwords_than_the_policy_allows(
        app_factory, monkeypatch, spread, first_burst, second_burst):
    app, clock = clocked_app(app_factory, SQLALCHEMY_ENGINE_OPTIONS={
        "pool_size": 45, "max_overflow": 5})
    add_user(app)
    checks = CountedChecks(bulkimport.login.verify_password)
    monkeypatch.setattr(bulkimport.login, "verify_password", checks)
    for number, expected in enumerate((first_burst, second_burst)):
        addresses = ["10.0.0.1"] * 40 if spread == "one address" else [
            f"10.{number}.0.{n}" for n in range(40)]
        outcomes = burst(app, checks, addresses)
        assert sorted(outcomes, key=str) == [200] * 40  # no 500, no StaleDataError
        assert checks.checked == expected
        clock.advance(minutes=1)
    with app.app_context():
        counted = db.session.scalars(select(LoginFailures.failures).where(
            LoginFailures.key.like("pair:%"))).all()
        failed = db.session.scalar(select(AuditEvent.id).where(
            AuditEvent.action == "login_failed").order_by(AuditEvent.id.desc()).limit(1))
    assert sum(counted) == first_burst + second_burst  # each failure counted once
    assert failed is not None


def test_a_correct_password_takes_back_only_its_own_count(app_factory):
    app, _ = clocked_app(app_factory)
    add_user(app)
    assert attempt(app, "worker", "wrong-once")[1].count("Invalid username or password.")
    assert attempt(app, "worker", USER_PASSWORD)[0] == 302
    with app.app_context():
        keys = throttle_keys("worker", "10.0.0.1")
        assert db.session.get(LoginFailures, keys[ACCOUNT_ADDRESS]).failures == 0
        assert db.session.get(LoginFailures, keys["address"]).failures == 1


# ----- point 5: nobody can lock a user out from elsewhere --------------------------------------

def test_an_attacker_failing_fifty_times_does_not_keep_the_admin_out(app_factory):
    app, clock = clocked_app(app_factory)
    add_user(app, "boss", admin=True)
    for number in range(50):  # ten a minute apart (past every slow-down), forty more at once
        clock.advance(seconds=61 if number < 10 else 0)
        attempt(app, "boss", "guess", address="203.0.113.66")
    with app.app_context():
        actions = db.session.scalars(select(AuditEvent.action)).all()
    assert actions.count("login_failed") == 10 and actions.count("login_locked") == 1
    assert "Try again in 15 minutes" in attempt(app, "boss", ADMIN_PASSWORD,
                                                address="203.0.113.66")[1]
    # The administrator, from an address never seen before, at once.
    assert attempt(app, "boss", ADMIN_PASSWORD, address="10.1.1.1")[0] == 302


def test_a_guess_spread_over_many_addresses_locks_new_addresses_not_known_ones(app_factory):
    app, clock = clocked_app(app_factory)
    admin_id = add_user(app, "boss", admin=True)
    assert attempt(app, "boss", ADMIN_PASSWORD, address="10.1.1.1")[0] == 302  # a known address
    clock.advance(days=30)
    for n in range(10):
        attempt(app, "boss", "guess", address=f"198.51.100.{n}")
    status, page = attempt(app, "boss", ADMIN_PASSWORD, address="198.51.100.200")
    assert "Too many failed logins. Try again in 15 minutes" in page
    # Its owner, from where they logged in before, passes the lock with the right password...
    assert attempt(app, "boss", ADMIN_PASSWORD, address="10.1.1.1")[0] == 302
    # ...and a wrong one from there is counted, not let through.
    assert "Invalid username" in attempt(app, "boss", "guess", address="10.1.1.1")[1]
    with app.app_context():
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "login_locked"))
        assert (event.user_id, event.detail["scope"]) == (admin_id, ACCOUNT)
    # Known addresses are forgotten after LOGIN_KNOWN_ADDRESS_DAYS without a login from there.
    clock.advance(days=90)
    for n in range(10):
        attempt(app, "boss", "guess", address=f"198.51.100.{n}")
    assert "Try again in" in attempt(app, "boss", ADMIN_PASSWORD, address="10.1.1.1")[1]


# ----- point 8: the decoy hash costs what a real one does --------------------------------------

@pytest.mark.parametrize("rounds", [4, 5])
def test_the_decoy_hash_has_the_configured_cost(app_factory, monkeypatch, rounds):
    app = app_factory(BCRYPT_ROUNDS=rounds)
    add_user(app, "blocked", active=False)
    hashes = []
    real = bulkimport.login.verify_password
    monkeypatch.setattr(bulkimport.login, "verify_password",
                        lambda password, password_hash: hashes.append(password_hash)
                        or real(password, password_hash))
    attempt(app, "nobody-of-that-name", USER_PASSWORD)
    attempt(app, "blocked", USER_PASSWORD, address="10.0.0.2")
    with app.app_context():
        stored = db.session.scalar(select(User.password_hash).where(User.username == "blocked"))
    # An unknown name costs a decoy of the configured cost; a blocked account checks its own
    # hash, as any account does (a right password is told that the account is blocked).
    assert hashes == [decoy_hash(rounds), stored]
    assert hash_cost(decoy_hash(rounds)) == rounds


# ----- point 9: the change-password page counts wrong current passwords -------------------------

def change(client, current, new=NEW_PASSWORD):
    return client.post("/account/password", data={"current_password": current,
                                                  "new_password": new, "confirm_password": new},
                       environ_base={"REMOTE_ADDR": "10.0.0.1"})


def test_wrong_current_passwords_on_the_change_page_count_like_failed_logins(app_factory):
    app, clock = clocked_app(app_factory)
    user_id = add_user(app)
    client = app.test_client()
    assert client.post("/login", data={"username": "worker", "password": USER_PASSWORD},
                       environ_base={"REMOTE_ADDR": "10.0.0.1"}).status_code == 302
    pages = [change(client, f"guess-{n}").get_data(as_text=True) for n in range(30)]
    assert all("This is not your current password." in page for page in pages[:3])
    assert all("Too many failed logins. Wait 1 second" in page for page in pages[3:])
    # The reuse rule is no second way of testing a guess: it runs after a right current password.
    page = change(client, "guess-again", new=USER_PASSWORD).get_data(as_text=True)
    assert "different from the current one" not in page
    with app.app_context():
        events = db.session.scalars(select(AuditEvent).where(
            AuditEvent.action == "password_change_failed")).all()
        assert [(e.user_id, e.actor_id, e.address) for e in events] == [
            (user_id, user_id, "10.0.0.1")] * 3
    # They count like failed logins: logging in from there must wait too.
    assert "Wait 1 second" in attempt(app, "worker", USER_PASSWORD)[1]
    clock.advance(seconds=1)
    assert change(client, USER_PASSWORD).location == "/"


# ----- point 10: what was typed as a username is not shown to administrators ------------------

def test_the_audit_log_names_an_account_only_when_it_exists(app_factory):
    app, _ = clocked_app(app_factory)
    admin = add_user(app, "boss", admin=True)
    typed = "Summer-Secret-2026"  # a password typed into the username field
    attempt(app, typed, "whatever")
    attempt(app, "BOSS ", "wrong-password")
    with app.app_context():
        events = db.session.scalars(select(AuditEvent).where(
            AuditEvent.action == "login_failed").order_by(AuditEvent.id)).all()
        assert [(e.user_id, e.detail) for e in events] == [
            (None, {"unknown_username": True}), (admin, {"username": "boss"})]
        # Nor is it stored anywhere else: not in the counters' keys either.
        keys = db.session.scalars(select(LoginFailures.key)).all()
        assert keys and not any(typed.casefold() in key.casefold() for key in keys)
    client = app.test_client()
    client.post("/login", data={"username": "boss", "password": ADMIN_PASSWORD},
                environ_base={"REMOTE_ADDR": "10.9.9.9"})
    assert typed not in client.get("/admin/system/audit").get_data(as_text=True)

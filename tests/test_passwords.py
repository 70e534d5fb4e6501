"""The password policy, the first-login hook, changing one's password, temporary-password expiry,
login throttling and re-hashing (issue 4)."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import (
    ADMIN_PASSWORD,
    USER_PASSWORD,
    add_user,
    import_file,
    login_admin,
    sample,
    upload,
    wait_for_jobs,
)
from sqlalchemy import select

from bulkimport.accounts import AccountError, create_admin
from bulkimport.clock import ManualClock, clock_of
from bulkimport.extensions import db
from bulkimport.login_throttle import ACCOUNT, ACCOUNT_ADDRESS, ADDRESS, throttle_keys
from bulkimport.models import AuditEvent, LoginFailures, PasswordPolicy, User
from bulkimport.password_policy import (
    GENERATED_SYMBOLS,
    check_password,
    default_policy,
    generate_password,
    load_policy,
    rules_in_force,
)
from bulkimport.security import hash_cost, hash_password

NEW_PASSWORD = "tulip-harbour-47-lantern"


def policy(**changes) -> PasswordPolicy:
    made = default_policy()
    for name, value in changes.items():
        setattr(made, name, value)
    return made


PERSON = {"username": "annabelle", "firstname": "Grace", "surname": "Okonkwo",
          "email": "g.hopper@example.com"}

# (policy changes, password, expected rule codes): every rule, on and off.
RULE_CASES = {
    "good": ({}, "correct horse battery", []),
    "too-short": ({}, "eleven-char", ["min_length"]),
    "min-length-setting": ({"min_length": 30}, "correct horse battery", ["min_length"]),
    "too-long": ({}, "a-" * 32 + "b", ["max_length"]),
    "max-length-setting": ({"max_length": 20}, "correct horse battery", ["max_length"]),
    "over-72-bytes-under-64-characters": ({}, "é" * 37, ["max_bytes"]),
    "over-72-bytes-and-64-characters": ({}, "x" * 73, ["max_length", "max_bytes"]),
    "lowercase-required": ({"require_lowercase": True}, "CORRECT HORSE BATTERY", ["lowercase"]),
    "uppercase-required": ({"require_uppercase": True}, "correct horse battery", ["uppercase"]),
    "digit-required": ({"require_digit": True}, "correct horse battery", ["digit"]),
    "symbol-required": ({"require_symbol": True}, "correcthorsebattery", ["symbol"]),
    "every-class-met": ({"require_lowercase": True, "require_uppercase": True,
                         "require_digit": True, "require_symbol": True},
                        "Correct-horse battery 9", []),
    "classes-off-by-default": ({}, "correcthorsebattery", []),
    "contains-username": ({}, "my-ANNABELLE-secret", ["username"]),
    "contains-firstname": ({}, "amazing grace forever", ["firstname"]),
    "contains-surname": ({}, "the okonkwo family tree", ["surname"]),
    "contains-email-local-part": ({}, "xx-g.hopper-long-one", ["email"]),
    "personal-rule-off": ({"refuse_personal": False}, "my-ANNABELLE-secret", []),
    "common": ({}, "qwerty123456", ["common"]),
    "common-any-case": ({}, "QwErTy123456", ["common"]),
    "common-rule-off": ({"refuse_common": False}, "qwerty123456", []),
    "several-at-once": ({"require_digit": True}, "grace", ["min_length", "digit", "firstname"]),
}


@pytest.mark.parametrize("changes,password,codes", RULE_CASES.values(), ids=RULE_CASES.keys())
def test_every_policy_rule_is_named_by_its_code(changes, password, codes):
    failures = check_password(password, policy(**changes), **PERSON)
    assert [f.code for f in failures] == codes
    assert all(f.message.endswith(".") for f in failures)


def test_short_personal_details_are_not_looked_for():
    assert check_password("al-li-bo-password", policy(), username="al", firstname="Li",
                          surname="Bo", email="bo@example.com") == []


@pytest.mark.parametrize("refuse_reuse,codes", [(True, ["reuse"]), (False, [])])
def test_reusing_the_current_password(refuse_reuse, codes):
    current = hash_password(NEW_PASSWORD, 4)
    failures = check_password(NEW_PASSWORD, policy(refuse_reuse=refuse_reuse),
                              current_hash=current)
    assert [f.code for f in failures] == codes
    assert check_password("another-good-password", policy(), current_hash=current) == []


@pytest.mark.parametrize("changes", [
    {}, {"min_length": 40}, {"max_length": 16}, {"require_symbol": True, "require_digit": True,
                                                  "require_uppercase": True,
                                                  "require_lowercase": True}])
def test_generated_passwords_follow_the_policy(changes):
    rules = policy(**changes)
    for _ in range(50):
        password = generate_password(rules, **PERSON)
        assert check_password(password, rules, **PERSON) == []
        assert len(password) >= 16
    assert any(c in GENERATED_SYMBOLS for c in password) == bool(changes.get("require_symbol"))


def test_rules_in_force_describe_every_rule():
    text = " ".join(rules_in_force(policy(require_digit=True, require_symbol=True)))
    for words in ("At least 12 and at most 64 characters", "72 bytes", "a digit, a symbol",
                  "username, first name, surname", "30,000 most common", "differ from the "
                  "current one", "work for 7 days"):
        assert words in text


# ----- Admin > People > Password policy ------------------------------------------------------

POLICY_FORM = {"min_length": "12", "max_length": "64", "refuse_personal": "y",
               "refuse_common": "y", "refuse_reuse": "y", "temp_password_days": "7"}


def test_policy_page_shows_the_rules_and_saves_with_an_audit_event(app, client):
    page = client.get("/admin/people/password-policy").get_data(as_text=True)
    assert "Rules in force" in page and "At least 12 and at most 64 characters" in page
    response = client.post("/admin/people/password-policy",
                           data={**POLICY_FORM, "min_length": "16", "require_digit": "y",
                                 "temp_password_days": "3"}, follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "The password policy has been saved" in page
    assert "At least 16 and at most 64 characters" in page and "work for 3 days" in page
    with app.app_context():
        saved = db.session.get(PasswordPolicy, 1)
        assert (saved.min_length, saved.require_digit, saved.temp_password_days) == (16, True, 3)
        event = db.session.scalar(select(AuditEvent).where(
            AuditEvent.action == "password_policy_changed"))
        assert event.detail["changes"] == {"min_length": [12, 16], "require_digit": [False, True],
                                           "temp_password_days": [7, 3]}
        assert event.actor_id == saved.updated_by_id


BAD_POLICIES = {
    "min-too-small": ({"min_length": "4"}, "Enter a whole number from 8 to 64."),
    "max-over-72": ({"max_length": "80"}, "Enter a whole number from 16 to 72."),
    "max-below-min": ({"min_length": "40", "max_length": "30"},
                      "The maximum length cannot be below the minimum length."),
    "days-zero": ({"temp_password_days": "0"}, "Enter a whole number from 1 to 90."),
    "days-not-a-number": ({"temp_password_days": "seven"}, "Not a valid integer value."),
    "min-missing": ({"min_length": ""}, "Enter a whole number."),
}


@pytest.mark.parametrize("changes,message", BAD_POLICIES.values(), ids=BAD_POLICIES.keys())
def test_bad_policy_values_are_refused_and_nothing_is_saved(app, client, changes, message):
    response = client.post("/admin/people/password-policy", data={**POLICY_FORM, **changes})
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(PasswordPolicy, 1) is None
        assert db.session.scalar(select(AuditEvent)) is None


def send_invitations_now(app) -> None:
    """Run the sweep that enqueues due invitations, and the in-process jobs it starts."""
    from bulkimport.sweep import sweep

    with app.app_context():
        sweep()
    wait_for_jobs(app)


def test_the_saved_policy_governs_imports_create_admin_and_generated_passwords(app_factory):
    app = app_factory()
    client = login_admin(app)
    client.post("/admin/people/password-policy",
                data={**POLICY_FORM, "min_length": "24", "require_symbol": "y"})
    response = upload(client, b"username,firstname,surname,email,password\n"
                              b"ann,Ann,Lee,ann@example.com,twenty-characters-ok\n", generate=False)
    review = client.get(response.location).get_data(as_text=True)
    assert "The password must be at least 24 characters long (it has 20)." in review
    with app.app_context(), pytest.raises(AccountError, match="at least 24 characters"):
        create_admin(db.session, "second", "second@example.com", "twenty-characters-ok")
    import_file(client, sample("minimal.csv"))
    send_invitations_now(app)
    messages = sorted((Path(app.instance_path) / "outbox").glob("*.eml"))
    assert len(messages) == 3
    for message in messages:
        password = re.search(r"Password: (\S+)", message.read_text()).group(1)
        assert len(password) == 24 and any(c in GENERATED_SYMBOLS for c in password)


# ----- the login hook --------------------------------------------------------------------------

def logged_in(app, username="worker", password=USER_PASSWORD):
    client = app.test_client()
    response = client.post("/login", data={"username": username, "password": password})
    assert response.status_code == 302, response.get_data(as_text=True)
    return client, response


def _url_for_rule(app, rule) -> str:
    from flask import url_for

    values = {}
    for name in rule.arguments:
        converter = rule._converters[name].__class__.__name__
        values[name] = 1 if converter == "IntegerConverter" else "bulkimport.css"
    with app.test_request_context():
        return url_for(rule.endpoint, **values)


def test_a_flagged_user_reaches_nothing_but_the_change_page_logout_and_static_files(app):
    """Walk Flask's whole URL map as a user who must change their password."""
    add_user(app, must_change_password=True)
    client, response = logged_in(app)
    assert response.location.startswith("/account/password")
    # an invitation's link sets a password too: it is open (410 for a token never made)
    open_endpoints = {"auth.change_password", "auth.logout", "auth.healthz", "auth.open_link",
                      "auth.set_password"}
    walked = 0
    for rule in app.url_map.iter_rules():
        url = _url_for_rule(app, rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            if rule.endpoint == "auth.logout":
                continue  # checked last: it ends the session
            walked += 1
            page = client.open(url, method=method)
            as_json = client.open(url, method=method, headers={"Accept": "application/json"})
            if rule.endpoint in open_endpoints or rule.endpoint.endswith("static"):
                assert page.status_code in (200, 404, 410, 422, 503), (rule, method)  # 404: no
                # such file; 503: /healthz on a machine without some part
                if page.status_code == 302:
                    assert not page.location.startswith("/account/password"), (rule, method)
                continue
            if url.endswith(".json"):  # a JSON endpoint answers JSON whatever was asked
                page = as_json
            else:
                assert page.status_code == 302, (rule, method, page.status_code)
                assert urlsplit(page.location).path == "/account/password", (rule, method)
            assert as_json.status_code == 403, (rule, method)
            assert as_json.get_json()["error"] == "password_change_required"
            assert "choose a new password" in as_json.get_json()["message"]
    assert walked > 25  # the whole map was walked, not an empty one
    assert client.get("/static/bulkimport.css").status_code == 200
    assert client.post("/logout").location == "/login"


def test_a_flagged_user_is_sent_back_with_the_page_to_return_to(app):
    add_user(app, must_change_password=True)
    client, _ = logged_in(app)
    response = client.get("/account?tab=1")
    assert response.location == "/account/password?next=/account?tab%3D1"
    assert client.get("/admin/people/import/5/status.json").status_code == 403


def test_users_who_need_not_change_are_not_held(app):
    add_user(app)
    client, response = logged_in(app)
    assert response.location == "/"
    assert client.get("/account").status_code == 200


# ----- changing the password -------------------------------------------------------------------

def change(client, current=USER_PASSWORD, new=NEW_PASSWORD, confirm=None, **query):
    return client.post("/account/password", query_string=query,
                       data={"current_password": current, "new_password": new,
                             "confirm_password": new if confirm is None else confirm})


BAD_CHANGES = {
    "wrong-current": ({"current": "not-my-password"}, ["This is not your current password."]),
    "confirm-differs": ({"confirm": "tulip-harbour-47-lanterns"},
                        ["The two new passwords are not the same."]),
    "too-short": ({"new": "short"}, ["The password must be at least 12 characters long"]),
    "reuse": ({"new": USER_PASSWORD}, ["must be different from the current one"]),
    "username": ({"new": "the-worker-password"}, ["must not contain the username"]),
    "common": ({"new": "1qaz2wsx3edc"}, ["one of the most common passwords"]),
    "several": ({"current": "nope", "new": "worker"},
                ["This is not your current password.", "at least 12 characters",
                 "must not contain the username", "The two new passwords are not the same."]),
}


@pytest.mark.parametrize("fields,messages", BAD_CHANGES.values(), ids=BAD_CHANGES.keys())
def test_a_refused_change_names_each_problem_and_changes_nothing(app, fields, messages):
    user_id = add_user(app, must_change_password=True)
    client, _ = logged_in(app)
    if "confirm" not in fields and "new" in fields:
        fields = {**fields, "confirm": fields["new"]}
    if fields.get("new") == "worker":
        fields["confirm"] = "something-else"
    response = change(client, **fields)
    page = response.get_data(as_text=True)
    assert response.status_code == 422 and "Choose a new password" in page
    for message in messages:
        assert message in page
    with app.app_context():
        user = db.session.get(User, user_id)
        assert user.must_change_password and hash_cost(user.password_hash) == 4
        # Only a wrong current password is written down (it counts like a failed login).
        actions = list(db.session.scalars(select(AuditEvent.action)))
        assert actions == (["password_change_failed"] if "current" in fields else [])


def test_a_change_rotates_the_session_ends_the_others_and_is_audited(app):
    user_id = add_user(app, must_change_password=True)
    elsewhere, _ = logged_in(app)
    client, _ = logged_in(app)
    old_cookie = client.get_cookie("session").value
    response = change(client, next="/account?from=login")
    assert response.status_code == 302 and response.location == "/account?from=login"
    assert client.get_cookie("session").value != old_cookie
    page = client.get(response.location).get_data(as_text=True)
    assert "Your password has been changed. Other sessions of your account have ended." in page
    # The other session and a replay of the old cookie are both logged out.
    assert elsewhere.get("/account").location.startswith("/login")
    replay = app.test_client()
    replay.set_cookie("session", old_cookie)
    assert replay.get("/account").location.startswith("/login")
    with app.app_context():
        user = db.session.get(User, user_id)
        assert not user.must_change_password and user.temp_password_expires_at is None
        event = db.session.scalar(select(AuditEvent))
        assert (event.action, event.user_id, event.actor_id) == ("password_changed", user_id,
                                                                 user_id)
        assert event.detail == {"forced": True}
    fresh, response = logged_in(app, password=NEW_PASSWORD)
    assert response.location == "/"
    assert app.test_client().post("/login", data={"username": "worker",
                                                  "password": USER_PASSWORD}).status_code == 200


def test_an_offsite_next_after_a_change_lands_home(app):
    add_user(app, must_change_password=True)
    client, _ = logged_in(app)
    assert change(client, next="https://evil.example/").location == "/"


def test_any_user_can_change_their_password_from_the_account_page(app, client):
    page = client.get("/account").get_data(as_text=True)
    assert 'href="/account/password"' in page
    form = client.get("/account/password").get_data(as_text=True)
    assert "<h1 class=\"h3 mb-3\">Change password</h1>" in form
    assert "At least 12 and at most 64 characters" in form
    response = change(client, current=ADMIN_PASSWORD)
    assert response.location == "/"
    logged_in(app, "boss", NEW_PASSWORD)


def test_the_first_admin_of_make_run_must_choose_a_password(app):
    from bulkimport.accounts import ensure_first_admin

    with app.app_context():
        password = ensure_first_admin(db.session, "admin@example.com")
        db.session.commit()
    client, response = logged_in(app, "admin", password)
    assert response.location == "/account/password"
    assert client.get("/admin/people").location.startswith("/account/password")
    assert change(client, current=password).location == "/"
    assert client.get("/admin/people").status_code == 200


# ----- temporary passwords ---------------------------------------------------------------------

def test_an_expired_temporary_password_no_longer_logs_in(app, clock):
    add_user(app, temp_password_expires_at=clock.now() + timedelta(days=7))
    clock.advance(days=7)  # the moment it expires
    client = app.test_client()
    first = client.post("/login", data={"username": "worker", "password": USER_PASSWORD})
    assert "Your temporary password has expired. Ask an administrator" in first.get_data(
        as_text=True)
    # Told once: after a failure the same answer as any wrong password, revealing nothing.
    again = client.post("/login", data={"username": "worker", "password": USER_PASSWORD})
    assert "Invalid username or password." in again.get_data(as_text=True)
    wrong = app.test_client().post("/login", data={"username": "worker", "password": "wrong-1"})
    assert "Invalid username or password." in wrong.get_data(as_text=True)


def test_a_wrong_password_first_then_the_expired_one_reveals_nothing(app, clock):
    add_user(app, temp_password_expires_at=clock.now() + timedelta(days=7))
    clock.advance(days=7, minutes=1)
    client = app.test_client()
    client.post("/login", data={"username": "worker", "password": "a-wrong-guess"})
    response = client.post("/login", data={"username": "worker", "password": USER_PASSWORD})
    assert "Invalid username or password." in response.get_data(as_text=True)


def test_a_valid_temporary_password_logs_in_with_a_reminder(app, clock):
    add_user(app, temp_password_expires_at=clock.now() + timedelta(days=7))
    clock.advance(days=7, seconds=-1)  # the last second it works
    client, response = logged_in(app)
    page = client.get(response.location, follow_redirects=True).get_data(as_text=True)
    assert "You logged in with a temporary password; it stops working on" in page


def test_an_expired_invitation_shows_as_expired_with_resend(app_factory, clock):
    # The administrator's session outlives the week the clock moves by.
    app = app_factory(MAIL_RATE_PER_MINUTE=0, SESSION_IDLE_MINUTES=60 * 24 * 30,
                      SESSION_MAX_HOURS=24 * 30)
    client = login_admin(app)
    heading, jsmith, others = sample("minimal.csv").split(b"\n", 2)
    import_file(client, heading + b"\n" + jsmith + b"\n")
    send_invitations_now(app)
    clock.advance(days=1)
    import_file(client, heading + b"\n" + others)
    send_invitations_now(app)
    with app.app_context():
        days = load_policy(db.session).temp_password_days
    clock.advance(days=days - 1)  # jsmith's password, sent a day before the others, expires
    page = client.get("/admin/people/invitations").get_data(as_text=True)
    assert page.count('data-status>expired<') == 1 and "Expired (1)" in page
    row = re.search(r'<tr data-invitation="(\d+)">(?:(?!</tr>).)*expired(?:(?!</tr>).)*</tr>',
                    page, re.S)
    assert "jsmith" in row.group(0) and 'name="one"' in row.group(0) and "Resend" in row.group(0)
    people = client.get("/admin/people").get_data(as_text=True)
    assert people.count('data-invitation="expired"') == 1
    only = client.get("/admin/people/invitations?status=expired").get_data(as_text=True)
    assert only.count('<tr data-invitation=') == 1 and "jsmith" in only


# ----- throttling and locking (more in test_login_security.py) ---------------------------------

THROTTLE = {"LOGIN_SLOWDOWN_AFTER": 2, "LOGIN_LOCK_AFTER": 4, "LOGIN_LOCK_MINUTES": 15,
            "LOGIN_ADDRESS_SLOWDOWN_AFTER": 50, "LOGIN_ADDRESS_LOCK_AFTER": 100}


def throttled_app(app_factory, **changes):
    """An application with THROTTLE (and `changes`) on a clock that moves only when told."""
    clock = ManualClock()
    return app_factory(**{**THROTTLE, **changes}, CLOCK=clock), clock


def attempt(app, username, password, address="10.0.0.1") -> tuple[int, str]:
    response = app.test_client().post("/login", data={"username": username,
                                                      "password": password},
                                      environ_base={"REMOTE_ADDR": address})
    return response.status_code, response.get_data(as_text=True)


def counter(app, scope: str, username: str, address: str = "10.0.0.1") -> LoginFailures | None:
    """The counter row of `scope` for an attempt on `username` from `address`."""
    with app.app_context():
        row = db.session.get(LoginFailures, throttle_keys(username, address)[scope])
        db.session.expunge_all()
        return row


def let_time_pass(app, seconds: float) -> None:
    """Move the application's clock on instead of waiting."""
    clock_of(app).advance(seconds)


@pytest.mark.parametrize("username", ["worker", "nobody-of-that-name"])
def test_failures_slow_down_then_lock_an_account(app_factory, username):
    app, clock = throttled_app(app_factory)
    user_id = add_user(app)
    for _ in range(2):
        assert "Invalid username or password." in attempt(app, username, "wrong-password")[1]
    # Too soon after the second failure: refused without even checking the password.
    status, page = attempt(app, username, USER_PASSWORD)
    assert status == 200 and "Too many failed logins. Wait 1 second and try again." in page
    clock.advance(seconds=1)
    assert "Invalid username or password." in attempt(app, username, "wrong-password")[1]
    assert "Wait 2 seconds" in attempt(app, username, "wrong-password")[1]
    clock.advance(seconds=2)
    assert "Invalid username or password." in attempt(app, username, "wrong-password")[1]
    status, page = attempt(app, username, USER_PASSWORD)
    assert "Too many failed logins. Try again in 15 minutes, or ask an administrator." in page
    with app.app_context():
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "login_locked"))
        assert event.detail == {"scope": ACCOUNT_ADDRESS, "failures": 4, "minutes": 15}
        assert event.address == "10.0.0.1"
        assert event.user_id == (user_id if username == "worker" else None)
    clock.advance(minutes=14, seconds=59)
    assert "Try again in 1 minute," in attempt(app, username, USER_PASSWORD)[1]
    clock.advance(seconds=1)
    if username == "worker":
        assert attempt(app, "worker", USER_PASSWORD)[0] == 302  # the lock ran out
        row = counter(app, ACCOUNT_ADDRESS, "worker")
        assert (row.failures, row.locked_until, row.last_success_at) == (0, None, clock.now())


def test_failures_from_one_address_lock_it_for_every_account(app_factory):
    app, clock = throttled_app(app_factory, LOGIN_ADDRESS_SLOWDOWN_AFTER=3,
                               LOGIN_ADDRESS_LOCK_AFTER=5)
    add_user(app)
    for n in range(3):
        attempt(app, f"guess{n}", "wrong-password", address="10.6.6.6")
    assert "Wait 1 second" in attempt(app, "worker", USER_PASSWORD, address="10.6.6.6")[1]
    for n in range(3, 5):
        clock.advance(seconds=61)
        attempt(app, f"guess{n}", "wrong-password", address="10.6.6.6")
    assert "Try again in 15 minutes" in attempt(app, "worker", USER_PASSWORD,
                                                address="10.6.6.6")[1]
    assert attempt(app, "worker", USER_PASSWORD, address="10.7.7.7")[0] == 302


def test_a_success_clears_its_address_on_the_account_and_takes_back_its_own_count(app_factory):
    app, _ = throttled_app(app_factory)
    add_user(app)
    attempt(app, "worker", "wrong-password")
    assert attempt(app, "worker", USER_PASSWORD)[0] == 302
    assert counter(app, ACCOUNT_ADDRESS, "worker").failures == 0
    assert counter(app, ACCOUNT, "worker").failures == 0  # this address no longer fails on it
    # The address keeps its failure (a valid login does not reset a guessing address), but
    # not the count of the correct attempt.
    assert counter(app, ADDRESS, "worker").failures == 1


def test_the_client_address_comes_from_trusted_proxies_only(app_factory):
    app, _ = throttled_app(app_factory, TRUSTED_PROXIES=1)
    app.test_client().post("/login", data={"username": "x", "password": "wrong-password"},
                           headers={"X-Forwarded-For": "192.0.2.7"},
                           environ_base={"REMOTE_ADDR": "127.0.0.1"})
    with app.app_context():
        keys = set(db.session.scalars(select(LoginFailures.key)))
        assert keys == set(throttle_keys("x", "192.0.2.7").values())
        assert "address:192.0.2.7" in keys


# ----- re-hashing --------------------------------------------------------------------------------

@pytest.mark.parametrize("stored_cost,rounds,changed", [(4, 5, True), (5, 4, True), (4, 4, False)])
def test_a_hash_of_another_cost_is_redone_at_login(app_factory, stored_cost, rounds, changed):
    app = app_factory(BCRYPT_ROUNDS=rounds)
    user_id = add_user(app, cost=stored_cost)
    with app.app_context():
        before = db.session.get(User, user_id).password_hash
    logged_in(app)
    with app.app_context():
        after = db.session.get(User, user_id).password_hash
    assert hash_cost(after) == rounds
    assert (after != before) == changed
    logged_in(app)  # and the new hash still logs in


def test_session_cookie_flags(app_factory):
    plain = app_factory()
    cookie = _login_cookie(plain)
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    secure = app_factory(BASE_URL="https://people.example.org")
    assert "Secure" in _login_cookie(secure)


def _login_cookie(app) -> str:
    add_user(app, username=f"cookie{id(app)}")
    response = app.test_client().post("/login", data={"username": f"cookie{id(app)}",
                                                      "password": USER_PASSWORD})
    return response.headers["Set-Cookie"]

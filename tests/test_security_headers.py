"""Every response carries anti-framing, nosniff, referrer and content-security-policy headers
(issue 13, point 14): a walk over every GET route of the URL map as each kind of visitor, the
static files the pages load, redirects, errors and POST answers; and no template holds inline
script, event handlers or style attributes that the policy would block."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import batch_id_of, login_admin, upload

from bulkimport.extensions import db
from bulkimport.models import User
from bulkimport.security import hash_password

TEMPLATES = Path(__file__).resolve().parents[1] / "bulkimport" / "templates"
NOTIFICATION = "panels.peopleadmin_edituser.new_user_email_notification"
ARGUMENTS = {"code": "en", "name": NOTIFICATION, "filename": "bulkimport.css"}


def assert_secure(response, what: str) -> None:
    headers = response.headers
    assert headers.get("X-Frame-Options") == "DENY", what
    assert headers.get("X-Content-Type-Options") == "nosniff", what
    assert headers.get("Referrer-Policy") == "same-origin", what
    policy = dict(part.strip().split(" ", 1)
                  for part in headers.get("Content-Security-Policy", "").split(";") if part)
    assert policy.get("frame-ancestors") == "'none'", what
    assert policy.get("script-src") == "'self'", what  # no inline script anywhere
    assert policy.get("object-src") == "'none'" and policy.get("base-uri") == "'none'", what
    assert "'unsafe-inline'" not in policy.get("style-src", "") or "/templates/" in what, what


def get_urls(app) -> list[str]:
    """A URL for every GET route, with real values for the string arguments."""
    from flask import url_for

    urls = []
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            if "GET" not in rule.methods:
                continue
            values = {name: 1 if type(rule._converters[name]).__name__ == "IntegerConverter"
                      else ARGUMENTS.get(name, "x") for name in rule.arguments}
            urls.append(url_for(rule.endpoint, **values))
    return sorted(urls)


@pytest.fixture
def visitors(app):
    """Test clients: anonymous, a plain user, a user who must change their password, and an
    administrator with one staged upload."""
    with app.app_context():
        for name, flagged in (("plain", False), ("flagged", True)):
            user = User(firstname="P", surname=name, must_change_password=flagged,
                        password_hash=hash_password("visitor-password-1", 4))
            user.set_identity(name, f"{name}@example.com")
            db.session.add(user)
        db.session.commit()
    clients = {"anonymous": app.test_client(), "admin": login_admin(app)}
    batch_id_of(upload(clients["admin"], b"username,firstname,surname,email\n"
                                         b"ann,Ann,Lee,ann@example.com\n"))
    for name in ("plain", "flagged"):
        client = app.test_client()
        client.post("/login", data={"username": name, "password": "visitor-password-1"})
        clients[name] = client
    return clients


def test_every_get_route_answers_with_the_security_headers(app, visitors):
    urls = get_urls(app)
    assert len(urls) > 20
    statuses = set()
    for role, client in visitors.items():
        for url in urls:
            response = client.get(url, buffered=True)  # streamed CSVs end their context
            statuses.add(response.status_code)
            assert_secure(response, f"{role} GET {url} ({response.status_code})")
    assert {200, 302, 403, 404} <= statuses  # pages, redirects and errors alike


def test_static_files_errors_and_post_answers_carry_them_too(app, visitors):
    admin = visitors["admin"]
    page = admin.get("/admin/people").get_data(as_text=True)
    assets = re.findall(r'(?:href|src)="(/(?:static|bootstrap)/[^"]+)"', page)
    assert len(assets) >= 3
    for url in assets:
        response = admin.get(url)
        assert response.status_code == 200, url
        assert_secure(response, url)
    for response, what in [
        (visitors["anonymous"].get("/no/such/page"), "404"),
        (visitors["anonymous"].post("/healthz"), "405"),
        (visitors["anonymous"].post("/login", data={"username": "x", "password": "y"}),
         "failed login"),
        (admin.post("/admin/people/import", data={}), "refused upload"),
        (visitors["anonymous"].get("/healthz", headers={"Authorization": "Bearer wrong"}),
         "401"),
    ]:
        assert_secure(response, what)


def test_only_the_template_editor_lets_inline_styles_into_its_preview(app, visitors):
    response = visitors["admin"].get(f"/admin/system/localisation/en/templates/{NOTIFICATION}")
    assert_secure(response, "/templates/ editor")
    policy = response.headers["Content-Security-Policy"]
    assert "style-src 'self' 'unsafe-inline'" in policy and "script-src 'self';" in policy
    assert "style-src 'self';" in visitors["admin"].get("/admin/people").headers[
        "Content-Security-Policy"]


@pytest.mark.parametrize("path", sorted(p.relative_to(TEMPLATES).as_posix()
                                        for p in TEMPLATES.rglob("*.html")))
def test_templates_hold_no_inline_script_handlers_or_styles(path):
    source = (TEMPLATES / path).read_text()
    assert not re.search(r"<script(?![^>]*\ssrc=)", source), "inline <script>"
    assert not re.search(r"\son[a-z]+\s*=", source), "on…= event handler"
    assert not re.search(r"\sstyle\s*=", source), "style attribute"
    assert "javascript:" not in source.lower()

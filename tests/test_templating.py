"""The invitation e-mail is rendered in a capped sandbox that exposes only its variables."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from bulkimport.mailing.templating import (
    DEFAULT_INVITATION,
    NotificationTemplate,
    RenderError,
    invitation_context,
    longest_context,
    render,
)

CONTEXT = invitation_context(
    username="jdoe", firstname="<Jane>", surname="Doe", email="jdoe@example.com", language="en",
    password="Secret-Pass-123456", login_url="https://people.example.org/login",
    site_name="Example", expires=datetime(2026, 12, 2, 9, 30), must_change_password=True)


def only_subject(source: str) -> NotificationTemplate:
    return NotificationTemplate(subject=source, html="", text="")


def test_default_template_parts():
    subject, html, text = render(DEFAULT_INVITATION, CONTEXT)
    assert subject == "Your Example account"
    assert "Hello <Jane>," in text and "Hello &lt;Jane&gt;," in html  # HTML is escaped
    assert "Password: Secret-Pass-123456" in text
    assert "works until 2026-12-02 09:30 UTC" in text
    assert "choose a new password" in text


def test_the_subject_is_one_line():
    subject, _, _ = render(only_subject("Hi\r\nBcc: everyone@example.com"), CONTEXT)
    assert subject == "Hi Bcc: everyone@example.com"


@pytest.mark.parametrize("source,message", [
    ("{{ 'a' * 10**8 }}", "subject, line 1: arithmetic (“*”) is not available"),
    ("{{ 10**8 * 'a' }}", "subject, line 1: arithmetic (“*”) is not available"),
    ("{{ 9 ** 100000 }}", "subject, line 1: arithmetic (“**”) is not available"),
    ("{{ username + username }}", "subject, line 1: arithmetic (“+”) is not available"),
    ("x\n{{ -firstname }}", "subject, line 2: arithmetic (“-”) is not available"),
    ("{% for a in username %}{% for b in username %}{% for c in username %}{% endfor %}"
     "{% endfor %}{% endfor %}", "the loops run more than 1000 times"),
    ("{% for c in username %}{{ username ~ username }}{% endfor %}",
     "the output is longer than 100000 characters"),
    ("{{ nothing }}", "UndefinedError: 'nothing' is undefined"),
    ("{{ range(10) }}", "subject, line 1: only text methods can be called"),
    ("{{ firstname | list }}", "subject, line 1: No filter named 'list'."),
    ("{{ firstname is divisibleby(3) }}", "subject, line 1: No test named 'divisibleby'."),
    ("{{ lipsum() }}", "subject, line 1: only text methods can be called"),
    ("{{ ''.__class__.__mro__ }}", "subject, line 1: “.__mro__” is not available"),
    ("{% include 'x' %}", "subject, line 1: “include” is not allowed in notification templates."),
])
def test_refused_templates(source, message):
    """Refused on parsing (with the line), or by the budget with the longest values a user can
    have."""
    with pytest.raises(RenderError) as refused:
        render(only_subject(source), longest_context(CONTEXT))
    assert message in str(refused.value)


def test_render_time_is_bounded_inside_one_expression(monkeypatch):
    """One `{{ … }}` of 150 searches through 99,000 characters (about a millisecond each, with
    no statement, loop or call in between) stops at the deadline, which every comparison
    checks, long before its end."""
    from bulkimport.mailing import templating

    haystack, needle = "a" * 99_072, "a" * 1_548 + "b"
    started = time.perf_counter()
    for _ in range(150):
        assert needle not in haystack
    whole = time.perf_counter() - started
    monkeypatch.setattr(templating, "RENDER_SECONDS", whole / 20)
    doubling = "".join(f"{{% set v{i + 1} = v{i} ~ v{i} %}}" for i in range(8))
    source = ("{% set v0 = firstname ~ firstname[:137] %}" + doubling
              + "{% set needle = v2 ~ 'b' %}{{ [" + ", ".join(["needle in v8"] * 150)
              + "]|length }}")
    for part, html in ((source, False), ("", True), ("", False)):
        templating._compiled(part, html)  # the deadline counts running time, after compiling
    started = time.perf_counter()
    with pytest.raises(RenderError, match="rendering takes longer than"):
        render(only_subject(source), {**CONTEXT, "firstname": "a" * 250})
    assert time.perf_counter() - started < whole / 2


def test_loops_pay_from_one_budget_across_the_parts():
    loop = "{% for c in username[:200] ~ username[:200] %}{% endfor %}"
    with pytest.raises(RenderError, match="text body: the loops run more than 1000 times"):
        render(NotificationTemplate(subject=loop, html=loop, text=loop), longest_context(CONTEXT))


@pytest.mark.parametrize("source,expected", [
    ("{{ 'Jane Mary Doe'|truncate(9, leeway=0) }}", "Jane..."),
    ("{{ firstname|truncate(4, true, '…', 0) }}", "<Ja…"),
    ("{{ firstname|first }}{{ firstname|last }}", "<>"),
    ("{{ 'one two'.split()|first }}", "one"),
    ("{{ ' Jane '|trim }}|{{ '--Jane--'|trim('-') }}", "Jane|Jane"),
])
def test_the_allowed_environment_filters_work(source, expected):
    """truncate, first and last take Jinja's environment as first argument: the metering
    wrapper passes it on (it used to drop it, and they always failed)."""
    assert render(only_subject(source), CONTEXT)[0] == expected

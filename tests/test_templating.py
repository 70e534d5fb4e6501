"""The invitation e-mail is rendered in a capped sandbox that exposes only its variables."""

from __future__ import annotations

from datetime import datetime

import pytest

from bulkimport.mailing.templating import (
    DEFAULT_INVITATION,
    NotificationTemplate,
    RenderError,
    invitation_context,
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
    ("{{ 'a' * 10**8 }}", "the template builds a value that is too large"),
    ("{{ 10**8 * 'a' }}", "the template builds a value that is too large"),
    ("{{ 9 ** 100000 }}", "exponents above 64 are not allowed"),
    ("{% for c in 'a' * 60000 %}{{ 'xy' }}{% endfor %}", "the loops run more than 1000 times"),
    ("{% for c in 'a' * 900 %}{{ 'x' * 200 }}{% endfor %}",
     "the output is longer than 100000 characters"),
    ("{{ nothing }}", "UndefinedError: 'nothing' is undefined"),
    ("{{ range(10) }}", "UndefinedError: 'range' is undefined"),
    ("{{ range(10) | list }}", "No filter named 'list'"),
    ("{{ lipsum() }}", "UndefinedError: 'lipsum' is undefined"),
    ("{{ ''.__class__.__mro__ }}", "SecurityError"),
    ("{% include 'x' %}", "no loader for this environment specified"),
])
def test_refused_templates(source, message):
    with pytest.raises(RenderError) as refused:
        render(only_subject(source), CONTEXT)
    assert message in str(refused.value)


def test_render_time_is_bounded(monkeypatch):
    """Thirty macros that each call the next twice, printing nothing: 2**30 calls, stopped by
    the deadline that every call checks."""
    from bulkimport.mailing import templating

    monkeypatch.setattr(templating, "RENDER_SECONDS", 0.05)
    chain = "{% macro m0() %}{% endmacro %}" + "".join(
        f"{{% macro m{i}() %}}{{{{ m{i - 1}() }}}}{{{{ m{i - 1}() }}}}{{% endmacro %}}"
        for i in range(1, 30)) + "{{ m29() }}"
    with pytest.raises(RenderError, match="rendering takes longer than 0.05 s"):
        render(only_subject(chain), CONTEXT)


def test_loops_pay_from_one_budget_across_the_parts():
    loop = "{% for c in 'a' * 400 %}{% endfor %}"
    with pytest.raises(RenderError, match="text body: the loops run more than 1000 times"):
        render(NotificationTemplate(subject=loop, html=loop, text=loop), CONTEXT)

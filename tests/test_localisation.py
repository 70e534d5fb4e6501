"""Admin > System > Localisation: languages, Edit Notification Template (save checks, preview,
test e-mail, versions, reset) and the language fallback of the invitation e-mail (issue 5)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import import_file, login_admin, wait_for_jobs
from smtpserver import start_server
from sqlalchemy import select

from bulkimport.extensions import db
from bulkimport.mailing.languages import effective_template, invitation_template
from bulkimport.mailing.templating import DEFAULT_INVITATION, INVITATION, INVITATION_VARIABLES
from bulkimport.models import AuditEvent, Language, TemplateVersion, User
from bulkimport.sweep import sweep

BASE = "/admin/system/localisation"
EDIT = f"{BASE}/{{code}}/templates/{INVITATION}"


def edit_url(code: str = "en") -> str:
    return EDIT.format(code=code)


def template_form(subject="Welcome to {{ site_name }}, {{ firstname }}",
                  html="<p>Hi {{ firstname }}, your password: {{ password }}</p>",
                  text="Hi {{ firstname }}, your password: {{ password }}", **extra):
    return {"subject": subject, "html": html, "text": text, **extra}


def save(client, code="en", **fields):
    return client.post(edit_url(code), data={**template_form(**fields), "save": "1"})


def add_language(client, code, name):
    return client.post(f"{BASE}/languages", data={"code": code, "name": name})


def saved_versions(app) -> list[TemplateVersion]:
    with app.app_context():
        found = list(db.session.scalars(select(TemplateVersion).order_by(TemplateVersion.id)))
        db.session.expunge_all()
        return found


def outbox(app) -> list[str]:
    return [p.read_text() for p in sorted((Path(app.instance_path) / "outbox").glob("*.eml"))]


@pytest.fixture
def mail_app(app_factory):
    return app_factory(SITE_NAME="Example Intranet")


# ----- languages -------------------------------------------------------------------------------

def test_the_page_lists_languages_with_their_templates(app, client):
    page = client.get(BASE).get_data(as_text=True)
    assert "English" in page and ">default<" in page
    assert INVITATION in page and "the shipped template" in page
    assert f'href="{edit_url()}"' in page
    assert add_language(client, "pt_BR", "Português (Brasil)").status_code == 302
    page = client.get(BASE).get_data(as_text=True)
    assert "Português (Brasil)" in page and "<code>pt-br</code>" in page
    assert "not translated: uses the shipped English template" in page


BAD_LANGUAGES = {
    "a-word": (("english", "English"), "“english” is not a language code such as de, fr or pt-BR."),
    "one-letter": (("e", "E"), "“e” is not a language code"),
    "too-many-parts": (("de-DE-x-y", "German"), "is not a language code"),
    "duplicate-any-case": (("EN", "English again"), "The language “en” is already a language"),
    "blank-name": (("de", "   "), "This field is required."),
    "no-code": (("", "German"), "This field is required."),
}


@pytest.mark.parametrize("fields,message", BAD_LANGUAGES.values(), ids=BAD_LANGUAGES.keys())
def test_bad_languages_are_refused(app, client, fields, message):
    response = add_language(client, *fields)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    with app.app_context():
        assert list(db.session.scalars(select(Language.code))) == ["en"]


def test_the_default_language_can_be_changed(app, client):
    add_language(client, "de", "Deutsch")
    assert client.post(f"{BASE}/default", data={"language": "de"}).status_code == 302
    with app.app_context():
        assert db.session.scalar(select(Language.code).where(Language.is_default)) == "de"
        assert db.session.scalar(select(Language.is_default).where(Language.code == "en")) \
            is False
    assert client.post(f"{BASE}/default", data={"language": "xx"}).status_code == 422


# ----- the editor ------------------------------------------------------------------------------

def test_the_editor_shows_the_template_and_every_variable(app, client):
    page = client.get(edit_url()).get_data(as_text=True)
    assert "<h1 class=\"h3\">Edit Notification Template</h1>" in page
    assert "Your {{ site_name }} account" in page  # the shipped subject, escaped in the input
    assert "uses the shipped English template" in page
    variables = re.search(r'id="variables">(.*?)</table>', page, re.S).group(1)
    for name in INVITATION_VARIABLES:
        assert f"<code>{name}</code>" in variables
    assert "True when the user must choose a new password at first login." in variables
    assert client.get(f"{BASE}/xx/templates/{INVITATION}").status_code == 404
    assert client.get(f"{BASE}/en/templates/another.template").status_code == 404


def test_a_saved_template_is_a_version_and_is_used_for_the_next_e_mail(mail_app):
    client = login_admin(mail_app)
    response = save(client)
    assert response.status_code == 302
    page = client.get(response.location).get_data(as_text=True)
    assert "The template has been saved" in page and "English uses its own template" in page
    [version] = saved_versions(mail_app)
    assert (version.kind, version.language, version.subject) == (
        "save", "en", "Welcome to {{ site_name }}, {{ firstname }}")
    with mail_app.app_context():
        boss = db.session.scalar(select(User).where(User.username == "boss"))
        assert version.created_by_id == boss.id
        assert db.session.scalar(select(AuditEvent.action)) == "template_saved"
    import_file(client, b"username,firstname,surname,email\nann,Ann,Lee,ann@example.com\n")
    with mail_app.app_context():
        sweep()
    wait_for_jobs(mail_app)
    [message] = outbox(mail_app)
    assert "Subject: Welcome to Example Intranet, Ann" in message
    assert "Hi Ann, your password: " in message


# Jinja's own messages are said in plain words (issue 14, point 17; test_template_editor.py
# has many more).
SYNTAX_ERRORS = {
    "unclosed-if": ({"text": "Hello\n{% if must_change_password %}\nchange it"},
                    "text body, line 2: this “{% if %}” is never closed: add “{% endif %}” "
                    "where it ends."),
    "unclosed-variable": ({"subject": "Hello {{ firstname"},
                          "subject, line 1: “{{” is never closed: add “}}” after the variable’s "
                          "name."),
    "unknown-tag": ({"html": "<p>\n{% frobnicate %}</p>"},
                    "HTML body, line 2: “{% frobnicate %}” is not a tag of notification "
                    "templates"),
    "stray-endfor": ({"text": "a\nb\n{% endfor %}"},
                     "text body, line 3: “{% endfor %}” closes nothing: there is no “{% for %}” "
                     "open before it."),
    "unknown-filter": ({"subject": "{{ firstname | shout }}"},
                       "subject, line 1: there is no filter named “shout”"),
}
REFUSED = {
    "unknown-variable": ({"text": "Dear {{ first_name }}"},
                         "text body, line 1: unknown variable “first_name”; the variables are "
                         "username, firstname"),
    "config": ({"html": "<p>{{ config }}</p>"}, "HTML body, line 1: unknown variable “config”"),
    "include": ({"text": "{% include 'footer.txt' %}"},
                "text body, line 1: “include” is not allowed in notification templates."),
    "extends": ({"html": "{% extends 'base.html' %}"},
                "HTML body, line 1: “extends” is not allowed"),
    "import": ({"text": "{% import 'macros' as m %}"},
               "text body, line 1: “import” is not allowed"),
    "from-import": ({"text": "{% from 'macros' import m %}"},
                    "text body, line 1: “from … import” is not allowed"),
    "attribute": ({"subject": "{{ firstname.__class__ }}"},
                  "subject, line 1: “.__class__” is not available"),
    "arithmetic": ({"text": "Hi\n{{ (username ~ username) * 300 }}"},
                   "text body, line 2: arithmetic (“*”) is not available"),
    "render-fails": ({"subject": "{{ firstname[10] }}"},
                     "The test render with sample data failed: subject: UndefinedError"),
    "too-large-for-long-values": ({"text": "{% for c in username %}{{ username ~ username }}"
                                           "{% endfor %}"},
                                  "The test render with the longest values a user can have "
                                  "failed: text body: the output is longer than 100000 "
                                  "characters"),
}


@pytest.mark.parametrize("fields,message", [*SYNTAX_ERRORS.values(), *REFUSED.values()],
                         ids=[*SYNTAX_ERRORS, *REFUSED])
def test_a_broken_template_is_never_stored_and_the_form_keeps_what_was_typed(app, client,
                                                                            fields, message):
    response = save(client, **fields)
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    problems = re.search(r'id="template-problems">(.*?)</div>', page, re.S).group(1)
    assert message.replace("'", "&#39;") in problems.replace("&#34;", '"')
    typed = next(iter(fields.values()))
    from markupsafe import escape

    assert str(escape(typed)) in page  # what was typed is still in the form
    assert saved_versions(app) == []


def test_preview_renders_sample_data_or_a_chosen_user_with_the_password_masked(app, client):
    response = client.post(edit_url(), data={**template_form(), "preview": "1"})
    page = response.get_data(as_text=True)
    assert 'id="preview-subject">Welcome to bulkimport, Jane<' in page
    assert "Hi Jane, your password: ••••••••••••" in page
    import_file(client, b"username,firstname,surname,email,Change password next time\n"
                        b"ann,Ann,Lee,ann@example.com,0\n")
    response = client.post(edit_url(), data={**template_form(
        text="{{ firstname }} {{ surname }} <{{ email }}> {{ password }} "
             "{{ must_change_password }}"), "preview": "1", "preview_user": "ANN"})
    text = re.search(r'id="preview-text">(.*?)</pre>', response.get_data(as_text=True),
                     re.S).group(1)
    assert text == "Ann Lee &lt;ann@example.com&gt; •••••••••••• False"
    response = client.post(edit_url(), data={**template_form(), "preview": "1",
                                             "preview_user": "nobody"})
    assert "There is no user named “nobody” to preview with." in response.get_data(as_text=True)
    assert saved_versions(app) == []


def test_the_html_preview_is_sandboxed(app, client):
    response = client.post(edit_url(), data={**template_form(
        html="<script>alert(1)</script><p>{{ firstname }}</p>"), "preview": "1"})
    page = response.get_data(as_text=True)
    assert re.search(r'<iframe class="[^"]*preview-frame" sandbox=""', page)
    assert "<script>alert(1)</script>" not in page  # only escaped, inside srcdoc


def test_send_test_e_mail_to_me_in_the_outbox(mail_app):
    client = login_admin(mail_app)
    response = client.post(edit_url(), data={**template_form(), "send_test": "1"})
    page = response.get_data(as_text=True)
    assert "A test e-mail (with a sample password, not a real one) was written to the outbox" \
        in page
    [message] = outbox(mail_app)
    assert "To: boss@example.com" in message
    assert "Subject: [Test] Welcome to Example Intranet, Site" in message
    assert saved_versions(mail_app) == []  # a test does not save


def test_send_test_e_mail_to_me_over_smtp(app_factory):
    controller, handler = start_server()
    try:
        app = app_factory(MAIL_SERVER="127.0.0.1", MAIL_PORT=controller.port,
                          MAIL_RATE_PER_MINUTE=0, MAIL_TIMEOUT=10.0)
        client = login_admin(app)
        page = client.post(edit_url(), data={**template_form(), "send_test": "1"}).get_data(
            as_text=True)
        assert "was sent to boss@example.com" in page
        [(_, recipient, raw)] = handler.accepted
        assert recipient == "boss@example.com" and b"Subject: [Test] Welcome to" in raw
    finally:
        controller.stop()
    page = client.post(edit_url(), data={**template_form(), "send_test": "1"}).get_data(
        as_text=True)
    assert "The test e-mail was not sent:" in page  # the server is gone: said, not crashed


def test_versions_difference_restore_and_reset(app, client):
    save(client, subject="First subject")
    save(client, subject="Second subject")
    first, second = saved_versions(app)
    page = client.get(edit_url(), query_string={"compare": first.id}).get_data(as_text=True)
    diff = re.search(r'id="diff">(.*?)</section>', page, re.S).group(1)
    assert "-First subject" in diff and "+Second subject" in diff
    assert "Text body" not in diff  # unchanged parts are not shown
    assert f'data-version="{second.id}"' in page and "in force" in page
    response = client.post(f"{edit_url()}/versions/{first.id}/restore")
    assert response.status_code == 302
    *_, restored = saved_versions(app)
    assert (restored.kind, restored.restored_from_id, restored.subject) == (
        "restore", first.id, "First subject")
    with app.app_context():
        assert invitation_template(db.session, "en").subject == "First subject"
    page = client.get(edit_url()).get_data(as_text=True)
    assert f"Restored version {first.id}" in page
    response = client.post(edit_url(), data={**template_form(), "reset": "1"})
    assert "Reset to default: English now uses the shipped English template." in client.get(
        response.location).get_data(as_text=True)
    with app.app_context():
        assert invitation_template(db.session, "en") == DEFAULT_INVITATION
    assert saved_versions(app)[-1].kind == "reset"
    assert client.post(f"{edit_url('en')}/versions/99999/restore").status_code == 404


def test_saving_the_same_template_again_adds_no_version(app, client):
    save(client)
    response = save(client)
    assert "Nothing changed" in client.get(response.location).get_data(as_text=True)
    assert len(saved_versions(app)) == 1


# ----- which template a user gets ------------------------------------------------------------

def test_fallback_order_own_language_then_default_language_then_shipped(app, client):
    for code, name in (("fr", "Français"), ("de", "Deutsch"), ("es", "Español")):
        add_language(client, code, name)
    with app.app_context():
        assert effective_template(db.session, INVITATION, "fr").source == "shipped"
    save(client, "fr", subject="Bienvenue")
    save(client, "en", subject="Welcome (custom English)")
    with app.app_context():
        session = db.session
        assert invitation_template(session, "fr").subject == "Bienvenue"
        assert invitation_template(session, "FR").subject == "Bienvenue"
        assert invitation_template(session, "es").subject == "Welcome (custom English)"
        assert invitation_template(session, None).subject == "Welcome (custom English)"
        assert invitation_template(session, "xx").subject == "Welcome (custom English)"
    client.post(f"{BASE}/default", data={"language": "de"})
    with app.app_context():
        # German is the default but has no template: Spanish users get the shipped English
        assert invitation_template(db.session, "es") == DEFAULT_INVITATION
    save(client, "de", subject="Willkommen")
    with app.app_context():
        assert invitation_template(db.session, "es").subject == "Willkommen"
        assert invitation_template(db.session, "fr").subject == "Bienvenue"
    client.post(edit_url("fr"), data={**template_form(), "reset": "1"})
    with app.app_context():
        assert invitation_template(db.session, "fr").subject == "Willkommen"


def test_each_user_gets_the_e_mail_of_their_language(mail_app):
    client = login_admin(mail_app)
    add_language(client, "fr", "Français")
    save(client, "fr", subject="Bienvenue {{ firstname }}")
    import_file(client, b"username,firstname,surname,email,language\n"
                        b"ann,Ann,Lee,ann@example.com,fr\nbob,Bob,Ray,bob@example.com,en\n"
                        b"cyd,Cyd,Kim,cyd@example.com,\n")
    with mail_app.app_context():
        sweep()
    wait_for_jobs(mail_app)
    subjects = sorted(re.search(r"Subject: (.*)", m).group(1) for m in outbox(mail_app))
    assert subjects == ["Bienvenue Ann", "Your Example Intranet account",
                        "Your Example Intranet account"]


def test_a_language_code_is_stored_as_the_site_writes_it(app, client):
    add_language(client, "pt-BR", "Português (Brasil)")
    import_file(client, b"username,firstname,surname,email,language\n"
                        b"ann,Ann,Lee,ann@example.com,pt_BR\n")
    with app.app_context():
        assert db.session.scalar(select(User.language).where(User.username == "ann")) == "pt-br"


def test_users_choose_the_language_of_their_e_mails_on_the_account_page(app, client):
    add_language(client, "fr", "Français")
    page = client.get("/account").get_data(as_text=True)
    assert "Language of your e-mails" in page and "Français (fr)" in page
    assert client.post("/account/language", data={"language": "fr"}).location == "/account"
    with app.app_context():
        assert db.session.scalar(select(User.language).where(User.username == "boss")) == "fr"
    assert client.post("/account/language", data={"language": "xx"}).status_code == 422
    client.post("/account/language", data={"language": ""})
    with app.app_context():
        assert db.session.scalar(select(User.language).where(User.username == "boss")) is None

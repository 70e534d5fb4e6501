"""The template editor (issue 14, point 17): syntax errors in plain words on the line they
concern, line numbers, the preview beside the editor on wide screens, the template's human name
beside its code name, and no Restore or Difference for the version in force."""

from __future__ import annotations

import re
from html import unescape

import pytest
from conftest import ADMIN_PASSWORD
from sqlalchemy import select
from test_browser import live_server, log_in, page  # noqa: F401 (fixtures)
from test_localisation import edit_url, save, saved_versions, template_form

from bulkimport.extensions import db
from bulkimport.mailing.templating import INVITATION
from bulkimport.models import TemplateVersion
from bulkimport.template_errors import plain_problem

# Jinja's vocabulary, which a person editing an e-mail should not have to read.
JARGON = ("Jinja", "expected token", "print statement", "statement block", "innermost",
          "Encountered", "Expected an expression", "unexpected char", "directive")

# (the text body as typed, the problem the editor shows)
BROKEN = {
    "unclosed-if": ("Hello\n\n{% if must_change_password %}\nPlease change it.",
                    "text body, line 3: this “{% if %}” is never closed: add “{% endif %}” "
                    "where it ends."),
    "unclosed-for": ("{% for letter in firstname %}{{ letter }}",
                     "text body, line 1: this “{% for %}” is never closed: add “{% endfor %}” "
                     "where it ends."),
    "unclosed-variable": ("Hello {{ firstname",
                          "text body, line 1: “{{” is never closed: add “}}” after the "
                          "variable’s name."),
    "single-brace": ("Hello {{ firstname }",
                     "text body, line 1: a single “}”: a variable is closed with two"),
    "space-in-name": ("Hello {{ first name }}",
                      "text body, line 1: two words between “{{” and “}}”: a variable’s name "
                      "has no spaces"),
    "empty-variable": ("Hello {{ }}",
                       "text body, line 1: “{{ }}” is empty: write a variable’s name"),
    "if-without-condition": ("{% if %}a{% endif %}",
                             "text body, line 1: this tag needs what it works on after its name"),
    "endfor-closes-an-if": ("{% if must_change_password %}\na{% endfor %}",
                            "text body, line 2: “{% endfor %}” does not close the block that is "
                            "open here: that is a “{% if %}”, closed by “{% endif %}”."),
    "second-else": ("{% if must_change_password %}a{% else %}b{% else %}c{% endif %}",
                    "text body, line 1: “{% else %}” cannot come here"),
    "stray-endif": ("a\n{% endif %}",
                    "text body, line 2: “{% endif %}” closes nothing: there is no “{% if %}” "
                    "open before it."),
    "misspelt-tag": ("{% iff must_change_password %}a{% endif %}",
                     "text body, line 1: “{% iff %}” is not a tag of notification templates; "
                     "the tags are if, elif, else, for"),
    "unclosed-bracket": ("{{ firstname.upper( }}",
                         "text body, line 1: “)” is missing before “}”"),
    "unclosed-quote": ("{{ 'Dear ' ~ firstname ~ ' }}",
                       "text body, line 1: a quote (') opens a text that is never closed"),
    "dangling-operator": ("{{ firstname ~ }}",
                          "text body, line 1: something is missing before “}}”"),
    "unclosed-comment": ("Hi {# a note",
                         "text body, line 1: a comment opened with “{#” is never closed"),
    "unclosed-raw": ("{% raw %}{{",
                     "text body, line 1: “{% raw %}” is never closed"),
    "empty-tag": ("{% %}", "text body, line 1: “{% %}” needs a tag name"),
    "unknown-filter": ("{{ firstname | shout }}",
                       "text body, line 1: there is no filter named “shout” (after “|”)"),
    "closing-nothing": ("{{ firstname) }}",
                        "text body, line 1: this “)” closes nothing"),
}


def problems_of(response) -> str:
    html = response.get_data(as_text=True)
    found = re.search(r'id="template-problems">(.*?)</div>', html, re.S)
    assert found, html[:3000]
    return unescape(re.sub(r"<[^>]+>", " ", found.group(1)))


@pytest.mark.parametrize("text,problem", BROKEN.values(), ids=BROKEN)
def test_a_syntax_error_is_said_in_plain_words_on_its_line(app, client, text, problem):
    response = save(client, text=text)
    assert response.status_code == 422
    shown = problems_of(response)
    assert problem in shown
    assert not [word for word in JARGON if word in shown], shown
    line = re.search(r"line (\d+)", problem).group(1)
    area = re.search(r'<textarea[^>]*name="text"[^>]*>', response.get_data(as_text=True))
    assert f'data-error-lines="{line}"' in area.group(0)
    assert saved_versions(app) == []


@pytest.mark.parametrize("button,lead", [("preview", "The preview cannot be rendered: "),
                                         ("send_test", "The test e-mail cannot be rendered: ")])
def test_preview_and_test_e_mail_say_syntax_errors_plainly_too(app, client, button, lead):
    text, problem = BROKEN["unclosed-if"]
    response = client.post(edit_url(), data={**template_form(text=text), button: "1"})
    assert response.status_code == 422
    shown = problems_of(response)
    assert lead + problem in shown
    assert not [word for word in JARGON if word in shown]


def test_a_problem_that_is_not_jinjas_is_kept_as_the_checks_word_it():
    for problem in ("text body, line 2: arithmetic (“*”) is not available in notification "
                    "templates; join text with ~.",
                    "The test render with sample data failed: subject: UndefinedError",
                    "subject, line 1: longer than 50000 characters"):
        assert str(plain_problem(problem, {})) == problem


def test_the_editor_shows_the_human_name_and_the_preview_from_the_start(app, client):
    html = client.get(edit_url()).get_data(as_text=True)
    name = re.search(r'id="template-name">(.*?)</p>', html, re.S).group(1)
    assert "<strong>New user invitation</strong>" in name and INVITATION in name
    assert "<title>Edit Notification Template: New user invitation (English)" in html
    # the preview of the template in force is there before any button is pressed, in the
    # column beside the form's
    assert 'id="preview-subject">Your bulkimport account<' in html
    assert "The template in force, with sample data" in html
    columns = re.findall(r'<div class="col-xl-6">', html)
    assert len(columns) == 2
    assert html.index('id="template-form"') < html.index('id="preview-pane"')
    index = client.get("/admin/system/localisation").get_data(as_text=True)
    assert "<strong>New user invitation</strong>" in index


def test_a_broken_template_shows_no_stale_preview(app, client):
    response = save(client, text=BROKEN["unclosed-if"][0])
    html = response.get_data(as_text=True)
    assert 'id="preview-subject"' not in html and 'id="no-preview"' in html


def test_no_restore_or_difference_for_the_version_in_force(app, client):
    save(client, subject="First subject")
    save(client, subject="Second subject")
    first, second = saved_versions(app)

    def actions(html: str, version: TemplateVersion) -> str:
        row = re.search(rf'<tr data-version="{version.id}">(.*?)</tr>', html, re.S).group(1)
        return row.rsplit("<td", 1)[1]

    html = client.get(edit_url()).get_data(as_text=True)
    assert "Restore" not in actions(html, second) and "Difference" not in actions(html, second)
    assert "in force" in html
    assert "Restore" in actions(html, first) and "Difference" in actions(html, first)
    # asked anyway: nothing to compare, nothing restored
    html = client.get(edit_url(), query_string={"compare": second.id}).get_data(as_text=True)
    assert 'id="diff"' not in html
    response = client.post(f"{edit_url()}/versions/{second.id}/restore")
    assert response.status_code == 302
    assert "already the template in force" in client.get(response.location).get_data(
        as_text=True)
    assert len(saved_versions(app)) == 2

    # restored, the first version's content is in force again: the first says so, no buttons
    client.post(f"{edit_url()}/versions/{first.id}/restore")
    html = client.get(edit_url()).get_data(as_text=True)
    *_, restored = saved_versions(app)
    assert "same as in force" in actions(html, first)
    assert "Restore" not in actions(html, first)
    assert "Restore" not in actions(html, restored)
    assert "Restore" in actions(html, second)
    with app.app_context():
        assert db.session.scalar(select(TemplateVersion.subject).where(
            TemplateVersion.id == restored.id)) == "First subject"


def test_line_numbers_and_the_preview_beside_the_editor(live_server, page):  # noqa: F811
    from playwright.sync_api import expect

    base = live_server
    page.set_viewport_size({"width": 1366, "height": 768})
    log_in(page, base, "boss", ADMIN_PASSWORD)
    page.goto(base + edit_url())
    text = page.get_by_label("Text body")
    numbers = page.locator("#text").locator("xpath=preceding-sibling::div[@class='line-numbers']")
    lines = text.input_value().count("\n") + 1
    expect(numbers.locator("span")).to_have_count(lines)
    text.fill("Hello {{ firstname }}\n\n{% if must_change_password %}\nPlease change it.")
    expect(numbers.locator("span")).to_have_count(4)
    form, preview = page.locator("#template-form"), page.locator("#preview-pane")
    assert preview.bounding_box()["x"] > form.bounding_box()["x"] + form.bounding_box()["width"]
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#template-problems")).to_contain_text(
        "text body, line 3: this “{% if %}” is never closed")
    expect(numbers.locator("span.has-problem")).to_have_text(["3"])
    # the numbers stay level with their lines
    third = numbers.locator("span").nth(2).bounding_box()
    area = text.bounding_box()
    assert abs(third["y"] - (area["y"] + 6 + 2 * third["height"])) < 3

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(base + edit_url())
    form, preview = page.locator("#template-form"), page.locator("#preview-pane")
    assert preview.bounding_box()["y"] > form.bounding_box()["y"] + form.bounding_box()["height"]
    assert [p for p in page.problems if "422" not in p] == []

"""Invitations with a one-time link, and sending them at a chosen time, in a real browser: an
administrator imports two users in link mode, the invitations reach a real SMTP server, and the
link from the accepted e-mail leads to "Choose your password" (the token gone from the address
bar), refuses a password of the policy's breaking, sets a good one and logs the user in once; the
same link then says it was used (410), and the chosen password logs in. And on the review page,
"At a date and time" is saved and shown in the summary and on every row to add."""

from __future__ import annotations

import re

from conftest import ADMIN_PASSWORD
from smtpserver import link_token_in, parse_message
from test_browser import (  # noqa: F401 (fixtures)
    live_server,
    log_in,
    mail_live_server,
    page,
    select_all,
)

from bulkimport.people.forms import GENERATE_LABEL

PEOPLE = (b"username,firstname,surname,email\n"
          b"ada,Ada,Lovelace,ada@example.com\n"
          b"alan,Alan,Turing,alan@example.com\n")
GOOD = "correct horse battery staple 42"
TOO_SHORT = "tiny-pw"  # 7 characters; the default policy asks for at least 12
# The live server's clock is the tests' ManualClock, which starts at 2026-12-01 09:00 UTC (see
# bulkimport/clock.py): this is well after it, and after today's real date too.
LATER_LOCAL = "2030-06-15T14:30"  # as the browser's datetime-local input writes it
LATER_SAID = "2030-06-15 14:30 UTC"  # as the pages show it (TIME_ZONE is UTC in the tests)


def upload_people(page, base: str, *, link: bool) -> None:  # noqa: F811
    """Upload PEOPLE with "Generate random passwords…" ticked, in link mode if asked, and wait
    for the review."""
    from playwright.sync_api import expect

    page.goto(f"{base}/admin/people/import")
    page.get_by_label("CSV file").set_input_files(
        {"name": "people.csv", "mimeType": "text/csv", "buffer": PEOPLE})
    page.get_by_label(GENERATE_LABEL, exact=True).check()
    if link:
        page.get_by_label("E-mail a link to choose a password", exact=True).check()
    page.get_by_role("button", name="Upload and review").click()
    expect(page.get_by_role("heading", name="Review “people.csv”")).to_be_visible()


def test_an_e_mailed_link_sets_the_password_once_and_logs_in(mail_live_server, page):  # noqa: F811
    from playwright.sync_api import expect

    base, handler = mail_live_server
    log_in(page, base, "boss", ADMIN_PASSWORD)
    expect(page.get_by_text("Signed in as")).to_contain_text("boss")
    upload_people(page, base, link=True)
    expect(page.locator("#invitations-options summary")) \
        .to_contain_text("Invitations: a link to choose a password")
    select_all(page, "add")
    page.get_by_role("button", name="Submit", exact=True).click()
    confirmation = page.get_by_role("status")
    expect(confirmation).to_contain_text("2 users added")
    expect(confirmation).to_contain_text("2 invitation e-mails queued")

    # the invitations go to the SMTP server: wait until the page says both were accepted
    page.get_by_role("link", name="Invitation status").click()
    expect(page.locator("#invitation-progress .progress-bar")).to_have_text("100 %",
                                                                            timeout=30_000)
    expect(page.locator('[data-count="sent"]')).to_have_text("2")
    [raw] = [m for _, address, m in handler.accepted if address == "ada@example.com"]
    token = link_token_in(raw)
    text = parse_message(raw).get_body(preferencelist=("plain",)).get_content()
    link_line = re.compile(rf"https?://\S+/set-password/{re.escape(token)}")
    assert any(link_line.fullmatch(line.strip()) for line in text.splitlines()), text
    assert "Password:" not in text  # a link, and no password, travels by e-mail

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("button", name="Log in")).to_be_visible()

    # the link's host is BASE_URL (not this live server's port): the same path is opened here
    page.goto(f"{base}/set-password/{token}")
    expect(page).to_have_url(f"{base}/set-password")  # the token left the address bar
    assert token not in page.url
    expect(page.get_by_role("heading", name="Choose your password")).to_be_visible()
    expect(page.locator("#link-username")).to_have_text("ada")
    expect(page.locator("#password-rules")).to_contain_text("At least 12 and at most 64 "
                                                            "characters")

    def choose(new_password: str) -> None:
        page.get_by_label("New password", exact=True).fill(new_password)
        page.get_by_label("Confirm the new password").fill(new_password)
        page.get_by_role("button", name="Set password and log in").click()

    choose(TOO_SHORT)
    expect(page.get_by_text("The password must be at least 12 characters long (it has 7).",
                            exact=True)).to_be_visible()
    expect(page.get_by_role("heading", name="Choose your password")).to_be_visible()
    expect(page.locator("#link-username")).to_have_text("ada")
    expect(page.get_by_label("New password", exact=True)).to_have_value("")  # not sent back
    expect(page.get_by_text("Signed in as")).to_have_count(0)

    choose(GOOD)
    # the form sends the user to /, which takes a user who is no administrator to the Account
    expect(page).to_have_url(re.compile(rf"^{re.escape(base)}/(account)?$"))
    expect(page.get_by_role("heading", name="Account")).to_be_visible()
    expect(page.get_by_role("alert").filter(
        has_text="Your password is set and you are logged in.")).to_be_visible()
    expect(page.get_by_text("Signed in as")).to_contain_text("ada")

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("button", name="Log in")).to_be_visible()

    # the same link again: used, said with a 410 (which the page fixture records as a problem:
    # exactly those records are expected here, and taken off the list)
    before = len(page.problems)
    response = page.goto(f"{base}/set-password/{token}")
    assert response.status == 410
    expect(page.get_by_role("heading", name="This link does not work")).to_be_visible()
    expect(page.locator("#link-problem")).to_contain_text(
        "This link has already been used to choose a password")
    expect(page.locator("#link-problem")).not_to_contain_text("ada")  # names no account
    expected = page.problems[before:]
    assert f"HTTP 410 {base}/set-password/{token}" in expected, expected
    assert all("410" in problem for problem in expected), expected
    del page.problems[before:]

    log_in(page, base, "ada", GOOD)
    expect(page.get_by_text("Signed in as")).to_contain_text("ada")
    assert page.problems == []


def test_invitations_at_a_date_and_time_are_shown_on_the_review(live_server, page):  # noqa: F811
    from playwright.sync_api import expect

    log_in(page, live_server, "boss", ADMIN_PASSWORD)
    expect(page.get_by_text("Signed in as")).to_contain_text("boss")
    upload_people(page, live_server, link=True)
    options = page.locator("#invitations-options")
    summary = options.locator("summary")
    expect(summary).to_contain_text("sent now, as soon as the file is submitted")
    expect(page.locator(".send-at")).to_have_count(0)  # sent now: no time on the rows

    summary.click()  # the section starts closed while the invitations go now
    options.get_by_label("At a date and time", exact=True).check()
    options.get_by_label("Date and time", exact=True).fill(LATER_LOCAL)
    options.get_by_role("button", name="Save when and how").click()

    expect(page.get_by_role("alert").filter(has_text=f"The invitations go at {LATER_SAID}.")) \
        .to_be_visible()
    expect(summary).to_contain_text(f"Invitations: a link to choose a password, sent at "
                                    f"{LATER_SAID}.")
    expect(page.locator("#schedule-said")).to_have_text(f"at {LATER_SAID}")
    # the section now opens by itself, showing the choice kept
    expect(options).to_have_attribute("open", "")
    expect(options.get_by_label("At a date and time", exact=True)).to_be_checked()
    expect(options.get_by_label("Date and time", exact=True)).to_have_value(LATER_LOCAL)
    expect(options.get_by_label("E-mail a link to choose a password", exact=True)).to_be_checked()

    rows = page.locator("form[data-review] tbody tr")
    expect(rows).to_have_count(2)
    for line in (2, 3):
        expect(page.locator(f'tr[data-line="{line}"] .send-at')) \
            .to_have_text(f"Invitation: {LATER_SAID}")
    expect(page.locator(".send-at")).to_have_count(2)
    assert page.problems == []

"""The import journey in a real browser (issue point 25): log in, Admin > People, upload
minimal.csv, tick the Add column heading on the review page, submit, read the confirmation.

The application is served by a real WSGI server on a free port with CSRF protection on, and
Chromium is driven by Playwright, so the templates, Bootstrap's dropdown, the page script and the
form round trips are all exercised as a person would. Screenshots of the review page and the
confirmation are written to the test's tmp dir, and also to docs/screenshots when
BULKIMPORT_SCREENSHOTS=1.

Every page these tests visit (and those of test_browser_csp.py, which shares the `page` fixture)
is checked with axe-core: a violation of impact "serious" or "critical" fails the test.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest
from accessibility import check_every_page, check_last_page
from conftest import ADMIN_PASSWORD, add_users, require, sample, wait_for_jobs
from smtpserver import start_server
from werkzeug.serving import make_server

from bulkimport.accounts import create_admin
from bulkimport.extensions import db
from bulkimport.people.forms import GENERATE_LABEL

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SAVE_SCREENSHOTS = os.environ.get("BULKIMPORT_SCREENSHOTS") == "1"
SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"


@contextmanager
def serving(app, *, with_admin: bool = True):
    """Serve `app` on a free port of 127.0.0.1, with an administrator `boss` unless told
    otherwise; yield its URL."""
    if with_admin:
        with app.app_context():
            create_admin(db.session, "boss", "boss@example.com", ADMIN_PASSWORD)
            db.session.commit()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        wait_for_jobs(app)


@pytest.fixture
def live_server(app_factory):
    """The application with CSRF on and an administrator `boss`, served on 127.0.0.1."""
    with serving(app_factory(WTF_CSRF_ENABLED=True)) as url:
        yield url


@pytest.fixture
def mail_live_server(app_factory):
    """The same, sending invitations to a real SMTP server; yields (URL, SMTP handler)."""
    controller, handler = start_server()
    handler.delay = 0.4  # slow enough to watch the progress bar move
    app = app_factory(WTF_CSRF_ENABLED=True, MAIL_SERVER="127.0.0.1", MAIL_PORT=controller.port,
                      MAIL_TIMEOUT=5.0, MAIL_RATE_PER_MINUTE=0, MAIL_CHUNK_SIZE=1)
    try:
        with serving(app) as url:
            yield url, handler
    finally:
        controller.stop()


@pytest.fixture
def page():
    """A fresh Chromium page; the page's script errors and failed requests are collected on
    `page.problems` so that the test can insist there were none."""
    require(os.path.exists(CHROMIUM), "Chromium")
    from playwright.sync_api import expect, sync_playwright

    # Assertions poll until they hold; on a busy machine a page may take longer than the
    # default 5 s to arrive, which is not what these tests are about.
    expect.set_options(timeout=30_000)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            problems: list[str] = []

            def on_console(message) -> None:
                url = message.location.get("url", "")
                # 422 is a form shown again with its errors, which some steps do on purpose.
                if message.type == "error" and not url.endswith("/favicon.ico") \
                        and "status of 422" not in message.text:
                    problems.append(f"console: {message.text} ({url})")

            def on_response(response) -> None:
                # The app has no favicon; the browser's automatic request for it is not ours.
                if response.status >= 400 and response.status != 422 \
                        and not response.url.endswith("/favicon.ico"):
                    problems.append(f"HTTP {response.status} {response.url}")

            page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
            page.on("console", on_console)
            page.on("response", on_response)
            page.problems = problems
            page.inaccessible = inaccessible = check_every_page(page)
            yield page
            check_last_page(page)
            context.close()
            found = "\n".join(dict.fromkeys(inaccessible))
            assert not found, f"axe-core found serious or critical violations:\n{found}"
        finally:
            browser.close()


def screenshot(page, tmp_path: Path, name: str, full_page: bool = True) -> None:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=full_page)
    if SAVE_SCREENSHOTS:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SCREENSHOTS / name)


def test_import_minimal_csv_in_a_browser(live_server, page, tmp_path):
    from playwright.sync_api import expect

    page.goto(f"{live_server}/login")
    page.get_by_label("Username").fill("boss")
    page.get_by_label("Password", exact=True).fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text("Signed in as")).to_contain_text("boss")

    page.get_by_role("button", name="Admin > People").click()
    page.get_by_role("link", name="Users", exact=True).click()
    expect(page.get_by_role("heading", name="People")).to_be_visible()
    expect(page).to_have_url(f"{live_server}/admin/people")

    page.get_by_role("main").get_by_role("link", name="Add/Update from CSV file").click()
    expect(page.get_by_role("heading", name="Add/Update from CSV file")).to_be_visible()
    page.get_by_label("CSV file").set_input_files(
        {"name": "minimal.csv", "mimeType": "text/csv", "buffer": sample("minimal.csv")})
    page.get_by_label(GENERATE_LABEL, exact=True).check()
    page.get_by_role("button", name="Upload and review").click()

    expect(page.get_by_role("heading", name="Review “minimal.csv”")).to_be_visible()
    expect(page.locator("#summary")).to_contain_text("The file proposes 3 new users to add")
    expect(page.locator("#selected-now")).to_contain_text("Selected now: 0 to add")
    add_radios = page.locator("form[data-review] tbody input[type=radio][value=add]")
    expect(add_radios).to_have_count(3)
    heading = page.locator('input[data-select-all="add"]')
    expect(page.locator("form[data-review] input[name=scripted]")).to_have_value("1")
    expect(heading).not_to_be_checked()
    for index in range(3):
        expect(add_radios.nth(index)).not_to_be_checked()
    heading.check()
    expect(heading).to_be_checked()
    for index in range(3):
        expect(add_radios.nth(index)).to_be_checked()
    screenshot(page, tmp_path, "review.png")

    page.get_by_role("button", name="Submit", exact=True).click()
    confirmation = page.get_by_role("status")
    expect(confirmation).to_contain_text("3 users added")
    expect(confirmation).to_contain_text("3 invitation e-mails queued")
    screenshot(page, tmp_path, "confirmation.png")
    assert page.problems == []


def select_all(page, action: str) -> None:
    """Tick the review's heading checkbox of `action` once the page's script is ready (it
    marks the form as scripted): ticked before, only the heading itself would change."""
    from playwright.sync_api import expect

    expect(page.locator("form[data-review] input[name=scripted]")).to_have_value("1")
    page.locator(f'input[data-select-all="{action}"]').check()


def log_in(page, base: str, username: str, password: str) -> None:
    page.goto(f"{base}/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Log in").click()


def test_invitations_reach_100_percent_and_the_password_logs_in(mail_live_server, page,
                                                                  tmp_path):
    from playwright.sync_api import expect

    base, handler = mail_live_server
    log_in(page, base, "boss", ADMIN_PASSWORD)
    page.goto(f"{base}/admin/people/import")
    page.get_by_label("CSV file").set_input_files(
        {"name": "force-change.csv", "mimeType": "text/csv", "buffer": sample("force-change.csv")})
    page.get_by_label(GENERATE_LABEL, exact=True).check()
    page.get_by_role("button", name="Upload and review").click()
    select_all(page, "add")
    page.get_by_role("button", name="Submit", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("3 invitation e-mails queued")

    page.get_by_role("link", name="Invitation status").click()
    bar = page.locator("#invitation-progress .progress-bar")
    expect(bar).to_have_text("100 %", timeout=30_000)
    expect(page.locator('[data-count="sent"]')).to_have_text("3")
    screenshot(page, tmp_path, "invitations.png")

    # lchen's row says "Change password next time" = 1: the delivered password logs in, and
    # leads to nothing but "Choose a new password" until a password of the policy is chosen.
    password = handler.last_password("li.chen@example.com")
    page.get_by_role("button", name="Log out").click()
    log_in(page, base, "lchen", password)
    expect(page.get_by_text("Signed in as")).to_contain_text("lchen")
    expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    page.goto(f"{base}/account")
    expect(page).to_have_url(re.compile(r"/account/password\?next=/account$"))
    expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()

    def choose(new_password: str) -> None:
        page.get_by_label("Current password").fill(password)
        page.get_by_label("New password", exact=True).fill(new_password)
        page.get_by_label("Confirm the new password").fill(new_password)
        page.get_by_role("button", name="Change password").click()

    choose("my-lchen-password-2026")
    expect(page.get_by_text("The password must not contain the username.", exact=True)) \
        .to_be_visible()
    expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    # the e-mailed password was right: it is kept, and only the new one is typed again
    expect(page.get_by_label("Current password")).to_have_value(password)
    expect(page.get_by_label("New password", exact=True)).to_have_value("")
    screenshot(page, tmp_path, "choose-password.png")
    choose("tulip-harbour-47-lantern")
    expect(page.get_by_role("alert").filter(has_text="Your password has been changed")) \
        .to_be_visible()
    expect(page.get_by_role("heading", name="Account")).to_be_visible()
    page.goto(f"{base}/")
    expect(page.get_by_role("heading", name="Account")).to_be_visible()

    page.get_by_role("button", name="Log out").click()
    log_in(page, base, "lchen", "tulip-harbour-47-lantern")
    expect(page.get_by_role("heading", name="Account")).to_be_visible()
    assert page.problems == []


def test_add_and_update_headings_together_select_every_page(app_factory, page, monkeypatch):
    from playwright.sync_api import expect

    # 150 invitations are queued; sending them is not what this page is about
    monkeypatch.setattr("bulkimport.importing.submission.wake", lambda: None)
    app = app_factory(WTF_CSRF_ENABLED=True)
    add_users(app, [{"username": f"old{i:03d}", "firstname": "Before", "surname": "Old",
                     "email": f"old{i:03d}@example.com"} for i in range(150)])
    lines = ["username,firstname,surname,email"]
    lines += [f"old{i:03d},After,Old,old{i:03d}@example.com" for i in range(150)]
    lines += [f"new{i:03d},New,Person,new{i:03d}@example.com" for i in range(150)]
    with serving(app) as base:
        log_in(page, base, "boss", ADMIN_PASSWORD)
        page.goto(f"{base}/admin/people/import")
        page.get_by_label("CSV file").set_input_files(
            {"name": "mixed.csv", "mimeType": "text/csv",
             "buffer": ("\n".join(lines) + "\n").encode()})
        page.get_by_label(GENERATE_LABEL, exact=True).check()
        page.get_by_role("button", name="Upload and review").click()
        select_all(page, "update")
        select_all(page, "add")
        expect(page.locator('input[data-select-all="update"]')).to_be_checked()
        page.get_by_role("button", name="Submit", exact=True).click()
        confirmation = page.get_by_role("status")
        expect(confirmation).to_contain_text("150 users added")
        expect(confirmation).to_contain_text("150 updated")
        assert page.problems == []


def test_edit_the_invitation_template_then_a_broken_one_is_refused(mail_live_server, page,
                                                                    tmp_path):
    from playwright.sync_api import expect

    base, handler = mail_live_server
    log_in(page, base, "boss", ADMIN_PASSWORD)
    page.goto(f"{base}/admin/system/localisation")
    # the first language's first template: the invitation with a password
    page.get_by_role("link", name="Edit Notification Template").first.click()
    expect(page.get_by_role("heading", name="Edit Notification Template")).to_be_visible()
    page.get_by_label("Subject").fill("Welcome aboard, {{ firstname }}!")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("The template has been saved")).to_be_visible()
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#preview-subject")).to_have_text("Welcome aboard, Jane!")
    html_preview = page.frame_locator("iframe[title='HTML body preview']")
    expect(html_preview.get_by_text("Hello Jane,")).to_be_visible()
    screenshot(page, tmp_path, "template-editor.png")

    page.goto(f"{base}/admin/people/import")
    page.get_by_label("CSV file").set_input_files(
        {"name": "one.csv", "mimeType": "text/csv",
         "buffer": b"username,firstname,surname,email\nnkim,Nora,Kim,nora.kim@example.com\n"})
    page.get_by_label(GENERATE_LABEL, exact=True).check()
    page.get_by_role("button", name="Upload and review").click()
    select_all(page, "add")
    page.get_by_role("button", name="Submit", exact=True).click()
    page.get_by_role("link", name="Invitation status").click()
    expect(page.locator('[data-count="sent"]')).to_have_text("1", timeout=30_000)
    [raw] = [m for _, address, m in handler.accepted if address == "nora.kim@example.com"]
    assert b"Subject: Welcome aboard, Nora!" in raw

    page.goto(f"{base}/admin/system/localisation/en/templates/"
              "panels.peopleadmin_edituser.new_user_email_notification")
    page.get_by_label("Text body").fill("Hello {{ firstname }}\n{% if must_change_password %}\n"
                                        "Please change your password.")
    page.get_by_role("button", name="Save").click()
    problems = page.locator("#template-problems")
    expect(problems).to_contain_text("Nothing was saved")
    expect(problems).to_contain_text("text body, line 2: this “{% if %}” is never closed")
    expect(page.get_by_label("Text body")).to_have_value(re.compile(r"Please change your password"))
    screenshot(page, tmp_path, "template-error.png")
    # the refusal is a 422 answer (which the console reports too); nothing else went wrong
    assert [p for p in page.problems if "422" not in p] == []


def test_custom_field_import_export_and_reimport_without_changes(live_server, page, tmp_path):
    from playwright.sync_api import expect

    base = live_server
    log_in(page, base, "boss", ADMIN_PASSWORD)
    page.goto(f"{base}/admin/system/localisation")
    page.get_by_label("Code").fill("fr")
    page.get_by_label("Name").fill("Français")
    page.get_by_role("button", name="Add language").click()

    page.goto(f"{base}/admin/people/fields")
    page.get_by_role("link", name="New field").click()
    page.get_by_label("Symbolic name (the CSV heading)").fill("department")
    page.get_by_label("Label").fill("Department")
    page.get_by_role("button", name="Save field").click()
    expect(page.locator('[data-field="department"]')).to_be_visible()

    def import_file(name: str, data: bytes) -> None:
        page.goto(f"{base}/admin/people/import")
        page.get_by_label("CSV file").set_input_files(
            {"name": name, "mimeType": "text/csv", "buffer": data})
        page.get_by_label(GENERATE_LABEL, exact=True).check()
        page.get_by_role("button", name="Upload and review").click()

    import_file("custom-fields.csv", sample("custom-fields.csv"))
    # phone and start_date are no field: the mapping step asks, and leaving them out is the
    # answer (remembered, so the re-import below goes straight to the review)
    expect(page.locator('tr[data-heading="phone"]')).to_contain_text("not recognised")
    page.get_by_role("button", name="Apply and review").click()
    expect(page.locator("#unknown-columns")).to_contain_text("phone, start_date")
    select_all(page, "add")
    page.get_by_role("button", name="Submit", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("2 users added")

    page.goto(f"{base}/admin/people/export")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    exported = Path(download.value.path()).read_bytes()
    assert exported.startswith(b"\xef\xbb\xbf")
    lines = list(csv.reader(io.StringIO(exported.decode("utf-8-sig"))))
    assert lines[0] == ["username", "firstname", "surname", "email", "language",
                        "Change password next time", "Account state", "department"]
    assert ["rkhan", "Rahul", "Khan", "rahul.khan@example.com", "en", "0", "Active",
            "Finance"] in lines
    assert ["sdubois", "Sophie", "Dubois", "sophie.dubois@example.com", "fr", "0", "Active",
            "Marketing"] in lines

    import_file("users.csv", exported)
    for action in ("add", "update", "error"):
        expect(page.locator(f'[data-count="{action}"] .big-number')).to_have_text("0")
    expect(page.locator('[data-count="nochange"] .big-number')).to_have_text("3")
    screenshot(page, tmp_path, "reimport-no-change.png")
    assert page.problems == []


HR_EXPORT = (b"Login,Full name,Mail,Office\n"
             b"ann,Ann Lee,ann@example.com,B1\n"
             b"bob,Bob van Dam,bob@example.com,B2\n")


def test_map_an_unknown_column_then_the_mapping_is_remembered(live_server, page, tmp_path):
    from playwright.sync_api import expect

    log_in(page, live_server, "boss", ADMIN_PASSWORD)
    for attempt in ("first", "second"):
        page.goto(f"{live_server}/admin/people/import")
        page.get_by_label("CSV file").set_input_files(
            {"name": "hr.csv", "mimeType": "text/csv", "buffer": HR_EXPORT})
        page.get_by_label(GENERATE_LABEL, exact=True).check()
        page.get_by_role("button", name="Upload and review").click()
        if attempt == "second":
            break
        expect(page.get_by_role("heading", name="What do the columns of “hr.csv” hold?")) \
            .to_be_visible()
        office = page.locator('tr[data-heading="Office"]')
        expect(office).to_contain_text("not recognised")
        expect(office).to_contain_text("B1")
        expect(page.get_by_label("Full name", exact=True)).to_have_value("fullname")
        screenshot(page, tmp_path, "mapping.png")
        page.set_viewport_size({"width": 390, "height": 844})
        screenshot(page, tmp_path, "mapping-phone.png")
        page.set_viewport_size({"width": 1280, "height": 900})
        page.get_by_label("Office", exact=True).select_option("__new__")
        page.get_by_role("button", name="Apply and review").click()
        expect(page.get_by_text("The profile field “office” was created")).to_be_visible()
        expect(page.locator("tr[data-line='3']")).to_contain_text("office: B2")
        expect(page.locator("tr[data-line='3']")).to_contain_text("van Dam")
        expect(page.locator(".derived").first).to_contain_text("first name and surname")
        select_all(page, "add")
        page.get_by_role("button", name="Submit", exact=True).click()
        expect(page.get_by_role("status")).to_contain_text("2 users added")
    # the second upload of the same headings goes straight to the review, saying why
    expect(page.get_by_role("heading", name="Review “hr.csv”")).to_be_visible()
    expect(page.locator("#read-as")).to_contain_text("Read with your saved mapping “Columns of hr”")
    expect(page.locator("#summary")).to_contain_text("The file proposes 0 new users to add")
    assert page.problems == []


def test_review_counts_follow_every_choice_and_fit_a_phone(live_server, page, tmp_path):
    from playwright.sync_api import expect

    log_in(page, live_server, "boss", ADMIN_PASSWORD)
    page.goto(f"{live_server}/admin/people/import")
    page.get_by_label("CSV file").set_input_files(
        {"name": "minimal.csv", "mimeType": "text/csv", "buffer": sample("minimal.csv")})
    page.get_by_label(GENERATE_LABEL, exact=True).check()
    page.get_by_role("button", name="Upload and review").click()
    selected = page.locator("#chosen")
    expect(selected).to_contain_text("Selected now: 0 to add")
    heading = page.get_by_role("checkbox", name="Add for all rows of the file")
    select_all(page, "add")
    expect(selected).to_contain_text("3 to add, 0 to update, 0 to skip")
    expect(page.locator("#selected-now")).to_contain_text("3 to add")
    page.get_by_role("radio", name="Skip line 3").check()
    expect(selected).to_contain_text("2 to add, 0 to update, 1 to skip")
    assert heading.evaluate("box => box.indeterminate")  # only some of its rows are chosen
    # the Submit bar is in view at the bottom of a phone's screen, and the choice comes first
    page.set_viewport_size({"width": 390, "height": 844})
    expect(page.get_by_role("button", name="Submit", exact=True)).to_be_in_viewport()
    radio = page.get_by_role("radio", name="Add line 2")
    box = radio.locator("xpath=..").bounding_box()
    assert box["width"] >= 24 and box["height"] >= 24
    assert box["x"] + box["width"] <= 390
    page.locator("table.review-table").scroll_into_view_if_needed()
    screenshot(page, tmp_path, "review-phone.png", full_page=False)  # as the phone shows it
    page.set_viewport_size({"width": 1280, "height": 900})
    page.get_by_role("button", name="Submit", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("2 users added")
    assert page.problems == []

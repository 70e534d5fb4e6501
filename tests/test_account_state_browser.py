"""Blocked accounts and leavers in a real browser (issue 15, point 6): an Entra file with one
`Block sign in = Yes` row is reviewed and submitted, that user cannot log in, is unblocked from
the user's page and then can; and the review's Block heading counts the users missing from a
file as the script moves it."""

from __future__ import annotations

from conftest import ADMIN_PASSWORD, add_user, sample
from test_browser import (  # noqa: F401 (fixtures)
    live_server,
    log_in,
    page,
    select_all,
)

BLOCKED = "This account is blocked. Ask an administrator to unblock it."


def test_a_blocked_sign_in_from_entra_is_refused_until_unblocked(live_server, page):  # noqa: F811
    from playwright.sync_api import expect

    log_in(page, live_server, "boss", ADMIN_PASSWORD)
    page.goto(f"{live_server}/admin/people/import")
    page.get_by_label("CSV file").set_input_files(
        {"name": "entra.csv", "mimeType": "text/csv",
         "buffer": sample("entra-bulk-create.csv")})
    page.get_by_role("button", name="Upload and review").click()
    row = page.locator('tr[data-line="5"]')  # Aiko Tanaka, Block sign in = Yes
    expect(row).to_contain_text("Account state: Blocked")
    expect(page.locator('tr[data-line="3"]')).to_contain_text("Account state: Active")
    select_all(page, "add")
    page.get_by_role("button", name="Submit", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("3 users added", timeout=60_000)

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    log_in(page, live_server, "aiko.tanaka", "Cobalt-Willow-Drum-58")
    expect(page.get_by_text(BLOCKED)).to_be_visible()

    log_in(page, live_server, "boss", ADMIN_PASSWORD)
    expect(page.get_by_text("Signed in as")).to_contain_text("boss")
    page.goto(f"{live_server}/admin/people?state=blocked")
    page.get_by_role("link", name="aiko.tanaka").first.click()
    expect(page.get_by_role("heading", name="Aiko Tanaka")).to_contain_text("Blocked")
    page.get_by_role("button", name="Unblock").click()
    expect(page.get_by_text("Unblocked aiko.tanaka")).to_be_visible()
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    log_in(page, live_server, "aiko.tanaka", "Cobalt-Willow-Drum-58")
    expect(page.get_by_text("Signed in as")).to_contain_text("aiko.tanaka")
    assert page.problems == []


def test_the_block_heading_counts_the_leavers(app_factory, live_server, page):  # noqa: F811
    from playwright.sync_api import expect

    app = app_factory()  # the live server's database: the same tables
    for name in ("bob", "cat"):
        add_user(app, name, f"{name}@example.com")
    log_in(page, live_server, "boss", ADMIN_PASSWORD)
    page.goto(f"{live_server}/admin/people/import")
    page.get_by_label("CSV file").set_input_files(
        {"name": "minimal.csv", "mimeType": "text/csv", "buffer": sample("minimal.csv")})
    page.get_by_label("Generate random passwords", exact=False).check()
    page.get_by_label("Users missing from this file: list them").check()
    page.get_by_role("button", name="Upload and review").click()
    expect(page.locator("#missing-summary")).to_contain_text("2 active users")
    selected = page.locator("#selected-now")
    expect(selected).to_contain_text("0 to add, 0 to update, 0 to block, 5 to skip")
    select_all(page, "block")
    expect(selected).to_contain_text("0 to add, 0 to update, 2 to block, 3 to skip")
    expect(page.locator("#chosen")).to_contain_text("2 to block, 3 to skip")  # the Submit bar
    page.get_by_role("radio", name="Skip cat").check()
    expect(selected).to_contain_text("1 to block, 4 to skip")
    select_all(page, "add")
    page.get_by_role("button", name="Submit", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("1 user missing from the file was "
                                                       "blocked.")
    assert page.problems == []

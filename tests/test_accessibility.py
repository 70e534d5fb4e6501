"""Accessibility in a real browser (issue 14, point 15): every page of the URL map over
realistic data passes axe-core at the "serious" and "critical" levels (the `page` fixture checks
each page it shows), and every page starts with a skip link to its main content."""

from __future__ import annotations

import re

from accessibility import check_last_page
from conftest import ADMIN_PASSWORD
from test_browser import log_in, page, serving  # noqa: F401 (fixtures)
from test_every_page import _urls, realistic  # noqa: F401 (fixtures)

# Two pages the check must fault: an image without a text and a field without a label, and a
# link that a test follows at once, before the check of the first page could have ended.
BAD_PAGE = """<!doctype html><html lang="en"><head><title>Bad</title></head><body><main>
<h1>Bad</h1><img src="/pixel.png"><a id="next" href="/second">Second</a></main></body></html>"""
SECOND_PAGE = """<!doctype html><html lang="en"><head><title>Second</title></head><body><main>
<h1>Second</h1><form><input type="text" name="q"><button>Go</button></form></main></body>
</html>"""


def test_the_check_faults_a_page_left_at_once_and_one_left_by_a_form(page):  # noqa: F811
    from playwright.sync_api import expect

    pages = {"/first": BAD_PAGE, "/second": SECOND_PAGE, "/third": SECOND_PAGE}
    page.route("http://pages.test/**", lambda route: route.fulfill(
        content_type="text/html", body=pages.get(route.request.url[17:].split("?")[0], "")))
    page.goto("http://pages.test/first")
    page.locator("#next").click()  # at once: the click waits for the check of /first
    expect(page).to_have_url("http://pages.test/second")
    page.get_by_role("button", name="Go").click()  # a form sent: it waits for the check too
    expect(page).to_have_url("http://pages.test/second?q=")
    page.goto("http://pages.test/third")  # a navigation by the test waits for it as well
    check_last_page(page)
    found = "\n".join(page.inaccessible)
    assert "/first: critical image-alt" in found
    assert "/second: critical label" in found
    assert "/second?q=: critical label" in found
    assert "/third: critical label" in found
    page.inaccessible.clear()  # faulted on purpose: not a failure of this test


def test_every_page_passes_axe_and_skips_to_its_content(realistic, page):  # noqa: F811
    from playwright.sync_api import expect

    app, _client, arguments, outbox_name = realistic
    urls = [url for url in _urls(app, arguments, outbox_name)
            if "/static/" not in url and not url.endswith((".csv", ".json"))
            and not url.endswith("/healthz")]
    expected_errors = []
    with serving(app, with_admin=False) as base:
        log_in(page, base, "boss", ADMIN_PASSWORD)
        for url in [*urls, "/admin/people/no-such-page"]:
            response = page.goto(f"{base}{url}")
            if response.status == 409:  # the column step of an applied batch: a plain refusal
                expected_errors.append(url)
                continue
            if response.status in (404, 410):  # 410: a set-password link used or never made
                expected_errors.append(url)
            if url.endswith(".eml/html"):  # the e-mail itself, not a page of ours
                continue
            skip = page.locator("body > a.skip-link:first-child")
            expect(skip).to_have_text("Skip to main content")
            expect(skip).to_have_attribute("href", "#main")
            expect(page.locator("main#main")).to_have_count(1)
        dead_links = [url for url in urls if url.startswith("/set-password/")][1:]
        assert sorted(expected_errors) == sorted(["/admin/people/import/1/columns",
                                                  "/admin/people/no-such-page", *dead_links])

        # The skip link is the first stop of the Tab key, and moves the focus to the content.
        page.goto(f"{base}/admin/people/overview")
        page.keyboard.press("Tab")
        expect(page.get_by_role("link", name="Skip to main content")).to_be_focused()
        expect(page.get_by_role("link", name="Skip to main content")).to_be_visible()
        page.keyboard.press("Enter")
        expect(page.locator("main#main")).to_be_focused()
    # The e-mail shown on its own runs no script: the browser says so of the test's own.
    unexpected = [p for p in page.problems
                  if not (p.startswith("console: Blocked script execution")
                          and p.endswith(".eml/html)"))
                  and not any(re.search(rf"\b(404|409|410)\b.*{re.escape(url)}", p)
                             for url in expected_errors)]
    assert unexpected == []

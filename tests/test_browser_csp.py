"""The pages under their Content-Security-Policy in a real browser (issue 13, point 14): the
review page's column-heading checkboxes and the template editor's preview still work, nothing
the pages need is blocked, and the policy does block inline script."""

from __future__ import annotations

import re

from conftest import ADMIN_PASSWORD, sample
from test_browser import live_server, log_in, page  # noqa: F401 (fixtures)

from bulkimport.people.forms import GENERATE_LABEL

NOTIFICATION = "panels.peopleadmin_edituser.new_user_email_notification"
# Every violation of the policy in the page, recorded before any script of the page runs.
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", function (event) {
  window.__violations.push(event.violatedDirective + " " + event.blockedURI);
});
"""


def test_review_headings_and_template_preview_work_under_the_policy(live_server, page):  # noqa: F811
    from playwright.sync_api import expect

    base = live_server
    page.add_init_script(RECORD_VIOLATIONS)
    log_in(page, base, "boss", ADMIN_PASSWORD)
    response = page.goto(f"{base}/admin/people/import")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "frame-ancestors 'none'" in policy
    assert response.headers["x-frame-options"] == "DENY"

    page.get_by_label("CSV file").set_input_files(
        {"name": "minimal.csv", "mimeType": "text/csv", "buffer": sample("minimal.csv")})
    page.get_by_label(GENERATE_LABEL, exact=True).check()
    page.get_by_role("button", name="Upload and review").click()
    expect(page.locator("form[data-review] input[name=scripted]")).to_have_value("1")
    add_radios = page.locator("form[data-review] tbody input[type=radio][value=add]")
    skip_radios = page.locator("form[data-review] tbody input[type=radio][value=skip]")
    heading = page.locator('input[data-select-all="add"]')
    heading.check()
    for index in range(3):
        expect(add_radios.nth(index)).to_be_checked()
    heading.uncheck()
    for index in range(3):
        expect(skip_radios.nth(index)).to_be_checked()
    expect(page.locator("#chosen")).to_contain_text("Not saved yet")
    assert page.evaluate("window.__violations") == []

    page.goto(f"{base}/admin/system/localisation/en/templates/{NOTIFICATION}")
    page.get_by_role("button", name="Preview").click()
    frame = page.locator("iframe[title='HTML body preview']")
    expect(frame).to_have_css("height", "352px")  # 22rem, from the style sheet
    preview = page.frame_locator("iframe[title='HTML body preview']")
    expect(preview.get_by_text("Hello Jane,")).to_be_visible()
    # the e-mail's own inline styles apply inside the preview
    expect(preview.locator("body")).to_have_css("font-family", re.compile("sans-serif"))
    expect(preview.locator("td").first).to_have_css("padding-right", "12px")
    assert page.evaluate("window.__violations") == []
    assert page.problems == []

    # The policy is in force: an inline script put into the page does not run.
    ran = page.evaluate("""() => {
        const script = document.createElement("script");
        script.textContent = "window.__ran = true";
        document.body.appendChild(script);
        return window.__ran === true;
    }""")
    assert ran is False
    assert page.evaluate("window.__violations") == ["script-src-elem inline"]

"""axe-core in the browser tests: every document a Playwright page shows is checked once it has
loaded, and the browser does not leave it before the check is done.

axe-core is vendored (tests/vendor/axe-core: axe.min.js and its MPL-2.0 licence), so that the
tests need no network and no npm. It is added as an init script, which the pages' Content-Security-
Policy does not govern: the pages are checked under their real policy, and test_browser_csp.py,
which shares the `page` fixture, still sees that policy block inline scripts.
"""

from __future__ import annotations

from pathlib import Path

AXE_SOURCE = (Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js").read_text()
FAILING_IMPACTS = ("serious", "critical")

# Runs in every document after axe. The check starts at the load event (the page as it first
# shows). A link followed or a form submitted before the check is done waits for it, then goes
# on: without that a test that moves fast would leave pages unchecked.
HOLD_UNTIL_CHECKED = """
(() => {
  "use strict";
  // Frames (the template preview, an e-mail) and the browser's blank page are not ours.
  if (window.top !== window || !/^https?:$/.test(location.protocol)) { return; }
  let done = false;
  let check = null;
  window.__axeCheck = function () {
    if (!check) {
      const loaded = new Promise((resolve) => {
        if (document.readyState === "complete") { resolve(); }
        else { window.addEventListener("load", resolve, { once: true }); }
      });
      check = loaded
        .then(() => window.axe.run(document, { iframes: false, resultTypes: ["violations"] }))
        .then((results) => window.__axeReport(
          location.pathname + location.search,
          results.violations.map((v) => [v.impact, v.id + " (" + v.help + "): " +
            v.nodes.slice(0, 5).map((node) => node.target.join(" ")).join(", ")])))
        .catch((error) => window.__axeReport(location.pathname,
                                             [["critical", "axe did not run: " + error]]))
        .finally(() => { done = true; });
    }
    return check;
  };
  window.addEventListener("load", () => { window.__axeCheck(); }, { once: true });

  // Bubbling listeners on window run after the page's own (Bootstrap's dropdown toggles
  // prevent the default of their links, and so are left alone).
  window.addEventListener("click", (event) => {
    const link = event.target.closest ? event.target.closest("a[href]") : null;
    if (done || event.defaultPrevented || !link || link.target || link.hasAttribute("download")
        || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey
        || event.altKey || link.origin !== location.origin) { return; }
    if (link.hash && link.pathname === location.pathname && link.search === location.search) {
      return;  // a link within the page
    }
    event.preventDefault();
    window.__axeCheck().then(() => { location.assign(link.href); });
  });
  window.addEventListener("submit", (event) => {
    if (done || event.defaultPrevented) { return; }
    event.preventDefault();
    const form = event.target;
    const submitter = event.submitter;
    window.__axeCheck().then(() => { form.requestSubmit(submitter); });
  });
})();
"""


def check_every_page(page) -> list[str]:
    """Check every document `page` shows with axe-core; returns the list its serious and critical
    violations are added to, one line per rule and page. `page.goto` waits for the check of the
    page it leaves; call `check_last_page` at the end."""
    found: list[str] = []

    def report(where: str, violations: list[list[str]]) -> None:
        found.extend(f"{where}: {impact} {line}" for impact, line in violations
                     if impact in FAILING_IMPACTS)

    def note_scripting(response) -> None:
        # A document served with a `sandbox` policy runs no script, not even an init script,
        # and Playwright's evaluate on it never returns: such a page cannot be checked.
        if response.frame == page.main_frame and response.request.is_navigation_request():
            policy = response.headers.get("content-security-policy", "")
            page.scripts_disabled = "sandbox" in policy and "allow-scripts" not in policy

    page.scripts_disabled = False
    page.on("response", note_scripting)
    page.expose_function("__axeReport", report)
    page.add_init_script(AXE_SOURCE)
    page.add_init_script(HOLD_UNTIL_CHECKED)
    goto = page.goto

    def goto_when_checked(*args, **kwargs):
        check_last_page(page)
        return goto(*args, **kwargs)

    page.goto = goto_when_checked  # a navigation by the test, not by the page, waits too
    return found


def check_last_page(page) -> None:
    """Wait for the check of the document `page` shows (none for a blank page, nor for a
    document whose policy forbids scripts: an e-mail shown on its own)."""
    if page.url == "about:blank" or page.scripts_disabled:
        return
    from playwright.sync_api import Error

    try:
        page.evaluate("() => window.__axeCheck && window.__axeCheck()")
    except Error as error:  # the page was leaving (a form sent a moment ago): check the next
        if "Execution context was destroyed" not in str(error):
            raise
        page.wait_for_load_state()
        if not page.scripts_disabled:
            page.evaluate("() => window.__axeCheck && window.__axeCheck()")

"""Admin > People and Admin > System have landing pages (issue 14, point 4): each lists every
page of its menu with a line on what it does, the menu toggles lead there without JavaScript, and
every administration page can be reached from them by following links alone."""

from __future__ import annotations

import re
from html import unescape

import pytest
from conftest import ADMIN_PASSWORD, login_admin
from test_browser import live_server, log_in, page  # noqa: F401 (fixtures)

from bulkimport.people.landing import PEOPLE_PAGES
from bulkimport.system.landing import OUTBOX_PAGE, SYSTEM_PAGES

# Pages reached from another page rather than from a menu (and why).
# The "New field" button of Profile fields, and the audit log's "Download as CSV".
SUB_PAGES = {"people.new_field", "system.audit_csv"}


def _links(html: str) -> set[str]:
    return set(re.findall(r'href="([^"#]+)"', html))


def _menu_landings(app, client) -> dict[str, str]:
    """The HTML of each landing page, by the path its top-bar toggle leads to."""
    home = client.get("/admin/people").get_data(as_text=True)
    toggles = re.findall(r'<a class="nav-link dropdown-toggle" href="([^"]+)"', home)
    assert toggles == ["/admin/people/overview", "/admin/system"]
    assert 'href="#"' not in home
    return {path: unescape(client.get(path).get_data(as_text=True)) for path in toggles}


@pytest.mark.parametrize("mail_server", ["", "smtp.example.com"])
def test_the_landing_pages_list_every_administration_page(app_factory, mail_server):
    app = app_factory(MAIL_SERVER=mail_server)
    client = login_admin(app)
    landings = _menu_landings(app, client)
    listed = set().union(*(_links(html) for html in landings.values()))
    with app.test_request_context():
        from flask import url_for

        menu_pages = [*PEOPLE_PAGES, *SYSTEM_PAGES] + ([OUTBOX_PAGE] if not mail_server else [])
        for endpoint, name, summary in menu_pages:
            assert url_for(endpoint) in listed, endpoint
            # the name is the link; the line says what the page is for
            assert f'href="{url_for(endpoint)}">{name}</a>' in "".join(landings.values())
            assert summary in "".join(landings.values())
        # every administration page without arguments is on a landing page or one click under
        every = {rule.endpoint for rule in app.url_map.iter_rules()
                 if "GET" in rule.methods and not rule.arguments
                 and rule.endpoint.split(".")[0] in ("people", "system", "localisation")}
        landing_endpoints = {"people.overview", "system.index"}
        if mail_server:
            every.discard("system.outbox")  # no outbox with a real SMTP server: 404
            assert url_for("system.outbox") not in listed
        assert every - landing_endpoints - SUB_PAGES == {e for e, _, _ in menu_pages}
    assert "Saved mappings" in landings["/admin/people/overview"]
    # the top bar's menus list the same pages, under an Overview link to the landing page
    bar = client.get("/admin/system").get_data(as_text=True).split("<main", 1)[0]
    for _, name, _ in menu_pages:
        assert f">{name}</a>" in bar


def test_the_landing_pages_are_for_administrators_only(app_factory):
    from conftest import USER_PASSWORD, add_user

    app = app_factory()
    add_user(app, "plain")
    client = app.test_client()
    client.post("/login", data={"username": "plain", "password": USER_PASSWORD})
    assert client.get("/admin/people/overview").status_code == 403
    assert client.get("/admin/system").status_code == 403
    account = client.get("/account").get_data(as_text=True)
    assert "Admin &gt; System" not in account and "/admin/system" not in account
    assert ADMIN_PASSWORD  # (the administrator's password is not needed here)


def test_without_javascript_every_menu_page_is_reached_by_links(live_server, page):  # noqa: F811
    from playwright.sync_api import expect

    context = page.context.browser.new_context(java_script_enabled=False,
                                               viewport={"width": 1366, "height": 768})
    plain = context.new_page()
    try:
        log_in(plain, live_server, "boss", ADMIN_PASSWORD)
        for toggle, heading, pages in (
                ("Admin > People", "People overview", PEOPLE_PAGES),
                ("Admin > System", "System overview", [*SYSTEM_PAGES, OUTBOX_PAGE])):
            for _, name, _ in pages:
                plain.get_by_role("link", name=toggle).click()
                expect(plain.get_by_role("heading", name=heading, level=1)).to_be_visible()
                plain.get_by_role("main").get_by_role("link", name=name, exact=True).click()
                expect(plain.get_by_role("heading", level=1)).not_to_have_text(heading)
                expect(plain.locator("h1")).to_contain_text(re.compile(
                    {"Users": "People", "Add/Update from CSV file": "Add/Update"}.get(name, name),
                    re.I))
    finally:
        context.close()
    assert page.problems == []

"""The embedded outbox (issue 13 point 13, issue 14 point 3): the viewer masks passwords (the files
keep them, readable by the process owner only), files older than BULKIMPORT_OUTBOX_RETENTION_DAYS
are deleted by the application's clock, and the page says the outbox is not for production. The
list pages through an index that the writers append to (safely, from many threads and processes)
and that the pages rebuild from the files when it is missing, searches by recipient, says
"Showing 1–50 of M" and the From line; a message shows its HTML part in a sandboxed frame."""

from __future__ import annotations

import html
import json
import quopri
import re
import sqlite3
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path

import pytest
from conftest import ADMIN_PASSWORD, import_file, login_admin, sample
from smtpserver import password_in
from test_browser import live_server, log_in, page  # noqa: F401 (fixtures)
from test_mailing import drain

from bulkimport.headers import FRAMED_DOCUMENT_POLICY
from bulkimport.mailing.outbox_index import INDEX_NAME
from bulkimport.mailing.transport import MASK, build_message, purge_outbox, transport_for

ROOT = Path(__file__).resolve().parents[1]
SENDER = "Intranet <noreply@example.com>"


def outbox_folder(app) -> Path:
    return Path(app.instance_path) / "outbox"


def outbox_files(app) -> list[Path]:
    """The messages and their masked copies (not the index)."""
    return sorted(p for p in outbox_folder(app).iterdir() if p.suffix in (".eml", ".json"))


def indexed_names(app) -> list[str]:
    """The names the index lists, read straight from it (no reconciling with the folder)."""
    with sqlite3.connect(outbox_folder(app) / INDEX_NAME) as index:
        return sorted(name for (name,) in index.execute("SELECT name FROM message"))


def index_bytes(app) -> bytes:
    """The index's files (the database and its write-ahead log) as one text."""
    return b"".join(p.read_bytes() for p in sorted(outbox_folder(app).glob(f"{INDEX_NAME}*")))


def eml_names(app) -> list[str]:
    return sorted(p.name for p in outbox_folder(app).glob("*.eml"))


def send(app, recipients, *, subject="Your account", text="Hello", html_part="<p>Hello</p>",
         secret_values=(), sender=SENDER) -> None:
    """Write one message to each of `recipients` into the outbox of `app`, one clock tick
    apart (the names, and so the order, follow the clock)."""
    clock = app.extensions["bulkimport.clock"]
    with app.app_context(), transport_for(app.config, app.instance_path) as outbox:
        for recipient in recipients:
            outbox.send(build_message(sender=sender, recipient=recipient, subject=subject,
                                      text=text, html=html_part, secret_values=secret_values))
            clock.advance(seconds=1)


def rows(listing: str) -> list[str]:
    """The recipients of the rows of an outbox list page, in order."""
    return re.findall(r'<tr data-message="[^"]+">\s*<td[^>]*>.*?</td>\s*<td[^>]*>.*?</td>\s*'
                      r"<td[^>]*>([^<]*)</td>", listing, flags=re.S)


def test_the_viewer_masks_every_password_that_the_files_keep(app_factory):
    app = app_factory(MAIL_SERVER="")
    client = login_admin(app)
    import_file(client, sample("minimal.csv"))
    assert drain(app) == {"sent": 3}
    emls = [f for f in outbox_files(app) if f.suffix == ".eml"]
    passwords = [password_in(f.read_bytes()) for f in emls]
    assert len(emls) == 3 and all(len(p) >= 16 for p in passwords)
    assert {oct(f.stat().st_mode & 0o777) for f in outbox_folder(app).iterdir()} == {"0o600"}
    listing = client.get("/admin/system/outbox").get_data(as_text=True)
    assert listing.count("Your bulkimport account") == 3
    assert "for trying the product, not for production" in listing
    for f in emls:
        message = client.get(f"/admin/system/outbox/{f.name}").get_data(as_text=True)
        assert "Password: ••••••••" in message and "Hello " in message
        part = client.get(f"/admin/system/outbox/{f.name}/html").get_data(as_text=True)
        assert "<code>••••••••</code>" in part
        assert not any(p in message or p in listing or p in part for p in passwords)


def test_a_password_in_the_subject_is_masked_too(app_factory):
    app = app_factory(MAIL_SERVER="")
    client = login_admin(app)
    secret = "Secret-Password-1234567"
    send(app, ["a@example.com"], subject=f"Your password is {secret}", text=f"It is {secret}",
         html_part=f"<p>{secret}</p>", secret_values=(secret,))
    [eml] = [f for f in outbox_files(app) if f.suffix == ".eml"]
    assert secret in eml.read_text()
    listing = client.get("/admin/system/outbox").get_data(as_text=True)
    message = client.get(f"/admin/system/outbox/{eml.name}").get_data(as_text=True)
    assert secret not in listing + message and "Your password is ••••••••" in listing
    assert b"Your password is" in index_bytes(app) and secret.encode() not in index_bytes(app)


# Every character that HTML, URLs or quoted-printable write differently.
AWKWARD_PASSWORD = "Zq&<9>\"x'=+ /ü%Tail"


def written_forms(secret: str) -> set[str]:
    """The ways `secret` may stand in a page, a frame or a file."""
    return {secret, html.escape(secret), html.escape(secret, quote=False),
            html.escape(secret).replace("&#x27;", "&#39;").replace("&quot;", "&#34;"),
            urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret, safe=""),
            quopri.encodestring(secret.encode()).decode(),
            quopri.encodestring(secret.encode(), quotetabs=True).decode(),
            json.dumps(secret)[1:-1]}


def test_no_form_of_the_password_reaches_the_pages_the_frame_or_the_index(app_factory):
    app = app_factory(MAIL_SERVER="")
    client = login_admin(app)
    escaped = html.escape(AWKWARD_PASSWORD)
    send(app, ["ann@example.com"], subject=f"Password {AWKWARD_PASSWORD}",
         text=f"Password: {AWKWARD_PASSWORD}\n" + "long line " * 120,  # quoted-printable
         html_part=f"<p>Password: <code>{escaped}</code></p><p title=\"{escaped}\">"
                   f"<a href=\"https://intranet.example.com/login?p="
                   f"{urllib.parse.quote_plus(AWKWARD_PASSWORD)}\">log in</a></p>",
         secret_values=(AWKWARD_PASSWORD,))
    [name] = eml_names(app)
    assert b"=3D" in (outbox_folder(app) / name).read_bytes()  # the file is quoted-printable
    served = {url: client.get(url) for url in ("/admin/system/outbox",
                                               f"/admin/system/outbox/{name}",
                                               f"/admin/system/outbox/{name}/html")}
    assert all(response.status_code == 200 for response in served.values())
    texts = {url: response.get_data(as_text=True) for url, response in served.items()}
    texts["index"] = index_bytes(app).decode("utf-8", "replace")
    texts["json"] = (outbox_folder(app) / name).with_suffix(".json").read_text()
    forms = written_forms(AWKWARD_PASSWORD)
    assert not [(where, form) for where, text in texts.items() for form in forms
                if form in text]
    part = texts[f"/admin/system/outbox/{name}/html"]
    assert f"<code>{MASK}</code>" in part and f'title="{MASK}"' in part and f"p={MASK}" in part
    assert f"Password: {MASK}" in texts[f"/admin/system/outbox/{name}"]


def test_the_list_pages_newest_first_and_says_how_many_of_how_many(app_factory):
    app = app_factory(MAIL_SERVER="")
    client = login_admin(app)
    send(app, [f"user{i:03d}@example.com" for i in range(120)])
    first = client.get("/admin/system/outbox").get_data(as_text=True)
    assert "Showing 1–50 of <strong>120</strong> e-mails, newest first." in first
    assert rows(first) == [f"user{i:03d}@example.com" for i in range(119, 69, -1)]
    assert 'href="/admin/system/outbox?page=3"' in first
    third = client.get("/admin/system/outbox?page=3").get_data(as_text=True)
    assert "Showing 101–120 of <strong>120</strong>" in third
    assert rows(third) == [f"user{i:03d}@example.com" for i in range(19, -1, -1)]
    beyond = client.get("/admin/system/outbox?page=9").get_data(as_text=True)
    assert rows(beyond) == rows(third)  # past the end: the last page


def test_the_search_finds_recipients_by_any_part_in_any_case(app_factory):
    app = app_factory(MAIL_SERVER="")
    client = login_admin(app)
    send(app, [f"{'ann' if i % 2 else 'bob'}.{i:03d}@Example.COM" for i in range(110)]
         + ["Carol@example.org"])
    listing = client.get("/admin/system/outbox?to=ANN.").get_data(as_text=True)
    assert ("Showing 1–50 of <strong>55</strong> e-mails to an address containing “ANN.” "
            "(111 in the outbox)") in listing
    assert all(r.startswith("ann.") for r in rows(listing)) and len(rows(listing)) == 50
    assert 'href="/admin/system/outbox?page=2&amp;to=ANN."' in listing
    assert 'value="ANN."' in listing  # the search stays in its field
    second = client.get("/admin/system/outbox?to=ANN.&page=2").get_data(as_text=True)
    assert "Showing 51–55 of <strong>55</strong>" in second
    assert rows(client.get("/admin/system/outbox?to=%20cAROL@%20").get_data(as_text=True)) == [
        "Carol@example.org"]
    none = client.get("/admin/system/outbox?to=nobody").get_data(as_text=True)
    assert "No e-mail to an address containing “nobody” (111 in the outbox)." in none


def test_the_from_line_is_shown_in_the_list_and_the_message(app_factory):
    app = app_factory(MAIL_SERVER="")
    client = login_admin(app)
    send(app, ["ann@example.com"], sender="Personnel <hr@example.com>")
    listing = client.get("/admin/system/outbox").get_data(as_text=True)
    assert "Personnel &lt;hr@example.com&gt;" in listing
    [name] = eml_names(app)
    message = client.get(f"/admin/system/outbox/{name}").get_data(as_text=True)
    assert re.search(r"<dt[^>]*>From</dt><dd[^>]*>Personnel &lt;hr@example.com&gt;</dd>",
                     message)
    assert re.search(r"<dt[^>]*>Date</dt><dd[^>]*>\w{3}, \d", message)


def test_the_html_part_is_served_sandboxed_at_its_own_url(app_factory):
    app = app_factory(MAIL_SERVER="")
    client = login_admin(app)
    send(app, ["ann@example.com"], html_part='<p style="color: red">Hi</p><script>x()</script>')
    [name] = eml_names(app)
    message_page = client.get(f"/admin/system/outbox/{name}")
    frame = re.search(r"<iframe[^>]*>", message_page.get_data(as_text=True)).group(0)
    assert 'sandbox=""' in frame and "allow-" not in frame
    assert f'src="/admin/system/outbox/{name}/html"' in frame
    assert "'unsafe-inline'" not in message_page.headers["Content-Security-Policy"]  # strict
    assert "frame-src 'self'" in message_page.headers["Content-Security-Policy"]
    part = client.get(f"/admin/system/outbox/{name}/html")
    assert part.status_code == 200 and part.mimetype == "text/html"
    assert part.get_data(as_text=True) == '<p style="color: red">Hi</p><script>x()</script>'
    policy = part.headers["Content-Security-Policy"]
    assert policy == ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                      "form-action 'none'; base-uri 'none'; frame-ancestors 'self'; sandbox")
    assert "script-src" not in policy and FRAMED_DOCUMENT_POLICY["sandbox"] == ""
    assert part.headers["X-Content-Type-Options"] == "nosniff"
    assert part.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert part.headers["Referrer-Policy"] == "no-referrer"
    anonymous = app.test_client().get(f"/admin/system/outbox/{name}/html")
    assert anonymous.status_code == 302  # to the login message_page, under the site's own policy
    assert "frame-ancestors 'none'" in anonymous.headers["Content-Security-Policy"]


def test_a_message_without_an_html_part_or_from_an_earlier_version_says_so(app_factory):
    app = app_factory(MAIL_SERVER="")
    client = login_admin(app)
    send(app, ["ann@example.com"], html_part="")
    [name] = eml_names(app)
    assert "has no HTML part" in client.get(f"/admin/system/outbox/{name}").get_data(
        as_text=True)
    assert client.get(f"/admin/system/outbox/{name}/html").status_code == 404
    old = "20261130T080000000000-0123abcd.eml"  # as written before the From and HTML were kept
    (outbox_folder(app) / old).write_bytes(b"Subject: Old\n\nold")
    (outbox_folder(app) / old).with_suffix(".json").write_text(json.dumps(
        {"to": "old@example.com", "subject": "Old", "date": "Mon, 30 Nov 2026", "text": "old"}))
    listing = client.get(f"/admin/system/outbox/{old}").get_data(as_text=True)
    assert "(not recorded)" in listing and "written before the outbox kept it" in listing
    listed = client.get("/admin/system/outbox").get_data(as_text=True)
    assert rows(listed) == ["ann@example.com", "old@example.com"]


# An e-mail that tries everything a sandboxed frame must not allow.
HOSTILE_HTML = """<!doctype html><html><body style="font-family: serif">
<p id="greeting">Hello Ann,</p><table><tr><td style="padding: 2px 12px 2px 0">Password</td>
<td><code>{password}</code></td></tr></table>
<img alt="logo" src="https://tracker.example.com/open.png">
<script>document.getElementById("greeting").textContent = "script ran";
parent.document.title = "owned";</script>
<form action="/logout" method="post"><button id="submit-out">Go</button></form>
</body></html>"""


def test_the_html_part_renders_in_its_frame_under_the_real_policy(app_factory, live_server,  # noqa: F811
                                                                   page):  # noqa: F811
    from playwright.sync_api import expect

    send(app_factory(MAIL_SERVER=""), ["ann@example.com"], subject="Welcome",
         html_part=HOSTILE_HTML.format(password="Pw-1234-5678-abcd"),
         secret_values=("Pw-1234-5678-abcd",))
    log_in(page, live_server, "boss", ADMIN_PASSWORD)
    page.goto(f"{live_server}/admin/system/outbox")
    expect(page.locator("#outbox-count")).to_contain_text("Showing 1–1 of 1 e-mail")
    page.get_by_role("link", name="Welcome").click()
    frame = page.frame_locator("#message-html")
    expect(frame.locator("#greeting")).to_have_text("Hello Ann,")  # the script did not run
    expect(frame.locator("code")).to_have_text(MASK)
    expect(frame.locator("body")).to_have_css("font-family", "serif")  # its own inline styles
    expect(frame.locator("td").first).to_have_css("padding-right", "12px")
    assert page.title() != "owned"
    assert frame.locator("img").evaluate("img => img.naturalWidth") == 0  # nothing loaded
    frame.locator("#submit-out").click()  # no form may be sent from the frame
    expect(page.get_by_text("Signed in as")).to_contain_text("boss")
    page.goto(live_server + page.locator("#message-html").get_attribute("src"))  # on its own
    expect(page.locator("#greeting")).to_have_text("Hello Ann,")
    # The only complaints are the frame's blocked script, form and image; none from the page.
    assert page.problems and all(p.endswith("/html)") for p in page.problems), page.problems


@pytest.mark.parametrize("name", [
    "../../secret_key", "..%2F..%2Fsecret_key", "%2e%2e%2fsecret_key", "..", "secret_key",
    INDEX_NAME, "20261201T090000000000-0123abcd.json", "/etc/passwd", "%2Fetc%2Fpasswd",
    "..\\..\\secret_key", "20261201T090000000000-0123abcd.eml%00.html",
    "20261201T090000000000-0123abcd.eml/../../secret_key", "20261201T0900-0123ABCD.eml",
])
def test_a_name_that_is_not_an_outbox_message_is_refused(app_factory, name):
    app = app_factory(MAIL_SERVER="")
    client = login_admin(app)
    send(app, ["ann@example.com"])
    (Path(app.instance_path) / "secret_key").write_text("the secret")
    (outbox_folder(app) / "20261201T090000000000-0123abcd.json").write_text('{"to": "x"}')
    for url in (f"/admin/system/outbox/{name}", f"/admin/system/outbox/{name}/html"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert "the secret" not in response.get_data(as_text=True)


def test_threads_writing_at_once_leave_a_complete_index(app_factory):
    app = app_factory(MAIL_SERVER="")
    send(app, ["first@example.com"])  # the index exists: the threads all append to it
    errors = []

    def write(thread: int) -> None:
        try:
            with app.app_context(), transport_for(app.config, app.instance_path) as outbox:
                for i in range(25):
                    outbox.send(build_message(sender=SENDER, recipient=f"t{thread}.{i}@x.org",
                                              subject="s", text="t", html="<p>h</p>"))
        except Exception as exc:  # noqa: BLE001 (reported by the assertion below)
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(eml_names(app)) == 201 and indexed_names(app) == eml_names(app)


WRITER = """
import sys
from pathlib import Path
from flask import Flask
from flask_mail import Mail
from bulkimport.mailing.transport import OutboxTransport, build_message

app = Flask("writer")
Mail(app)
with app.app_context(), OutboxTransport(Path(sys.argv[1]), 0) as outbox:
    for i in range(int(sys.argv[3])):
        outbox.send(build_message(sender="a@example.com", recipient=f"p{sys.argv[2]}.{i}@x.org",
                                  subject="s", text="t", html="<p>h</p>"))
"""


def test_processes_writing_at_once_leave_a_complete_index(app_factory):
    app = app_factory(MAIL_SERVER="")
    folder = outbox_folder(app)
    folder.mkdir(parents=True)
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(folder), str(n), "60"],
                                cwd=ROOT) for n in range(4)]
    assert [writer.wait(timeout=300) for writer in writers] == [0, 0, 0, 0]
    assert len(eml_names(app)) == 240 and indexed_names(app) == eml_names(app)
    with sqlite3.connect(folder / INDEX_NAME) as index:
        assert index.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert index.execute("PRAGMA integrity_check").fetchone() == ("ok",)


# The administrator's session outlives the weeks these tests move the clock by.
LONG_SESSION = {"SESSION_IDLE_MINUTES": 60 * 24 * 36500, "SESSION_MAX_HOURS": 24 * 36500}


def test_old_files_are_deleted_when_the_outbox_is_listed_or_written(app_factory, clock):
    app = app_factory(MAIL_SERVER="", OUTBOX_RETENTION_DAYS=7, **LONG_SESSION)
    client = login_admin(app)
    import_file(client, sample("minimal.csv"))
    assert drain(app) == {"sent": 3}
    assert len(outbox_files(app)) == 6  # each .eml with its masked .json
    clock.advance(days=6, hours=23)
    assert client.get("/admin/system/outbox").get_data(as_text=True).count(
        "<tr data-message=") == 3
    assert len(outbox_files(app)) == 6  # younger than a week: kept
    clock.advance(hours=1, minutes=1)  # a week and a minute
    with app.app_context(), transport_for(app.config, app.instance_path) as outbox:
        outbox.send(build_message(sender="noreply@localhost", recipient="a@example.com",
                                  subject="New", text="new", html="<p>new</p>"))
    assert [f.suffix for f in outbox_files(app)] == [".eml", ".json"]  # only the new one
    assert indexed_names(app) == eml_names(app)  # the purge forgot the deleted ones
    clock.advance(days=8)
    listing = client.get("/admin/system/outbox").get_data(as_text=True)
    assert "The outbox is empty." in listing and outbox_files(app) == []
    assert indexed_names(app) == []
    assert "Files older than 7 days\nare deleted" in listing


def test_the_purge_keeps_the_index_consistent(app_factory, clock):
    app = app_factory(MAIL_SERVER="", OUTBOX_RETENTION_DAYS=2)
    send(app, [f"old{i}@example.com" for i in range(5)])
    clock.advance(days=1)
    send(app, [f"young{i}@example.com" for i in range(3)])
    clock.advance(days=1, minutes=1)  # the old ones are two days and a minute old
    with app.app_context():
        assert purge_outbox(outbox_folder(app), 2) == 10  # 5 messages and their copies
    assert len(eml_names(app)) == 3 and indexed_names(app) == eml_names(app)
    with app.app_context():  # an outbox whose index is gone is purged all the same
        (outbox_folder(app) / INDEX_NAME).unlink()
        clock.advance(days=2)
        assert purge_outbox(outbox_folder(app), 2) == 6
    assert eml_names(app) == [] and not (outbox_folder(app) / INDEX_NAME).exists()


def test_an_outbox_without_an_index_is_indexed_on_first_view(app_factory):
    app = app_factory(MAIL_SERVER="")
    client = login_admin(app)
    send(app, [f"user{i}@example.com" for i in range(60)])
    folder = outbox_folder(app)
    for leftover in folder.glob(f"{INDEX_NAME}*"):  # as an outbox written before the upgrade
        leftover.unlink()
    listing = client.get("/admin/system/outbox").get_data(as_text=True)
    assert "Showing 1–50 of <strong>60</strong>" in listing
    assert rows(listing)[0] == "user59@example.com"
    assert "From" in listing and "Intranet &lt;noreply@example.com&gt;" in listing
    assert indexed_names(app) == eml_names(app)
    assert oct((folder / INDEX_NAME).stat().st_mode & 0o777) == "0o600"


def test_the_index_follows_files_added_or_deleted_behind_its_back(app_factory):
    app = app_factory(MAIL_SERVER="")
    client = login_admin(app)
    send(app, [f"user{i}@example.com" for i in range(3)])
    folder = outbox_folder(app)
    first, *_ = eml_names(app)
    (folder / first).unlink()  # deleted by hand
    (folder / first).with_suffix(".json").unlink()
    stray = "20270101T000000000000-00000000.eml"  # by a process that could not index it
    (folder / stray).write_bytes(b"Subject: x\n\nx")
    (folder / stray).with_suffix(".json").write_text(json.dumps(
        {"to": "Stray@example.com", "from": "a@example.com", "subject": "Stray", "date": "",
         "text": "x"}))
    listing = client.get("/admin/system/outbox?to=stray").get_data(as_text=True)
    assert rows(listing) == ["Stray@example.com"] and "of <strong>1</strong>" in listing
    assert indexed_names(app) == eml_names(app) and first not in indexed_names(app)


def test_a_damaged_index_is_rebuilt(app_factory):
    app = app_factory(MAIL_SERVER="")
    client = login_admin(app)
    send(app, ["ann@example.com", "bob@example.com"])
    folder = outbox_folder(app)
    for leftover in folder.glob(f"{INDEX_NAME}-*"):
        leftover.unlink()
    (folder / INDEX_NAME).write_bytes(b"not a database at all" * 100)
    listing = client.get("/admin/system/outbox").get_data(as_text=True)
    assert rows(listing) == ["bob@example.com", "ann@example.com"]
    assert indexed_names(app) == eml_names(app)


def test_a_retention_of_zero_keeps_every_file(app_factory, clock):
    app = app_factory(MAIL_SERVER="", OUTBOX_RETENTION_DAYS=0, **LONG_SESSION)
    client = login_admin(app)
    import_file(client, sample("minimal.csv"))
    drain(app)
    clock.advance(days=3650)
    assert client.get("/admin/system/outbox").status_code == 200
    assert len(outbox_files(app)) == 6

"""Admin > System > Audit log (issue 14, point 14): events by readable names, old → new for what
changed and never a password, batches as links, a date-range filter, and a CSV download of the
filtered events."""

from __future__ import annotations

import ast
import csv
import io
import re
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import batch_id_of, choose_all, import_file, login_admin, upload, wait_for_jobs
from sqlalchemy import select

import bulkimport
from bulkimport.audit_trail import ACTION_LABELS, action_label, record_event
from bulkimport.extensions import db
from bulkimport.models import User
from bulkimport.password_policy import POLICY_FIELDS, load_policy, save_policy

AUDIT = "/admin/system/audit"
AUDIT_CSV = "/admin/system/audit.csv"
PACKAGE = Path(bulkimport.__file__).parent
READERS = {"audit_trail.py", "models.py"}  # they define and read events, they record none
CODE = re.compile(r"[a-z]+(_[a-z]+)+")
NEW_PASSWORD = "Tq8#vLm2!pZr4wXe"


def _strings(node: ast.AST) -> set[str]:
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant)
            and isinstance(n.value, str)}


def recorded_action_codes() -> dict[str, set[str]]:
    """{module: action codes it records}, for every module of the package that writes audit
    events: record_event(session, "<code>"), AuditEvent(action="<code>"), {"action": "<code>"}
    rows for a bulk insert, and literal("<code>") in an INSERT … SELECT."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        module = path.relative_to(PACKAGE).as_posix()
        if module in READERS or ("record_event(" not in source and "AuditEvent(" not in source):
            continue
        codes: set[str] = set()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if name == "record_event" and len(node.args) >= 2:
                    codes |= _strings(node.args[1])
                elif name == "AuditEvent":
                    codes |= {s for kw in node.keywords if kw.arg == "action"
                              for s in _strings(kw.value)}
                elif name == "literal" and node.args and isinstance(node.args[0], ast.Constant):
                    codes |= {s for s in _strings(node.args[0]) if CODE.fullmatch(s)}
            elif isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if isinstance(key, ast.Constant) and key.value == "action":
                        codes |= _strings(value)
        found[module] = codes
    return found


def test_every_recorded_action_has_a_readable_name():
    found = recorded_action_codes()
    # Every module that writes events was understood (a new way of writing one fails here).
    assert {module for module, codes in found.items() if not codes} == set()
    assert {"importing/apply.py", "login.py", "mailing/sending.py"} <= set(found)
    codes = set().union(*found.values())
    assert {"user_created", "user_updated", "invitations_queued", "login_failed",
            "profile_field_retired", "profile_field_restored"} <= codes
    assert sorted(codes - set(ACTION_LABELS)) == [], "add these codes to ACTION_LABELS"
    assert sorted(set(ACTION_LABELS) - codes) == [], "no longer recorded: drop their labels"
    for code, label in ACTION_LABELS.items():
        assert label[0].isupper() and label[1:] == label[1:].lower() and "_" not in label, code


@pytest.mark.parametrize(("code", "label"), [
    ("user_updated", "User updated"),
    ("password_change_failed", "Password change refused"),
    ("something_new_happened", "Something new happened"),  # unknown: the code in words
    ("mfa__reset_", "Mfa reset"),
])
def test_action_codes_read_as_words(code, label):
    assert action_label(code) == label


def _plain(html: str) -> str:
    """The page's text, tags removed and spaces collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def _details(page: str) -> list[str]:
    """The text of the Details column, row by row (a phone shows it under the event instead)."""
    return [_plain(cell) for cell in re.findall(
        r'<td class="small d-none d-md-table-cell">(.*?)</td>', page, re.S)]


def _csv(response) -> list[list[str]]:
    text = response.get_data(as_text=True)
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text[1:])))


def test_an_import_update_shows_old_and_new_and_never_a_password(app):
    client = login_admin(app)
    import_file(client, b"username,firstname,surname,email\nann,Ann,Lee,ann@example.com\n")
    updated = batch_id_of(upload(
        client, ("username,firstname,surname,email,Change password next time,password\n"
                 f"ann,Ann,Leigh,ann@example.com,1,{NEW_PASSWORD}\n").encode(),
        generate=False, update_passwords=True))
    assert choose_all(client, updated, "update").status_code == 302
    wait_for_jobs(app)  # passwords from a file are hashed in the background
    with app.app_context():
        ann = db.session.scalar(select(User).where(User.username == "ann"))
        hashes = [u.password_hash for u in db.session.scalars(select(User))]
        assert ann.surname == "Leigh" and ann.password_hash
        # An event that names a hash (none does today) still shows only that it changed.
        record_event(db.session, "user_updated", user_id=ann.id,
                     changes={"password_hash": ["$2b$12$old", "$2b$12$new"], "surname":
                              ["Lee", "Leigh"]})
        db.session.commit()
    page = client.get(AUDIT, query_string={"action": "user_updated"}).get_data(as_text=True)
    details = _details(page)
    assert len(details) == 2
    assert "surname: Lee → Leigh" in details[1] and "password changed" in details[1]
    assert "Change password next time: no → yes" in details[1]
    assert details[0] == "password changed surname: Lee → Leigh"
    rows = _csv(client.get(AUDIT_CSV, query_string={"action": "user_updated"}))
    assert rows[0] == ["time (UTC)", "actor", "event", "subject", "address", "details"]
    imported = rows[2]  # newest first: the hand-made event, then the import's
    assert imported[1:4] == ["boss", "User updated", "ann"]
    assert imported[5] == (f"Change password next time: no → yes; password changed; "
                           f"surname: Lee → Leigh; Batch {updated}")
    everything = page + client.get(AUDIT).get_data(as_text=True) + \
        client.get(AUDIT_CSV).get_data(as_text=True)
    for secret in (NEW_PASSWORD, "$2b$", "(set from the file)", *hashes):
        assert secret not in everything


def test_batches_link_to_their_result_for_the_administrator_who_imported_them(app):
    client = login_admin(app)
    batch_id = import_file(client, b"username,firstname,surname,email\nbob,Bob,Ray,b@example.com\n")
    link = f'href="/admin/people/import/{batch_id}/result"'
    page = client.get(AUDIT).get_data(as_text=True)
    created = re.search(r'<tr data-action="user_created">(.*?)</tr>', page, re.S).group(1)
    assert link in created and f">Batch {batch_id}</a>" in created
    assert client.get(f"/admin/people/import/{batch_id}/result").status_code == 200
    # Another administrator cannot open that result page: the batch is named, not linked.
    other = login_admin(app, "deputy").get(AUDIT).get_data(as_text=True)
    assert f"Batch {batch_id}" in other and link not in other


def test_settings_changes_show_old_and_new(app):
    client = login_admin(app)
    with app.app_context():
        boss = db.session.scalar(select(User.id).where(User.username == "boss"))
        values = {name: getattr(load_policy(db.session), name) for name in POLICY_FIELDS}
        save_policy(db.session, {**values, "min_length": 16, "require_digit": True},
                    actor_id=boss, address="10.0.0.7")
        db.session.commit()
    client.post("/admin/people/fields/new", data={"name": "desk", "label": "Desk",
                                                  "type": "text", "options": ""})
    with app.app_context():
        from bulkimport.models import ProfileField

        field_id = db.session.scalar(select(ProfileField.id))
    client.post(f"/admin/people/fields/{field_id}", data={"name": "desk", "label": "Office desk",
                                                          "type": "text"})
    page = client.get(AUDIT).get_data(as_text=True)
    text = " | ".join(_details(page))
    assert "Password policy changed" in page and "10.0.0.7" in page
    assert "Min length: 12 → 16" in text and "Require digit: no → yes" in text
    assert "Profile field changed" in page and "Label: Desk → Office desk" in text


# ----- the date range -------------------------------------------------------------------------

DAYS = [  # (action, when): the edges of three days
    ("language_added", datetime(2026, 12, 1, 23, 59, 59)),
    ("template_saved", datetime(2026, 12, 2, 0, 0, 0)),
    ("template_reset", datetime(2026, 12, 2, 23, 59, 59)),
    ("default_language_changed", datetime(2026, 12, 3, 0, 0, 0)),
]


@pytest.fixture
def three_days(app, clock):
    """Events at the edges of 1, 2 and 3 December 2026, written as the clock moves; then the
    administrator's client."""
    for action, when in DAYS:
        clock.set(when)
        with app.app_context():
            record_event(db.session, action, code="fr")
            db.session.commit()
    return login_admin(app)


def _actions(page: str) -> set[str]:
    return set(re.findall(r'<tr data-action="(\w+)"', page))


@pytest.mark.parametrize(("first", "last", "shown"), [
    ("2026-12-02", "2026-12-02", {"template_saved", "template_reset"}),
    ("2026-12-02", "", {"template_saved", "template_reset", "default_language_changed"}),
    ("", "2026-12-01", {"language_added"}),
    ("2026-12-01", "2026-12-03", {a for a, _ in DAYS}),
    ("2026-12-04", "9999-12-31", set()),
    ("", "", {a for a, _ in DAYS}),
])
def test_the_date_range_includes_both_days_whole(three_days, first, last, shown):
    response = three_days.get(AUDIT, query_string={"from_date": first, "to_date": last})
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert _actions(page) == shown
    assert f"<strong>{len(shown)}</strong> event" in page


def test_the_date_range_combines_with_the_other_filters(three_days):
    page = three_days.get(AUDIT, query_string={"from_date": "2026-12-02",
                                               "action": "template_reset"}).get_data(as_text=True)
    assert _actions(page) == {"template_reset"}
    page = three_days.get(AUDIT, query_string={"from_date": "2026-12-02", "user": "boss"}
                          ).get_data(as_text=True)
    assert _actions(page) == set()  # none of these events names boss


BAD_DATES = {
    "words": ({"from_date": "yesterday"}, "from_date",
              "Enter a date as YYYY-MM-DD, e.g. 2026-12-01."),
    "no-such-day": ({"from_date": "2026-02-30"}, "from_date",
                    "Enter a date as YYYY-MM-DD, e.g. 2026-12-01."),
    "day-first": ({"to_date": "31/12/2026"}, "to_date",
                  "Enter a date as YYYY-MM-DD, e.g. 2026-12-01."),
    "year-zero": ({"to_date": "0000-01-01"}, "to_date",
                  "Enter a date as YYYY-MM-DD, e.g. 2026-12-01."),
    "reversed": ({"from_date": "2026-12-03", "to_date": "2026-12-01"}, "to_date",
                 "The “To” day is before the “From” day."),
}


@pytest.mark.parametrize(
    ("url", "query", "name", "message"),
    [(url, *case) for url in (AUDIT, AUDIT_CSV) for case in BAD_DATES.values()],
    ids=[f"{page}-{key}" for page in ("page", "csv") for key in BAD_DATES])
def test_bad_dates_are_named_beside_their_field(three_days, url, query, name, message):
    response = three_days.get(url, query_string=query)
    assert response.status_code == 422 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    control = page.index(f'name="{name}"')
    beside = page.index(f'id="{name}-error"', control)
    assert page.index(message, beside) < page.index("</div>", beside)
    assert "Please correct the following:" in page  # and in the summary at the top
    assert "<tr data-action=" not in page and "Correct the filters above" in page


# ----- the CSV download -----------------------------------------------------------------------

def test_the_csv_keeps_the_filters_and_neutralises_formulas(app, clock):
    clock.set(datetime(2026, 12, 5, 9, 0))
    with app.app_context():
        record_event(db.session, "invitation_failed", invitation_id=1,
                     reason="=HYPERLINK(\"http://evil.example\",\"click\")")
        record_event(db.session, "language_added", code="xx", name="+SUM(A1:A9)")
        record_event(db.session, "invitation_failed", invitation_id=2, reason="@cmd;-2+3",
                     address="=1+cmd|' /C calc'!A0")
        db.session.commit()
    clock.set(datetime(2026, 12, 7, 9, 0))
    with app.app_context():
        record_event(db.session, "invitation_failed", invitation_id=3, reason="later")
        db.session.commit()
    client = login_admin(app)
    filters = {"action": "invitation_failed", "from_date": "2026-12-05", "to_date": "2026-12-06"}
    page = client.get(AUDIT, query_string=filters).get_data(as_text=True)
    href = re.search(r'<a href="([^"]+)" id="audit-download">Download these events \(CSV\)</a>',
                     page).group(1).replace("&amp;", "&")
    assert urlsplit(href).path == AUDIT_CSV
    assert {k: v[0] for k, v in parse_qs(urlsplit(href).query).items()} == filters
    response = client.get(href)
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == \
        'attachment; filename="bulkimport-audit-2026-12-07.csv"'
    rows = _csv(response)
    assert [row[2] for row in rows[1:]] == ["Invitation failed", "Invitation failed"]
    assert [row[0] for row in rows[1:]] == ["2026-12-05 09:00:00"] * 2
    assert rows[1][4:] == ["'=1+cmd|'' /C calc'!A0", "Invitation: 2; Reason: @cmd;'-2+3"]
    assert rows[2][5] == "Invitation: 1; Reason: =HYPERLINK(\"http://evil.example\",\"click\")"
    everything = _csv(client.get(AUDIT_CSV))
    assert len(everything) == 1 + 4
    assert everything[3][5] == "Language code: xx; Name: +SUM(A1:A9)"
    assert not any(cell[:1] in "=+-@" for row in everything for cell in row if cell)


def test_pages_and_the_download_keep_the_filters(app, clock):
    with app.app_context():
        for number in range(105):
            record_event(db.session, "template_saved", template="invitation", version=number)
        db.session.commit()
    client = login_admin(app)
    page = client.get(AUDIT, query_string={"action": "template_saved",
                                           "from_date": "2026-12-01"}).get_data(as_text=True)
    assert "<strong>105</strong> events match these filters." in page
    second = re.search(r'href="([^"]*page=2[^"]*)"', page).group(1).replace("&amp;", "&")
    assert parse_qs(urlsplit(second).query) == {
        "action": ["template_saved"], "from_date": ["2026-12-01"], "page": ["2"]}
    assert client.get(second).get_data(as_text=True).count('<tr data-action="template_saved"') == 5
    assert page.count('<tr data-action="template_saved"') == 100
    assert len(_csv(client.get(AUDIT_CSV, query_string={"action": "template_saved"}))) == 106

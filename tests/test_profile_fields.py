"""Custom profile fields, their import and export, the round trip, import history and the audit
log (issue 6)."""

from __future__ import annotations

import codecs
import csv
import io
import re

import pytest
from conftest import (
    batch_id_of,
    choose_all,
    import_file,
    login_admin,
    sample,
    upload,
    wait_for_jobs,
)
from sqlalchemy import select

from bulkimport.extensions import db
from bulkimport.models import AuditEvent, ProfileField, ProfileValue, User
from bulkimport.profile import parse_date, parse_number
from bulkimport.sweep import sweep

FIELDS = "/admin/people/fields"


def new_field(client, name, type="text", label=None, options=(), required=False, unique=False):
    data = {"name": name, "label": label or name.title(), "type": type,
            "options": "\n".join(options)}
    if required:
        data["required"] = "y"
    if unique:
        data["unique"] = "y"
    return client.post(f"{FIELDS}/new", data=data)


def stored(app) -> dict[str, dict[str, str]]:
    """{username: {field: value}} of every stored custom value."""
    with app.app_context():
        rows = db.session.execute(
            select(User.username, ProfileField.name, ProfileValue.value)
            .join(ProfileValue, ProfileValue.user_id == User.id)
            .join(ProfileField, ProfileField.id == ProfileValue.field_id))
        found: dict[str, dict[str, str]] = {}
        for username, name, value in rows:
            found.setdefault(username, {})[name] = value
        return found


def review(client, batch_id) -> str:
    return client.get(f"/admin/people/import/{batch_id}").get_data(as_text=True)


def proposed(page: str) -> dict[str, int]:
    return {key: int(value) for key, value in re.findall(
        r'data-count="(\w+)">\s*<div class="big-number[^"]*">(\d+)</div>', page)}


def export(client, **params) -> str:
    response = client.get("/admin/people/export", query_string={"download": "1", **params})
    assert response.status_code == 200 and response.mimetype == "text/csv"
    data = response.get_data()
    assert data.startswith(codecs.BOM_UTF8)
    return data.decode("utf-8-sig")


# ----- reading values --------------------------------------------------------------------------

@pytest.mark.parametrize("text,number", [
    ("1234.5", "1234.5"), ("1234,5", "1234.5"), ("1 234,5", "1234.5"), ("1,234.5", "1234.5"),
    ("1.234,5", "1234.5"), ("1,234,567", "1234567"), ("1.234.567", "1234567"), ("-5", "-5"),
    ("+3", "3"), ("0,25", "0.25"), ("007", "7"), ("1e3", None), ("abc", None), ("1,2,3", None),
    ("1.2.3", None), ("1,234.5.6", None), ("--1", None), ("", None), ("12 345", "12345"),
])
def test_numbers_with_either_decimal_mark(text, number):
    assert parse_number(text) == number


@pytest.mark.parametrize("text,order,day", [
    ("2026-01-05", "DMY", "2026-01-05"), ("2026/01/05", "DMY", "2026-01-05"),
    ("2026-01-05 00:00:00", "DMY", "2026-01-05"), ("05.01.2026", "DMY", "2026-01-05"),
    ("05/01/2026", "DMY", "2026-01-05"), ("05/01/2026", "MDY", "2026-05-01"),
    ("31/12/26", "DMY", "2026-12-31"), ("2026-02-30", "DMY", None), ("13/13/2026", "DMY", None),
    ("2026-01-05 10:30:00", "DMY", None), ("January 5", "DMY", None),
])
def test_dates_in_iso_and_spreadsheet_forms(text, order, day):
    assert parse_date(text, order) == day


# ----- Admin > People > Profile fields ---------------------------------------------------------

def test_fields_of_every_type_are_created_and_listed(app, client):
    for name, kind, options in (("department", "choice", ("Finance", "Marketing")),
                                ("phone", "text", ()), ("start_date", "date", ()),
                                ("desk", "number", ()), ("remote", "yesno", ())):
        assert new_field(client, name, kind, options=options).status_code == 302
    page = client.get(FIELDS).get_data(as_text=True)
    for name in ("department", "phone", "start_date", "desk", "remote"):
        assert f'data-field="{name}"' in page
    assert "choice: Finance, Marketing" in page


BAD_FIELDS = {
    "name-with-capitals": ({"name": "Department"}, "The symbolic name must start with a "
                                                    "lower-case letter"),
    "name-with-space": ({"name": "start date"}, "The symbolic name must start"),
    "standard-column": ({"name": "email"}, "“email” is already a standard column"),
    "standard-alias": ({"name": "last_name"}, "“last_name” is already a standard column"),
    "choice-without-options": ({"name": "team", "type": "choice"},
                               "A choice field needs its options"),
    "same-option-twice": ({"name": "team", "type": "choice", "options": ("Red", "red")},
                          "Two options are the same"),
}


@pytest.mark.parametrize("fields,message", BAD_FIELDS.values(), ids=BAD_FIELDS.keys())
def test_bad_field_definitions_are_refused(app, client, fields, message):
    response = new_field(client, **fields)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True).replace("&#34;", '"')
    with app.app_context():
        assert db.session.scalar(select(ProfileField)) is None


def test_a_duplicate_field_name_is_refused(app, client):
    new_field(client, "phone")
    response = new_field(client, "phone")
    assert "A field named “phone” already exists." in response.get_data(as_text=True)


def _field_id(app, name) -> int:
    with app.app_context():
        return db.session.scalar(select(ProfileField.id).where(ProfileField.name == name))


def test_renaming_asks_first_and_keeps_the_values(app, client):
    new_field(client, "dept")
    import_file(client, b"username,firstname,surname,email,dept\nann,Ann,Lee,ann@example.com,HR\n")
    url = f"{FIELDS}/{_field_id(app, 'dept')}"
    response = client.post(url, data={"name": "department", "label": "Department",
                                      "type": "text"})
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "The CSV heading becomes <code>department</code> instead of <code>dept</code>" in page
    assert stored(app) == {"ann": {"dept": "HR"}}  # nothing changed yet
    assert client.post(url, data={"name": "department", "label": "Department", "type": "text",
                                  "confirm": "y"}).status_code == 302
    assert stored(app) == {"ann": {"department": "HR"}}


def test_a_type_change_says_which_values_would_be_lost_and_converts_the_rest(app, client):
    new_field(client, "desk")
    import_file(client, b"username,firstname,surname,email,desk\n"
                        b"ann,Ann,Lee,ann@example.com,\"1,5\"\nbob,Bob,Ray,bob@example.com,B-12\n"
                        b"cyd,Cyd,Kim,cyd@example.com,7\n")
    url = f"{FIELDS}/{_field_id(app, 'desk')}"
    page = " ".join(client.post(url, data={"name": "desk", "label": "Desk", "type": "number"})
                    .get_data(as_text=True).split())
    assert "What this change does to the 3 stored values:" in page
    assert "1 value is rewritten in the new type's form." in page
    assert "1 value cannot be held by the new type and will be deleted</strong>, e.g. “B-12”" \
        in page
    assert stored(app)["bob"] == {"desk": "B-12"}
    client.post(url, data={"name": "desk", "label": "Desk", "type": "number", "confirm": "y"})
    assert stored(app) == {"ann": {"desk": "1.5"}, "cyd": {"desk": "7"}}
    with app.app_context():
        event = db.session.scalar(select(AuditEvent).where(
            AuditEvent.action == "profile_field_changed"))
        assert event.detail == {"field": "desk", "changed": ["type"],
                                "changes": {"type": ["text", "number"]}, "values_lost": 1}


def test_a_field_cannot_become_unique_while_values_repeat(app, client):
    new_field(client, "team")
    import_file(client, b"username,firstname,surname,email,team\n"
                        b"ann,Ann,Lee,ann@example.com,Red\nbob,Bob,Ray,bob@example.com,red\n")
    response = client.post(f"{FIELDS}/{_field_id(app, 'team')}",
                           data={"name": "team", "label": "Team", "type": "text", "unique": "y"})
    assert "1 users share a value of this field, so it cannot become unique" in \
        response.get_data(as_text=True)


def test_a_retired_field_keeps_its_values_and_leaves_imports_and_exports(app, client):
    new_field(client, "phone")
    import_file(client, b"username,firstname,surname,email,phone\nann,Ann,Lee,ann@example.com,1\n")
    field_id = _field_id(app, "phone")
    client.post(f"{FIELDS}/{field_id}/retire", data={"retire": "1"})
    assert stored(app) == {"ann": {"phone": "1"}}
    assert "phone" not in export(client).splitlines()[0]
    response = upload(client, b"username,firstname,surname,email,phone\n"
                              b"ann,Ann,Lee,ann@example.com,2\n")
    assert response.location.endswith("/columns")  # a column nobody recognises any more
    page = client.get(response.location).get_data(as_text=True)
    assert 'data-heading="phone" class="table-warning"' in page
    assert "Profile field: Phone" not in page  # a retired field is not offered
    client.post(f"{FIELDS}/{field_id}/retire", data={"retire": "0"})
    assert "phone" in export(client).splitlines()[0]


# ----- import --------------------------------------------------------------------------------

def test_custom_fields_sample_with_the_fields_defined(app, client):
    client.post("/admin/system/localisation/languages", data={"code": "fr", "name": "Français"})
    new_field(client, "department", "choice", options=("Finance", "Marketing", "Sales"))
    new_field(client, "phone")
    new_field(client, "start_date", "date")
    batch_id = batch_id_of(upload(client, sample("custom-fields.csv")))
    page = review(client, batch_id)
    assert 'id="unknown-columns"' not in page and proposed(page)["add"] == 2
    choose_all(client, batch_id, "add")
    assert stored(app) == {
        "rkhan": {"department": "Finance", "phone": "+44 20 7946 0001", "start_date": "2026-01-05"},
        "sdubois": {"department": "Marketing", "phone": "+33 1 23 45 67 89",
                    "start_date": "2026-02-01"}}


def test_an_unknown_column_links_to_creating_its_field(app, client):
    response = upload(client, sample("custom-fields.csv"))
    page = client.get(response.location).get_data(as_text=True)
    assert '<a href="/admin/people/fields/new?name=department">Define a field for it</a>' in page
    form = client.get("/admin/people/fields/new?name=start_date").get_data(as_text=True)
    assert 'value="start_date"' in form


def test_updates_show_old_and_new_and_empty_cells_leave_values_alone(app, client):
    new_field(client, "phone")
    new_field(client, "desk", "number")
    import_file(client, b"username,firstname,surname,email,phone,desk\n"
                        b"ann,Ann,Lee,ann@example.com,111,4\n")
    data = b"username,firstname,surname,email,phone,desk\nann,Ann,Lee,ann@example.com,222,\n"
    page = review(client, batch_id_of(upload(client, data)))
    assert "phone: <span class=\"old\">111</span> → 222" in page
    assert "desk:" not in page  # the empty cell leaves 4 alone
    page = review(client, batch_id := batch_id_of(upload(client, data, clear_empty=True)))
    assert "desk: <span class=\"old\">4</span> → " in page
    choose_all(client, batch_id, "update")
    assert stored(app) == {"ann": {"phone": "222"}}


BAD_VALUES = {
    "number": ("desk", "abc", "desk “abc” is not a number (write 1234.5 or 1234,5"),
    "number-like-a-phone": ("desk", "0491 570 156", "desk “0491 570 156” looks like a phone "
                            "number or a code: leading zeros would be lost. Use a text field."),
    "number-with-a-leading-zero": ("desk", "0112", "desk “0112” looks like a phone number or a "
                                   "code: leading zeros would be lost."),
    "number-in-odd-groups": ("desk", "49 1570 156", "desk “49 1570 156” looks like a phone "
                             "number"),
    "date": ("start_date", "31/02/2026", "start_date “31/02/2026” is not a date (write "
                                          "2026-01-31; 31/01/2026 and 31.01.2026 work too)."),
    "choice": ("department", "Legal", "department “Legal” is not one of its choices: Finance, "
                                      "Marketing."),
    "yesno": ("remote", "maybe", "remote is “maybe”; use yes or no"),
    "text-too-long": ("phone", "9" * 1001, "phone is longer than 1000 characters."),
    "unique-in-file": ("badge", "B7", "badge “B7” appears 2 times in the file, ignoring case "
                                      "(lines 2, 3); it must be unique."),
    "unique-against-users": ("badge", "X1", "badge “X1” already belongs to the user “zed”; it "
                                            "must be unique."),
    "required-missing": ("cost_centre", "", "cost_centre is required for a new user."),
}


@pytest.mark.parametrize("case", BAD_VALUES.keys())
def test_bad_custom_values_name_the_line_and_field_and_write_nothing(app, client, case):
    column, value, message = BAD_VALUES[case]
    new_field(client, "desk", "number")
    new_field(client, "start_date", "date")
    new_field(client, "department", "choice", options=("Finance", "Marketing"))
    new_field(client, "remote", "yesno")
    new_field(client, "phone")
    new_field(client, "badge", unique=True)
    import_file(client, b"username,firstname,surname,email,badge\nzed,Zed,Ng,zed@example.com,x1\n")
    new_field(client, "cost_centre", required=True)
    values_before = stored(app)
    person = "username,firstname,surname,email"
    if column == "cost_centre":
        lines = [f"{person},cost_centre", "ann,Ann,Lee,ann@example.com,CC1",
                 "bob,Bob,Ray,bob@example.com,"]
    else:
        first = value if case == "unique-in-file" else ""
        lines = [f"{person},cost_centre,{column}", f"ann,Ann,Lee,ann@example.com,CC1,{first}",
                 f"bob,Bob,Ray,bob@example.com,CC2,{value}"]
    batch_id = batch_id_of(upload(client, ("\n".join(lines) + "\n").encode()))
    page = review(client, batch_id)
    row = re.search(r'<tr class="table-danger" data-line="3">(.*?)</tr>', page, re.S)
    assert row, page[:3000]
    assert message in row.group(1).replace("&#34;", '"')
    choose_all(client, batch_id, "add")
    with app.app_context():
        assert db.session.scalar(select(User.id).where(User.username == "bob")) is None
    assert "bob" not in stored(app) and stored(app)["zed"] == values_before["zed"]


# ----- export, the blank template and the round trip -----------------------------------------

ROUND_TRIP = (
    "username,firstname,surname,email,language,Change password next time,department,desk,"
    "start_date,remote,note\n"
    "zoe,Zoë,Ångström,zoe@example.com,en,1,Finance,\"1,5\",05/01/2026,yes,=SUM(A1:A3)\n"
    "lukasz,Łukasz,Żółć,lukasz@example.com,,0,marketing,-7,2026-02-01,0,+44 20 7946 0001\n"
    "yamada,太郎,山田,yamada@example.com,en,0,,1 234,,n,@home\n"
    "amir,Amir,O'Neil,amir@example.com,,1,Finance,,,,'quoted\n"
    "tab,Tab,Case,tab@example.com,,0,,,,,-\n"
)


def define_round_trip_fields(client):
    new_field(client, "department", "choice", options=("Finance", "Marketing"))
    new_field(client, "desk", "number")
    new_field(client, "start_date", "date")
    new_field(client, "remote", "yesno")
    new_field(client, "note", unique=True)


def test_export_neutralises_formulas_and_filters_like_the_user_list(app, client):
    define_round_trip_fields(client)
    import_file(client, ROUND_TRIP.encode())
    text = export(client)
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["username", "firstname", "surname", "email", "language",
                       "Change password next time", "Account state", "department", "desk",
                       "start_date", "remote", "note"]
    by_name = {row[0]: row for row in rows[1:]}
    assert {row[6] for row in rows[1:]} == {"Active"}
    assert by_name["zoe"][11] == "'=SUM(A1:A3)" and by_name["lukasz"][11] == "'+44 20 7946 0001"
    assert by_name["yamada"][11] == "'@home" and by_name["lukasz"][8] == "'-7"
    assert by_name["amir"][11] == "''quoted" and by_name["zoe"][8] == "1.5"
    assert by_name["zoe"][9] == "2026-01-05" and by_name["lukasz"][7] == "Marketing"
    assert by_name["yamada"][8] == "1234" and by_name["yamada"][10] == "no"
    filtered = list(csv.reader(io.StringIO(export(client, q="ZOË", columns=["username",
                                                                                "desk"]))))
    assert filtered == [["username", "desk"], ["zoe", "1.5"]]


def test_blank_template_gives_the_headings_only(app, client):
    new_field(client, "department", "choice", options=("Finance",))
    response = client.get("/admin/people/export", query_string={"blank": "1"})
    text = response.get_data().decode("utf-8-sig")
    assert text == ('"username","firstname","surname","email","language",'
                    '"Change password next time","Account state","department"\r\n')
    assert "Download blank template" in client.get("/admin/people/import").get_data(as_text=True)


def test_export_then_import_the_same_file_proposes_no_change_for_every_row(app, client):
    define_round_trip_fields(client)
    import_file(client, ROUND_TRIP.encode())
    exported = export(client)
    batch_id = batch_id_of(upload(client, exported.encode("utf-8-sig"), filename="users.csv"))
    page = review(client, batch_id)
    counts = proposed(page)
    assert counts["nochange"] == 6, page[:4000]  # five users and boss
    assert counts["update"] == counts["error"] == counts["add"] == 0


# ----- import history and the audit log --------------------------------------------------------

def test_import_history_lists_every_batch_with_its_links(app, client):
    applied = batch_id_of(upload(client, sample("minimal.csv"), filename="minimal.csv"))
    choose_all(client, applied, "add")
    staged = batch_id_of(upload(client, sample("force-change.csv")))
    page = client.get("/admin/people/imports").get_data(as_text=True)
    for batch_id in (applied, staged):
        assert f'data-batch="{batch_id}"' in page
    row = re.search(rf'data-batch="{applied}">(.*?)</tr>', page, re.S).group(1)
    import hashlib

    digest = hashlib.sha256(sample("minimal.csv")).hexdigest()
    assert "minimal.csv" in row and "boss" in row and digest in row and "applied" in row
    assert f"{len(sample('minimal.csv')):,} bytes" in row and "3 add" in row
    assert f"/admin/people/import/{applied}/results.csv" in row
    assert f"/admin/people/import/{applied}/invitations" in row
    staged_row = re.search(rf'data-batch="{staged}">(.*?)</tr>', page, re.S).group(1)
    assert f'href="/admin/people/import/{staged}"' in staged_row and "staged" in staged_row


def test_the_audit_log_records_and_filters_events_without_passwords(app):
    client = login_admin(app)
    new_field(client, "phone")
    import_file(client, b"username,firstname,surname,email,phone\nann,Ann,Lee,ann@example.com,1\n")
    import_file(client, b"username,firstname,surname,email,phone\n"
                        b"ann,Ann,Leigh,ann@example.com,2\n", "update")
    app.test_client().post("/login", data={"username": "ann", "password": "not-her-password"})
    with app.app_context():
        sweep()
    wait_for_jobs(app)
    page = client.get("/admin/system/audit").get_data(as_text=True)
    for action in ("user_created", "invitations_queued", "invitation_sent", "user_updated",
                   "login_failed", "profile_field_created"):
        assert f'data-action="{action}"' in page
    assert "phone:</span> 1 → 2" in page and "surname:</span> Lee → Leigh" in page
    only = client.get("/admin/system/audit", query_string={"action": "user_updated"}).get_data(
        as_text=True)
    assert only.count("<tr data-action=") == 1
    by_user = client.get("/admin/system/audit", query_string={"user": "ann"}).get_data(
        as_text=True)
    assert set(re.findall(r'data-action="(\w+)"', by_user)) == {
        "user_created", "invitation_sent", "user_updated", "login_failed"}
    assert "not-her-password" not in page
    nobody = client.get("/admin/system/audit", query_string={"user": "nobody"}).get_data(
        as_text=True)
    assert "There is no user named “nobody”." in nobody and "<tr data-action=" not in nobody


@pytest.mark.parametrize(("data", "part", "message"), [
    ({"name": "site", "label": "Site", "type": "choice", "options": ""}, "options",
     "A choice field needs its options, one per line."),
    ({"name": "site", "label": "Site", "type": "choice", "options": "Paris\nparis"}, "options",
     "Two options are the same (ignoring case)."),
    ({"name": "email", "label": "E-mail", "type": "text", "options": ""}, "name",
     "“email” is already a standard column of the CSV file."),
])
def test_a_refused_field_shows_each_problem_beside_its_field(client, data, part, message):
    response = client.post("/admin/people/fields/new", data=data)
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    beside = page.index(f'name="{part}"')  # the control, then its own error
    following = page.index('name="required"')
    assert beside < page.index(message, beside) < following

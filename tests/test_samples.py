"""Every file of ../shared/samples gives its documented outcome, through the real web views."""

from __future__ import annotations

import re

from conftest import (
    batch_id_of,
    choose_all,
    import_file,
    map_columns,
    sample,
    table_snapshot,
    upload,
    wait_for_jobs,
)
from sqlalchemy import select

from bulkimport.extensions import db
from bulkimport.models import ImportBatch, Invitation, User
from bulkimport.security import verify_password


def review_page(client, batch_id: int, **params) -> str:
    response = client.get(f"/admin/people/import/{batch_id}", query_string=params)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def counts(page: str) -> dict[str, int]:
    return {key: int(value) for key, value in re.findall(
        r'data-count="(\w+)">\s*<div class="big-number[^"]*">(\d+)</div>', page)}


def users(app) -> dict[str, User]:
    with app.app_context():
        found = {u.username: u for u in db.session.scalars(select(User).where(~User.is_admin))}
        for user in found.values():
            db.session.expunge(user)
        return found


def test_minimal_proposes_three_adds_and_adds_them(app, client):
    batch_id = batch_id_of(upload(client, sample("minimal.csv")))
    page = review_page(client, batch_id)
    assert counts(page) == {"add": 3, "update": 0, "nochange": 0, "error": 0}
    assert "The file proposes 3 new users to add, 0 to update" in " ".join(page.split())
    assert "Selected now: <strong data-selected=\"add\">0</strong> to add" in page
    response = choose_all(client, batch_id, "add")
    confirmation = client.get(response.location).get_data(as_text=True)
    assert "3 users added" in confirmation
    assert "3 invitation e-mails queued" in confirmation
    found = users(app)
    assert set(found) == {"jsmith", "apatel", "mgarcia"}
    assert found["mgarcia"].firstname == "María" and found["mgarcia"].surname == "García"
    with app.app_context():
        assert db.session.scalar(select(db.func.count(Invitation.id))) == 3


def test_force_change_sets_the_flag_per_row(app, client):
    import_file(client, sample("force-change.csv"))
    found = users(app)
    assert {name: u.must_change_password for name, u in found.items()} == {
        "lchen": True, "okoh": False, "tnguyen": True}


def test_excel_utf8_bom_headings_are_recognised(app, client):
    batch_id = batch_id_of(upload(client, sample("excel-utf8-bom.csv")))
    page = review_page(client, batch_id)
    assert counts(page)["add"] == 3
    assert "UTF-8 with BOM" in page
    assert "Username → username" in page and "E-mail → email" in page
    choose_all(client, batch_id, "add")
    found = users(app)
    assert found["fmuller"].surname == "Müller" and found["zsoltk"].surname == "Kovács"
    assert found["fmuller"].must_change_password and not found["ejohansson"].must_change_password


def test_excel_semicolon_cp1252_is_detected_and_said(app, client):
    batch_id = batch_id_of(upload(client, sample("excel-semicolon-cp1252.csv")))
    page = review_page(client, batch_id)
    assert re.search(r'data-detected="encoding">Windows-1252<', page)
    assert re.search(r'data-detected="delimiter">semicolon \(;\)<', page)
    assert counts(page)["add"] == 3
    choose_all(client, batch_id, "add")
    found = users(app)
    assert found["blefevre"].firstname == "Bérénice" and found["blefevre"].surname == "Lefèvre"
    assert found["jstrauss"].firstname == "Jürgen" and found["jstrauss"].surname == "Strauß"


def test_excel_unicode_text_is_detected(app, client):
    batch_id = batch_id_of(upload(client, sample("excel-unicode-text.txt"), "users.txt"))
    page = review_page(client, batch_id)
    assert re.search(r'data-detected="encoding">UTF-16 with BOM<', page)
    assert re.search(r'data-detected="delimiter">tab', page)
    assert counts(page)["add"] == 2
    choose_all(client, batch_id, "add")
    found = users(app)
    assert found["kyamada"].firstname == "健" and found["kyamada"].surname == "山田"
    assert found["sivanova"].firstname == "Светлана"
    assert found["sivanova"].surname == "Иванова"


def test_custom_fields_without_definitions_names_the_columns(app, client):
    client.post("/admin/system/localisation/languages", data={"code": "fr", "name": "Français"})
    response = upload(client, sample("custom-fields.csv"))
    batch_id = batch_id_of(response)
    assert response.location.endswith(f"/import/{batch_id}/columns")  # asked before the review
    page = client.get(response.location).get_data(as_text=True)
    unrecognised = re.findall(r'data-heading="([^"]+)" class="table-warning"', page)
    assert unrecognised == ["department", "phone", "start_date"]
    assert "not recognised" in page
    response = map_columns(client, batch_id, ["username", "firstname", "surname", "email",
                                              "language", "", "", ""])
    assert response.location.endswith(f"/import/{batch_id}")
    page = review_page(client, batch_id)
    unknown = re.search(r'id="unknown-columns">(.*?)</p>', page, re.S).group(1)
    assert "department, phone, start_date" in unknown
    assert counts(page)["add"] == 2
    choose_all(client, batch_id, "add")
    found = users(app)
    assert found["rkhan"].language == "en" and found["sdubois"].language == "fr"


def test_password_column_is_refused_when_generating(app, client):
    before = table_snapshot(app)
    batch_id = batch_id_of(upload(client, sample("with-password-column.csv"), generate=True))
    page = review_page(client, batch_id)
    blocked = re.search(r'id="blocked">(.*?)</div>', page, re.S).group(1)
    assert "The file has a password column (“password”), but “Generate random passwords and " \
           "send login credentials via email” is ticked" in blocked
    assert "Ignore the password column and generate passwords" in blocked
    assert 'name="all_add"' not in page  # no rows to choose until an option is picked
    assert choose_all(client, batch_id, "add").status_code == 302
    assert table_snapshot(app) == before
    with app.app_context():
        assert db.session.get(ImportBatch, batch_id).status == ImportBatch.STAGED
    # on the same page, without uploading again: ignore the column and generate passwords
    client.post(f"/admin/people/import/{batch_id}/options",
                data={"change": "ignore_password_column"})
    page = review_page(client, batch_id)
    assert 'id="blocked"' not in page and counts(page)["add"] == 2
    assert "password → not imported" in page
    choose_all(client, batch_id, "add")
    found = users(app)
    assert {"pwuser1", "pwuser2"} <= set(found)
    assert not verify_password("correct-horse-battery-1", found["pwuser1"].password_hash)


def test_password_column_gives_those_passwords_when_not_generating(app, client):
    batch_id = import_file(client, sample("with-password-column.csv"), generate=False)
    wait_for_jobs(app)  # passwords to hash: applied by a background job
    confirmation = client.get(f"/admin/people/import/{batch_id}/result").get_data(as_text=True)
    assert "2 users added" in confirmation and "0 invitation e-mails queued" in confirmation
    found = users(app)
    assert verify_password("correct-horse-battery-1", found["pwuser1"].password_hash)
    assert verify_password("Tr0ub4dor&3-long-enough", found["pwuser2"].password_hash)
    # the staged (encrypted) passwords are purged once applied, and never shown
    results = client.get(f"/admin/people/import/{batch_id}/results.csv").get_data(as_text=True)
    assert "correct-horse" not in results and "Tr0ub4dor" not in results
    with app.app_context():
        from bulkimport.models import ImportRow

        assert all(r.values is None for r in db.session.scalars(select(ImportRow)))


WITH_ERRORS = {
    3: "email is missing.",
    4: "email “not-an-email” is not a valid e-mail address",
    5: "username “dupuser” appears 2 times in the file, ignoring case (lines 5, 6).",
    6: "username “DupUser” appears 2 times in the file, ignoring case (lines 5, 6).",
    7: "email “same.mail@example.com” appears 2 times in the file, ignoring case (lines 7, 8).",
    8: "email “SAME.MAIL@example.com” appears 2 times in the file, ignoring case (lines 7, 8).",
    9: "username is missing.",
    10: "surname is missing.",
    11: "The row has 5 fields, more than the 4 columns of the heading line",
}


def test_with_errors_names_every_bad_line_and_writes_nothing_for_them(app, client):
    batch_id = batch_id_of(upload(client, sample("with-errors.csv")))
    page = review_page(client, batch_id, show="error")
    # the cards add up: duplicates are errors, counted inside the errors card
    assert counts(page) == {"add": 1, "update": 0, "nochange": 0, "error": 9}
    assert '<div class="small" data-part="duplicate">4 of them duplicated in the file</div>' in page
    for line, message in WITH_ERRORS.items():
        row = re.search(rf'<tr class="table-danger" data-line="{line}">(.*?)</tr>', page, re.S)
        assert row, f"line {line} is not shown as an error"
        assert message in row.group(1).replace("&#34;", '"')
    errors_csv = client.get(f"/admin/people/import/{batch_id}/errors.csv").get_data(as_text=True)
    assert errors_csv.splitlines()[0] == \
        '\ufeff"username","firstname","surname","email","error","line"'
    assert len(errors_csv.splitlines()) == 10
    assert ('"toomany","Too","Many","too.many@example.com","extra","The row has 5 fields'
            in errors_csv)
    assert errors_csv.splitlines()[1].endswith('"email is missing.","3"')

    choose_all(client, batch_id, "add")
    assert set(users(app)) == {"goodrow"}
    results = client.get(f"/admin/people/import/{batch_id}/results.csv").get_data(as_text=True)
    lines = results.splitlines()
    assert lines[1] == '"2","goodrow","add","added","Added; invitation queued."'
    assert lines[2].startswith('"3","noemail","error","error","email is missing.')
    assert len(lines) == 11

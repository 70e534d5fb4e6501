"""Files exported by other systems, read as the administrator means them: presets, the common
spellings, derived values, the mapping step, saved mappings and the CLI's --map; every new sample
of ../shared/samples with its documented outcome, on the web and on the command line."""

from __future__ import annotations

import html
import re

import pytest
from conftest import (
    add_user,
    batch_id_of,
    choose_all,
    map_columns,
    sample,
    table_snapshot,
    upload,
)
from sqlalchemy import select
from test_people_cli import cli  # noqa: F401  (the CLI fixture with an administrator)

from bulkimport.extensions import db
from bulkimport.importing.mapping import FULL_NAME, NOT_IMPORTED, apply_settings, propose
from bulkimport.models import ImportBatch, ImportRow, SavedMapping, User
from bulkimport.security import verify_password


def review(client, batch_id: int) -> str:
    response = client.get(f"/admin/people/import/{batch_id}")
    assert response.status_code == 200, response.location
    return html.unescape(response.get_data(as_text=True))


def counts(page: str) -> dict[str, int]:
    return {key: int(value) for key, value in re.findall(
        r'data-count="(\w+)">\s*<div class="big-number[^"]*">(\d+)</div>', page)}


def people(app) -> dict[str, User]:
    with app.app_context():
        found = {u.username: u for u in db.session.scalars(select(User).where(~User.is_admin))}
        for user in found.values():
            db.session.expunge(user)
        return found


# ---- the headings alone ----------------------------------------------------------------------

# headings → (preset named, targets, username from the address)
PRESETS = {
    "entra": (["Name [displayName] Required", "User name [userPrincipalName] Required",
               "Initial password [passwordProfile] Required",
               "Block sign in (Yes/No) [accountEnabled] Required", "First name [givenName]",
               "Last name [surname]", "Job title [jobTitle]"],
              "a Microsoft Entra bulk-create template",
              [FULL_NAME, "email", "password", "blocked", "firstname", "surname", ""], True),
    "microsoft-365": (["User Name", "First Name", "Last Name", "Display Name", "Job Title",
                       "Office Number"], "a Microsoft 365 admin centre template",
                      ["email", "firstname", "surname", "", "", ""], True),
    "google-workspace": (["First Name [Required]", "Last Name [Required]",
                          "Email Address [Required]", "Password [Required]",
                          "Password Hash Function [UPLOAD ONLY]", "Org Unit Path [Required]",
                          "Change Password at Next Sign-In"], "a Google Workspace bulk-upload file",
                         ["firstname", "surname", "email", "password", "", "",
                          "must_change_password"], True),
    "wordpress": (["user_login", "user_email", "user_pass", "first_name", "last_name",
                   "display_name", "role"], "a WordPress user export",
                  ["username", "email", "password", "firstname", "surname", "", ""], False),
    "active-directory": (["sAMAccountName", "givenName", "sn", "mail", "displayName", "title"],
                         "an Active Directory / LDAP export",
                         ["username", "firstname", "surname", "email", FULL_NAME, ""], False),
    "ldap": (["uid", "givenName", "sn", "mail", "cn"], "an LDAP export",
             ["username", "firstname", "surname", "email", FULL_NAME], False),
    "moodle": (["username", "password", "firstname", "lastname", "email", "lang", "auth"],
               "a Moodle user file",
               ["username", "password", "firstname", "surname", "email", "language", ""], False),
}


@pytest.mark.parametrize(("headings", "preset", "targets", "from_email"), PRESETS.values(),
                         ids=PRESETS.keys())
def test_presets_are_recognised_from_the_headings_alone(headings, preset, targets, from_email):
    mapping = propose(headings)
    assert (mapping.preset, mapping.targets, mapping.username_from_email) == (
        preset, targets, from_email)
    assert mapping.complete


# headings → targets under the common spellings (no preset); None: the mapping step asks
SPELLINGS = {
    "login-and-camel-case": (["Login", "FirstName", "LastName", "EMail"],
                             ["username", "firstname", "surname", "email"]),
    "user-name-and-given-name": (["User Name", "Given name", "Family name", "E-mail address"],
                                 ["username", "firstname", "surname", "email"]),
    "name-beside-surname-is-the-first-name": (["Username", "Name", "Surname", "Mail"],
                                              ["username", "firstname", "surname", "email"]),
    "name-alone-is-a-full-name": (["Username", "Name", "Email"],
                                  ["username", FULL_NAME, "email"]),
    "display-name": (["Username", "Display name", "Email"], ["username", FULL_NAME, "email"]),
    "annotations-removed": (["Username [Required]", "First name (given)", "Surname Required",
                             "Email"], ["username", "firstname", "surname", "email"]),
    "errors-file-columns-ignored": (["username", "firstname", "surname", "email", "error",
                                     "line"],
                                    ["username", "firstname", "surname", "email", "", ""]),
    "unknown-is-asked": (["username", "firstname", "surname", "email", "Office"],
                         ["username", "firstname", "surname", "email", None]),
    "sign-in-name-alone": (["userPrincipalName", "givenName", "surname"],
                           ["email", "firstname", "surname"]),
}


@pytest.mark.parametrize(("headings", "targets"), SPELLINGS.values(), ids=SPELLINGS.keys())
def test_common_spellings(headings, targets):
    mapping = propose(headings)
    assert mapping.preset is None and mapping.targets == targets


def test_a_username_column_of_addresses_is_a_sign_in_name():
    mapping = propose(["User", "First", "Last"], rows=[["a.b@example.com", "A", "B"]])
    assert mapping.targets == ["email", "firstname", "surname"]
    assert mapping.missing == ["username"]  # derived once the administrator says so
    mapping.username_from_email = True
    assert mapping.complete


# --map settings → (targets, username from the address), or the refusal
MAP_SETTINGS = {
    "field": (["Office=department"], ["username", "firstname", "surname", "email",
                                      "department"], False),
    "not-imported": (["Office="], ["username", "firstname", "surname", "email", ""], False),
    "names-split": (["names=split:Office"], ["username", "firstname", "surname", "email",
                                             FULL_NAME], False),
    "unknown-column": (["Desk=department"], "the file has no column “Desk”", None),
    "unknown-field": (["Office=desk"], "“desk” is not a field", None),
    "no-equals": (["Office"], "write HEADING=field", None),
}


@pytest.mark.parametrize(("settings", "expected", "from_email"), MAP_SETTINGS.values(),
                         ids=MAP_SETTINGS.keys())
def test_cli_map_settings(settings, expected, from_email):
    from bulkimport.importing.mapping import MappingProblem

    mapping = propose(["username", "firstname", "surname", "email", "Office"])
    known = ["username", "firstname", "surname", "email", "password", "department"]
    if isinstance(expected, str):
        with pytest.raises(MappingProblem, match=expected):
            apply_settings(mapping, settings, known)
        return
    apply_settings(mapping, settings, known)
    assert (mapping.targets, mapping.username_from_email) == (expected, from_email)


def test_username_from_the_address_is_a_setting():
    mapping = propose(["Email", "First", "Last"])
    assert mapping.missing == ["username"]
    apply_settings(mapping, ["username=email-local-part"], ["email"])
    assert mapping.complete and mapping.derived == [
        "username: the part of the e-mail address before @"]


# ---- the new samples on the web --------------------------------------------------------------

def test_microsoft_365_template(app, client):
    batch_id = batch_id_of(upload(client, sample("m365-admin-center.csv")))
    page = review(client, batch_id)
    assert "Read as a Microsoft 365 admin centre template" in page
    assert "username: the part of the e-mail address before @" in page
    assert counts(page)["add"] == 3
    assert "Office Number, Office Phone" in page  # named as not imported
    choose_all(client, batch_id, "add")
    found = people(app)
    assert set(found) == {"r.okafor", "t.becker", "s.iyer"}
    assert found["r.okafor"].email == "r.okafor@example.com"


def test_microsoft_365_office_number_kept_as_text_in_a_profile_field(app, client):
    client.post("/admin/people/fields/new", data={"name": "office_number",
                                                   "label": "Office", "type": "text"})
    batch_id = batch_id_of(upload(client, sample("m365-admin-center.csv")))
    page = review(client, batch_id)
    assert "Office Number → office_number" in page and "office_number: 0112" in page
    choose_all(client, batch_id, "add")
    from bulkimport.models import ProfileValue
    with app.app_context():
        assert "0112" in set(db.session.scalars(select(ProfileValue.value)))


def test_entra_bulk_create_template(app, client):
    batch_id = batch_id_of(upload(client, sample("entra-bulk-create.csv"), generate=False))
    page = review(client, batch_id)
    assert "Read as a Microsoft Entra bulk-create template (its <code>version:</code> first " \
           "line skipped)" in page
    assert counts(page)["add"] == 3 and counts(page)["error"] == 0
    assert 'data-line="3"' in page  # line numbers are the file's: the headings are on line 2
    choose_all(client, batch_id, "add")
    from conftest import wait_for_jobs
    wait_for_jobs(app)
    found = people(app)
    assert set(found) == {"marta.kowalczyk", "jonas.lindqvist", "aiko.tanaka"}
    assert found["marta.kowalczyk"].firstname == "Marta"
    assert verify_password("Tulip-Harbour-Lantern-7", found["marta.kowalczyk"].password_hash)


def test_google_workspace_file(app, client):
    batch_id = batch_id_of(upload(client, sample("google-workspace.csv"), generate=True))
    page = review(client, batch_id)
    assert "Read as a Google Workspace bulk-upload file" in page
    assert "The column “Password [Required]” is empty in every row, so it was ignored." in page
    assert counts(page)["add"] == 2
    choose_all(client, batch_id, "add")
    found = people(app)
    assert found["hannah.schmidt"].must_change_password is True
    assert found["pedro.alves"].must_change_password is False


def test_wordpress_export(app, client):
    batch_id = batch_id_of(upload(client, sample("wordpress-users.csv")))
    page = review(client, batch_id)
    assert "Read as a WordPress user export" in page and counts(page)["add"] == 2
    assert re.search(r'id="unknown-columns">\s*Not imported: <strong>display_name, role</strong>',
                     page)


def test_active_directory_export(app, client):
    batch_id = batch_id_of(upload(client, sample("active-directory.csv")))
    page = review(client, batch_id)
    assert "Read as an Active Directory / LDAP export" in page and counts(page)["add"] == 2
    choose_all(client, batch_id, "add")
    assert people(app)["lmoreau"].firstname == "Léa"


def test_short_trailing_rows(app, client):
    batch_id = batch_id_of(upload(client, sample("short-trailing-rows.csv")))
    map_columns(client, batch_id, ["username", "firstname", "surname", "email", "", ""])
    page = review(client, batch_id)
    assert counts(page)["add"] == 3
    assert "2 rows left out their empty trailing cells; the missing cells were read as empty." \
        in page


@pytest.mark.parametrize(("name", "words"), [
    ("excel-semicolon-cp1250.csv", ["Wiśniewska", "Łukasz", "Zieliński", "Małgorzata",
                                    "Dąbrowska"]),
    ("excel-semicolon-cp1252.csv", ["è", "ü", "ß"]),
])
def test_both_excel_encodings_read_right_by_default(app, client, name, words):
    batch_id = batch_id_of(upload(client, sample(name)))
    page = review(client, batch_id)
    assert counts(page)["add"] == 3
    for word in words:
        assert word in page
    assert "Wiœniewska" not in page


def test_the_other_reading_is_one_click_away(app, client):
    batch_id = batch_id_of(upload(client, sample("excel-semicolon-cp1252.csv")))
    page = review(client, batch_id)
    other = re.search(r'id="other-reading">(.*?)</dd>', page, re.S).group(1)
    assert "could also be Windows-1250" in other and "Lefèvre" in other and "Lefčvre" in other
    client.post(f"/admin/people/import/{batch_id}/options",
                data={"change": "encoding", "encoding": "cp1250"})
    page = review(client, batch_id)
    assert "Windows-1250" in re.search(r'data-detected="encoding">(.*?)<', page).group(1)
    assert "Lefčvre" in page and "could also be Windows-1252" in page
    # an encoding that was not offered is refused
    response = client.post(f"/admin/people/import/{batch_id}/options",
                           data={"change": "encoding", "encoding": "utf-16"})
    assert response.status_code == 400


# ---- the mapping step ------------------------------------------------------------------------

FILE = (b"Login,Full name,Mail,Office\n"
        b"ann,Ann Lee,ann@example.com,B1\n"
        b"bob,Bob van Dam,bob@example.com,B2\n")


def test_mapping_step_shows_examples_and_applies_without_a_new_upload(app, client):
    response = upload(client, FILE)
    batch_id = batch_id_of(response)
    assert response.location.endswith("/columns")
    page = html.unescape(client.get(response.location).get_data(as_text=True))
    assert re.search(r'data-heading="Office" class="table-warning"', page)
    assert "Ann Lee" in page and "Bob van Dam" in page  # examples
    response = map_columns(client, batch_id, ["username", FULL_NAME, "email", "__new__"])
    assert response.location.endswith(f"/import/{batch_id}")
    page = review(client, batch_id)
    assert "first name and surname: from “Full name”" in page
    assert "office: B1" in page and counts(page)["add"] == 2
    choose_all(client, batch_id, "add")
    bob = people(app)["bob"]
    assert (bob.firstname, bob.surname) == ("Bob", "van Dam")


def test_a_confirmed_mapping_is_remembered_and_can_be_renamed_and_deleted(app, client):
    first = batch_id_of(upload(client, FILE))
    map_columns(client, first, ["username", FULL_NAME, "email", ""])
    response = upload(client, FILE)
    second = batch_id_of(response)
    assert response.location.endswith(f"/import/{second}")  # no question the second time
    assert "Read with your saved mapping “Columns of users”" in review(client, second)
    with app.app_context():
        saved = db.session.scalar(select(SavedMapping))
    listing = client.get("/admin/people/mappings").get_data(as_text=True)
    assert "Columns of users" in listing and "Office → not imported" in html.unescape(listing)
    client.post(f"/admin/people/mappings/{saved.id}", data={"name": "HR export",
                                                            "submit": "Rename"})
    assert "Read with your saved mapping “HR export”" in review(
        client, batch_id_of(upload(client, FILE)))
    assert client.post(f"/admin/people/mappings/{saved.id}",
                       data={"name": " ", "submit": "Rename"}).status_code == 422
    client.post(f"/admin/people/mappings/{saved.id}", data={"delete": "1"})
    assert upload(client, FILE).location.endswith("/columns")  # asked again


@pytest.mark.parametrize(("targets", "message"), [
    (["username", FULL_NAME, "email", "email"], "Two columns become the same field"),
    (["username", "", "email", ""], "No column provides firstname, surname"),
])
def test_a_mapping_that_cannot_be_used_is_refused_and_writes_nothing(app, client, targets,
                                                                    message):
    batch_id = batch_id_of(upload(client, FILE))
    response = map_columns(client, batch_id, targets)
    assert response.status_code == 422
    assert message in html.unescape(response.get_data(as_text=True))
    with app.app_context():
        assert db.session.scalar(select(db.func.count(ImportRow.id))) == 0
        assert db.session.scalar(select(db.func.count(SavedMapping.id))) == 0


def test_a_derived_username_that_collides_is_an_error_on_its_row(app, client):
    add_user(app, "ann", "someone@example.com")
    data = b"Email,First,Last\nann@example.com,Ann,Lee\nann@example.org,Ann,Other\n"
    batch_id = batch_id_of(upload(client, data))
    map_columns(client, batch_id, ["email", "firstname", "surname"], username_from_email=True)
    page = review(client, batch_id)
    assert "username “ann” appears 2 times in the file" in page
    assert "Derived: username" in page


def test_the_mapping_step_belongs_to_its_owner(app, client):
    from conftest import login_admin

    batch_id = batch_id_of(upload(client, FILE))
    other = login_admin(app, "other")
    assert other.get(f"/admin/people/import/{batch_id}/columns").status_code == 404
    assert other.post(f"/admin/people/import/{batch_id}/options",
                      data={"change": "generate_passwords"}).status_code == 404


# ---- passwords in the file -------------------------------------------------------------------

WITH_PASSWORDS = (b"username,firstname,surname,email,password\n"
                  b"jsmith,John,Smith,jsmith@example.com,correct-horse-battery-1\n"
                  b"ann,Ann,Lee,ann@example.com,correct-horse-battery-2\n")


def test_a_files_passwords_are_for_new_users_unless_asked(app, client):
    add_user(app, "jsmith", "jsmith@example.com", firstname="John", surname="Smith",
             password="the-old-password-1")
    batch_id = batch_id_of(upload(client, WITH_PASSWORDS, generate=False))
    page = review(client, batch_id)
    assert counts(page) == {"add": 1, "update": 0, "nochange": 1, "error": 0}
    assert "1 row of existing users has a password in the file" in page
    client.post(f"/admin/people/import/{batch_id}/options", data={"change": "update_passwords"})
    page = review(client, batch_id)
    assert counts(page)["update"] == 1 and "password: " in page


def test_the_kept_file_is_encrypted_and_goes_with_the_batch(app, client):
    from bulkimport.models import UploadFile

    batch_id = batch_id_of(upload(client, WITH_PASSWORDS, generate=False))
    with app.app_context():
        sealed = db.session.get(UploadFile, batch_id).sealed
    assert b"correct-horse" not in sealed and b"jsmith" not in sealed
    choose_all(client, batch_id, "add")
    from conftest import wait_for_jobs
    wait_for_jobs(app)
    with app.app_context():
        assert db.session.get(ImportBatch, batch_id).status == ImportBatch.APPLIED
        assert db.session.scalar(select(db.func.count()).select_from(UploadFile)) == 0
    # a submitted batch cannot be read again
    response = client.post(f"/admin/people/import/{batch_id}/options",
                           data={"change": "generate_passwords"})
    assert response.status_code == 409


def test_missing_passwords_offer_to_generate_them(app, client):
    data = b"username,firstname,surname,email\nann,Ann,Lee,ann@example.com\n"
    batch_id = batch_id_of(upload(client, data, generate=False))
    page = review(client, batch_id)
    assert counts(page)["error"] == 1 and 'id="offer-generate"' in page
    client.post(f"/admin/people/import/{batch_id}/options", data={"change": "generate_passwords"})
    page = review(client, batch_id)
    assert counts(page)["add"] == 1 and 'id="offer-generate"' not in page
    with app.app_context():
        assert db.session.get(ImportBatch, batch_id).generate_passwords


def test_rows_with_errors_upload_again_as_they_are(app, client):
    data = b"username,firstname,surname,email\nann,Ann,Lee,not-an-address\n"
    first = batch_id_of(upload(client, data))
    errors = client.get(f"/admin/people/import/{first}/errors.csv").get_data()
    response = upload(client, errors)
    second = batch_id_of(response)
    assert response.location.endswith(f"/import/{second}")  # error and line: not asked about
    page = review(client, second)
    assert "error → not imported" in page and "line → not imported" in page
    assert counts(page)["error"] == 1


def test_an_xlsx_workbook_is_read_like_a_csv_file(app, client):
    openpyxl = pytest.importorskip("openpyxl")
    import io

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Staff"
    sheet.append(["username", "firstname", "surname", "email", "badge"])
    sheet.append(["ann", "Ann", "Lee", "ann@example.com", "007"])
    other = book.create_sheet("Leavers")
    other.append(["username", "firstname", "surname", "email"])
    other.append(["bob", "Bob", "Ray", "bob@example.com"])
    buffer = io.BytesIO()
    book.save(buffer)
    client.post("/admin/people/fields/new", data={"name": "badge", "label": "Badge",
                                                   "type": "text"})
    batch_id = batch_id_of(upload(client, buffer.getvalue(), "staff.xlsx"))
    page = review(client, batch_id)
    assert "Excel workbook" in page and "badge: 007" in page and counts(page)["add"] == 1
    client.post(f"/admin/people/import/{batch_id}/options",
                data={"change": "sheet", "sheet": "Leavers"})
    page = review(client, batch_id)
    assert 'data-line="2"' in page and "bob@example.com" in page and "ann@example.com" not in page


# ---- the command line ------------------------------------------------------------------------

CLI_SAMPLES = {
    "m365-admin-center.csv": (["--generate-passwords"],
                              "3 rows: 3 to add, 0 to update, 0 unchanged, 0 in error.",
                              "Read as a Microsoft 365 admin centre template."),
    "entra-bulk-create.csv": ([], "3 rows: 3 to add, 0 to update, 0 unchanged, 0 in error.",
                              "Read as a Microsoft Entra bulk-create template."),
    "google-workspace.csv": (["--generate-passwords"],
                             "2 rows: 2 to add, 0 to update, 0 unchanged, 0 in error.",
                             "Note: the column “Password [Required]” is empty in every row"),
    "wordpress-users.csv": (["--generate-passwords"],
                            "2 rows: 2 to add, 0 to update, 0 unchanged, 0 in error.",
                            "Not imported: display_name, role"),
    "active-directory.csv": (["--generate-passwords"],
                             "2 rows: 2 to add, 0 to update, 0 unchanged, 0 in error.",
                             "Read as an Active Directory / LDAP export."),
    "short-trailing-rows.csv": (["--generate-passwords"],
                                "3 rows: 3 to add, 0 to update, 0 unchanged, 0 in error.",
                                "Note: 2 rows left out their empty trailing cells"),
    "excel-semicolon-cp1250.csv": (["--generate-passwords"],
                                   "3 rows: 3 to add, 0 to update, 0 unchanged, 0 in error.",
                                   "Detected: Windows-1250, delimiter semicolon (;)."),
}


@pytest.mark.parametrize(("name", "options", "summary", "said"),
                         [(k, *v) for k, v in CLI_SAMPLES.items()], ids=CLI_SAMPLES.keys())
def test_cli_dry_run_of_every_new_sample(cli, name, options, summary, said):  # noqa: F811
    path = cli.write(name, sample(name))
    result = cli("people", "import", "--dry-run", *options, path)
    assert result.exit_code == 0, result.stderr
    assert f"{name}: {summary}" in result.stdout
    assert said in result.stdout


def test_cli_map_and_its_messages(cli, app):  # noqa: F811
    data = b"Email,First name,Last name,Desk\nann@example.com,Ann,Lee,B1\n"
    path = cli.write("hr.csv", data)
    result = cli("people", "import", "--dry-run", "--generate-passwords", path)
    assert result.exit_code == 1
    assert "required column missing: username" in result.stderr
    assert '--map "HEADING=field"' in result.stderr
    result = cli("people", "import", "--generate-passwords", "--map", "username=email-local-part",
                 "--map", "Desk=", path)
    assert result.exit_code == 0, result.stderr
    assert "1 added" in result.stdout
    with app.app_context():
        assert db.session.scalar(select(User.username).where(User.email == "ann@example.com")) \
            == "ann"


def test_cli_names_its_own_flags(cli):  # noqa: F811
    path = cli.write("pw.csv", WITH_PASSWORDS)
    result = cli("people", "import", "--dry-run", "--generate-passwords", path)
    assert result.exit_code == 1
    assert '--map "password="' in result.stderr and "Generate random" not in result.stderr
    result = cli("people", "import", "--dry-run", "--generate-passwords", "--map", "password=",
                 path)
    assert result.exit_code == 0, result.stderr
    plain = cli.write("plain.csv", b"username,firstname,surname,email\nann,Ann,Lee,a@example.com\n")
    result = cli("people", "import", "--dry-run", plain)
    assert "or use --generate-passwords" in result.stderr


def test_nothing_is_written_by_a_mapping_step_left_half_way(app, client):
    before = table_snapshot(app)
    batch_id_of(upload(client, FILE))
    assert table_snapshot(app) == before
    assert NOT_IMPORTED == ""

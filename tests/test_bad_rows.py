"""Bad rows and bad files through the real web views: every bad row is shown as an error with
its reason and never written; every bad file is refused (422) with its reason, writing nothing."""

from __future__ import annotations

import gzip
import html
import json
import re
from dataclasses import dataclass, field

import pytest
from conftest import (
    add_user,
    batch_id_of,
    choose_all,
    login_admin,
    map_columns,
    table_snapshot,
    upload,
    wait_for_jobs,
)
from sqlalchemy import select

from bulkimport.extensions import db
from bulkimport.models import ImportBatch, ImportRow, User

HEADING = "username,firstname,surname,email"
GOOD = "good,Good,Row,good@example.com"
PASSWORD = "correct-horse-battery-1"
GENERATE = "Generate random passwords and send login credentials via email"
JOHN_SMITH = {"firstname": "John", "surname": "Smith"}  # the names of the rows below


@dataclass
class Case:
    """A small CSV: a good row on line 2, the bad row on `line` (3 unless said)."""

    rows: list[str]
    message: str
    line: int = 3
    heading: str = HEADING
    generate: bool = True
    existing: list[tuple[str, str]] = field(default_factory=list)  # (username, email)
    added: set[str] = field(default_factory=lambda: {"good"})
    others: dict[int, str] = field(default_factory=dict)  # more lines in error → message

    def data(self) -> bytes:
        return ("\n".join([self.heading, *self.rows]) + "\n").encode("utf-8")


def with_password(*rows: str, heading: str = HEADING + ",password", **kw) -> Case:
    """A case with a password column and generate unticked; the good row has a good password."""
    message = kw.pop("message")
    return Case([f"{GOOD},{PASSWORD}", *rows], message, heading=heading, generate=False, **kw)


STANDARD = {"username", "firstname", "surname", "email", "password", "language"}
MAY_ONLY = ("username may only contain letters, digits and . _ - @, and must start with a letter "
            "or digit")
RESERVED = ("is not a valid e-mail address: The part after the @-sign is a special-use or reserved "
            "name that cannot be used with email. An intranet domain can be allowed with "
            "BULKIMPORT_ALLOWED_EMAIL_DOMAINS.")
ONE_ADDRESS = "must hold exactly one address, without spaces or lists."
BARE = ("must be a bare address such as name@example.com, without a display name, quotes or "
        "angle brackets.")
MUST_CHANGE = "Change password next time"

BAD_ROWS = {
    # required values
    "missing-username": Case([GOOD, ",Ann,Lee,ann@example.com"], "username is missing."),
    "missing-firstname": Case([GOOD, "ann,,Lee,ann@example.com"], "firstname is missing."),
    "missing-surname": Case([GOOD, "ann,Ann,,ann@example.com"], "surname is missing."),
    "missing-email": Case([GOOD, "ann,Ann,Lee,"], "email is missing."),
    "only-spaces-is-missing": Case([GOOD, "ann,   ,Lee,ann@example.com"], "firstname is missing."),
    "all-names-missing": Case([GOOD, "ann,,,ann@example.com"], "firstname is missing.",
                              others={3: "surname is missing."}),
    # e-mail syntax
    "email-without-at": Case([GOOD, "ann,Ann,Lee,ann.example.com"],
                             "email “ann.example.com” is not a valid e-mail address: An email "
                             "address must have an @-sign."),
    "email-two-ats": Case([GOOD, "ann,Ann,Lee,ann@@example.com"],
                          "email “ann@@example.com” is not a valid e-mail address"),
    "email-no-dot-in-domain": Case([GOOD, "ann,Ann,Lee,ann@localhost"],
                                   "email “ann@localhost” is not a valid e-mail address"),
    "email-display-name": Case([GOOD, "ann,Ann,Lee,Ann Lee <ann@example.com>"],
                               "email “Ann Lee <ann@example.com>” " + BARE),
    "email-angle-brackets": Case([GOOD, "ann,Ann,Lee,<ann@example.com>"],
                                 "email “<ann@example.com>” " + BARE),
    "email-quoted-display-name": Case([GOOD, 'ann,Ann,Lee,"""Ann"" <ann@example.com>"'],
                                      'email “"Ann" <ann@example.com>” ' + BARE),
    "email-list-comma": Case([GOOD, 'ann,Ann,Lee,"ann@example.com, bob@example.com"'],
                             "email “ann@example.com, bob@example.com” " + ONE_ADDRESS),
    "email-list-semicolon": Case([GOOD, "ann,Ann,Lee,ann@example.com;bob@example.com"],
                                 "email “ann@example.com;bob@example.com” " + ONE_ADDRESS),
    "email-with-crlf-header": Case(
        [GOOD, 'ann,Ann,Lee,"ann@example.com\r\nBcc: eve@example.com"'],
        "email contains a line break (lines 3–4); perhaps a quote is not closed.",
        others={3: ONE_ADDRESS}),
    "email-with-lf": Case([GOOD, 'ann,Ann,Lee,"ann@example.com\nx"'],
                          "email contains a line break (lines 3–4)"),
    "email-intranet-domain": Case([GOOD, "ann,Ann,Lee,ann@corp.local"],
                                  "email “ann@corp.local” " + RESERVED),
    "email-test-domain": Case([GOOD, "ann,Ann,Lee,ann@example.test"],
                              "email “ann@example.test” " + RESERVED),
    "email-non-ascii-local-part": Case(
        [GOOD, "jose,José,Núñez,josé@example.com"],
        "email “josé@example.com” has characters other than plain ASCII letters, digits and "
        "punctuation before the @ (é); many mail servers cannot deliver to such an address, so "
        "it cannot be imported. (Accented letters after the @ are fine.)"),
    # uniqueness inside the file
    "duplicate-username-ignoring-case": Case(
        [GOOD, "ann,Ann,Lee,ann@example.com", "ANN,Ann,Other,other@example.com"],
        "username “ann” appears 2 times in the file, ignoring case (lines 3, 4).",
        others={4: "username “ANN” appears 2 times in the file, ignoring case (lines 3, 4)."}),
    "duplicate-username-fullwidth": Case(
        [GOOD, "ｊｄｏｅ,Jane,Doe,jane@example.com", "jdoe,John,Doe,john@example.com"],
        "username “jdoe” appears 2 times in the file, ignoring case (lines 3, 4).",
        others={4: "username “jdoe” appears 2 times"}),
    "duplicate-email-ignoring-case": Case(
        [GOOD, "ann,Ann,Lee,Ann.Lee@Example.com", "bob,Bob,Lee,ann.lee@example.COM"],
        "email “Ann.Lee@example.com” appears 2 times in the file, ignoring case (lines 3, 4).",
        others={4: "email “ann.lee@example.com” appears 2 times in the file"}),
    "duplicate-of-the-good-row": Case(
        [GOOD, "GOOD,Other,Row,other@example.com"],
        "username “GOOD” appears 2 times in the file, ignoring case (lines 2, 3).",
        others={2: "username “good” appears 2 times"}, added=set()),
    # uniqueness against existing users
    "email-of-another-existing-user": Case(
        [GOOD, "ann,Ann,Lee,Taken@Example.com"],
        "email “Taken@example.com” already belongs to the user “olduser”.",
        existing=[("olduser", "taken@example.com")]),
    "existing-user-takes-anothers-email": Case(
        [GOOD, "jsmith,John,Smith,taken@example.com"],
        "email “taken@example.com” already belongs to the user “olduser”.",
        existing=[("olduser", "taken@example.com"), ("jsmith", "jsmith@example.com")]),
    # usernames
    "username-with-space": Case([GOOD, "ann lee,Ann,Lee,ann@example.com"],
                                MAY_ONLY + " (found space)."),
    "username-leading-dot": Case([GOOD, ".ann,Ann,Lee,ann@example.com"],
                                 MAY_ONLY + " (found a leading symbol)."),
    "username-leading-underscore": Case([GOOD, "_ann,Ann,Lee,ann@example.com"],
                                        MAY_ONLY + " (found a leading symbol)."),
    "username-slash-and-quote": Case([GOOD, "ann/o'lee,Ann,Lee,ann@example.com"],
                                     MAY_ONLY + " (found “'”, “/”)."),
    "username-angle-bracket": Case([GOOD, "<ann>,Ann,Lee,ann@example.com"],
                                   MAY_ONLY + " (found “<”, “>”)."),
    "username-emoji": Case([GOOD, "ann😀,Ann,Lee,ann@example.com"], MAY_ONLY + " (found “😀”)."),
    "username-zero-width-space": Case([GOOD, "an\u200bn,Ann,Lee,ann@example.com"],
                                      MAY_ONLY + " (found “\u200b”)."),
    "username-too-long": Case([GOOD, "a" * 101 + ",Ann,Lee,ann@example.com"],
                              "username is longer than 100 characters."),
    "username-too-long-once-lower-cased": Case(
        [GOOD, "ß" * 60 + ",Ann,Lee,ann@example.com"],
        "username is longer than 100 characters once case is ignored"),
    "username-mixed-latin-cyrillic": Case(
        [GOOD, "jsm\u0456th,John,Smith,john@example.com"],
        "username mixes Cyrillic and Latin letters, which can imitate another name."),
    "username-mixed-latin-greek": Case([GOOD, "j\u03bfhn,John,Smith,john@example.com"],
                                       "username mixes Greek and Latin letters"),
    "username-cyrillic-lookalike-of-existing": Case(
        [GOOD, "\u0458\u0455\u043c\u0456\u0442\u04bb,John,Smith,john@example.com"],
        "username “јѕмітһ” looks like the username “jsmith” (letters of another script).",
        existing=[("jsmith", "jsmith@example.com")]),
    "username-cyrillic-lookalike-of-existing-capitals": Case(
        [GOOD, "\u0408\u0405\u041c\u0406\u0422\u04ba,John,Smith,john@example.com"],
        "looks like the username “JSmith” (letters of another script).",
        existing=[("JSmith", "jsmith@example.com")]),
    "username-cyrillic-lookalike-in-file": Case(
        [GOOD, "\u0430nn,Ann,Lee,ann@example.com", "ann,Ann,Lee,ann2@example.com"],
        "username “аnn” looks like the username “ann” (letters of another script).",
        added={"good", "ann"}),
    # other values
    "change-password-maybe": Case([GOOD + ",yes", "ann,Ann,Lee,ann@example.com,maybe"],
                                  "Change password next time is “maybe”; use 1 or 0 (yes/no, "
                                  "true/false, y/n also work), or leave it empty.",
                                  heading=HEADING + "," + MUST_CHANGE),
    "change-password-2": Case([GOOD + ",1", "ann,Ann,Lee,ann@example.com,2"],
                              "Change password next time is “2”", heading=HEADING + ",Change "
                              "Password Next Time"),
    "change-password-oui": Case([GOOD + ",n", "ann,Ann,Lee,ann@example.com,oui"],
                                "Change password next time is “oui”",
                                heading=HEADING + ",must_change_password"),
    "language-not-a-code": Case([GOOD + ",en", "ann,Ann,Lee,ann@example.com,English"],
                                "language “English” is not a language code such as en, fr or "
                                "pt_BR.", heading=HEADING + ",language"),
    "language-not-of-the-site": Case([GOOD + ",en", "ann,Ann,Lee,ann@example.com,de"],
                                     "language “de” is not a language of this site (it has en); "
                                     "add it under Admin > System > Localisation first.",
                                     heading=HEADING + ",language"),
    "firstname-too-long": Case([GOOD, "ann," + "A" * 101 + ",Lee,ann@example.com"],
                               "firstname is longer than 100 characters."),
    "surname-too-long": Case([GOOD, "ann,Ann," + "L" * 101 + ",ann@example.com"],
                             "surname is longer than 100 characters."),
    # shape of the row
    "more-fields-than-headings": Case([GOOD, "ann,Ann,Lee,ann@example.com,extra"],
                                      "The row has 5 fields, more than the 4 columns of the "
                                      "heading line (a stray delimiter or a missing quote?)."),
    "unquoted-comma-in-a-name": Case([GOOD, "ann,Lee, Ann,Lee,ann@example.com"],
                                     "The row has 5 fields, more than the 4 columns"),
    # a short row is read with empty trailing cells: here the address lands under surname
    "fewer-fields-than-headings": Case([GOOD, "ann,Ann,ann@example.com"], "email is missing."),
    "single-field": Case([GOOD, "ann"], "firstname is missing. surname is missing. email is "
                                        "missing."),
    # … except where a password could be the cell out of place
    "fewer-fields-in-a-file-with-passwords": with_password(
        "ann,Ann,ann@example.com,long-enough-pass-1",
        message="The row has 4 fields, fewer than the 5 columns of the heading line"),
    "quote-swallows-next-row-into-firstname": Case(
        [GOOD, 'ann,"Ann,Lee,ann@example.com', 'bob,Bob",Kay,bob@example.com'],
        "firstname contains a line break (lines 3–4); perhaps a quote is not closed."),
    "quote-swallows-next-row-into-unknown-column": Case(
        [GOOD + ",Sales", 'ann,Ann,Lee,ann@example.com,"Sales', 'bob,Bob,Kay,bob@example.com,Ops"'],
        "column “department” contains a line break (lines 3–4); perhaps a quote is not closed.",
        heading=HEADING + ",department"),
    # passwords from the file (generate unticked)
    "password-missing": with_password(
        "ann,Ann,Lee,ann@example.com,",
        message="password is missing: a new user needs one, or tick “" + GENERATE + "”."),
    "password-too-short": with_password("ann,Ann,Lee,ann@example.com,short-pass1",
                                        message="The password must be at least 12 characters "
                                                "long (it has 11)."),
    "password-too-long-in-bytes": with_password(
        "ann,Ann,Lee,ann@example.com," + "é" * 37,
        message="The password must be at most 72 bytes long (fewer characters if it uses accents "
                "or other scripts)."),
    "password-73-ascii-characters": with_password("ann,Ann,Lee,ann@example.com," + "x" * 73,
                                                  message="must be at most 64 characters long "
                                                          "(it has 73)"),
    "password-contains-username": with_password(
        "annabelle,Ann,Lee,ann@example.com,my-ANNABELLE-secret",
        message="The password must not contain the username."),
    "password-column-missing": Case(
        [GOOD, "ann,Ann,Lee,ann@example.com"],
        "password is missing: a new user needs one", generate=False, added=set(),
        others={2: "password is missing"}),
    "password-of-a-new-user-too-short-and-more": with_password(
        "ann,Ann,,not-an-email,short",
        message="surname is missing. email “not-an-email” is not a valid e-mail address: An "
                "email address must have an @-sign. The password must be at least 12 "
                "characters long (it has 5)."),
}


def review_rows(client, batch_id: int) -> dict[int, tuple[str, str, str]]:
    """Line → (class, proposed action, unescaped text of the Details cell) on the review page."""
    response = client.get(f"/admin/people/import/{batch_id}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    found = {}
    for css, line, body in re.findall(r'<tr class="([^"]*)" data-line="(\d+)">(.*?)</tr>', page,
                                      re.S):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", body, re.S)
        # The last two cells are the proposed action and the details, wherever the choice
        # columns stand.
        details = html.unescape(re.sub(r"<[^>]+>", " ", cells[-1]))
        found[int(line)] = (css, cells[-2].strip(), " ".join(details.split()))
    return found


def usernames(app) -> set[str]:
    with app.app_context():
        return set(db.session.scalars(select(User.username).where(~User.is_admin)))


@pytest.mark.parametrize("case", BAD_ROWS.values(), ids=BAD_ROWS.keys())
def test_bad_row_is_an_error_and_is_never_written(app, client, case):
    for username, email in case.existing:
        add_user(app, username, email, **JOHN_SMITH)
    before = table_snapshot(app)

    response = upload(client, case.data(), generate=case.generate)
    batch_id = batch_id_of(response)
    if response.location.endswith("/columns"):  # a column nobody recognised: leave it out
        headings = case.heading.split(",")
        map_columns(client, batch_id, [h if h in STANDARD else "" for h in headings])
    rows = review_rows(client, batch_id)
    css, proposed, details = rows[case.line]
    assert (css, proposed) == ("table-danger", "Error"), rows[case.line]
    assert case.message in details, details
    for line, message in case.others.items():
        assert rows[line][:2] == ("table-danger", "Error")
        assert message in rows[line][2], rows[line][2]
    in_error = {line for line, (css, _, _) in rows.items() if css}
    assert in_error == {case.line, *case.others}

    response = choose_all(client, batch_id, "add")
    assert response.status_code == 302
    wait_for_jobs(app)
    assert usernames(app) == {name for name, _ in case.existing} | case.added
    after = table_snapshot(app)
    assert after["users"][:len(before["users"])] == before["users"]  # existing users untouched
    with app.app_context():
        staged = db.session.scalars(select(ImportRow).where(ImportRow.batch_id == batch_id)).all()
        assert {r.line: r.outcome for r in staged}[case.line] in (None, "error")
        assert all(PASSWORD not in json.dumps(r.values or {}) for r in staged)


def test_passwords_of_rows_in_error_are_not_staged_in_clear(app, client):
    data = (f"{HEADING},password\nann,Ann,Lee,not-an-email,{PASSWORD}\n"
            f"bob,Bob,Kay,bob@example.com,{PASSWORD}x\n").encode()
    batch_id = batch_id_of(upload(client, data, generate=False))
    with app.app_context():
        staged = db.session.scalars(select(ImportRow).where(ImportRow.batch_id == batch_id)
                                    .order_by(ImportRow.line)).all()
        assert [r.proposed for r in staged] == ["error", "add"]
        assert staged[0].values is not None and "password" not in staged[0].values
        assert PASSWORD not in json.dumps(staged[1].values)  # sealed, not in clear
    assert PASSWORD not in client.get(f"/admin/people/import/{batch_id}").get_data(as_text=True)


def test_values_are_trimmed_and_usernames_nfkc_normalised(app, client):
    data = ("username,firstname,surname,email,Change password next time\n"
            "  ann  ,  Ann  , Lee ,  Ann@Example.com ,  yes \n"
            "ｊｓｍｉｔｈ,John,Smith,john@example.com,\n").encode()
    batch_id = batch_id_of(upload(client, data))
    rows = review_rows(client, batch_id)
    assert [rows[line][1] for line in (2, 3)] == ["Add", "Add"]
    choose_all(client, batch_id, "add")
    with app.app_context():
        found = {u.username: u for u in db.session.scalars(select(User).where(~User.is_admin))}
        assert set(found) == {"ann", "jsmith"}
        ann = found["ann"]
        assert (ann.firstname, ann.surname, ann.email, ann.must_change_password) == (
            "Ann", "Lee", "Ann@example.com", True)
        assert found["jsmith"].username_key == "jsmith"


@pytest.mark.parametrize("heading", ["Change password next time", "change_password_next_time",
                                     "Must change password"])
def test_change_password_next_time_accepts_yes_no_words(app, client, heading):
    words = {"1": True, "0": False, "yes": True, "no": False, "true": True, "false": False,
             "y": True, "n": False, "YES": True, "False": False, "": False, " Y ": True}
    lines = [f"{HEADING},{heading}"] + [
        f"user{i},U,Ser,user{i}@example.com,{word}" for i, word in enumerate(words)]
    batch_id = batch_id_of(upload(client, ("\n".join(lines) + "\n").encode()))
    assert {proposed for _, proposed, _ in review_rows(client, batch_id).values()} == {"Add"}
    choose_all(client, batch_id, "add")
    with app.app_context():
        flags = dict(db.session.execute(select(User.username, User.must_change_password)
                                        .where(~User.is_admin)).all())
    assert flags == {f"user{i}": flag for i, flag in enumerate(words.values())}


# ---- rows matching existing users ------------------------------------------------------------

def test_existing_username_with_another_email_is_an_update_listing_the_change(app, client):
    user_id = add_user(app, "jsmith", "old@example.com", **JOHN_SMITH)
    data = f"{HEADING}\n{GOOD}\nJSmith,John,Smith,new@example.com\n".encode()  # case ignored
    batch_id = batch_id_of(upload(client, data))
    rows = review_rows(client, batch_id)
    assert rows[2][:2] == ("", "Add")
    assert rows[3][:2] == ("", "Update")
    assert "email: old@example.com → new@example.com" in rows[3][2]
    assert "firstname" not in rows[3][2] and "surname" not in rows[3][2]
    choose_all(client, batch_id, "add", "update")
    with app.app_context():
        user = db.session.get(User, user_id)
        assert (user.email, user.email_key, user.firstname) == (
            "new@example.com", "new@example.com", "John")
        assert db.session.scalar(select(db.func.count(User.id)).where(~User.is_admin)) == 2


def test_identical_existing_row_is_no_change(app, client):
    add_user(app, "jsmith", "jsmith@example.com", language="en", **JOHN_SMITH)
    before = table_snapshot(app)
    data = (f"{HEADING},language\n jsmith ,John,Smith,jsmith@EXAMPLE.com,en\n"
            f"jsmith2,John,Smith,jsmith2@example.com,\n").encode()
    batch_id = batch_id_of(upload(client, data))
    rows = review_rows(client, batch_id)
    assert rows[2] == ("", "No change", "")
    assert rows[3][1] == "Add"
    choose_all(client, batch_id, "update")  # nothing to update: refused, nothing written
    assert table_snapshot(app) == before


def test_existing_user_with_empty_cells_keeps_stored_values(app, client):
    add_user(app, "jsmith", "jsmith@example.com", language="fr", must_change_password=True,
             **JOHN_SMITH)
    data = (f"{HEADING},language,Change password next time\n"
            "jsmith,John,Smith,jsmith@example.com,,\n").encode()
    batch_id = batch_id_of(upload(client, data))
    assert review_rows(client, batch_id)[2] == ("", "No change", "")


# ---- allowed intranet domains ----------------------------------------------------------------

def test_allowed_email_domains_let_an_intranet_domain_through(app_factory):
    app = app_factory(ALLOWED_EMAIL_DOMAINS=["corp.local"])
    client = login_admin(app)
    data = (f"{HEADING}\nann,Ann,Lee,Ann.Lee@Corp.Local\nbob,Bob,Kay,bob@mail.corp.local\n"
            "eve,Eve,Ray,eve@other.local\nzed,Zed,Ray,zed@evilcorp.local\n").encode()
    batch_id = batch_id_of(upload(client, data))
    rows = review_rows(client, batch_id)
    assert [rows[line][1] for line in (2, 3, 4, 5)] == ["Add", "Add", "Error", "Error"]
    assert "email “eve@other.local” " + RESERVED in rows[4][2]
    assert "email “zed@evilcorp.local” " + RESERVED in rows[5][2]
    choose_all(client, batch_id, "add")
    with app.app_context():
        emails = dict(db.session.execute(select(User.username, User.email)
                                         .where(~User.is_admin)).all())
    assert emails == {"ann": "Ann.Lee@corp.local", "bob": "bob@mail.corp.local"}


def test_intranet_domain_is_refused_when_not_allowed(app, client):
    data = f"{HEADING}\nann,Ann,Lee,ann@corp.local\n".encode()
    batch_id = batch_id_of(upload(client, data))
    assert "email “ann@corp.local” " + RESERVED in review_rows(client, batch_id)[2][2]


# ---- bad files through the upload form -------------------------------------------------------

CSV = f"{HEADING}\n{GOOD}\n"
BAD_FILES = {
    "empty": (b"", {}, "The file is empty."),
    "heading-only": (f"{HEADING}\n\n".encode(), {},
                     "The file has a heading line but no user rows."),
    "unclosed-quote": (f'{HEADING}\n{GOOD}\nann,"Ann,Lee,ann@example.com\n{GOOD}\n'.encode(), {},
                       'Line 3: a quoted value that starts on this line is never closed (a " is '
                       "missing), so the rest of the file would be swallowed into one cell."),
    "junk-after-quote": (f'{HEADING}\nann,"Ann"x,Lee,ann@example.com\n'.encode(), {},
                         "Line 2: a quoted value is not closed properly"),
    "duplicated-heading": (f"{HEADING},E-mail\n{GOOD},x@example.com\n".encode(), {},
                           "Line 1: the heading “E-mail” (column 5) duplicates column 4; each "
                           "column must appear once."),
    "empty-heading": (f"{HEADING.replace(',', ',,', 1)}\n{GOOD}\n".encode(), {},
                      "Line 1: column 2 has no heading."),
    "nul-byte": (f"{HEADING}\n{GOOD}\0\n".encode(), {},
                 "Line 2: the file contains a NUL byte, so it is not a text file"),
    "control-character": (f"{HEADING}\n{GOOD}\nann,A\x1bnn,Lee,ann@example.com\n".encode(), {},
                          "Line 3: the file contains the control character U+001B, which has no "
                          "place in a CSV file. Remove it and upload again."),
    "damaged-xlsx": (b"PK\x03\x04\x14\x00\x06\x00\x08\x00" + b"\x00" * 30
                     + b"[Content_Types].xml", {},
                     "This Excel workbook is damaged and cannot be read. Open it in your "
                     "spreadsheet and use “Save as” to save it as an “Excel Workbook (.xlsx)” or "
                     "as “CSV UTF-8 (comma delimited)”, then upload that file."),
    "xls": (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 60, {},
            "This is an old Excel workbook (.xls) or another Office file, not a CSV file."),
    "png": (b"\x89PNG\r\n\x1a\n" + b"\x00" * 30, {}, "This is a PNG image, not a CSV file."),
    "jpeg": (b"\xff\xd8\xff\xdb" + b"\x00" * 30, {}, "This is a JPEG image, not a CSV file."),
    "pdf": (b"%PDF-1.4\n", {}, "This is a PDF document, not a CSV file."),
    "gzip": (gzip.compress(CSV.encode()), {}, "This is a gzip archive, not a CSV file."),
    "undecodable": (f"{HEADING}\n{GOOD}\n".encode() + b"ann,A\x81n,Lee,ann@example.com\n", {},
                    "Line 3: the file is neither UTF-8 nor Windows-1252 nor Windows-1250 (byte "
                    "0x81 cannot be read). Save it as “CSV UTF-8”, or choose its encoding under "
                    "Advanced."),
    "forced-utf8-on-cp1252": (f"{HEADING}\nann,Hélène,Lee,ann@example.com\n".encode("cp1252"),
                              {"encoding": "utf-8"}, "Line 2: the file is not valid UTF-8 (byte "
                              "0xe9). Choose the right encoding under Advanced, or leave it on "
                              "“Detect”."),
}

# Files whose rows cannot be checked as they are: staged without rows, asking first.
ASKING_FILES = {
    "missing-headings": (b"username,email\ngood,good@example.com\n", {}, "/columns",
                         "No column provides firstname, surname."),
    "one-column": (b"username\ngood\n", {}, "/columns",
                   "No column provides firstname, surname, email."),
    "forced-wrong-delimiter": (CSV.encode(), {"delimiter": ";"}, "/columns",
                               "No column provides username, firstname, surname, email."),
    "password-column-while-generating": (
        f"{HEADING},password\n{GOOD},{PASSWORD}\n".encode(), {"generate": True}, "",
        "The file has a password column (“password”), but “" + GENERATE + "” is ticked. "
        "Ignore the column and generate passwords, or untick the option to use the passwords in "
        "the file."),
    "password-alias-while-generating": (
        f"{HEADING}, Pass_Word \n{GOOD},{PASSWORD}\n".encode(), {"generate": True}, "",
        "The file has a password column (“Pass_Word”)"),
}


@pytest.mark.parametrize(("data", "options", "page", "message"), ASKING_FILES.values(),
                         ids=ASKING_FILES.keys())
def test_file_that_cannot_be_checked_as_it_is_asks_and_writes_nothing(app, client, data,
                                                                      options, page, message):
    before = table_snapshot(app)
    response = upload(client, data, **options)
    batch_id = batch_id_of(response)
    assert response.location.endswith(f"/import/{batch_id}{page}")
    shown = client.get(response.location)
    assert shown.status_code == 200
    assert message in html.unescape(shown.get_data(as_text=True))
    assert choose_all(client, batch_id, "add").status_code == 302
    assert table_snapshot(app) == before
    with app.app_context():
        assert db.session.scalar(select(db.func.count(ImportRow.id))) == 0


@pytest.mark.parametrize(("data", "options", "message"), BAD_FILES.values(), ids=BAD_FILES.keys())
def test_bad_file_is_refused_writing_nothing(app, client, data, options, message):
    add_user(app, "jsmith", "jsmith@example.com", **JOHN_SMITH)
    before = table_snapshot(app)
    response = upload(client, data, **options)
    assert response.status_code == 422
    page = html.unescape(response.get_data(as_text=True))
    assert message in page
    assert "Traceback" not in page
    assert table_snapshot(app) == before
    with app.app_context():
        assert db.session.scalar(select(db.func.count(ImportBatch.id))) == 0
        assert db.session.scalar(select(db.func.count(ImportRow.id))) == 0

"""The plan function on its own: rows of a file (read by `read_table`) against the users in the
database → the proposed action, the changes of an Update and the error messages of each row,
without the web views (test_bad_rows walks the same rules through the review page)."""

from __future__ import annotations

import pytest
from conftest import add_user

from bulkimport.extensions import db
from bulkimport.importing.reader import FileProblem, read_table
from bulkimport.importing.validation import plan_table
from bulkimport.models import ImportRow

HEADING = "username,firstname,surname,email"
ADD, UPDATE, NOCHANGE, ERROR = (ImportRow.ADD, ImportRow.UPDATE, ImportRow.NOCHANGE,
                                ImportRow.ERROR)


def plan(app, lines: list[str], heading: str = HEADING, *, generate: bool = True, **options):
    """The plan of a file made of `heading` and `lines`, with jsmith (John Smith) existing."""
    add_user(app, "jsmith", "john.smith@example.com", firstname="John", surname="Smith",
             language="en")
    data = ("\n".join([heading, *lines]) + "\n").encode()
    with app.app_context():
        return plan_table(read_table(data), db.session, generate_passwords=generate,
                          secret_key="validation-test-key", **options)


# id → (data lines, expected (action, errors) of the first row, options)
ROWS = {
    "new-user": (["ann,Ann,Lee,ann@example.com"], (ADD, []), {}),
    "existing-identical": (["jsmith,John,Smith,john.smith@example.com"], (NOCHANGE, []), {}),
    "existing-with-spaces-and-the-domain-in-capitals": (
        [" jsmith ,John,Smith,john.smith@EXAMPLE.com"], (NOCHANGE, []), {}),
    "existing-changed": (["jsmith,Johnny,Smith,john.smith@example.com"], (UPDATE, []), {}),
    "surname-missing": (["carl,Carl,,carl@example.com"], (ERROR, ["surname is missing."]), {}),
    "username-and-email-missing": ([",Ann,Lee,"], (ERROR, [
        "username is missing.", "email is missing."]), {}),
    "email-invalid": (["dan,Dan,Ray,not-an-email"], (ERROR, [
        "email “not-an-email” is not a valid e-mail address: An email address must have an "
        "@-sign."]), {}),
    "email-with-display-name": (['eve,Eve,Ray,"Eve <eve@example.com>"'], (ERROR, [
        "email “Eve <eve@example.com>” must be a bare address such as name@example.com, "
        "without a display name, quotes or angle brackets."]), {}),
    "email-list": (["fay,Fay,Ray,fay@example.com;x@example.com"], (ERROR, [
        "email “fay@example.com;x@example.com” must hold exactly one address, without spaces "
        "or lists."]), {}),
    "email-of-another-user": (["zed,Zed,Ray,john.smith@example.com"], (ERROR, [
        "email “john.smith@example.com” already belongs to the user “jsmith”."]), {}),
    "intranet-domain-refused": (["ida,Ida,Ray,ida@corp.local"], (ERROR, [
        "email “ida@corp.local” is not a valid e-mail address: The part after the @-sign is a "
        "special-use or reserved name that cannot be used with email. An intranet domain can "
        "be allowed with BULKIMPORT_ALLOWED_EMAIL_DOMAINS."]), {}),
    "intranet-domain-allowed": (["ida,Ida,Ray,ida@corp.local"], (ADD, []),
                                {"allowed_domains": ["corp.local"]}),
    "username-with-a-space": (["bad name,Bo,Ray,bo@example.com"], (ERROR, [
        "username may only contain letters, digits and . _ - @, and must start with a letter "
        "or digit (found space)."]), {}),
    "username-mixing-scripts": (["jоhn,John,Ray,john.ray@example.com"], (ERROR, [
        "username mixes Cyrillic and Latin letters, which can imitate another name."]), {}),
    "username-imitating-another": (["јѕмітһ,John,Smith,other@example.com"], (ERROR, [
        "username “јѕмітһ” looks like the username “jsmith” (letters of another script)."]), {}),
    "too-many-fields": (["ann,Ann,Lee,ann@example.com,extra"], (ERROR, [
        "The row has 5 fields, more than the 4 columns of the heading line (a stray delimiter "
        "or a missing quote?)."]), {}),
    "too-few-fields": (["ann,Ann,Lee"], (ERROR, ["email is missing."]), {}),
    "username-twice-ignoring-case": (["Ann,Ann,Lee,ann@example.com",
                                      "ANN,Ann,Lee,ann2@example.com"], (ERROR, [
        "username “Ann” appears 2 times in the file, ignoring case (lines 2, 3)."]), {}),
    "email-twice-ignoring-case": (["ann,Ann,Lee,ann@example.com",
                                   "bea,Bea,Lee,ANN@example.com"], (ERROR, [
        "email “ann@example.com” appears 2 times in the file, ignoring case (lines 2, 3)."]),
        {}),
}


@pytest.mark.parametrize(("lines", "expected", "options"), ROWS.values(), ids=ROWS.keys())
def test_each_row_gets_its_action_and_its_errors(app, lines, expected, options):
    first = plan(app, lines, **options).rows[0]
    assert (first.action, first.errors) == expected


# id → (heading, data line, expected (action, errors)): optional columns and file passwords
COLUMNS = {
    "force-change-words": (f"{HEADING},Change password next time",
                           "ann,Ann,Lee,ann@example.com,yes", (ADD, [])),
    "force-change-unknown-word": (f"{HEADING},Change password next time",
                                  "ann,Ann,Lee,ann@example.com,maybe", (ERROR, [
        "Change password next time is “maybe”; use 1 or 0 (yes/no, true/false, y/n also work), "
        "or leave it empty."])),
    "language-code": (f"{HEADING},language", "ann,Ann,Lee,ann@example.com,en", (ADD, [])),
    "language-not-on-this-site": (f"{HEADING},language", "ann,Ann,Lee,ann@example.com,fr",
                                  (ERROR, ["language “fr” is not a language of this site (it has "
                                           "en); add it under Admin > System > Localisation "
                                           "first."])),
    "language-not-a-code": (f"{HEADING},language", "ann,Ann,Lee,ann@example.com,French",
                            (ERROR, ["language “French” is not a language code such as en, "
                                     "fr or pt_BR."])),
}


@pytest.mark.parametrize(("heading", "line", "expected"), COLUMNS.values(), ids=COLUMNS.keys())
def test_optional_columns_are_checked(app, heading, line, expected):
    first = plan(app, [line], heading).rows[0]
    assert (first.action, first.errors) == expected


PASSWORDS = {
    "new-user-with-a-good-password": ("ann,Ann,Lee,ann@example.com,correct-horse-battery-1",
                                      (ADD, [])),
    "new-user-without-a-password": ("ann,Ann,Lee,ann@example.com,", (ERROR, [
        "password is missing: a new user needs one, or tick “Generate random passwords and "
        "send login credentials via email”."])),
    "new-user-with-a-short-password": ("ann,Ann,Lee,ann@example.com,short", (ERROR, [
        "The password must be at least 12 characters long (it has 5)."])),
    "existing-user-keeps-the-password": ("jsmith,John,Smith,john.smith@example.com,",
                                         (NOCHANGE, [])),
    "existing-user-password-is-for-new-users-only": (
        "jsmith,John,Smith,john.smith@example.com,correct-horse-battery-1", (NOCHANGE, [])),
}


@pytest.mark.parametrize(("line", "expected"), PASSWORDS.values(), ids=PASSWORDS.keys())
def test_passwords_from_the_file_follow_the_policy(app, line, expected):
    first = plan(app, [line], f"{HEADING},password", generate=False).rows[0]
    assert (first.action, first.errors) == expected
    assert "password" not in first.values or first.values["password"].startswith("gAAAA")


@pytest.mark.parametrize(("update_passwords", "expected", "ignored"),
                         [(False, NOCHANGE, True), (True, UPDATE, False)])
def test_existing_users_keep_their_password_unless_asked(app, update_passwords, expected,
                                                        ignored):
    line = "jsmith,John,Smith,john.smith@example.com,correct-horse-battery-1"
    result = plan(app, [line], f"{HEADING},password", generate=False,
                  update_passwords=update_passwords)
    assert result.rows[0].action == expected
    assert result.counts["password_ignored"] == ignored
    assert ("password" in result.rows[0].values) == update_passwords


def test_an_update_lists_old_and_new_values_and_the_counts_add_up(app):
    result = plan(app, ["jsmith,Johnny,Smyth,john.smith@example.com",
                        "ann,Ann,Lee,ann@example.com", "bea,Bea,,bea@example.com"])
    update, add, error = result.rows
    assert update.changes == {"firstname": ["John", "Johnny"], "surname": ["Smith", "Smyth"]}
    assert update.user_id is not None and add.user_id is None
    assert [r.line for r in result.rows] == [2, 3, 4]
    assert result.counts == {ADD: 1, UPDATE: 1, NOCHANGE: 0, ERROR: 1, "duplicate": 0,
                             "short": 0, "need_password": 0, "password_ignored": 0, "total": 3}


def test_a_password_column_while_generating_refuses_the_file(app):
    with pytest.raises(FileProblem, match="The file has a password column"):
        plan(app, ["ann,Ann,Lee,ann@example.com,correct-horse-battery-1"],
             f"{HEADING},password")

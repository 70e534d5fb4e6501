"""Deterministic test data: N-row CSV files (and the same rows as `.xlsx` workbooks) and M
existing users drawn from the same people.

Person number `i` is the same in `make_csv` and `seed_users` (for the same seed), so a file that
overlaps the seeded range proposes No change (or Update, with `changed_every`) for those rows, and
a file starting at or after the seeded range proposes Add for every row.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import random
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from xml.sax.saxutils import escape

from sqlalchemy import insert
from sqlalchemy.orm import Session

from bulkimport.mailing.languages import language_key
from bulkimport.models import User, fold_key, utcnow

SEED = 20261125
HEADINGS = ("username", "firstname", "surname", "email")
EXTRA_HEADINGS = ("language", "Change password next time", "department", "phone")

# (as written, ASCII form for usernames and addresses)
FIRST_NAMES = (
    ("John", "john"), ("Anita", "anita"), ("María", "maria"), ("José", "jose"),
    ("Sophie", "sophie"), ("Rahul", "rahul"), ("Li", "li"), ("Obi", "obi"), ("Thi", "thi"),
    ("Zoë", "zoe"), ("Łukasz", "lukasz"), ("Søren", "soren"), ("Ngozi", "ngozi"),
    ("François", "francois"), ("Ana-María", "anamaria"), ("Jean Paul", "jeanpaul"),
    ("Mohammed", "mohammed"), ("Yuki", "yuki"), ("Olga", "olga"), ("Chloé", "chloe"),
    ("Siobhán", "siobhan"), ("Björn", "bjorn"), ("Ayşe", "ayse"), ("Dmitri", "dmitri"),
    ("Priya", "priya"), ("Kwame", "kwame"), ("Mei", "mei"), ("Lars", "lars"),
    ("Émilie", "emilie"), ("Ahmed", "ahmed"), ("Ines", "ines"), ("Tomás", "tomas"),
)
SURNAMES = (
    ("Smith", "smith"), ("Patel", "patel"), ("García", "garcia"), ("Khan", "khan"),
    ("Dubois", "dubois"), ("Chen", "chen"), ("Okoh", "okoh"), ("Nguyen", "nguyen"),
    ("O'Brien", "obrien"), ("Smith-Jones", "smithjones"), ("van der Berg", "vanderberg"),
    ("de la Cruz", "delacruz"), ("Müller", "muller"), ("Kowalski", "kowalski"),
    ("Johansson", "johansson"), ("Yılmaz", "yilmaz"), ("Ivanova", "ivanova"),
    ("Tanaka", "tanaka"), ("Mensah", "mensah"), ("Núñez", "nunez"), ("Ó Súilleabháin",
    "osuilleabhain"), ("D'Angelo", "dangelo"), ("Lefèvre", "lefevre"), ("Kim", "kim"),
    ("Andersen", "andersen"), ("Rossi", "rossi"), ("Wang", "wang"), ("Hernández", "hernandez"),
)
DOMAINS = ("example.com", "example.org", "mail.example.net", "staff.example.co.uk",
           "bücher.example")
LANGUAGES = ("en", "fr", "de", "es", "pt_BR", "nl", "", "")
FLAGS = ("1", "0", "")
DEPARTMENTS = ("Finance", "Marketing", "Sales, EMEA", "Research & Development", "IT",
               "Human Resources", 'Legal "Contracts"', "Operations")


@dataclass(frozen=True)
class Person:
    """One generated person, as written in a CSV row (the stored user derives from it)."""

    username: str
    firstname: str
    surname: str
    email: str
    language: str
    must_change: str
    department: str
    phone: str


def person(i: int, seed: int = SEED) -> Person:
    """Person number `i`: the same values for the same `i` and `seed`, unique username and
    e-mail address for every `i`."""
    rng = random.Random(seed * 10_000_019 + i)
    first, first_ascii = rng.choice(FIRST_NAMES)
    last, last_ascii = rng.choice(SURNAMES)
    if i % 50 == 7:  # a few accented usernames, NFKC-normalised as validation leaves them
        username = f"{first.split()[0].lower()}.{last.split()[-1].lower().replace(chr(39), '')}{i}"
    elif i % 3:
        username = f"{first_ascii[0]}{last_ascii}{i}"
    else:
        username = f"{first_ascii}.{last_ascii}{i}"
    local = f"{first_ascii}.{last_ascii}{i}"
    if i % 4 == 1:
        local = f"{first_ascii.title()}.{last_ascii.title()}{i}"  # mixed case, kept as written
    email = f"{local}@{rng.choice(DOMAINS)}"
    phone = f"+{rng.randint(1, 99)} {rng.randint(100, 999)} {rng.randint(1000, 9999)}"
    return Person(username, first, last, email, rng.choice(LANGUAGES), rng.choice(FLAGS),
                  rng.choice(DEPARTMENTS), phone)


def file_password(i: int, seed: int = SEED) -> str:
    """The password person `i` brings in a file with a password column: 23 characters that pass
    the default policy (hexadecimal, so that it contains no name)."""
    return "Pw-" + hashlib.sha256(f"{seed}:{i}".encode()).hexdigest()[:20]


def make_csv(n_rows: int, start: int = 0, *, seed: int = SEED, extra_columns: bool = True,
             existing_every: int = 0, existing_start: int = 0, changed_every: int = 0,
             passwords: bool = False) -> bytes:
    """A UTF-8 CSV file of persons `start` … `start + n_rows - 1` with the four required headings
    (plus language, Change password next time and two unknown columns when `extra_columns`, and
    a password column with `file_password` when `passwords`).

    With `existing_every` = k > 0, every k-th row is instead a seeded person (`existing_start`,
    `existing_start + 1`, …), interleaved as in a real export; with `changed_every` = c > 0,
    every c-th of those carries another first name, so it is an Update instead of a No change.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerows(table_rows(n_rows, start, seed=seed, extra_columns=extra_columns,
                                existing_every=existing_every, existing_start=existing_start,
                                changed_every=changed_every, passwords=passwords))
    return out.getvalue().encode("utf-8")


def table_rows(n_rows: int, start: int = 0, *, seed: int = SEED, extra_columns: bool = True,
               existing_every: int = 0, existing_start: int = 0, changed_every: int = 0,
               passwords: bool = False) -> Iterator[list[str]]:
    """The heading row, then the rows of `make_csv` (same arguments) as lists of strings."""
    yield list(HEADINGS + EXTRA_HEADINGS if extra_columns else HEADINGS) + (
        ["password"] if passwords else [])
    existing = existing_start
    for n, i in enumerate(range(start, start + n_rows), 1):
        seeded = bool(existing_every) and n % existing_every == 0
        if seeded:
            i, existing = existing, existing + 1
        p = person(i, seed)
        firstname = p.firstname
        if seeded and changed_every and i % changed_every == 0:
            firstname += "-Marie"
        row = [p.username, firstname, p.surname, p.email]
        if extra_columns:
            row += [p.language, p.must_change, p.department, p.phone]
        if passwords:
            row.append(file_password(i, seed))
        yield row


def make_xlsx(n_rows: int, start: int = 0, **options) -> bytes:
    """The rows of `make_csv` (same arguments) as an `.xlsx` workbook laid out as Excel saves
    one: text in the shared-strings part, the 1/0 of "Change password next time" as numbers.

    Written with zipfile rather than openpyxl because openpyxl writes inline strings, which
    Excel never does, and shared strings are the part a reader must hold in memory whole.
    """
    strings: dict[str, int] = {}
    sheet = io.StringIO()
    rows = table_rows(n_rows, start, **options)
    heading = next(rows)
    sheet.write(_XML + f'<worksheet xmlns="{_MAIN}"><dimension ref="A1:'
                f'{"ABCDEFGHIJKLMNOPQRSTUVWXYZ"[len(heading) - 1]}{n_rows + 1}"/><sheetData>')
    for number, row in enumerate(itertools.chain([heading], rows), 1):
        sheet.write(f'<row r="{number}">')
        for column, value in enumerate(row):
            reference = f"{'ABCDEFGHIJKLMNOPQRSTUVWXYZ'[column]}{number}"
            if value in ("0", "1") and number > 1:
                sheet.write(f'<c r="{reference}"><v>{value}</v></c>')
            elif value:
                index = strings.setdefault(value, len(strings))
                sheet.write(f'<c r="{reference}" t="s"><v>{index}</v></c>')
        sheet.write("</row>")
    sheet.write("</sheetData></worksheet>")
    shared = "".join(f"<si><t xml:space=\"preserve\">{escape(s)}</t></si>" for s in strings)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as package:
        for name, text in _XLSX_PARTS.items():
            package.writestr(name, text)
        package.writestr("xl/worksheets/sheet1.xml", sheet.getvalue())
        package.writestr("xl/sharedStrings.xml",
                         _XML + f'<sst xmlns="{_MAIN}" uniqueCount="{len(strings)}">{shared}</sst>')
    return buffer.getvalue()


_XML = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_PACKAGE_RELS = "http://schemas.openxmlformats.org/package/2006/relationships"
_DOCUMENT_RELS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_CONTENT = "application/vnd.openxmlformats-officedocument.spreadsheetml"
_XLSX_PARTS = {  # the parts of a one-sheet workbook besides the sheet and its strings
    "[Content_Types].xml": _XML + (
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
        'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
        f'<Override PartName="/xl/workbook.xml" ContentType="{_CONTENT}.sheet.main+xml"/>'
        f'<Override PartName="/xl/worksheets/sheet1.xml" ContentType="{_CONTENT}.worksheet+xml"/>'
        f'<Override PartName="/xl/sharedStrings.xml" ContentType="{_CONTENT}.sharedStrings+xml"/>'
        f'<Override PartName="/xl/styles.xml" ContentType="{_CONTENT}.styles+xml"/></Types>'),
    "_rels/.rels": _XML + (
        f'<Relationships xmlns="{_PACKAGE_RELS}"><Relationship Id="rId1" '
        f'Type="{_DOCUMENT_RELS}/officeDocument" Target="xl/workbook.xml"/></Relationships>'),
    "xl/workbook.xml": _XML + (
        f'<workbook xmlns="{_MAIN}" xmlns:r="{_DOCUMENT_RELS}"><sheets>'
        '<sheet name="Users" sheetId="1" r:id="rId1"/></sheets></workbook>'),
    "xl/_rels/workbook.xml.rels": _XML + (
        f'<Relationships xmlns="{_PACKAGE_RELS}">'
        f'<Relationship Id="rId1" Type="{_DOCUMENT_RELS}/worksheet" '
        'Target="worksheets/sheet1.xml"/>'
        f'<Relationship Id="rId2" Type="{_DOCUMENT_RELS}/sharedStrings" '
        'Target="sharedStrings.xml"/>'
        f'<Relationship Id="rId3" Type="{_DOCUMENT_RELS}/styles" Target="styles.xml"/>'
        '</Relationships>'),
    "xl/styles.xml": _XML + (
        f'<styleSheet xmlns="{_MAIN}"><fonts count="1"><font><sz val="11"/><name val="Calibri"/>'
        '</font></fonts><fills count="1"><fill><patternFill patternType="none"/></fill></fills>'
        '<borders count="1"><border/></borders><cellStyleXfs count="1"><xf numFmtId="0" '
        'fontId="0" fillId="0" borderId="0"/></cellStyleXfs><cellXfs count="1"><xf '
        'numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/></cellXfs><cellStyles '
        'count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles></styleSheet>'),
}


def user_record(i: int, seed: int = SEED, *, now=None) -> dict:
    """The `users` row of person `i` as a dict for a bulk INSERT, with its uniqueness keys."""
    p = person(i, seed)
    now = now or utcnow()
    local, _, domain = p.email.rpartition("@")
    email = f"{local}@{domain.lower()}"
    return {
        "username": p.username, "username_key": fold_key(p.username),
        "firstname": p.firstname, "surname": p.surname,
        "email": email, "email_key": fold_key(email),
        "language": language_key(p.language) or None,  # as the import stores it
        "must_change_password": p.must_change == "1",
        "password_hash": None, "is_admin": False, "active": True,
        "created_at": now, "updated_at": now,
    }


def seed_users(session: Session, m: int, start: int = 0, *, seed: int = SEED,
               chunk: int = 10_000) -> None:
    """Insert persons `start` … `start + m - 1` as existing users with bulk INSERTs (no
    password hashes); the caller commits."""
    now = utcnow()
    for first in range(start, start + m, chunk):
        rows = [user_record(i, seed, now=now) for i in range(first, min(first + chunk, start + m))]
        session.execute(insert(User), rows)

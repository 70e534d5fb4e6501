"""Deterministic test data: N-row CSV files and M existing users drawn from the same people.

Person number `i` is the same in `make_csv` and `seed_users` (for the same seed), so a file that
overlaps the seeded range proposes No change (or Update, with `changed_every`) for those rows, and
a file starting at or after the seeded range proposes Add for every row.
"""

from __future__ import annotations

import csv
import io
import random
from dataclasses import dataclass

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


def make_csv(n_rows: int, start: int = 0, *, seed: int = SEED, extra_columns: bool = True,
             existing_every: int = 0, existing_start: int = 0, changed_every: int = 0) -> bytes:
    """A UTF-8 CSV file of persons `start` … `start + n_rows - 1` with the four required headings
    (plus language, Change password next time and two unknown columns when `extra_columns`).

    With `existing_every` = k > 0, every k-th row is instead a seeded person (`existing_start`,
    `existing_start + 1`, …), interleaved as in a real export; with `changed_every` = c > 0,
    every c-th of those carries another first name, so it is an Update instead of a No change.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADINGS + EXTRA_HEADINGS if extra_columns else HEADINGS)
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
        writer.writerow(row)
    return out.getvalue().encode("utf-8")


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

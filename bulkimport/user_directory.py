"""Finding users and exporting them as CSV: plain functions shared by the user list and Export
users, so that both select the same users for the same search."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from .columns import EXPORTED
from .models import User, fold_key
from .profile import active_fields, values_of

EXPORT_CHUNK = 1000


def search_condition(term: str):
    """Users whose username, e-mail or name contains `term` (ignoring case), or None."""
    term = term.strip()
    if not term:
        return None
    key = fold_key(term)  # the same folding as the stored keys; % and _ match themselves
    return or_(User.username_key.contains(key, autoescape=True),
               User.email_key.contains(key, autoescape=True),
               func.lower(User.firstname + " " + User.surname).contains(term.lower(),
                                                                       autoescape=True))


def export_columns(session: Session) -> list[tuple[str, str]]:
    """(key, CSV heading) of every column an export can have: the standard ones, then each
    active profile field under its symbolic name."""
    return [*((c.key, c.label) for c in EXPORTED),
            *((f.name, f.name) for f in active_fields(session))]


def export_rows(session: Session, keys: list[str], term: str = "") -> Iterator[list[object]]:
    """The heading row, then one row per matching user in username order, read in chunks so
    that 100,000 users never sit in memory at once. Values are in the form the import reads
    back unchanged."""
    columns = dict(export_columns(session))
    keys = [k for k in keys if k in columns] or list(columns)
    yield [columns[k] for k in keys]
    custom = [f for f in active_fields(session) if f.name in keys]
    condition = search_condition(term)
    standard = {c.key: c for c in EXPORTED}
    after = ""
    while True:  # keyset pagination: rows as tuples, no ORM objects piling up in the session
        query = (select(User.id, User.username_key, *(getattr(User, k) for k in standard))
                 .where(User.username_key > after).order_by(User.username_key)
                 .limit(EXPORT_CHUNK))
        if condition is not None:
            query = query.where(condition)
        users = session.execute(query).mappings().all()
        if not users:
            return
        profile = values_of(session, [u["id"] for u in users], custom)
        for user in users:
            values = profile.get(user["id"], {})
            yield [standard[k].export_value(user[k]) if k in standard else values.get(k, "")
                   for k in keys]
        after = users[-1]["username_key"]

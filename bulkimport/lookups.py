"""Set-based lookups of many keys at once, the fast way on each database.

PostgreSQL gets one `column = ANY(:array)` (one parameter, however many keys, and a cheap plan);
other databases get `IN (...)` lists cut into chunks under their bound-parameter limits.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from sqlalchemy import any_, literal
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

CHUNK = 5000  # under SQLite's 32,766 and PostgreSQL's 65,535 bound parameters


def matching(session: Session, column, values: Iterable) -> Iterator:
    """WHERE conditions that together select the rows whose `column` is one of `values`."""
    values = sorted(set(values))
    if not values:
        return
    if session.get_bind().dialect.name == "postgresql":
        yield column == any_(literal(values, ARRAY(column.type)))
        return
    for start in range(0, len(values), CHUNK):
        yield column.in_(values[start:start + CHUNK])

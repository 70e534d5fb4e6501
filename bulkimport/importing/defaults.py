"""Defaults for what a file leaves out: values that the upload form (or `--default`) gives for
every row with no such column or an empty cell, checked like the file's own cells and never
put over a value the file gives. The review marks the values that came from a default."""

from __future__ import annotations

from sqlalchemy.orm import Session

from ..columns import BY_KEY, CheckContext, label
from ..mailing.languages import language_codes, language_key
from ..profile import active_fields, parse_value

# The standard columns that take a default; the others (names, addresses, passwords) belong to
# each person.
DEFAULTABLE = ("must_change_password", "language", "active")


def check_defaults(session: Session, defaults: dict[str, str]) -> dict[str, str]:
    """{key: why its default is not a value of its field}, for the defaults that are not;
    empty when all are. Keys are the standard columns of DEFAULTABLE and the active profile
    fields' names."""
    if not defaults:
        return {}
    fields = {field.name: field for field in active_fields(session)}
    problems = {}
    for key, value in defaults.items():
        if key in DEFAULTABLE:
            _, errors = BY_KEY[key].clean(value, CheckContext())
            if key == "language" and not errors \
                    and language_key(value) not in language_codes(session):
                errors = [f"language “{value}” is not a language of this site."]
            if errors:
                problems[key] = errors[0]
        elif key in fields:
            _, error = parse_value(fields[key], value)
            if error:
                problems[key] = error
        else:
            problems[key] = (f"{label(key)} takes no default: a default is for "
                             f"{', '.join(label(k) for k in DEFAULTABLE)} and the profile "
                             "fields.")
    return problems


def fill_defaults(values: dict[str, object], defaults: dict[str, str]) -> list[str]:
    """Put each default into `values` (raw cells of one row) where the row has no such column
    or an empty cell; returns the keys that came from a default."""
    filled = []
    for key, value in defaults.items():
        if not str(values.get(key) or "").strip():
            values[key] = value
            filled.append(key)
    return filled

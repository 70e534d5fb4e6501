"""Custom profile fields: reading a cell as a value of a field's type, the canonical text in which
values are stored and exported (so that an export re-imports unchanged), and defining, changing
and retiring fields without losing stored values silently."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .audit_trail import record_event
from .columns import HEADING_ALIASES, normalise_heading, yes_no
from .lookups import matching
from .models import ProfileField, ProfileValue, fold_key

NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
MAX_TEXT = 1000
TYPE_NAMES = {ProfileField.TEXT: "text", ProfileField.NUMBER: "number",
              ProfileField.DATE: "date", ProfileField.CHOICE: "choice",
              ProfileField.YESNO: "yes/no"}
# Day-first forms, as European spreadsheets write dates; ISO forms come first.
DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S",
                "%d.%m.%Y", "%d/%m/%Y", "%d-%m-%Y", "%d.%m.%y", "%d/%m/%y")
MONTH_FIRST = ("%m/%d/%Y", "%m/%d/%y")


class FieldError(Exception):
    """A field definition or change that cannot be made; the message says why, and `problems`
    maps each part of the definition (name, label, type, options, unique) to its sentences."""

    def __init__(self, problems: dict[str, list[str]]):
        super().__init__(" ".join(m for messages in problems.values() for m in messages))
        self.problems = problems


def active_fields(session: Session) -> list[ProfileField]:
    """The fields imports and exports use, in the order they were created."""
    return list(session.scalars(select(ProfileField).where(ProfileField.retired.is_(False))
                                .order_by(ProfileField.id)))


def all_fields(session: Session) -> list[ProfileField]:
    """Every field, retired ones last."""
    return list(session.scalars(select(ProfileField).order_by(ProfileField.retired,
                                                              ProfileField.id)))


def parse_value(field: ProfileField, cell: str) -> tuple[str | None, str | None]:
    """(canonical value, None) for a cell, or (None, the reason it is not a value of the
    field's type); an empty cell is (None, None)."""
    text = cell.strip()
    if not text:
        return None, None
    kind = field.type
    if kind == ProfileField.TEXT:
        if len(text) > MAX_TEXT:
            return None, f"{field.name} is longer than {MAX_TEXT} characters."
        return text, None
    if kind == ProfileField.NUMBER:
        if re.fullmatch(r"[+-]?0\d.*", text) or re.search(r"\d\s+\d+\s+\d", text) \
                and not re.fullmatch(r"[+-]?\d{1,3}([ \u00a0\u202f]\d{3})+([.,]\d+)?", text):
            return None, (f"{field.name} “{text}” looks like a phone number or a code: leading "
                          "zeros would be lost. Use a text field.")
        number = parse_number(text)
        if number is None:
            return None, (f"{field.name} “{text}” is not a number (write 1234.5 or 1234,5; "
                          "1 234,5 and 1,234.5 work too).")
        return number, None
    if kind == ProfileField.DATE:
        day = parse_date(text, current_app.config["DATE_ORDER"])
        if day is None:
            slashed = "01/31/2026" if current_app.config["DATE_ORDER"] == "MDY" else "31/01/2026"
            return None, (f"{field.name} “{text}” is not a date (write 2026-01-31; {slashed} "
                          "and 31.01.2026 work too).")
        return day, None
    if kind == ProfileField.CHOICE:
        for option in field.options:
            if fold_key(option) == fold_key(text):
                return option, None
        return None, (f"{field.name} “{text}” is not one of its choices: "
                      f"{', '.join(field.options)}.")
    answer = yes_no(text)
    if answer is not None:
        return ("yes" if answer else "no"), None
    return None, f"{field.name} is “{text}”; use yes or no (1/0, true/false, y/n also work)."


def parse_number(text: str) -> str | None:
    """A number written with either decimal mark and optional thousands separators, in its
    canonical form (1234.5), or None."""
    text = re.sub(r"[\s\u00a0\u202f']", "", text)
    if not re.fullmatch(r"[+-]?[\d.,]+", text) or not re.search(r"\d", text):
        return None
    dots, commas = text.count("."), text.count(",")
    if dots and commas:  # the later mark is the decimal one
        thousands, decimal = (",", ".") if text.rfind(".") > text.rfind(",") else (".", ",")
        if text.count(decimal) > 1:
            return None
        text = text.replace(thousands, "").replace(decimal, ".")
    elif commas > 1 or dots > 1:  # one mark repeated: thousands separators
        mark = "," if commas else "."
        if not re.fullmatch(r"[+-]?\d{1,3}(" + re.escape(mark) + r"\d{3})+", text):
            return None
        text = text.replace(mark, "")
    else:
        text = text.replace(",", ".")
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    if not number.is_finite():
        return None
    canonical = format(number.normalize(), "f")
    return "0" if canonical in ("-0", "+0") else canonical


def parse_date(text: str, order: str = "DMY") -> str | None:
    """A date in ISO form or a common spreadsheet form, as YYYY-MM-DD, or None. Slashed dates
    are read day-first unless `order` is MDY."""
    formats = DATE_FORMATS if order != "MDY" else (DATE_FORMATS[:4] + ("%d.%m.%Y", "%d.%m.%y")
                                                    + MONTH_FIRST)
    for form in formats:
        try:
            parsed = datetime.strptime(text, form)
        except ValueError:
            continue
        if parsed.time() != datetime.min.time():
            continue
        return parsed.date().isoformat()
    return None


def unique_key(field: ProfileField, value: str | None) -> str | None:
    """The key under which a unique field's value must be unique (case-insensitive)."""
    return fold_key(value) if field.unique and value is not None else None


@dataclass(frozen=True)
class FieldDefinition:
    """What the field form asks for."""

    name: str
    label: str
    type: str
    options: list[str]
    required: bool
    unique: bool


def check_definition(session: Session, definition: FieldDefinition,
                     field: ProfileField | None = None) -> dict[str, list[str]]:
    """Every problem with a new or changed definition, by the part it concerns (name, label,
    type, options), so that the form shows each beside its field."""
    problems: dict[str, list[str]] = {}

    def refuse(part: str, message: str) -> None:
        problems.setdefault(part, []).append(message)

    if not NAME.match(definition.name):
        refuse("name", "The symbolic name must start with a lower-case letter and hold only "
                        "a-z, 0-9 and _ (at most 40), e.g. department or start_date.")
    elif normalise_heading(definition.name) in HEADING_ALIASES:
        refuse("name", f"“{definition.name}” is already a standard column of the CSV file.")
    else:
        other = session.scalar(select(ProfileField).where(
            ProfileField.name == definition.name))
        if other is not None and other is not field:
            refuse("name", f"A field named “{definition.name}” already exists"
                   + (" (retired)." if other.retired else "."))
    if not definition.label.strip():
        refuse("label", "Give the field a label, as shown to administrators.")
    if definition.type not in ProfileField.TYPES:
        refuse("type", "Choose a type.")
    if definition.type == ProfileField.CHOICE:
        if not definition.options:
            refuse("options", "A choice field needs its options, one per line.")
        folded = [fold_key(o) for o in definition.options]
        if len(set(folded)) != len(folded):
            refuse("options", "Two options are the same (ignoring case).")
    return problems


def create_field(session: Session, definition: FieldDefinition, *, actor_id: int) -> ProfileField:
    """Add a field after checking its definition. The caller commits."""
    problems = check_definition(session, definition)
    if problems:
        raise FieldError(problems)
    field = ProfileField(name=definition.name, label=definition.label.strip(),
                         type=definition.type, options=definition.options,
                         required=definition.required, unique=definition.unique)
    session.add(field)
    session.flush()
    record_event(session, "profile_field_created", actor_id=actor_id, field=field.name,
                 type=field.type)
    return field


@dataclass
class ChangeImpact:
    """What changing a field would do to stored values, for the page to say before it asks."""

    renamed_from: str | None
    values: int
    converted: int
    lost: list[tuple[int, str]]  # (user id, value) that the new type cannot hold
    duplicates: int  # values that would break a new unique constraint

    @property
    def needs_confirmation(self) -> bool:
        """Whether the administrator must confirm (a rename or values converted or lost)."""
        return bool(self.renamed_from or self.converted or self.lost)


def change_impact(session: Session, field: ProfileField,
                  definition: FieldDefinition) -> ChangeImpact:
    """What `definition` would do to the stored values of `field`."""
    probe = ProfileField(name=field.name, type=definition.type, options=definition.options,
                         unique=definition.unique)
    rows = session.execute(select(ProfileValue.user_id, ProfileValue.value)
                           .where(ProfileValue.field_id == field.id)).all()
    converted, lost, keys = 0, [], []
    for user_id, value in rows:
        new, problem = parse_value(probe, value)
        if problem or new is None:
            lost.append((user_id, value))
        else:
            converted += new != value
            keys.append(fold_key(new))
    duplicates = len(keys) - len(set(keys)) if definition.unique else 0
    return ChangeImpact(field.name if definition.name != field.name else None, len(rows),
                        converted, lost, duplicates)


def change_field(session: Session, field: ProfileField, definition: FieldDefinition, *,
                 actor_id: int, impact: ChangeImpact | None = None) -> ChangeImpact:
    """Apply a changed definition, converting stored values to the new type and deleting those
    it cannot hold (the caller has shown `change_impact`, passed here when it has it, and had it
    confirmed). Refuses a unique constraint that stored values already break. The caller
    commits."""
    problems = check_definition(session, definition, field)
    impact = impact or change_impact(session, field, definition)
    if impact.duplicates:
        problems.setdefault("unique", []).append(
            f"{impact.duplicates} users share a value of this field, so it cannot become "
            "unique; make their values different first.")
    if problems:
        raise FieldError(problems)
    before = {"name": field.name, "type": field.type, "options": field.options,
              "required": field.required, "unique": field.unique, "label": field.label}
    field.name, field.label, field.type = definition.name, definition.label.strip(), \
        definition.type
    field.options, field.required, field.unique = definition.options, definition.required, \
        definition.unique
    for value in session.scalars(select(ProfileValue).where(ProfileValue.field_id == field.id)):
        new, problem = parse_value(field, value.value)
        if problem or new is None:
            session.delete(value)
        else:
            value.value, value.unique_key = new, unique_key(field, new)
    after = {"name": field.name, "type": field.type, "options": field.options,
             "required": field.required, "unique": field.unique, "label": field.label}
    changed = sorted(k for k in before if before[k] != after[k])
    record_event(session, "profile_field_changed", actor_id=actor_id, field=field.name,
                 changed=changed, changes={k: [before[k], after[k]] for k in changed},
                 values_lost=len(impact.lost))
    return impact


def set_retired(session: Session, field: ProfileField, retired: bool, *, actor_id: int) -> None:
    """Retire a field (its values are kept; imports and exports leave it out) or bring it back.
    The caller commits."""
    field.retired = retired
    record_event(session, "profile_field_retired" if retired else "profile_field_restored",
                 actor_id=actor_id, field=field.name)


def value_counts(session: Session) -> dict[int, int]:
    """How many users have a value of each field."""
    return dict(session.execute(select(ProfileValue.field_id, func.count())
                                .group_by(ProfileValue.field_id)).all())


def values_of(session: Session, user_ids: list[int],
              fields: list[ProfileField]) -> dict[int, dict[str, str]]:
    """{user id: {field name: value}} for the given users and fields."""
    if not user_ids or not fields:
        return {}
    names = {f.id: f.name for f in fields}
    found: dict[int, dict[str, str]] = {}
    for condition in matching(session, ProfileValue.user_id, user_ids):
        query = select(ProfileValue.user_id, ProfileValue.field_id, ProfileValue.value).where(
            condition, ProfileValue.field_id.in_(list(names)))
        for user_id, field_id, value in session.execute(query):
            found.setdefault(user_id, {})[names[field_id]] = value
    return found

"""The audit trail: security-relevant events (password changes, policy changes, lockouts, imports),
written in the same transaction as what they record, and read back in words for the audit log."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Select, false, or_, select, tuple_
from sqlalchemy.orm import Session, joinedload

from .columns import label as column_label
from .columns import shown_value
from .models import AuditEvent, ImportBatch, ImportRow, User, fold_key

# Every action code that is recorded, as a person reads it (sentence case). A code missing here
# is still shown in words (`action_label`), and a test fails until it has its label.
ACTION_LABELS = {
    "default_language_changed": "Default language changed",
    "invitation_failed": "Invitation failed",
    "invitation_sent": "Invitation sent",
    "invitations_queued": "Invitations queued",
    "invitations_rescheduled": "Scheduled invitations sent now or moved",
    "invitations_resent": "Invitations sent again",
    "language_added": "Language added",
    "login_failed": "Login failed",
    "login_locked": "Login locked after failures",
    "password_change_failed": "Password change refused",
    "password_changed": "Password changed",
    "password_policy_changed": "Password policy changed",
    "password_set_by_link": "Password chosen through an invitation's link",
    "profile_field_changed": "Profile field changed",
    "profile_field_created": "Profile field created",
    "profile_field_restored": "Profile field restored",
    "profile_field_retired": "Profile field retired",
    "template_reset": "Template reset to the default",
    "template_saved": "Template saved",
    "user_blocked": "User blocked",
    "user_created": "User created",
    "user_unblocked": "User unblocked",
    "user_updated": "User updated",
}

# Detail keys whose words differ from the key's own (`minutes` alone would not say of what).
_DETAIL_LABELS = {
    "attempts": "Attempts", "changed": "Changed", "code": "Language code",
    "failures": "Failures", "failed_only": "Failed ones only", "invitation_id": "Invitation",
    "invitation_ids": "Invitations", "minutes": "Locked for (minutes)",
    "restored_from": "Restored from version", "scope": "Locked", "values_lost": "Values lost",
    "send_at": "Sent at (UTC)",
}
# Detail flags that read better as a phrase than as "name: yes".
_FLAG_PHRASES = {
    "blocked": "the password was right, but the account is blocked",
    "expired": "the temporary password had expired",
    "forced": "required before first use",
    "missing_from_file": "missing from the imported file",
    "unknown_username": "no such account (what was typed is not kept)",
}
_SECRET_NAME = re.compile(r"(^|_)(password|passwords|hash|hashes|secret|token)$")
_FLAGS_NOT_SECRET = {"must_change_password"}  # a yes/no flag, not a password
PASSWORD_CHANGED = "password changed"
EXPORT_CHUNK = 1000


def record_event(session: Session, action: str, *, actor_id: int | None = None,
                 user_id: int | None = None, address: str | None = None,
                 **detail: Any) -> AuditEvent:
    """Add an audit event to `session` (the caller commits it with the change it records);
    `detail` must never hold a password."""
    event = AuditEvent(action=action, actor_id=actor_id, user_id=user_id, address=address,
                       detail=detail or None)
    session.add(event)
    return event


def words(code: str) -> str:
    """A code such as `user_updated` as sentence-case words: `User updated`."""
    text = " ".join(code.replace("_", " ").split())
    return text[:1].upper() + text[1:]


def action_label(action: str) -> str:
    """The readable name of an action code (`User updated`), or the code in words if unknown."""
    return ACTION_LABELS.get(action) or words(action)


def is_secret(name: str) -> bool:
    """Whether a field or detail named `name` holds a password or a hash, whose value is never
    shown (only that it changed)."""
    return name not in _FLAGS_NOT_SECRET and bool(_SECRET_NAME.search(name.casefold()))


@dataclass(frozen=True)
class Detail:
    """One readable part of an event's details: `label: text`, or `text` alone without a label;
    `batch_id` names the import batch it stands for (a link on the page)."""

    text: str
    label: str | None = None
    batch_id: int | None = None
    batch_owner_id: int | None = None

    def __str__(self) -> str:
        return f"{self.label}: {self.text}" if self.label else self.text


@dataclass(frozen=True)
class ReadableEvent:
    """An audit event as the audit log shows it: its name in words and its details in words,
    with old → new for each change and never a password."""

    event: AuditEvent
    label: str
    changes: list[Detail] = field(default_factory=list)
    details: list[Detail] = field(default_factory=list)

    @property
    def actor(self) -> str:
        """Who did it, by username."""
        return person(self.event.actor, self.event.actor_id)

    @property
    def subject(self) -> str:
        """To whom it was done, by username."""
        return person(self.event.user, self.event.user_id)

    @property
    def details_text(self) -> str:
        """Changes and details as one line of text (the CSV's cell)."""
        return "; ".join(str(part) for part in [*self.changes, *self.details])


@dataclass(frozen=True)
class EventFilter:
    """Which events the audit log shows: an action code, a user (by username, as actor or
    subject) and inclusive days in UTC; empty parts do not filter."""

    action: str = ""
    username: str = ""
    first_day: date | None = None
    last_day: date | None = None


def filtered_events(session: Session, chosen: EventFilter) -> tuple[Select, bool]:
    """The query of the events `chosen` selects, newest first, and whether the username it names
    is unknown (then nothing matches)."""
    query = (select(AuditEvent)
             .options(joinedload(AuditEvent.actor), joinedload(AuditEvent.user))
             .order_by(AuditEvent.id.desc()))
    if chosen.action:
        query = query.where(AuditEvent.action == chosen.action)
    unknown_user = False
    if chosen.username:
        user_id = session.scalar(select(User.id).where(
            User.username_key == fold_key(chosen.username)))
        unknown_user = user_id is None
        # An unknown name matches nothing (comparing with NULL would match events without one).
        query = query.where(false() if unknown_user else or_(AuditEvent.actor_id == user_id,
                                                             AuditEvent.user_id == user_id))
    if chosen.first_day:
        query = query.where(AuditEvent.created_at >= datetime.combine(chosen.first_day,
                                                                      datetime.min.time()))
    if chosen.last_day and chosen.last_day < date.max:  # the last day is included whole
        query = query.where(AuditEvent.created_at < datetime.combine(
            chosen.last_day + timedelta(days=1), datetime.min.time()))
    return query, unknown_user


def recorded_actions(session: Session) -> list[tuple[str, str]]:
    """(code, readable name) of every action the trail holds, by name, for the event filter."""
    codes = session.scalars(select(AuditEvent.action).distinct())
    return sorted(((code, action_label(code)) for code in codes), key=lambda pair: pair[1])


def readable_events(session: Session, events: Iterable[AuditEvent]) -> list[ReadableEvent]:
    """`events` in words: old → new for the fields each changed (for an import's update, from
    the batch's row, which keeps [old, new] per field), batches with their owner."""
    events = list(events)
    imported = _imported_changes(session, events)
    batch_ids = {e.detail["batch_id"] for e in events
                 if e.detail and isinstance(e.detail.get("batch_id"), int)}
    owners = dict(session.execute(select(ImportBatch.id, ImportBatch.owner_id)
                                  .where(ImportBatch.id.in_(batch_ids))).all()) if batch_ids else {}
    return [_readable(e, imported, owners) for e in events]


def export_rows(session: Session, query: Select) -> Iterator[list[str]]:
    """The CSV of the events `query` selects: a heading, then time, actor, event, subject,
    address and details in words, read in chunks newest first."""
    yield ["time (UTC)", "actor", "event", "subject", "address", "details"]
    last_id = None
    while True:
        chunk_query = query if last_id is None else query.where(AuditEvent.id < last_id)
        chunk = session.scalars(chunk_query.limit(EXPORT_CHUNK)).unique().all()
        if not chunk:
            return
        for item in readable_events(session, chunk):
            event = item.event
            yield [f"{event.created_at:%Y-%m-%d %H:%M:%S}", item.actor, item.label,
                   item.subject, event.address or "", item.details_text]
        last_id = chunk[-1].id


def person(user: User | None, user_id: int | None) -> str:
    """A user as the audit log names them: the username, or the id of a user who is gone."""
    if user is not None:
        return user.username
    return f"deleted user #{user_id}" if user_id is not None else ""


def _imported_changes(session: Session, events: list[AuditEvent]
                      ) -> dict[tuple[int, int], dict[str, list]]:
    """{(batch id, user id): {field: [old, new]}} of the import updates among `events` that do
    not carry their changes themselves."""
    wanted = {(e.detail["batch_id"], e.user_id) for e in events
              if e.action == "user_updated" and e.detail and "changes" not in e.detail
              and isinstance(e.detail.get("batch_id"), int) and e.user_id is not None}
    if not wanted:
        return {}
    rows = session.execute(select(ImportRow.batch_id, ImportRow.user_id, ImportRow.changes)
                           .where(tuple_(ImportRow.batch_id, ImportRow.user_id).in_(wanted),
                                  ImportRow.choice == ImportRow.UPDATE))
    return {(batch_id, user_id): changes or {} for batch_id, user_id, changes in rows}


def _readable(event: AuditEvent, imported: dict[tuple[int, int], dict[str, list]],
              owners: dict[int, int]) -> ReadableEvent:
    # A user's fields are named as the import names them (profile fields by their own name).
    labels = column_label if event.action == "user_updated" else words
    detail = dict(event.detail or {})
    changes = detail.pop("changes", None)
    if changes is None and event.action == "user_updated":
        changes = imported.get((detail.get("batch_id"), event.user_id))
    if isinstance(changes, dict):
        detail.pop("fields", None)  # the changes name them, with their values
        detail.pop("changed", None)
    parts = []
    for key, value in detail.items():
        if value is None or (value is False and key in _FLAG_PHRASES):
            continue
        if key == "batch_id" and isinstance(value, int):
            parts.append(Detail(f"Batch {value}", batch_id=value,
                                batch_owner_id=owners.get(value)))
        elif is_secret(key):
            parts.append(Detail("(not shown)", words(key)))
        elif key in _FLAG_PHRASES and value is True:
            parts.append(Detail(_FLAG_PHRASES[key]))
        elif key in ("fields", "changed") and isinstance(value, list):
            parts.append(Detail(", ".join(labels(name) for name in value), "Fields changed"))
        else:
            parts.append(Detail(_value_text(value), _DETAIL_LABELS.get(key) or words(key)))
    return ReadableEvent(event, action_label(event.action),
                         _change_details(changes, labels) if isinstance(changes, dict) else [],
                         parts)


def _change_details(changes: dict[str, Any], labels) -> list[Detail]:
    """One `Field: old → new` per change, by the fields' labels; a password (or a hash) only
    says that it changed."""
    parts = []
    for name in sorted(changes, key=lambda name: labels(name).casefold()):
        if is_secret(name):
            parts.append(Detail(PASSWORD_CHANGED))
            continue
        pair = changes[name]
        old, new = pair if isinstance(pair, list | tuple) and len(pair) == 2 else (None, pair)
        parts.append(Detail(f"{_value_text(old, name)} → {_value_text(new, name)}",
                            labels(name)))
    return parts


def _value_text(value: Any, key: str = "") -> str:
    """A stored value of field `key` in words (`columns.shown_value`), lists joined."""
    if value == []:
        return "(empty)"
    if isinstance(value, list | tuple):
        return ", ".join(_value_text(item) for item in value)
    if isinstance(value, dict):
        return ", ".join(f"{words(str(k))}: {_value_text(v)}" for k, v in value.items())
    return shown_value(value, key)

"""What the user page shows of one user besides the user row: the values of the profile
fields with their labels, the newest login that is still known, and the audit events by or
about the user, each in a sentence. Read-only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, joinedload

from .columns import label
from .models import (
    AuditEvent,
    ImportBatch,
    LoginSession,
    ProfileField,
    ProfileValue,
)

EVENTS_SHOWN = 50


@dataclass(frozen=True)
class ProfileEntry:
    """One profile field of the user: its label and symbolic name, the stored value or None,
    and whether the field is retired (kept, but out of imports and exports)."""

    label: str
    name: str
    value: str | None
    retired: bool


@dataclass(frozen=True)
class SignIn:
    """The user's open sessions: how many, and when the newest began. Logins are known only
    while their session lasts."""

    open_sessions: int
    newest: datetime | None


@dataclass(frozen=True)
class EventLine:
    """An audit event as the user page shows it: when, a sentence, who did it, from where."""

    when: datetime
    action: str
    sentence: str
    actor: str
    address: str


def profile_entries(session: Session, user_id: int) -> list[ProfileEntry]:
    """Every active profile field (empty ones too) and every retired one that holds a value for
    this user, in the order the fields were created."""
    values = dict(session.execute(select(ProfileValue.field_id, ProfileValue.value)
                                  .where(ProfileValue.user_id == user_id)).all())
    fields = session.scalars(select(ProfileField).order_by(ProfileField.id))
    return [ProfileEntry(field.label, field.name, values.get(field.id), field.retired)
            for field in fields if not field.retired or field.id in values]


def sign_in(session: Session, user_id: int) -> SignIn:
    """How many sessions of the user are open and when the newest began."""
    count, newest = session.execute(
        select(func.count(), func.max(LoginSession.created_at))
        .where(LoginSession.user_id == user_id)).one()
    return SignIn(count, newest)


def user_events(session: Session, user_id: int,
                limit: int = EVENTS_SHOWN) -> tuple[int, list[EventLine]]:
    """(how many audit events name the user as the one acted on or the actor, the newest
    `limit` of them as sentences)."""
    about = or_(AuditEvent.user_id == user_id, AuditEvent.actor_id == user_id)
    total = session.scalar(select(func.count()).select_from(AuditEvent).where(about)) or 0
    events = session.scalars(select(AuditEvent).options(joinedload(AuditEvent.actor))
                             .where(about).order_by(AuditEvent.id.desc()).limit(limit)).all()
    batches = batch_names(session, [e.detail.get("batch_id") for e in events if e.detail])
    field_labels = dict(session.execute(select(ProfileField.name, ProfileField.label)).all())
    return total, [EventLine(e.created_at, e.action, describe_event(e, batches, field_labels),
                             e.actor.username if e.actor else "", e.address or "")
                   for e in events]


def batch_names(session: Session, batch_ids: list[int | None]) -> dict[int, str]:
    """{batch id: its file name} for these batches (None and unknown ids are left out)."""
    ids = {batch_id for batch_id in batch_ids if isinstance(batch_id, int)}
    if not ids:
        return {}
    return dict(session.execute(select(ImportBatch.id, ImportBatch.filename)
                                .where(ImportBatch.id.in_(ids))).all())


def describe_event(event: AuditEvent, batches: dict[int, str],
                   field_labels: dict[str, str]) -> str:
    """One audit event in a sentence, with labels instead of field keys; never a password
    (the trail holds none)."""
    detail = event.detail or {}
    batch = _batch_name(detail.get("batch_id"), batches)
    action = event.action
    if action == "user_created":
        return f"Added by {batch}."
    if action == "user_updated":
        fields = ", ".join(field_labels.get(f, label(f)) for f in detail.get("fields") or [])
        return f"Updated by {batch}" + (f": {fields}." if fields else ".")
    if action == "invitations_queued":
        return f"Queued {_count(detail.get('count'), 'invitation')} for {batch}."
    if action == "invitation_sent":
        attempt = detail.get("attempts")
        return "Invitation e-mail accepted by the mail server" + (
            f" (attempt {attempt})." if attempt else ".")
    if action == "invitation_failed":
        return f"Invitation failed: {detail.get('reason') or 'no reason recorded'}"
    if action == "invitations_resent":
        scope = "failed " if detail.get("failed_only") else ""
        where = f" of {batch}" if detail.get("batch_id") else ""
        return f"Resent {_count(detail.get('count'), scope + 'invitation')}{where}."
    if action == "password_changed":
        return ("Chose a new password, as required at first login." if detail.get("forced")
                else "Changed their password.")
    if action == "password_change_failed":
        return "Gave a wrong current password while changing their password."
    if action == "login_failed":
        return "Failed login" + (" with an expired temporary password." if detail.get("expired")
                                 else ".")
    if action == "login_locked":
        scope = {"account_address": "from this address", "address": "from this address, for "
                 "every account", "account": "from addresses it has not logged in from"}
        return (f"Logins locked {scope.get(detail.get('scope'), '')} for "
                f"{detail.get('minutes')} minutes after {detail.get('failures')} failures.")
    if action == "password_policy_changed":
        return "Changed the password policy: " + ", ".join(
            name.replace("_", " ") for name in detail.get("changes") or {}) + "."
    if action.startswith("profile_field_"):
        verb = action.removeprefix("profile_field_")
        return f"Profile field “{detail.get('field')}” {verb}."
    if action.startswith("template_"):
        verb = "saved" if action == "template_saved" else "reset to the default"
        return f"Invitation template ({detail.get('language')}) {verb}."
    if action == "language_added":
        return f"Language “{detail.get('name')}” ({detail.get('code')}) added."
    if action == "default_language_changed":
        return f"Default language set to {detail.get('code')}."
    return action.replace("_", " ").capitalize() + "."


def _batch_name(batch_id, batches: dict[int, str]) -> str:
    if batch_id is None:
        return "an import"
    name = batches.get(batch_id)
    return f"the import of “{name}” (#{batch_id})" if name else f"import #{batch_id}"


def _count(count, noun: str) -> str:
    count = count or 0
    return f"{count} {noun}{'' if count == 1 else 's'}"

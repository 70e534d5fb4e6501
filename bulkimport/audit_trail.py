"""The audit trail: security-relevant events (password changes, policy changes, lockouts), written
in the same transaction as what they record."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from .models import AuditEvent


def record_event(session: Session, action: str, *, actor_id: int | None = None,
                 user_id: int | None = None, address: str | None = None,
                 **detail: Any) -> AuditEvent:
    """Add an audit event to `session` (the caller commits it with the change it records);
    `detail` must never hold a password."""
    event = AuditEvent(action=action, actor_id=actor_id, user_id=user_id, address=address,
                       detail=detail or None)
    session.add(event)
    return event

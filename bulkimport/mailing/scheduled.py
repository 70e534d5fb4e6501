"""Invitations scheduled for later (a start date, a chosen time): which ones still wait, and
sending them now or at another time. The database is the outbox, so a scheduled invitation
needs nothing else to survive a restart or a queue that lost its data: the sweep enqueues it
once it is due."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from ..audit_trail import record_event
from ..models import Invitation, utcnow

SCHEDULED = "scheduled"  # not a stored status: queued, and waiting for its time


def waiting_condition(now: datetime | None = None):
    """Invitations that wait for the time they were scheduled for (not yet tried)."""
    return Invitation.waits_for_its_time(now or utcnow())


def reschedule(session: Session, invitation_ids: list[int], when: datetime | None, *,
               actor_id: int | None) -> int:
    """Send the given invitations that still wait for their time at `when` (UTC), or now when
    it is None or past; returns how many. Their give-up window starts then, as at import (the
    round begins at the time it is scheduled for, so it is not taken for a Resend). The caller
    commits, then wakes the queue."""
    now = utcnow()
    due = when if when is not None and when > now else now
    moved = session.execute(
        update(Invitation).where(Invitation.id.in_(invitation_ids), waiting_condition(now))
        .values(next_attempt_at=due, started_at=due, enqueued_at=None, scheduled_at=due)
        .execution_options(synchronize_session=False)).rowcount
    if moved:
        record_event(session, "invitations_rescheduled", actor_id=actor_id, count=moved,
                     send_at=due.isoformat() if due > now else "now",
                     invitation_ids=invitation_ids[:100])
    return moved

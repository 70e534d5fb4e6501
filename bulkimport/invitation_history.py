"""What happened to each invitation, for the pages: every e-mail the server accepted and every
failure (from the audit trail, so that a Resend, which clears `sent_at`, does not hide the
earlier sending), the latest Resend, and which invitations a Resend would touch. Read-only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload

from .lookups import matching
from .models import AuditEvent, Invitation

SENT, FAILED, RESENT = "sent", "failed", "resent"
_ACTIONS = {"invitation_sent": SENT, "invitation_failed": FAILED}


@dataclass(frozen=True)
class HistoryEntry:
    """One step of an invitation: `what` is sent, failed or resent; `note` says more (the
    attempt that was accepted, the reason of a failure)."""

    when: datetime
    what: str
    note: str = ""


def histories(session: Session, invitations: list[Invitation]) -> dict[int, list[HistoryEntry]]:
    """{invitation id: its steps, oldest first} for these invitations, in one query of the
    audit trail (by the indexed user id)."""
    found: dict[int, list[tuple[datetime, int, HistoryEntry]]] = {i.id: [] for i in invitations}
    user_ids = sorted({i.user_id for i in invitations})
    for condition in matching(session, AuditEvent.user_id, user_ids):
        query = select(AuditEvent).where(condition, AuditEvent.action.in_(list(_ACTIONS)))
        for event in session.scalars(query):
            detail = event.detail or {}
            steps = found.get(detail.get("invitation_id"))
            if steps is None:
                continue
            what = _ACTIONS[event.action]
            note = (f"attempt {detail['attempts']}" if what == SENT and detail.get("attempts")
                    else str(detail.get("reason") or ""))
            steps.append((event.created_at, event.id, HistoryEntry(event.created_at, what, note)))
    return {invitation.id: _with_resend(invitation, sorted(found[invitation.id]))
            for invitation in invitations}


def _with_resend(invitation: Invitation,
                 events: list[tuple[datetime, int, HistoryEntry]]) -> list[HistoryEntry]:
    """The events with the latest Resend in its place. A Resend sets `started_at` (the start of
    the current round); only its latest time is kept, and equal times are ordered by the state:
    a round that has ended (sent or failed) ended after its Resend."""
    entries = [entry for _, _, entry in events]
    # Sent before the trail recorded sending: the row's own time stands in. (The event and the
    # row take their times a moment apart: any Sent of this round counts.)
    if invitation.status == Invitation.SENT and invitation.sent_at and not any(
            e.what == SENT and e.when >= invitation.started_at for e in entries):
        entries.append(HistoryEntry(invitation.sent_at, SENT))
    if not invitation.resent:
        return entries
    resent = invitation.started_at
    position = sum(1 for e in entries if e.when <= resent)
    if invitation.status in (Invitation.SENT, Invitation.FAILED) and entries:
        position = min(position, len(entries) - 1)
    return [*entries[:position], HistoryEntry(resent, RESENT), *entries[position:]]


def latest_invitations(session: Session, user_ids: list[int]) -> dict[int, Invitation]:
    """{user id: that user's most recent invitation} for these users (those who have one)."""
    latest: dict[int, Invitation] = {}
    for condition in matching(session, Invitation.user_id, sorted(set(user_ids))):
        for invitation in session.scalars(select(Invitation).where(condition)
                                          .order_by(Invitation.id)):
            latest[invitation.user_id] = invitation  # later invitations win
    return latest


def resend_candidates(session: Session, invitation_ids: list[int] | None, *,
                      batch_id: int | None = None, failed_only: bool = False,
                      limit: int = 100) -> tuple[int, list[Invitation]]:
    """(how many invitations a Resend with these arguments would queue again, the first `limit`
    of them with their users): the same choice as `mailing.sending.resend`, which leaves the
    invitations being sent right now alone."""
    conditions = [Invitation.status != Invitation.SENDING]
    if invitation_ids is not None:
        conditions.append(Invitation.id.in_(invitation_ids))
    if batch_id is not None:
        conditions.append(Invitation.batch_id == batch_id)
    if failed_only:
        conditions.append(Invitation.status == Invitation.FAILED)
    total = session.scalar(select(func.count()).select_from(Invitation).where(*conditions))
    shown = session.scalars(select(Invitation).options(joinedload(Invitation.user))
                            .where(*conditions).order_by(Invitation.id).limit(limit)).all()
    return total or 0, list(shown)

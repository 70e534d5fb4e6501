"""Who an applied import added and updated, for its result page: the rows with their outcome,
the user each one became, and that user's invitation. Read-only."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from .columns import label
from .lookups import matching
from .models import ImportRow, Invitation, ProfileField, RowOutcome, User, fold_key

CHANGED = (RowOutcome.ADDED, RowOutcome.UPDATED, RowOutcome.BLOCKED)
SHOWS = ("changed", RowOutcome.ADDED.value, RowOutcome.UPDATED.value, RowOutcome.BLOCKED.value)


@dataclass(frozen=True)
class ChangedUser:
    """One added or updated row: its line, what was done, the user (None if it has been
    deleted or renamed since), the labels of the changed fields, and the batch's invitation
    of that user."""

    line: int
    username: str
    outcome: str
    user: User | None
    changed: list[str]
    invitation: Invitation | None


def changed_rows_query(batch_id: int, show: str = "changed"):
    """The select() of a batch's added, updated and blocked rows (or only one kind), in file
    order, the users missing from the file last."""
    outcomes = [show] if show in CHANGED else list(CHANGED)
    return (select(ImportRow).where(ImportRow.batch_id == batch_id,
                                    ImportRow.outcome.in_(outcomes))
            .order_by(ImportRow.line, ImportRow.id))


def changed_users(session: Session, batch_id: int, rows: list[ImportRow]) -> list[ChangedUser]:
    """These rows of the batch with their users: an updated or blocked row names its user; an
    added one is found by its username (a user renamed since is not found)."""
    keys = {fold_key(r.username) for r in rows if r.outcome == RowOutcome.ADDED}
    by_key: dict[str, User] = {}
    for condition in matching(session, User.username_key, keys):
        by_key.update((u.username_key, u) for u in session.scalars(select(User).where(condition)))
    ids = {r.user_id for r in rows if r.outcome != RowOutcome.ADDED and r.user_id}
    by_id: dict[int, User] = {}
    for condition in matching(session, User.id, ids):
        by_id.update((u.id, u) for u in session.scalars(select(User).where(condition)))
    found = {row.id: (by_id.get(row.user_id) if row.outcome != RowOutcome.ADDED
                      else by_key.get(fold_key(row.username))) for row in rows}
    invitations: dict[int, Invitation] = {}
    user_ids = {user.id for user in found.values() if user is not None}
    for condition in matching(session, Invitation.user_id, user_ids):
        invitations.update((i.user_id, i) for i in session.scalars(
            select(Invitation).where(condition, Invitation.batch_id == batch_id)))
    labels = dict(session.execute(select(ProfileField.name, ProfileField.label)).all())
    return [ChangedUser(row.line, row.username, row.outcome, found[row.id],
                        [labels.get(key, label(key)) for key in sorted(row.changes or {})],
                        invitations.get(found[row.id].id) if found[row.id] else None)
            for row in rows]

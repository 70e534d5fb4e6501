"""What the administrator sees of the invitations: counts, an estimate of the time left, and
each user's latest invitation state. Read-only queries for the views."""

from __future__ import annotations

import math

from flask import current_app
from sqlalchemy import func, select

from ..extensions import db
from ..models import Invitation, User, utcnow
from ..site_time import local_text
from .scheduled import SCHEDULED, waiting_condition

STATUSES = (Invitation.QUEUED, Invitation.SENDING, Invitation.SENT, Invitation.FAILED)
EXPIRED = "expired"  # not a stored status: a sent invitation whose password is past its validity


def invitation_counts(batch_id: int | None = None) -> dict[str, int]:
    """Invitations per status (of one batch, or of all), plus their total."""
    query = select(Invitation.status, func.count()).group_by(Invitation.status)
    if batch_id is not None:
        query = query.where(Invitation.batch_id == batch_id)
    counts = dict.fromkeys(STATUSES, 0)
    counts.update(dict(db.session.execute(query).all()))
    counts["total"] = sum(counts[s] for s in STATUSES)
    of_batch = [Invitation.batch_id == batch_id] if batch_id else []
    counts[EXPIRED] = db.session.scalar(
        select(func.count()).select_from(Invitation).join(Invitation.user)
        .where(expired_condition(), *of_batch))
    counts[SCHEDULED], counts["next_scheduled"] = db.session.execute(
        select(func.count(), func.min(Invitation.next_attempt_at))
        .where(waiting_condition(), *of_batch)).one()
    return counts


def expired_condition():
    """Sent invitations whose password has passed its validity without being replaced: the
    user can no longer log in with it and needs Resend."""
    return (Invitation.status == Invitation.SENT) & (User.temp_password_expires_at <= utcnow())


def progress(counts: dict[str, int], paused: str | None, batch_id: int | None = None) -> dict:
    """Percentage done and a sentence estimating the time left under the send-rate limit: for
    one batch, counting the other imports' e-mails that share that limit with it, in the fair
    order of `mailing.fairness` (small imports and resends first, then the imports in turn)."""
    done = counts[Invitation.SENT] + counts[Invitation.FAILED]
    later = counts.get(SCHEDULED, 0)  # waiting for their time: not in the estimate
    remaining = counts[Invitation.QUEUED] + counts[Invitation.SENDING] - later
    percent = 100 if not counts["total"] else math.floor(100 * done / counts["total"])
    rate = current_app.config["MAIL_RATE_PER_MINUTE"]
    if not remaining and later:
        estimate = (f"{later:,} invitation{'s are' if later != 1 else ' is'} scheduled for "
                    f"later; the first goes at {local_text(counts['next_scheduled'])}.")
    elif not remaining:
        estimate = "All invitations have been handled."
    elif paused:
        estimate = "Sending is paused: " + paused
    elif rate > 0:
        estimate = _estimate(remaining, rate, counts["total"], batch_id)
    else:
        estimate = "No send-rate limit: as fast as the workers and the mail server allow."
    if remaining and later:
        estimate += (f" {later:,} more {'are' if later != 1 else 'is'} scheduled for later, "
                     f"the first at {local_text(counts['next_scheduled'])}.")
    return {"percent": percent, "done": done, "remaining": remaining, "estimate": estimate}


def _estimate(remaining: int, rate: int, total: int, batch_id: int | None) -> str:
    """The time left of `remaining` e-mails at `rate` a minute, with the others sharing it."""
    waiting = (Invitation.status.in_((Invitation.QUEUED, Invitation.SENDING)))
    others = dict(db.session.execute(
        select(Invitation.batch_id, func.count())
        .where(waiting, Invitation.batch_id.is_not(None), Invitation.batch_id != batch_id)
        .group_by(Invitation.batch_id)).all()) if batch_id else {}
    small = current_app.config["MAIL_SMALL_BATCH"]
    if total <= small:  # goes ahead of bulk runs: at most the queue window is before it
        before = min(sum(others.values()), current_app.config["MAIL_QUEUE_AHEAD"])
        shared, how = remaining + before, "ahead of bulk imports"
    else:  # the imports take turns: each other one sends alongside while it lasts
        before = sum(min(n, remaining) for n in others.values())
        shared, how = remaining + before, "in turn with them"
    minutes = math.ceil(shared / rate)
    left = f"About {minutes} minute{'s' if minutes != 1 else ''} left"
    if not others:
        return (f"{left} at {rate} e-mails a minute: the send-rate limit sets the pace "
                "(retries of deferred e-mails may take longer).")
    return (f"{left}: {sum(others.values()):,} e-mails of {len(others)} other "
            f"import{'s' if len(others) != 1 else ''} are waiting too, and this one is sent "
            f"{how}; the send-rate limit of {rate} a minute is shared by all.")


def latest_status_by_user(user_ids: list[int]) -> dict[int, str]:
    """The status of each user's most recent invitation, for the user list ("expired" for a sent
    one whose password is past its validity)."""
    if not user_ids:
        return {}
    rows = db.session.execute(
        select(Invitation.user_id, Invitation.status, User.temp_password_expires_at)
        .join(Invitation.user).where(Invitation.user_id.in_(user_ids)).order_by(Invitation.id))
    now = utcnow()
    return {user_id: EXPIRED if status == Invitation.SENT and expires and expires <= now
            else status for user_id, status, expires in rows}  # later invitations win

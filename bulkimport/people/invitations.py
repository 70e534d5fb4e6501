"""Views of Admin > People > Invitations: the status of every invitation, per batch or across
batches, and Resend."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from ..extensions import db
from ..mailing.dispatch import wake
from ..mailing.sending import paused_reason, resend
from ..mailing.status import EXPIRED, STATUSES, expired_condition, invitation_counts, progress
from ..models import ImportBatch, Invitation, User, utcnow
from ..web import page_number, whole_number
from . import bp
from .forms import ResendForm

PER_PAGE = 100


def _invitations_query(batch_id: int | None, status: str):
    query = select(Invitation).options(joinedload(Invitation.user)).order_by(Invitation.id)
    if batch_id is not None:
        query = query.where(Invitation.batch_id == batch_id)
    if status in STATUSES:
        query = query.where(Invitation.status == status)
    elif status == EXPIRED:
        query = query.join(User, Invitation.user_id == User.id).where(expired_condition())
    return query


@bp.get("/invitations")
def invitations():
    """Every invitation across batches, filterable by status."""
    return _invitations_page(None)


@bp.get("/import/<int:batch_id>/invitations")
def batch_invitations(batch_id: int):
    """The invitations of one batch: a progress bar, counts, time left, and the users."""
    return _invitations_page(_batch(batch_id))


def _invitations_page(batch: ImportBatch | None):
    batch_id = batch.id if batch else None
    status = request.args.get("status", "all")
    page = db.paginate(_invitations_query(batch_id, status), page=page_number(request.args),
                       per_page=PER_PAGE, error_out=False)
    counts = invitation_counts(batch_id)
    return render_template("people/invitations.html", batch=batch, page=page, status=status,
                           counts=counts, progress=progress(counts, paused_reason()),
                           form=ResendForm(), now=utcnow())


@bp.get("/import/<int:batch_id>/invitations.json")
def batch_invitations_status(batch_id: int):
    """Counts and progress of a batch's invitations, for the moving progress bar."""
    batch = _batch(batch_id)
    counts = invitation_counts(batch.id)
    return {"counts": counts, **progress(counts, paused_reason())}


@bp.post("/invitations/resend")
def resend_invitations():
    """Resend one invitation, the selected ones, or every failed one (of a batch or of all)."""
    form = ResendForm()
    if not form.validate_on_submit():
        abort(400)
    batch_id = whole_number(form.batch_id.data)
    if batch_id is not None:
        _batch(batch_id)
    if form.all_failed.data:
        count = resend(batch_id=batch_id, failed_only=True, actor_id=current_user.id)
    else:
        chosen = [form.one.data] if form.one.data else form.selected.data
        ids = [n for n in map(whole_number, chosen) if n is not None][:PER_PAGE]
        count = resend(ids, batch_id=batch_id, actor_id=current_user.id) if ids else 0
    db.session.commit()
    if count:
        wake()
        flash(f"{count} invitation{'s' if count != 1 else ''} will be sent again with a new "
              "password; the old password stops working once the new e-mail is accepted.",
              "success")
    else:
        flash("Nothing to resend: select invitations that are not being sent right now.", "info")
    if batch_id is not None:
        return redirect(url_for(".batch_invitations", batch_id=batch_id))
    return redirect(url_for(".invitations"))


def _batch(batch_id: int) -> ImportBatch:
    """Any administrator may follow any batch's invitations (reviews stay with their owner)."""
    batch = db.session.get(ImportBatch, batch_id)
    if batch is None:
        abort(404)
    return batch

"""Views of Admin > People > Invitations: the status of every invitation, per batch or across
batches, and Resend."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from ..extensions import db
from ..importing.schedule import AT, ScheduleError, build
from ..invitation_history import histories, resend_candidates
from ..mailing.dispatch import wake
from ..mailing.scheduled import SCHEDULED, reschedule, waiting_condition
from ..mailing.sending import paused_reason, resend
from ..mailing.status import EXPIRED, STATUSES, expired_condition, invitation_counts, progress
from ..models import ImportBatch, Invitation, User, utcnow
from ..site_time import local_text
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
    elif status == SCHEDULED:
        query = query.where(waiting_condition())
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
                           counts=counts, progress=progress(counts, paused_reason(), batch_id),
                           form=ResendForm(), now=utcnow(),
                           histories=histories(db.session, page.items))


@bp.get("/import/<int:batch_id>/invitations.json")
def batch_invitations_status(batch_id: int):
    """Counts and progress of a batch's invitations, for the moving progress bar."""
    batch = _batch(batch_id)
    counts = invitation_counts(batch.id)
    return {"counts": counts, **progress(counts, paused_reason(), batch.id)}


@bp.post("/invitations/resend")
def resend_invitations():
    """Resend one invitation, the selected ones, or every failed one (of a batch or of all).
    The first POST answers with a page that lists them and says what happens to the password
    the user has now; only its confirming POST resends."""
    form, batch_id, user, back = _posted()
    failed_only = bool(form.all_failed.data)
    ids = None if failed_only else _chosen_ids(form)
    if ids == []:
        flash("Nothing to resend: select the invitations to send again.", "info")
        return redirect(back)
    if not form.confirm.data:
        total, shown = resend_candidates(db.session, ids, batch_id=batch_id,
                                         failed_only=failed_only, limit=PER_PAGE)
        if not total:
            flash("Nothing to resend: these invitations are being sent right now.", "info")
            return redirect(back)
        return render_template("people/resend_confirm.html", form=form, total=total,
                               shown=shown, histories=histories(db.session, shown),
                               failed_only=failed_only, batch=_batch(batch_id)
                               if batch_id is not None else None, user=user, back=back,
                               now=utcnow())
    count = resend(ids, batch_id=batch_id, failed_only=failed_only, actor_id=current_user.id)
    db.session.commit()
    if count:
        wake()
        flash(f"{count} invitation{'s' if count != 1 else ''} will be sent again with a new "
              "password (or link); the old one stops working once the new e-mail is accepted.",
              "success")
    else:
        flash("Nothing to resend: select invitations that are not being sent right now.", "info")
    return redirect(back)


@bp.post("/invitations/schedule")
def schedule_invitations():
    """Send the ticked scheduled invitations now, or move them to another time (in the site's
    time zone)."""
    form, batch_id, _, back = _posted()
    ids = _chosen_ids(form)
    if not ids:
        flash("Nothing to change: select the scheduled invitations first.", "info")
        return redirect(back)
    when = None
    if form.move.data:
        try:
            when = build(AT, at=form.send_at.data or "").at
        except ScheduleError as problem:
            flash(f"The invitations were not moved: {problem}", "danger")
            return redirect(back)
    count = reschedule(db.session, ids, when, actor_id=current_user.id)
    db.session.commit()
    if not count:
        flash("Nothing to change: only invitations still waiting for their time can be sent "
              "now or moved.", "info")
        return redirect(back)
    wake()
    plural = "s" if count != 1 else ""
    flash(f"{count} invitation{plural} will be sent now." if when is None else
          f"{count} invitation{plural} will be sent at {local_text(when)}.", "success")
    return redirect(back)


def _posted() -> tuple[ResendForm, int | None, User | None, str]:
    """The invitations page's form as posted (400 unless valid), the batch it names (404 if
    none such), the user page it came from, and where to return."""
    form = ResendForm()
    if not form.validate_on_submit():
        abort(400)
    batch_id = whole_number(form.batch_id.data)
    if batch_id is not None:
        _batch(batch_id)
    user = _return_user(form.user_id.data)
    return form, batch_id, user, _back_url(batch_id, user)


def _chosen_ids(form: ResendForm) -> list[int]:
    """The invitation ids of the row's button or of the ticked rows, at most a page of them."""
    chosen = [form.one.data] if form.one.data else form.selected.data or []
    return [n for n in map(whole_number, chosen) if n is not None][:PER_PAGE]


def _return_user(value) -> User | None:
    """The user whose page the Resend came from (and returns to), if it names one."""
    user_id = whole_number(value)
    return db.session.get(User, user_id) if user_id is not None else None


def _back_url(batch_id: int | None, user: User | None) -> str:
    """Where a Resend returns: the user's page, the batch's invitations, or all invitations."""
    if user is not None:
        return url_for(".user_page", user_id=user.id)
    if batch_id is not None:
        return url_for(".batch_invitations", batch_id=batch_id)
    return url_for(".invitations")


def _batch(batch_id: int) -> ImportBatch:
    """Any administrator may follow any batch's invitations (reviews stay with their owner)."""
    return db.get_or_404(ImportBatch, batch_id)

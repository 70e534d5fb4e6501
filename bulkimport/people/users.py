"""Views of Admin > People > a user: the account, its profile fields, its invitations with their
history, the audit events by or about it, Resend, and blocking or unblocking accounts (one from
its page, several from the list)."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, url_for
from flask_login import current_user
from sqlalchemy import select

from ..account_state import block_refusal, set_blocked
from ..extensions import db
from ..invitation_history import histories
from ..mailing.dispatch import wake
from ..models import Invitation, Language, User, utcnow
from ..user_details import batch_names, profile_entries, sign_in, user_events
from ..web import whole_number
from . import bp
from .forms import ACCOUNT_STATES, AccountStateForm, ResendForm

MAX_SELECTED = 200  # a page of the list, with room to spare


@bp.get("/users/<int:user_id>")
def user_page(user_id: int):
    """One user's page; 404 for an unknown id."""
    user = db.get_or_404(User, user_id)
    invitations = list(db.session.scalars(
        select(Invitation).where(Invitation.user_id == user.id).order_by(Invitation.id.desc())))
    language = db.session.get(Language, user.language) if user.language else None
    event_count, events = user_events(db.session, user.id)
    return render_template("people/user.html", user=user, language=language,
                           profile=profile_entries(db.session, user.id),
                           signed_in=sign_in(db.session, user.id), invitations=invitations,
                           histories=histories(db.session, invitations), events=events,
                           batches=batch_names(db.session, [i.batch_id for i in invitations]),
                           event_count=event_count, form=ResendForm(),
                           state_form=AccountStateForm(), now=utcnow())


@bp.post("/users/<int:user_id>/state")
def change_state(user_id: int):
    """Block or unblock the user of this page."""
    user = db.get_or_404(User, user_id)
    form = AccountStateForm()
    if not form.validate_on_submit():
        abort(400)
    _change_states(form, [user])
    return redirect(url_for(".user_page", user_id=user.id))


@bp.post("/users/state")
def change_states():
    """Block or unblock the users ticked in the list, then show the list as it was."""
    form = AccountStateForm()
    if not form.validate_on_submit():
        abort(400)
    ids = {n for n in map(whole_number, (form.selected.data or [])[:MAX_SELECTED])
           if n is not None}
    users = list(db.session.scalars(select(User).where(User.id.in_(ids)).order_by(
        User.username_key))) if ids else []
    if not users:
        flash("Nothing changed: tick the users to block or unblock first.", "info")
    else:
        _change_states(form, users)
    return redirect(url_for(".index", q=form.q.data or None,
                            state=form.state.data if form.state.data in ACCOUNT_STATES
                            else None))


def _change_states(form: AccountStateForm, users: list[User]) -> None:
    """Apply the form's Block or Unblock to `users`, refused as a whole when a block would
    lock out the administrator or the site; says what was done."""
    blocked = bool(form.block.data)
    if blocked:
        refusal = block_refusal(db.session, current_user.id, users)
        if refusal:
            db.session.rollback()
            flash(f"Nothing changed: {refusal}", "danger")
            return
    changed = set_blocked(db.session, current_user.id, users, blocked)
    db.session.commit()
    if not changed:
        flash(f"Nothing changed: {'already blocked' if blocked else 'not blocked'}.", "info")
        return
    if not blocked:
        wake()  # their waiting invitations are due now
    names = ", ".join(user.username for user in changed[:10])
    more = f" and {len(changed) - 10} more" if len(changed) > 10 else ""
    if blocked:
        flash(f"Blocked {names}{more}: they cannot log in, their sessions have ended, and "
              "their invitations wait until they are unblocked.", "success")
    else:
        flash(f"Unblocked {names}{more}: they can log in again, and their waiting "
              "invitations are being sent.", "success")

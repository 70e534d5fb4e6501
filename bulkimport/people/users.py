"""View of Admin > People > a user: the account, its profile fields, its invitations with their
history, the audit events by or about it, and Resend."""

from __future__ import annotations

from flask import abort, render_template
from sqlalchemy import select

from ..extensions import db
from ..invitation_history import histories
from ..models import Invitation, Language, User, utcnow
from ..user_details import batch_names, profile_entries, sign_in, user_events
from . import bp
from .forms import ResendForm


@bp.get("/users/<int:user_id>")
def user_page(user_id: int):
    """One user's page; 404 for an unknown id."""
    user = db.session.get(User, user_id)
    if user is None:
        abort(404)
    invitations = list(db.session.scalars(
        select(Invitation).where(Invitation.user_id == user.id).order_by(Invitation.id.desc())))
    language = db.session.get(Language, user.language) if user.language else None
    event_count, events = user_events(db.session, user.id)
    return render_template("people/user.html", user=user, language=language,
                           profile=profile_entries(db.session, user.id),
                           signed_in=sign_in(db.session, user.id), invitations=invitations,
                           histories=histories(db.session, invitations), events=events,
                           batches=batch_names(db.session, [i.batch_id for i in invitations]),
                           event_count=event_count, form=ResendForm(), now=utcnow())

"""View of Admin > System > Audit log: the security-relevant events, newest first, filterable
by event and by user (as actor or subject)."""

from __future__ import annotations

from flask import render_template, request
from sqlalchemy import false, or_, select
from sqlalchemy.orm import joinedload

from ..extensions import db
from ..models import AuditEvent, User, fold_key
from ..web import page_number
from . import bp

EVENTS_PER_PAGE = 100


@bp.get("/audit")
def audit_log():
    """The audit trail; `action` and `user` (a username) filter it."""
    action = request.args.get("action", "").strip()
    username = request.args.get("user", "").strip()
    query = (select(AuditEvent)
             .options(joinedload(AuditEvent.actor), joinedload(AuditEvent.user))
             .order_by(AuditEvent.id.desc()))
    if action:
        query = query.where(AuditEvent.action == action)
    unknown_user = False
    if username:
        user_id = db.session.scalar(select(User.id).where(User.username_key == fold_key(username)))
        unknown_user = user_id is None
        # An unknown name matches nothing (comparing with NULL would match events without one).
        query = query.where(false() if unknown_user else or_(AuditEvent.actor_id == user_id,
                                                             AuditEvent.user_id == user_id))
    events = db.paginate(query, page=page_number(request.args), per_page=EVENTS_PER_PAGE,
                         error_out=False, count=True)
    actions = db.session.scalars(select(AuditEvent.action).distinct().order_by(AuditEvent.action))
    return render_template("system/audit.html", events=events, action=action,
                           username=username, actions=list(actions), unknown_user=unknown_user)

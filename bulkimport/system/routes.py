"""Views of Admin > System: the outbox (only without an SMTP server) and resuming mail.

The outbox pages read only the masked copy the outbox writes beside each message, never the
.eml file itself, so that no administrator sees another user's password.
"""

from __future__ import annotations

from pathlib import Path

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_sqlalchemy.pagination import Pagination
from flask_wtf import FlaskForm
from wtforms import SearchField

from ..extensions import db
from ..headers import FramedDocument
from ..mailing.dispatch import wake
from ..mailing.outbox_index import MESSAGE_NAME, OutboxPage, browse, read_view
from ..mailing.sending import paused_reason, try_resume
from ..mailing.transport import purge_outbox
from ..web import page_number
from . import bp

MESSAGES_PER_PAGE = 50


class OutboxSearchForm(FlaskForm):
    """The outbox's search by recipient (a GET form: it changes nothing)."""

    class Meta:  # noqa: D106
        csrf = False

    to = SearchField("To contains")


class OutboxPagination(Pagination):
    """One page of the outbox index, shaped as Flask-SQLAlchemy's pagination for the shared
    pager macro."""

    def _query_items(self) -> list:
        return self._query_args["found"].messages

    def _query_count(self) -> int:
        return self._query_args["found"].matching


def _outbox() -> Path:
    if current_app.config["MAIL_SERVER"]:
        abort(404)  # the outbox exists only in the embedded mode
    return Path(current_app.instance_path) / "outbox"


def _message_view(name: str) -> dict:
    """The masked view of the outbox message `name`; 404 for a name the outbox does not write
    (a path above all) or a message that is not there."""
    if not MESSAGE_NAME.match(name):
        abort(404)
    folder = _outbox()
    if not (folder / name).is_file():
        abort(404)
    return {"name": name, **read_view(folder, name)}


@bp.get("/outbox")
def outbox():
    """The e-mails written to instance/outbox/, newest first, a page at a time, searchable by
    recipient, after deleting those older than OUTBOX_RETENTION_DAYS."""
    folder = _outbox()
    retention = current_app.config["OUTBOX_RETENTION_DAYS"]
    purge_outbox(folder, retention)
    form = OutboxSearchForm(request.args)
    recipient = (form.to.data or "").strip()
    page = page_number(request.args)
    found = browse(folder, recipient=recipient, offset=(page - 1) * MESSAGES_PER_PAGE,
                   limit=MESSAGES_PER_PAGE)
    if not found.messages and found.matching:  # past the last page: show the last one
        page = -(-found.matching // MESSAGES_PER_PAGE)
        found = browse(folder, recipient=recipient, offset=(page - 1) * MESSAGES_PER_PAGE,
                       limit=MESSAGES_PER_PAGE)
    return render_template("system/outbox.html", form=form, messages=_paginate(found, page),
                           total=found.total, recipient=recipient,
                           filters={"to": recipient} if recipient else {},
                           retention_days=retention)


def _paginate(found: OutboxPage, page: int) -> OutboxPagination:
    return OutboxPagination(page=page, per_page=MESSAGES_PER_PAGE, max_per_page=None,
                            error_out=False, found=found)


@bp.get("/outbox/<name>")
def outbox_message(name: str):
    """One e-mail of the outbox: its headers, its text part, and its HTML part in a sandboxed
    frame."""
    return render_template("system/outbox_message.html", message=_message_view(name))


@bp.get("/outbox/<name>/html")
def outbox_message_html(name: str):
    """The HTML part of one e-mail of the outbox, password masked, for the sandboxed frame of
    its page: under a policy that lets nothing in it run or load (see FramedDocument)."""
    markup = _message_view(name).get("html")
    if markup is None:
        abort(404)  # a message without an HTML part, or written before the outbox kept it
    return FramedDocument(markup)


@bp.post("/mail/resume")
def resume_mail():
    """Test the SMTP connection now and resume sending if it works."""
    if not FlaskForm().validate_on_submit():
        abort(400)
    resumed = try_resume()
    db.session.commit()
    if resumed:
        wake()
        flash("The mail server accepts our connection: sending has resumed.", "success")
    else:
        flash(f"Sending is still paused: {paused_reason()}", "danger")
    return redirect(url_for("people.invitations"))


@bp.app_context_processor
def mail_banner() -> dict:
    """Tell administrators, on every page, when sending is paused and why."""
    if current_user.is_authenticated and current_user.is_admin:
        return {"mail_paused": paused_reason(),
                "outbox_mode": not current_app.config["MAIL_SERVER"]}
    return {"mail_paused": None, "outbox_mode": False}

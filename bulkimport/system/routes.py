"""Views of Admin > System: the outbox (only without an SMTP server) and resuming mail."""

from __future__ import annotations

import re
from email import policy
from email.parser import BytesParser
from pathlib import Path

from flask import abort, current_app, flash, redirect, render_template, url_for
from flask_login import current_user
from flask_wtf import FlaskForm

from ..extensions import db
from ..mailing.dispatch import wake
from ..mailing.sending import paused_reason, try_resume
from . import bp

_EML_NAME = re.compile(r"^[0-9T]+-[0-9a-f]{8}\.eml$")


def _outbox() -> Path:
    if current_app.config["MAIL_SERVER"]:
        abort(404)  # the outbox exists only in the embedded mode
    return Path(current_app.instance_path) / "outbox"


def _read(path: Path) -> dict:
    with path.open("rb") as handle:
        message = BytesParser(policy=policy.default).parse(handle)
    text = message.get_body(preferencelist=("plain",))
    return {"name": path.name, "to": message["To"], "subject": message["Subject"],
            "date": message["Date"], "text": text.get_content() if text else ""}


@bp.get("/outbox")
def outbox():
    """The e-mails written to instance/outbox/, newest first."""
    folder = _outbox()
    files = sorted(folder.glob("*.eml"), reverse=True)[:500] if folder.exists() else []
    return render_template("system/outbox.html", messages=[_read(p) for p in files])


@bp.get("/outbox/<name>")
def outbox_message(name: str):
    """One e-mail of the outbox, as its recipient would read the text part."""
    if not _EML_NAME.match(name):
        abort(404)
    path = _outbox() / name
    if not path.exists():
        abort(404)
    return render_template("system/outbox_message.html", message=_read(path))


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

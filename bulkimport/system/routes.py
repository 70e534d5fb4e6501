"""Views of Admin > System: the outbox (only without an SMTP server) and resuming mail.

The outbox pages read only the masked copy the outbox writes beside each message, never the
.eml file itself, so that no administrator sees another user's password.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from flask import abort, current_app, flash, redirect, render_template, url_for
from flask_login import current_user
from flask_wtf import FlaskForm

from ..extensions import db
from ..mailing.dispatch import wake
from ..mailing.sending import paused_reason, try_resume
from ..mailing.transport import purge_outbox
from . import bp

_EML_NAME = re.compile(r"^[0-9T]+-[0-9a-f]{8}\.eml$")


def _outbox() -> Path:
    if current_app.config["MAIL_SERVER"]:
        abort(404)  # the outbox exists only in the embedded mode
    return Path(current_app.instance_path) / "outbox"


def _read(path: Path) -> dict:
    """The masked view of the message at `path` (its .json neighbour)."""
    try:
        view = json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError):  # written by an earlier version, or by hand
        view = {"to": "", "subject": "(not shown: this file has no masked copy)", "date": "",
                "text": "This message is not shown, because it may hold a password. It is in "
                        f"instance/outbox/{path.name} on the server."}
    return {"name": path.name, **view}


@bp.get("/outbox")
def outbox():
    """The e-mails written to instance/outbox/, newest first, after deleting those older than
    OUTBOX_RETENTION_DAYS."""
    folder = _outbox()
    retention = current_app.config["OUTBOX_RETENTION_DAYS"]
    purge_outbox(folder, retention)
    files = sorted(folder.glob("*.eml"), reverse=True)[:500] if folder.exists() else []
    return render_template("system/outbox.html", messages=[_read(p) for p in files],
                           retention_days=retention)


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

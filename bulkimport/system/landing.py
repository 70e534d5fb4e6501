"""The Admin > System landing page: every page of the menu with one line on what it is for,
which is also where the menu's toggle leads when JavaScript does not open the menu."""

from __future__ import annotations

from flask import current_app, render_template
from flask_login import current_user

from . import bp

# (endpoint, name, what it is for): the menu of the top bar and the landing page, in this order.
SYSTEM_PAGES = (
    ("localisation.index", "Localisation",
     "The languages of the site, and the invitation e-mail in each: edit, preview, send a test."),
    ("system.audit_log", "Audit log",
     "Who did what and when: failed logins, password changes, invitations, templates, settings."),
)
OUTBOX_PAGE = ("system.outbox", "Outbox",
               "The e-mails written to files because no SMTP server is configured.")


def system_pages() -> tuple[tuple[str, str, str], ...]:
    """The pages of Admin > System; the outbox only while e-mails go to files, not to SMTP."""
    return SYSTEM_PAGES if current_app.config["MAIL_SERVER"] else (*SYSTEM_PAGES, OUTBOX_PAGE)


@bp.get("")
def index():
    """Admin > System: its pages, each with one line on what it does."""
    return render_template("system/index.html", pages=system_pages())


@bp.app_context_processor
def system_menu() -> dict:
    """The pages of the Admin > System menu, for the top bar of administrators' pages."""
    if current_user.is_authenticated and current_user.is_admin:
        return {"system_pages": system_pages()}
    return {"system_pages": ()}

"""The Admin > People landing page: every page of the menu with one line on what it is for,
which is also where the menu's toggle leads when JavaScript does not open the menu."""

from __future__ import annotations

from flask import render_template

from . import bp

# (endpoint, name, what it is for): the menu of the top bar and the landing page, in this order.
PEOPLE_PAGES = (
    ("people.index", "Users",
     "Every account, with its role, language and invitation; search by name or e-mail."),
    ("people.upload", "Add/Update from CSV file",
     "Upload a CSV file or an Excel workbook, review every row, then add or update the users."),
    ("people.invitations", "Invitations",
     "Which invitation e-mails were sent, queued or failed, and why; resend them."),
    ("people.export", "Export users",
     "Download the users as a CSV file that the import reads back unchanged."),
    ("people.history", "Import history",
     "Every uploaded file: who uploaded it, when, what it changed, and its results file."),
    ("people.fields", "Profile fields",
     "The custom fields of every user (a text, a number, a date, a choice, yes/no)."),
    ("people.mappings", "Saved mappings",
     "What the columns of other systems' exports become, remembered from earlier imports."),
    ("people.password_policy", "Password policy",
     "The rules every password must follow, and how long a generated password lasts."),
)


@bp.get("/overview")
def overview():
    """Admin > People: its pages, each with one line on what it does."""
    return render_template("people/overview.html", pages=PEOPLE_PAGES)


@bp.app_context_processor
def people_menu() -> dict:
    """The pages of the Admin > People menu, for the top bar of every page."""
    return {"people_pages": PEOPLE_PAGES}

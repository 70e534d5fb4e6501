"""View of Admin > System > Audit log: the security-relevant events in words, newest first,
filterable by event, user (as actor or subject) and days, and downloadable as CSV."""

from __future__ import annotations

from flask import render_template, request
from flask_wtf import FlaskForm
from wtforms import DateField, SearchField, SelectField
from wtforms.validators import Optional, ValidationError

from ..audit_trail import (
    EventFilter,
    export_rows,
    filtered_events,
    readable_events,
    recorded_actions,
)
from ..csvfiles import csv_lines
from ..extensions import db
from ..models import utcnow
from ..web import csv_response, form_status, page_number, site_file_prefix
from . import bp

EVENTS_PER_PAGE = 100
BAD_DATE = "Enter a date as YYYY-MM-DD, e.g. 2026-12-01."


class AuditFilterForm(FlaskForm):
    """The audit log's filters (a GET form: it changes nothing)."""

    class Meta:  # noqa: D106
        csrf = False

    action = SelectField("Event", choices=[], validate_choice=False)
    user = SearchField("User (who did it, or to whom)")
    from_date = DateField("From (UTC)", validators=[Optional()], invalid_value_message=BAD_DATE)
    to_date = DateField("To (UTC), included", validators=[Optional()],
                        invalid_value_message=BAD_DATE)

    def validate_to_date(self, field):
        """The last day may not come before the first."""
        if field.data and self.from_date.data and field.data < self.from_date.data:
            raise ValidationError("The “To” day is before the “From” day.")

    def chosen(self) -> EventFilter:
        """The filters as the audit trail takes them."""
        return EventFilter(action=(self.action.data or "").strip(),
                           username=(self.user.data or "").strip(),
                           first_day=self.from_date.data, last_day=self.to_date.data)

    def query_args(self) -> dict[str, str]:
        """The filters given, as query arguments for the other pages and the download."""
        chosen = self.chosen()
        values = {"action": chosen.action, "user": chosen.username,
                  "from_date": chosen.first_day and chosen.first_day.isoformat(),
                  "to_date": chosen.last_day and chosen.last_day.isoformat()}
        return {name: value for name, value in values.items() if value}


@bp.get("/audit")
def audit_log():
    """The audit trail in words, a page at a time, with the filters of `AuditFilterForm`."""
    form = AuditFilterForm(request.args)
    actions = recorded_actions(db.session)
    form.action.choices = [("", "Every event"), *actions]
    if not form.validate():
        return render_template("system/audit.html", form=form, events=None, readable=[],
                               unknown_user=False, filters={}), form_status(form)
    query, unknown_user = filtered_events(db.session, form.chosen())
    events = db.paginate(query, page=page_number(request.args), per_page=EVENTS_PER_PAGE,
                         error_out=False, count=True)
    return render_template("system/audit.html", form=form, events=events,
                           readable=readable_events(db.session, events.items),
                           unknown_user=unknown_user, filters=form.query_args())


@bp.get("/audit.csv")
def audit_csv():
    """The events the same filters select, as CSV (formula-like cells neutralised, passwords
    never shown); bad filters show the page with their messages."""
    form = AuditFilterForm(request.args)
    form.action.choices = [("", "Every event")]
    if not form.validate():
        form.action.choices += recorded_actions(db.session)
        return render_template("system/audit.html", form=form, events=None, readable=[],
                               unknown_user=False, filters={}), form_status(form)
    query, _ = filtered_events(db.session, form.chosen())
    return csv_response(csv_lines(export_rows(db.session, query)),
                        f"{site_file_prefix()}-audit-{utcnow():%Y-%m-%d}.csv")


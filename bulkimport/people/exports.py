"""View of Admin > People > Export users: pick the columns, filter like the user list, and
download a CSV that the import reads back unchanged (or a blank template)."""

from __future__ import annotations

from flask import render_template, request

from ..csvfiles import csv_lines
from ..extensions import db
from ..models import utcnow
from ..user_directory import export_columns, export_rows
from ..web import csv_response, site_file_prefix
from . import bp
from .forms import ExportForm


@bp.get("/export")
def export():
    """The export form; with `download`, the CSV (UTF-8 with BOM, formula-like cells
    neutralised); with `blank`, the headings only."""
    form = ExportForm(request.args)
    columns = export_columns(db.session)
    form.columns.choices = [(key, heading) for key, heading in columns]
    chosen = form.columns.data or [key for key, _ in columns]
    if request.args.get("blank"):
        rows = export_rows(db.session, chosen, term="")
        return csv_response(csv_lines([next(rows)]), f"{site_file_prefix()}-users-template.csv")
    if request.args.get("download"):
        return csv_response(csv_lines(export_rows(db.session, chosen, form.q.data or "")),
                            f"{site_file_prefix()}-users-{utcnow():%Y-%m-%d}.csv")
    form.columns.data = chosen
    return render_template("people/export.html", form=form, columns=columns)

"""Views of the import's mapping step (what each column of the file becomes), the one-click
options that read the kept file again, and Admin > People > Saved mappings."""

from __future__ import annotations

import re

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from ..extensions import db
from ..importing.mapping import FULL_NAME, NOT_IMPORTED, Mapping, target_choices
from ..importing.reader import FileProblem
from ..importing.saved_mappings import rename_mapping, save_mapping, saved_mappings
from ..importing.schedule import COLUMN, NOW, Schedule, ScheduleError, build
from ..importing.staging import BatchClosed, column_samples, owned_batch, replan
from ..models import ImportBatch, InviteMode, SavedMapping
from ..profile import FieldDefinition, FieldError, active_fields, create_field
from ..web import form_status
from . import bp
from .forms import (
    NEW_FIELD,
    BatchOptionForm,
    DeleteMappingForm,
    InvitationsForm,
    RenameMappingForm,
    mapping_form_for,
)

ONE_CLICK_CHANGES = ("ignore_password_column", "generate_passwords", "file_passwords",
                     "update_passwords", "keep_passwords", "encoding", "sheet")


def _open_batch(batch_id: int) -> ImportBatch:
    batch = owned_batch(db.session, batch_id, current_user.id)
    if batch is None:
        abort(404)
    if not batch.is_open:
        abort(409, "This file was already submitted or has expired.")
    return batch


@bp.route("/import/<int:batch_id>/columns", methods=["GET", "POST"])
def map_columns(batch_id: int):
    """The mapping step: each column with its heading, example values and what it becomes;
    applying it reads the kept file again (no second upload) and shows the review."""
    batch = _open_batch(batch_id)
    fields = active_fields(db.session)
    mapping = Mapping.from_json(batch.mapping or {"headings": [], "targets": []})
    choices = target_choices([(f.name, f.label) for f in fields])
    form = mapping_form_for(mapping.headings, mapping.targets, choices)
    if request.method == "GET":
        form.username_from_email.data = mapping.username_from_email
    if form.validate_on_submit():
        chosen = Mapping(mapping.headings, [f.data for f in form.column_fields()],
                         bool(form.username_from_email.data))
        problems = _check_choice(chosen, form)
        if not problems:
            try:
                _create_fields(chosen, form)
                replan(db.session, batch, mapping=chosen)
                if form.remember.data and chosen.complete:
                    save_mapping(db.session, chosen, batch.filename, current_user.id)
                    batch.mapping = chosen.to_json()
            except (FileProblem, FieldError) as exc:
                db.session.rollback()
                problems = [getattr(exc, "message", None) or "; ".join(
                    m for ms in exc.problems.values() for m in ms)]  # type: ignore[attr-defined]
            except BatchClosed:
                db.session.rollback()
                abort(409, "This file was already submitted or has expired.")
            else:
                db.session.commit()
                if batch.needs_mapping:
                    flash("Some columns are still needed; see below.", "warning")
                    return redirect(url_for(".map_columns", batch_id=batch.id))
                return redirect(url_for(".review", batch_id=batch.id))
        for problem in problems:
            flash(problem, "danger")
    samples = column_samples(db.session, batch)
    status = 422 if request.method == "POST" else form_status(form)
    return render_template("people/mapping.html", batch=batch, form=form, mapping=mapping,
                           samples=samples, full_name=FULL_NAME), status


def _check_choice(chosen: Mapping, form) -> list[str]:
    """Problems of a chosen mapping that concern the whole file; a column chosen twice is
    marked beside the second select."""
    problems = []
    seen: dict[str, str] = {}
    for select, target in zip(form.column_fields(), chosen.targets, strict=True):
        if target and target != NEW_FIELD:
            if target in seen:
                select.errors = [f"“{seen[target]}” already becomes this field."]
                problems.append(f"Two columns become the same field: “{seen[target]}” and "
                                f"“{select.label.text}”.")
            seen[target] = select.label.text
    missing = chosen.missing if NEW_FIELD not in chosen.targets else []
    if missing:
        problems.append("No column provides " + ", ".join(missing) + ": choose a column for "
                        "each (or derive it) before the rows can be checked.")
    return problems


def _create_fields(chosen: Mapping, form) -> None:
    """Create a text profile field for each column the administrator asked one for."""
    for index, target in enumerate(chosen.targets):
        if target != NEW_FIELD:
            continue
        heading = chosen.headings[index]
        name = re.sub(r"[^a-z0-9_]+", "_", heading.strip().lower()).strip("_")[:40]
        if not name or not name[0].isalpha():
            name = f"field_{name}"[:40]
        field = create_field(db.session, FieldDefinition(
            name=name, label=heading.strip()[:100] or name, type="text", options=[],
            required=False, unique=False), actor_id=current_user.id)
        chosen.targets[index] = field.name
        flash(f"The profile field “{field.name}” was created for the column “{heading}”.",
              "success")
    chosen.targets = [NOT_IMPORTED if t is None else t for t in chosen.targets]


@bp.post("/import/<int:batch_id>/options")
def change_options(batch_id: int):
    """A one-click change from the review page: ignore the password column and generate
    passwords, switch generated passwords on or off, set existing users' passwords too, read
    the file with another encoding, or read another sheet of a workbook. The file is read
    again; choices start over."""
    batch = _open_batch(batch_id)
    form = BatchOptionForm()
    if not form.validate_on_submit() or form.change.data not in ONE_CLICK_CHANGES:
        abort(400)
    change = form.change.data
    try:
        if change == "ignore_password_column":
            mapping = Mapping.from_json(batch.mapping or {})
            index = mapping.column("password")
            if index is not None:
                mapping.targets[index] = NOT_IMPORTED
            replan(db.session, batch, mapping=mapping, generate_passwords=True)
        elif change == "sheet":
            if form.sheet.data not in ((batch.notes or {}).get("sheets") or []):
                abort(400)
            replan(db.session, batch, sheet=form.sheet.data, mapping=None)
        elif change == "encoding":
            offered = {a["codec"]: a for a in (batch.notes or {}).get("alternatives") or []}
            if form.encoding.data not in offered:
                abort(400)
            before = batch.encoding
            replan(db.session, batch, encoding=form.encoding.data)
            # the reading left behind stays one click away, its words the other way round
            words = [[theirs, ours] for ours, theirs in offered[form.encoding.data]["words"]]
            batch.notes = {**(batch.notes or {}),
                           "alternatives": [{"codec": before, "words": words}]}
        else:
            setting = {"generate_passwords": ("generate_passwords", True),
                       "file_passwords": ("generate_passwords", False),
                       "update_passwords": ("update_passwords", True),
                       "keep_passwords": ("update_passwords", False)}[change]
            replan(db.session, batch, **dict([setting]))
    except (FileProblem, BatchClosed) as problem:
        return _not_read_again(batch, problem)
    db.session.commit()
    flash("The file was read again with the new setting; choose the actions again.", "info")
    return redirect(url_for(".review", batch_id=batch.id))


def _not_read_again(batch: ImportBatch, problem: FileProblem | BatchClosed):
    """The answer to a change that could not read the kept file again: the file's problem on
    the review page, or 409 when the batch was submitted (or expired) meanwhile."""
    db.session.rollback()
    if isinstance(problem, BatchClosed):
        abort(409, "This file was already submitted or has expired.")
    flash(problem.message, "danger")
    return redirect(url_for(".review", batch_id=batch.id))


@bp.post("/import/<int:batch_id>/invitations-options")
def change_invitations(batch_id: int):
    """The review's choice of what the invitations carry and when they go. A date column is
    read from the kept file (each row's date checked, and shown on the review), so choosing
    one, or leaving one, reads the file again and the choices start over."""
    batch = _open_batch(batch_id)
    form = InvitationsForm()
    if not form.validate_on_submit() or not batch.generate_passwords:
        abort(400)
    headings = [column["heading"] for column in batch.columns]
    try:
        schedule = build(form.send_when.data, form.send_at.data or "",
                         form.send_column.data or "", form.send_time.data or "", headings)
    except ScheduleError as problem:
        flash(f"When the invitations go was not changed: {problem}", "danger")
        return redirect(url_for(".review", batch_id=batch.id))
    before = Schedule.from_json((batch.notes or {}).get("schedule"))
    batch.invite_mode = InviteMode(form.invite_by.data)
    reread = COLUMN in (before.when, schedule.when) and before != schedule
    try:
        if reread:
            replan(db.session, batch, schedule=schedule.to_json())
        else:
            notes = {key: value for key, value in (batch.notes or {}).items()
                     if key != "schedule"}
            batch.notes = {**notes, **({"schedule": schedule.to_json()}
                                       if schedule.when != NOW else {})}
    except (FileProblem, BatchClosed) as problem:
        return _not_read_again(batch, problem)
    db.session.commit()
    said = f"The invitations go {schedule.describe()}."
    flash(said + (" The file was read again for the dates; choose the actions again."
                  if reread else ""), "info" if reread else "success")
    return redirect(url_for(".review", batch_id=batch.id))


@bp.get("/mappings")
def mappings():
    """Every saved mapping: its name, its headings, and what each becomes."""
    return render_template("people/mappings.html", mappings=saved_mappings(db.session),
                           form=RenameMappingForm(), parse=Mapping.from_json)


@bp.post("/mappings/<int:mapping_id>")
def change_mapping(mapping_id: int):
    """Rename or delete one saved mapping."""
    saved = db.get_or_404(SavedMapping, mapping_id)
    form = RenameMappingForm()
    if "delete" in request.form:
        if not DeleteMappingForm().validate_on_submit():
            abort(400)
        db.session.delete(saved)
        db.session.commit()
        flash(f"The saved mapping “{saved.name}” was deleted.", "success")
        return redirect(url_for(".mappings"))
    if form.validate_on_submit():
        problem = rename_mapping(saved, form.name.data or "")
        if problem is None:
            db.session.commit()
            flash(f"Renamed to “{saved.name}”.", "success")
            return redirect(url_for(".mappings"))
        form.name.errors = [problem]
    return render_template("people/mappings.html", mappings=saved_mappings(db.session),
                           form=form, parse=Mapping.from_json, failed=mapping_id), 422

"""Views of Admin > People > Profile fields: create, change (saying first what happens to the
stored values, and asking) and retire custom profile fields."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user

from ..extensions import db
from ..models import ProfileField
from ..profile import (
    TYPE_NAMES,
    FieldDefinition,
    FieldError,
    all_fields,
    change_field,
    change_impact,
    check_definition,
    create_field,
    set_retired,
    value_counts,
)
from ..web import form_status
from . import bp
from .forms import FieldForm


@bp.get("/fields")
def fields():
    """Every profile field with its type, rules and how many users have a value."""
    return render_template("people/fields.html", fields=all_fields(db.session),
                           counts=value_counts(db.session), type_names=TYPE_NAMES)


def _show(form: FieldForm, problems: dict[str, list[str]]) -> None:
    """Put each problem beside the form field it concerns."""
    for part, messages in problems.items():
        form[part].errors = list(messages)


def _definition(form: FieldForm) -> FieldDefinition:
    return FieldDefinition(name=(form.name.data or "").strip(), label=form.label.data or "",
                           type=form.type.data, options=form.option_list(),
                           required=form.required.data, unique=form.unique.data)


@bp.route("/fields/new", methods=["GET", "POST"])
def new_field():
    """Create a field; `?name=` (from the review page's unknown columns) fills in the name."""
    form = FieldForm()
    if request.method == "GET" and request.args.get("name"):
        suggested = request.args["name"].strip().lower().replace(" ", "_").replace("-", "_")
        form.name.data = suggested[:40]
        form.label.data = request.args["name"].strip()[:100]
    if form.validate_on_submit():
        try:
            field = create_field(db.session, _definition(form), actor_id=current_user.id)
        except FieldError as exc:
            db.session.rollback()
            _show(form, exc.problems)
        else:
            db.session.commit()
            flash(f"The field “{field.name}” has been created; a CSV column headed "
                  f"“{field.name}” now goes into it.", "success")
            return redirect(url_for(".fields"))
    return render_template("people/field_form.html", form=form, field=None, impact=None), (
        form_status(form))


@bp.route("/fields/<int:field_id>", methods=["GET", "POST"])
def edit_field(field_id: int):
    """Change a field. A rename or a type change first shows what happens to the stored values
    (converted, or lost when the new type cannot hold them) and asks for confirmation."""
    field = db.get_or_404(ProfileField, field_id)
    form = FieldForm(obj=field) if request.method == "GET" else FieldForm()
    if request.method == "GET":
        form.options.data = "\n".join(field.options)
    impact = None
    if form.validate_on_submit():
        definition = _definition(form)
        problems = check_definition(db.session, definition, field)
        impact = change_impact(db.session, field, definition)
        if problems:
            _show(form, problems)
        elif impact.needs_confirmation and not form.confirm.data:
            form.confirm.errors = ["Read what this change does and tick the box to go ahead."]
        else:
            try:
                change_field(db.session, field, definition, actor_id=current_user.id,
                             impact=impact)
            except FieldError as exc:
                db.session.rollback()
                _show(form, exc.problems)
            else:
                db.session.commit()
                flash(f"The field “{field.name}” has been saved.", "success")
                return redirect(url_for(".fields"))
    return render_template("people/field_form.html", form=form, field=field, impact=impact), (
        form_status(form))


@bp.post("/fields/<int:field_id>/retire")
def retire_field(field_id: int):
    """Retire a field (its values are kept) or bring it back."""
    field = db.get_or_404(ProfileField, field_id)
    retire = request.form.get("retire") == "1"  # CSRFProtect has checked the token
    set_retired(db.session, field, retire, actor_id=current_user.id)
    db.session.commit()
    what = ("retired: its values are kept, imports and exports leave it out" if retire
            else "brought back")
    flash(f"The field “{field.name}” has been {what}.", "success")
    return redirect(url_for(".fields"))

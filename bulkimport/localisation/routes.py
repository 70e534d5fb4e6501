"""Views of Admin > System > Localisation: the languages with their templates, and the
Edit Notification Template page (save, preview, test e-mail, versions, reset). Jinja's syntax
errors are shown in plain words (`template_errors`), on the part and line they concern."""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from ..extensions import db
from ..headers import csp_allows
from ..mailing import sending
from ..mailing.languages import (
    INVITATION,
    INVITATION_LINK,
    NOTIFICATIONS,
    LocalisationError,
    add_language,
    as_template,
    current_version,
    difference,
    editor_sample,
    effective_template,
    languages,
    reset_template,
    restore_version,
    save_template,
    set_default_language,
    versions,
)
from ..mailing.templating import PARTS, NotificationTemplate, RenderError, render
from ..mailing.transport import SendFailure
from ..models import Language, TemplateVersion, User, fold_key
from ..template_errors import plain_problems
from ..web import form_status, whole_number
from . import bp
from .forms import DefaultLanguageForm, LanguageForm, RestoreForm, TemplateForm

PASSWORD_MASK = "••••••••••••"
# What people call each template; NOTIFICATIONS' title says what it is for, under it.
TEMPLATE_NAMES = {INVITATION: "New user invitation",
                  INVITATION_LINK: "New user invitation with a link"}


def template_name(name: str) -> str:
    """The human name of the notification template `name` (its code name when it has none)."""
    return TEMPLATE_NAMES.get(name, name)


@bp.get("")
def index():
    """The languages of the site and, under each, its notification templates and their state."""
    return _index_page(LanguageForm(), _default_form())


def _default_form() -> DefaultLanguageForm:
    form = DefaultLanguageForm()
    found = languages(db.session)
    form.language.choices = [(lang.code, f"{lang.name} ({lang.code})") for lang in found]
    form.language.data = form.language.data or next(
        (lang.code for lang in found if lang.is_default), None)
    return form


def _index_page(language_form: LanguageForm, default_form: DefaultLanguageForm):
    rows = []
    for language in languages(db.session):
        templates = [(name, title, effective_template(db.session, name, language.code))
                     for name, (title, *_) in NOTIFICATIONS.items()]
        rows.append((language, templates))
    return render_template("localisation/index.html", rows=rows, language_form=language_form,
                           default_form=default_form, template_name=template_name)


@bp.post("/languages")
def add_language_view():
    """Add a language by code and name."""
    form = LanguageForm()
    if form.validate_on_submit():
        try:
            language = add_language(db.session, form.code.data, form.name.data,
                                    actor_id=current_user.id)
        except LocalisationError as exc:
            form.code.errors = [str(exc)]
        else:
            db.session.commit()
            flash(f"{language.name} ({language.code}) is now a language of the site; until its "
                  "templates are translated, its users get the default language's.", "success")
            return redirect(url_for(".index"))
    return _index_page(form, _default_form()), form_status(form)


@bp.post("/default")
def set_default_view():
    """Make one language the site's default."""
    form = _default_form()
    if form.validate_on_submit():
        set_default_language(db.session, form.language.data, actor_id=current_user.id)
        db.session.commit()
        flash("The default language has been changed.", "success")
        return redirect(url_for(".index"))
    return _index_page(LanguageForm(), form), form_status(form)


def _language_and_name(code: str, name: str) -> tuple[Language, str]:
    language = db.session.get(Language, code)
    if language is None or name not in NOTIFICATIONS:
        abort(404)
    return language, name


@bp.route("/<code>/templates/<name>", methods=["GET", "POST"])
# The preview's srcdoc frame inherits this page's policy: e-mails carry inline styles (and may
# show a logo from the intranet); the frame is sandboxed, so nothing in it can run.
@csp_allows(style_src="'unsafe-inline'", img_src="https:")
def edit_template(code: str, name: str):
    """Edit Notification Template: save (checked first), preview, send a test e-mail, reset."""
    language, name = _language_and_name(code, name)
    effective = effective_template(db.session, name, language.code)
    form = TemplateForm()
    if request.method == "GET":
        form.subject.data = effective.template.subject
        form.html.data = effective.template.html
        form.text.data = effective.template.text
    problems: list[str] = []
    preview = None
    if request.method == "GET":  # the template in force, beside the editor from the start
        preview, _ = _preview(effective.template, name, language.code, form)
    if form.validate_on_submit():
        typed = NotificationTemplate(subject=form.subject.data or "", html=form.html.data or "",
                                     text=form.text.data or "")
        if form.reset.data:
            reset_template(db.session, name, language.code, actor_id=current_user.id)
            db.session.commit()
            after = effective_template(db.session, name, language.code)
            flash(f"Reset to default: {language.name} now uses "
                  f"{_source_sentence(after)}.", "success")
            return redirect(url_for(".edit_template", code=code, name=name))
        if form.save.data:
            if effective.source == "saved" and typed == effective.template:
                flash("Nothing changed since the version in force.", "info")
                return redirect(url_for(".edit_template", code=code, name=name))
            try:
                save_template(db.session, name, language.code, typed, actor_id=current_user.id)
            except LocalisationError as exc:
                db.session.rollback()
                problems = str(exc).splitlines()
            else:
                db.session.commit()
                flash("The template has been saved; it is used from the next e-mail on.",
                      "success")
                return redirect(url_for(".edit_template", code=code, name=name))
        elif form.preview.data:
            preview, problems = _preview(typed, name, language.code, form)
        elif form.send_test.data:
            problems = _send_test(typed, name, language.code)
    current = current_version(db.session, name, language.code)
    compare = _compare(request.args.get("compare"), effective.template, name, language.code,
                       current)
    sources = {label: getattr(form, field).data or "" for field, label, _ in PARTS}
    shown = plain_problems(problems, sources)
    fields = {label: field for field, label, _ in PARTS}
    error_lines = {fields[p.part]: " ".join(str(q.line) for q in shown if q.part == p.part)
                   for p in shown if p.part}
    found = versions(db.session, name, language.code)
    return render_template(
        "localisation/edit.html", language=language, name=name,
        human_name=template_name(name), purpose=NOTIFICATIONS[name].title,
        variables=NOTIFICATIONS[name].variables, form=form, effective=effective,
        source_sentence=_source_sentence(effective), problems=shown, error_lines=error_lines,
        preview=preview, previewing_typed=request.method == "POST", versions=found,
        current=current, same_as_current=_same_as(current, found), compare=compare,
        restore_form=RestoreForm()), form_status(form, problems)


def _preview(template: NotificationTemplate, name: str, language: str, form: TemplateForm):
    """(subject, html, text) rendered with sample data or the chosen user (password masked),
    or the problems."""
    person = {}
    must_change = True
    username = (form.preview_user.data or "").strip()
    if username:
        user = db.session.scalar(select(User).where(User.username_key == fold_key(username)))
        if user is None:
            return None, [f"There is no user named “{username}” to preview with."]
        person = {"username": user.username, "firstname": user.firstname,
                  "surname": user.surname, "email": user.email}
        must_change = user.must_change_password
    context = editor_sample(db.session, language, name, **person)
    context.update(must_change_password=must_change)
    if context["password"]:
        context["password"] = PASSWORD_MASK
    try:
        return render(template, context), []
    except RenderError as exc:
        return None, [f"The preview cannot be rendered: {exc}"]


def _send_test(template: NotificationTemplate, name: str, language: str) -> list[str]:
    """Send the template as typed to the editor's own address; returns the problems."""
    me = current_user
    context = editor_sample(db.session, language, name, username=me.username,
                            firstname=me.firstname, surname=me.surname, email=me.email)
    try:
        sending.send_test_message(template, context, me.email)
    except RenderError as exc:
        return [f"The test e-mail cannot be rendered: {exc}"]
    except SendFailure as exc:
        return [f"The test e-mail was not sent: {exc.reason}"]
    where = ("written to the outbox (Admin > System > Outbox)"
             if not current_app.config["MAIL_SERVER"] else f"sent to {me.email}")
    sample = "link" if name == INVITATION_LINK else "password"
    flash(f"A test e-mail (with a sample {sample}, not a real one) was {where}.", "success")
    return []


def _compare(version_id: str | None, current: NotificationTemplate, name: str, language: str,
             in_force: TemplateVersion | None):
    """(version, {part: diff lines}) of the version asked for against the template in force;
    None for the version in force itself, which has nothing to compare with."""
    number = whole_number(version_id)  # ASCII digits, under the 32-bit id column's limit
    if number is None:
        return None
    version = db.session.get(TemplateVersion, number)
    if version is None or (version.name, version.language) != (name, language) \
            or version.kind == TemplateVersion.RESET or version is in_force:
        return None
    return version, difference(as_template(version), current)


def _same_as(in_force: TemplateVersion | None, found: list[TemplateVersion]) -> set[int]:
    """The ids of the other versions whose content is that of the version in force: restoring
    one would change nothing, and their difference is empty."""
    if in_force is None:
        return set()
    content = as_template(in_force)
    return {version.id for version in found if version.kind != TemplateVersion.RESET
            and version is not in_force and as_template(version) == content}


def _source_sentence(effective) -> str:
    if effective.source == "saved":
        return "its own template"
    if effective.source == "default language":
        return f"the default language's template ({effective.language})"
    return "the shipped English template"


@bp.post("/<code>/templates/<name>/versions/<int:version_id>/restore")
def restore(code: str, name: str, version_id: int):
    """Make an earlier version the one in force again."""
    language, name = _language_and_name(code, name)
    form = RestoreForm()
    if not form.validate_on_submit():
        abort(400)
    version = db.session.get(TemplateVersion, version_id)
    if version is None or (version.name, version.language) != (name, language.code):
        abort(404)
    if version is current_version(db.session, name, language.code):
        flash(f"Version {version_id} is already the template in force.", "info")
        return redirect(url_for(".edit_template", code=code, name=name))
    try:
        restore_version(db.session, version_id, actor_id=current_user.id)
    except LocalisationError as exc:
        db.session.rollback()
        flash(f"Version {version_id} cannot be restored: {exc}", "danger")
    else:
        db.session.commit()
        flash(f"Version {version_id} has been restored as the template in force.", "success")
    return redirect(url_for(".edit_template", code=code, name=name))

"""Views of Admin > People: thin wrappers that read a form, call a service and render."""

from __future__ import annotations

from flask import (
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from sqlalchemy import func, select
from wtforms.fields.choices import SelectChoice

from ..csvfiles import csv_lines
from ..extensions import db
from ..import_results import SHOWS as CHANGED_SHOWS
from ..import_results import changed_rows_query, changed_users
from ..importing import live_progress
from ..importing.apply import APPLY_STAGES, BLOCKING, HASHING, INVITING, ApplyError
from ..importing.defaults import check_defaults
from ..importing.mapping import Mapping
from ..importing.reader import FileProblem
from ..importing.reading import (
    READING_STAGES,
    begin_reading,
    has_stalled,
    reads_in_background,
)
from ..importing.schedule import SEND_AT, Schedule
from ..importing.staging import (
    FILTERS,
    ROWS_PER_PAGE,
    BatchClosed,
    UploadOptions,
    choice_counts,
    discard_surplus_batches,
    expire_if_due,
    heading_states,
    owned_batch,
    purge_expired,
    result_lines,
    rows_query,
    rows_with_errors,
    save_choices,
    stage_upload,
)
from ..importing.submission import submit_batch
from ..invitation_history import latest_invitations
from ..mailing.languages import languages as site_languages
from ..mailing.sending import paused_reason
from ..mailing.status import invitation_counts, latest_status_by_user, progress
from ..models import ImportBatch, InviteMode, User
from ..profile import active_fields
from ..user_directory import search_condition
from ..web import csv_response, form_status, page_number
from . import bp
from .forms import (
    ACCOUNT_STATES,
    AccountStateForm,
    BatchOptionForm,
    SearchForm,
    UploadForm,
    invitations_form_for,
    review_form_for,
)

USERS_PER_PAGE = 50
# The review table's own columns; every other value of a row is listed in its details.
SHOWN_COLUMNS = frozenset({"username", "firstname", "surname", "email", "_derived",
                           "_defaulted", SEND_AT})


@bp.get("")
def index():
    """The user list: searchable, filtered by account state, paginated, with the total count;
    each row links to the user's page and offers Resend for the user's latest invitation, and
    ticked rows can be blocked or unblocked."""
    form = SearchForm(request.args)
    query = select(User).order_by(User.username_key)
    term = (form.q.data or "").strip()
    condition = search_condition(term)
    if condition is not None:
        query = query.where(condition)
    state = form.state.data if form.state.data in ACCOUNT_STATES else ""
    if state:
        query = query.where(User.active == (state == "active"))
    users = db.paginate(query, page=page_number(request.args), per_page=USERS_PER_PAGE,
                        error_out=False)
    total = db.session.scalar(select(func.count(User.id)))
    user_ids = [user.id for user in users.items]
    return render_template("people/index.html", form=form, users=users, term=term, total=total,
                           state=state, state_form=AccountStateForm(),
                           invited=latest_status_by_user(user_ids),
                           latest=latest_invitations(db.session, user_ids))


@bp.route("/import", methods=["GET", "POST"])
def upload():
    """Step 1 of the import: the upload form; a good file is staged and reviewed next."""
    form = UploadForm()
    fields = active_fields(db.session)
    form.default_language.choices = [SelectChoice("", "No default")] + [
        SelectChoice(language.code, f"{language.name} ({language.code})")
        for language in site_languages(db.session)]
    submitted = form.validate_on_submit()
    defaults = form.defaults(fields, request.form) if submitted else {}
    problems = check_defaults(db.session, defaults)
    if submitted and not problems:
        upload = form.file.data
        options = UploadOptions(form.generate_passwords.data, form.encoding.data or None,
                                form.delimiter.data or None, form.clear_empty.data,
                                form.update_passwords.data, defaults=defaults,
                                list_missing=form.list_missing.data,
                                invite_mode=InviteMode(form.invite_by.data))
        purge_expired(db.session)
        data = upload.read()
        if reads_in_background(len(data)):  # a big file: read by a job, watched on a page
            _discard_surplus()
            batch_id = begin_reading(current_user.id, upload.filename or "", data, options)
            return redirect(url_for(".reading", batch_id=batch_id))
        try:
            batch = stage_upload(db.session, current_user.id, upload.filename or "", data,
                                 options)
        except FileProblem as problem:
            db.session.rollback()
            form.file.errors.append(problem.message)
            return _upload_page(form, fields, problems)
        _discard_surplus()
        if batch.needs_mapping:
            return redirect(url_for(".map_columns", batch_id=batch.id))
        return redirect(url_for(".review", batch_id=batch.id))
    return _upload_page(form, fields, problems)


def _upload_page(form: UploadForm, fields: list, problems: dict[str, str]):
    """The upload form, with the file's or the defaults' problems (422 when there are any)."""
    for key, problem in problems.items():
        target = getattr(form, f"default_{key}", None)
        if target is not None:
            target.errors = [*target.errors, problem]
    status = 422 if problems else form_status(form)
    return render_template("people/upload.html", form=form, fields=fields,
                           problems=problems, submitted=request.form), status


def _discard_surplus() -> None:
    """Expire the administrator's oldest open uploads beyond the limit, commit, and say so."""
    keep = current_app.config["MAX_STAGED_BATCHES"]
    discarded = [(old.filename, old.id) for old in
                 discard_surplus_batches(db.session, current_user.id, keep)]
    db.session.commit()
    for filename, old_id in discarded:
        flash(f"Your unsubmitted upload “{filename}” (#{old_id}) was discarded: at most "
              f"{keep} uploads wait for review per administrator. Upload it again if you "
              "still need it.", "warning")


@bp.get("/import/<int:batch_id>/reading")
def reading(batch_id: int):
    """A big upload being read in the background: its stage and rows done, then the review
    (or the column step) when it is ready, or why the file was refused."""
    batch = _owned_batch(batch_id)
    if batch.status == ImportBatch.STAGED:
        return redirect(url_for(".review", batch_id=batch.id))
    if batch.status != ImportBatch.READING and not batch.refused:
        return redirect(url_for(".result", batch_id=batch.id))
    return render_template("people/reading.html", batch=batch, stalled=has_stalled(batch),
                           stages=READING_STAGES, stage=live_progress.of_batch(batch))


def _owned_batch(batch_id: int) -> ImportBatch:
    batch = owned_batch(db.session, batch_id, current_user.id)
    if batch is None:
        abort(404)
    if expire_if_due(db.session, batch):
        db.session.commit()
    return batch


@bp.route("/import/<int:batch_id>", methods=["GET", "POST"])
def review(batch_id: int):
    """Step 2: the action-select table; POST saves the choices and moves on or submits."""
    batch = _owned_batch(batch_id)
    if batch.status == ImportBatch.READING:
        return redirect(url_for(".reading", batch_id=batch.id))
    if not batch.is_open:
        if request.method == "POST":  # a double click, the back button or a second tab
            flash("This file was already submitted; here is its result.", "info")
        return redirect(url_for(".result", batch_id=batch.id))
    if batch.needs_mapping:
        return redirect(url_for(".map_columns", batch_id=batch.id))
    if batch.refused:
        return redirect(url_for(".reading", batch_id=batch.id))
    if batch.blocked and request.method == "POST":  # a stale page: the rows are not staged
        flash("The rows were not checked yet: choose one of the options first.", "warning")
        return redirect(url_for(".review", batch_id=batch.id))
    show = request.form.get("show") if request.method == "POST" else request.args.get("show")
    show = show if show in FILTERS else "all"
    page = page_number(request.form if request.method == "POST" else request.args)
    rows = db.paginate(rows_query(batch.id, show), page=page, per_page=ROWS_PER_PAGE,
                       error_out=False)
    chosen = choice_counts(db.session, batch.id)
    headings = heading_states(batch, chosen)
    form = review_form_for(rows.items, headings)
    if form.validate_on_submit():
        try:
            save_choices(db.session, batch, form.heading_changes(), form.row_changes())
        except BatchClosed:  # another tab or request submitted it meanwhile
            db.session.rollback()
            flash("This file was already submitted; here is its result.", "info")
            return redirect(url_for(".result", batch_id=batch.id))
        db.session.commit()
        if form.submit.data:
            try:
                outcome = submit_batch(batch)
            except ApplyError as exc:
                flash(str(exc), "danger")
                return redirect(url_for(".review", batch_id=batch.id, show=show, page=page))
            if outcome == "already":
                flash("This file was already submitted; here is its result.", "info")
            return redirect(url_for(".result", batch_id=batch.id))
        show, page = form.destination()
        return redirect(url_for(".review", batch_id=batch.id, show=show, page=page))
    if form.errors:
        flash("Some choices could not be saved: pick one of the offered actions.", "danger")
    return render_template("people/review.html", batch=batch, rows=rows, show=show, form=form,
                           chosen=chosen, mapping=Mapping.from_json(batch.mapping or {
                               "headings": [], "targets": []}),
                           option_form=BatchOptionForm(), shown=SHOWN_COLUMNS,
                           invitations_form=invitations_form_for(batch),
                           schedule=Schedule.from_json((batch.notes or {}).get("schedule"))
                           ), form_status(form)


@bp.get("/import/<int:batch_id>/errors.csv")
def errors_csv(batch_id: int):
    """The rows in error as uploaded, plus `error` and `line` columns (which the import
    recognises and ignores): ready to fix and upload again."""
    batch = _owned_batch(batch_id)
    if not batch.is_open:
        abort(404)
    width = len(batch.columns)
    headings = [column["heading"] for column in batch.columns] + ["error", "line"]
    # a short row is padded so that its error lands under `error`; a long one keeps its cells
    rows = ([*raw, *[""] * (width - len(raw)), error, line]
            for raw, error, line in rows_with_errors(db.session, batch))
    return csv_response(csv_lines([headings, *rows], batch.delimiter),
                         f"errors-{_stem(batch.filename)}.csv")


@bp.get("/import/<int:batch_id>/result")
def result(batch_id: int):
    """Step 3: progress while a job applies the batch, then the confirmation with counts, the
    invitations sent and still queued, and the users added and updated, page by page."""
    batch = _owned_batch(batch_id)
    if batch.status == ImportBatch.READING or batch.refused:
        return redirect(url_for(".reading", batch_id=batch.id))
    if batch.is_open and batch.status != ImportBatch.FAILED:
        return redirect(url_for(".review", batch_id=batch.id))
    if batch.status != ImportBatch.APPLIED:
        # passwords come from the file, or invitations are queued: never both; leavers are
        # blocked only when the file was read for them
        skipped = {INVITING if not batch.generate_passwords else HASHING}
        if not (batch.notes or {}).get("list_missing"):
            skipped.add(BLOCKING)
        stages = [s for s in APPLY_STAGES if s not in skipped]
        return render_template("people/result.html", batch=batch, stages=stages,
                               stage=live_progress.of_batch(batch))
    show = request.args.get("show")
    show = show if show in CHANGED_SHOWS else "changed"
    rows = db.paginate(changed_rows_query(batch.id, show), page=page_number(request.args),
                       per_page=USERS_PER_PAGE, error_out=False)
    counts = invitation_counts(batch.id)
    return render_template("people/result.html", batch=batch, rows=rows, show=show,
                           changed=changed_users(db.session, batch.id, rows.items),
                           counts=counts, progress=progress(counts, paused_reason()))


@bp.get("/import/<int:batch_id>/status.json")
def status(batch_id: int):
    """The batch's progress, for the progress bar's script."""
    batch = _owned_batch(batch_id)
    stage = live_progress.of_batch(batch)
    return {"status": batch.status, "stage": stage.name, "done": stage.done,
            "total": stage.total, "label": stage.label, "percent": stage.percent,
            "error": batch.error, "result": batch.result}


@bp.get("/import/<int:batch_id>/results.csv")
def results_csv(batch_id: int):
    """One line per input row: line, username, action, outcome, message; never a password."""
    batch = _owned_batch(batch_id)
    if batch.status != ImportBatch.APPLIED:
        abort(404)
    return csv_response(csv_lines(result_lines(db.session, batch)),
                        f"results-{_stem(batch.filename)}.csv")


def _stem(filename: str) -> str:
    stem = filename.rsplit(".", 1)[0] or "upload"
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)[:80]

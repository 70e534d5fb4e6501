"""`flask people import` and `flask people export`: the web journey's reading, validation and
apply, for scripts and cron. Exit status: 0 done, 1 rows in error or an unusable file (nothing
written), 2 bad usage."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select

from ..columns import HEADING_ALIASES, label, normalise_heading
from ..csvfiles import csv_lines
from ..extensions import db
from ..importing.apply import ApplyError
from ..importing.defaults import check_defaults
from ..importing.mapping import Mapping, MappingProblem
from ..importing.reader import DELIMITERS, WORKBOOK, FileProblem
from ..importing.schedule import AT, COLUMN, Schedule, ScheduleError, build, parse_time
from ..importing.staging import (
    UploadOptions,
    result_lines,
    rows_query,
    save_choices,
    stage_upload,
)
from ..importing.submission import apply_batch
from ..importing.validation import CLI
from ..mailing.dispatch import wake
from ..models import ImportBatch, ImportRow, InviteMode, User, fold_key
from ..user_directory import export_columns, export_rows
from ..web import column_label, delimiter_name, encoding_name

people_cli = AppGroup("people", help="Import and export users from the command line.")
ACTIONS = (ImportRow.ADD, ImportRow.UPDATE, ImportRow.BLOCK)
DELIMITER_NAMES = {"comma": ",", "semicolon": ";", "tab": "\t", "bar": "|", **{
    d: d for d in DELIMITERS}}


def _actions(_ctx, _param, value: str) -> tuple[str, ...]:
    chosen = tuple(a.strip() for a in value.split(",") if a.strip())
    unknown = [a for a in chosen if a not in ACTIONS]
    if unknown or not chosen:
        raise click.BadParameter("use add, update, block (with --list-missing) or a list such "
                                 "as add,update,block")
    return chosen


def _defaults(settings: tuple[str, ...]) -> dict[str, str]:
    """The --default settings by key: a standard column by its name, label or an alias, a
    profile field by its name; a setting without "=" stops the command."""
    defaults = {}
    for setting in settings:
        name, equals, value = setting.partition("=")
        if not equals or not name.strip():
            click.echo(f"Error: --default “{setting}” must be FIELD=VALUE.", err=True)
            sys.exit(1)
        key = HEADING_ALIASES.get(normalise_heading(name), name.strip())
        if value.strip():
            defaults[key] = value.strip()
    return defaults


def _owner(username: str | None) -> User:
    query = select(User).where(User.is_admin, User.active)
    if username:
        query = query.where(User.username_key == fold_key(username))
    owner = db.session.scalar(query.order_by(User.id).limit(1))
    if owner is None:
        raise click.UsageError(f"no administrator named “{username}”" if username else
                               "there is no administrator yet: run `flask create-admin` first")
    return owner


@people_cli.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Print the plan and the errors; write nothing.")
@click.option("--generate-passwords", is_flag=True,
              help="Generate a password for each new user and e-mail it (no password column).")
@click.option("--invite-by", type=click.Choice([m.value for m in InviteMode]),
              default=InviteMode.PASSWORD.value, show_default=True,
              help="With --generate-passwords: e-mail a generated password, or a one-time link "
                   "to choose one.")
@click.option("--send-at", default=None, metavar="'YYYY-MM-DD HH:MM'",
              help="Send the invitations at this time (the site's time zone, TIME_ZONE) "
                   "instead of now.")
@click.option("--send-on-column", default=None, metavar="HEADING",
              help="Send each new user's invitation on the date in this column (a start date); "
                   "an empty cell or a past date sends it now.")
@click.option("--send-time", default="08:00", show_default=True, metavar="HH:MM",
              help="With --send-on-column: the time of day for a date without a time.")
@click.option("--actions", default="add,update", show_default=True, callback=_actions,
              help="Which proposed actions to apply: add, update or add,update.")
@click.option("--encoding", default=None, help="Force the encoding (e.g. cp1252).")
@click.option("--delimiter", default=None, type=click.Choice(sorted(DELIMITER_NAMES)),
              help="Force the delimiter.")
@click.option("--clear-empty", is_flag=True, help="Empty cells clear stored values.")
@click.option("--map", "map_settings", multiple=True, metavar="HEADING=FIELD",
              help="What a column becomes (repeatable): HEADING=field, HEADING= to leave it out, "
                   "username=email-local-part, names=split:HEADING.")
@click.option("--sheet", default=None, help="The sheet of an Excel workbook (default: the first).")
@click.option("--update-passwords", is_flag=True,
              help="Also set the file's passwords of existing users (else they are for new "
                   "users only).")
@click.option("--list-missing", is_flag=True,
              help="List the active users (not administrators) whom the file does not name; "
                   "with --actions …,block, block them in the same transaction.")
@click.option("--default", "default_settings", multiple=True, metavar="FIELD=VALUE",
              help="A value for every row that has no such column or an empty cell "
                   "(repeatable): \"Change password next time=yes\", language=fr, "
                   "\"Account state=Blocked\", or a profile field's name.")
@click.option("--results", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="Write the results CSV (line, username, action, outcome, message) here.")
@click.option("--as", "as_user", default=None,
              help="The administrator recorded as the importer (default: the first one).")
def import_command(file: Path, dry_run: bool, generate_passwords: bool, invite_by: str,
                   send_at: str | None, send_on_column: str | None, send_time: str,
                   actions: tuple[str, ...],
                   encoding: str | None, delimiter: str | None, clear_empty: bool,
                   map_settings: tuple[str, ...], sheet: str | None, update_passwords: bool,
                   list_missing: bool, default_settings: tuple[str, ...],
                   results: Path | None, as_user: str | None) -> None:
    """Import users from FILE exactly as the web form would; nothing is written when a row is
    in error."""
    session = db.session
    if ImportRow.BLOCK in actions and not list_missing:
        click.echo("Error: --actions block blocks the users missing from the file: add "
                   "--list-missing.", err=True)
        sys.exit(1)
    owner = _owner(as_user)
    defaults = _defaults(default_settings)
    problems = check_defaults(session, defaults)
    if problems:
        for key, problem in problems.items():
            click.echo(f"Error: --default {label(key)}: {problem}", err=True)
        sys.exit(1)
    schedule = _schedule(generate_passwords, send_at, send_on_column, send_time)
    options = UploadOptions(generate_passwords, encoding,
                            DELIMITER_NAMES[delimiter] if delimiter else None, clear_empty,
                            update_passwords, sheet, map_settings=map_settings,
                            ask_unresolved=False, wording=CLI, defaults=defaults,
                            list_missing=list_missing, invite_mode=InviteMode(invite_by),
                            schedule=schedule.to_json())
    try:
        batch = stage_upload(session, owner.id, file.name, file.read_bytes(), options)
    except (FileProblem, LookupError, MappingProblem) as problem:
        session.rollback()
        click.echo(f"Error: {getattr(problem, 'message', problem)}", err=True)
        sys.exit(1)
    if schedule.when == COLUMN and schedule.column not in [c["heading"] for c in batch.columns]:
        session.rollback()
        click.echo(f"Error: --send-on-column: the file has no column “{schedule.column}”.",
                   err=True)
        sys.exit(1)
    if dry_run:
        _describe(batch)
    counts = batch.counts
    click.echo(f"{file.name}: {counts['total']} rows: {counts['add']} to add, "
               f"{counts['update']} to update, {counts['nochange']} unchanged, "
               f"{counts['error']} in error.")
    if list_missing:
        missing = list(session.scalars(rows_query(batch.id, ImportRow.MISSING)
                                       .with_only_columns(ImportRow.username).limit(21)))
        shown = ", ".join(missing[:20]) + (", …" if len(missing) > 20 else "")
        click.echo(f"Missing from the file: {counts.get('missing', 0)} active users"
                   + (f" ({shown})" if missing else "") + ".")
    errors = list(session.scalars(rows_query(batch.id, ImportRow.ERROR)))
    for row in errors:
        click.echo(f"Line {row.line}: " + " ".join(row.errors or []), err=True)
    if errors or dry_run:
        session.rollback()  # the staged batch goes too: nothing is written
        if errors:
            click.echo(f"Nothing was written: {len(errors)} row"
                       f"{'s are' if len(errors) != 1 else ' is'} in error.", err=True)
            sys.exit(1)
        click.echo("Dry run: nothing was written.")
        return
    save_choices(session, batch, {a: (False, True) for a in actions}, [])
    session.commit()
    result = _apply(batch.id)
    click.echo(f"{result['added']} added, {result['updated']} updated, {result['skipped']} "
               f"skipped; {result['invitations']} invitation e-mails queued.")
    if result.get("blocked"):
        click.echo(f"{result['blocked']} users missing from the file blocked.")
    if results:
        _write_results(session.get(ImportBatch, batch.id), results)
    if (result["invitations"] or result["unblocked"]) and current_app.config["REDIS_URL"]:
        wake()  # without Redis, the web application's sweeper sends them


def _schedule(generate_passwords: bool, send_at: str | None, send_on_column: str | None,
              send_time: str) -> Schedule:
    """The schedule the options ask for; exits with the reason when it cannot be used. The
    column is checked against the file's headings once it is read."""
    if (send_at or send_on_column) and not generate_passwords:
        _fail("--send-at and --send-on-column schedule invitations: add --generate-passwords.")
    if send_at and send_on_column:
        _fail("Choose one of --send-at and --send-on-column.")
    try:
        if send_at:
            return build(AT, at=send_at)
        if send_on_column:
            return Schedule(COLUMN, column=send_on_column, time=parse_time(send_time))
    except ScheduleError as problem:
        _fail(f"{'--send-at' if send_at else '--send-time'}: {problem}")
    return Schedule()


def _fail(message: str) -> NoReturn:
    """Say why the command cannot go on, and stop with status 1."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)


def _describe(batch: ImportBatch) -> None:
    """What the dry run detected: encoding, delimiter or sheet, preset, mapping, derived values,
    columns left out, and the notes the review page would show."""
    mapping = Mapping.from_json(batch.mapping or {"headings": [], "targets": []})
    notes = batch.notes or {}
    where = (f"sheet “{batch.sheet or (notes.get('sheets') or ['the first'])[0]}”"
             if batch.encoding == WORKBOOK else f"delimiter {delimiter_name(batch.delimiter)}")
    click.echo(f"Detected: {encoding_name(batch.encoding)}, {where}.")
    for other in notes.get("alternatives") or []:
        pairs = "; ".join(f"{ours} / {theirs}" for ours, theirs in other["words"][:5])
        click.echo(f"Note: the file could also be {encoding_name(other['codec'])} ({pairs}); "
                   f"read it so with --encoding {other['codec']}.")
    if mapping.preset:
        click.echo(f"Read as {mapping.preset}.")
    elif mapping.saved:
        click.echo(f"Read with the saved mapping “{mapping.saved}”.")
    click.echo("Mapping: " + ", ".join(
        f"{heading} → {column_label(target) if target else 'not imported'}"
        for heading, target in zip(mapping.headings, mapping.targets, strict=True)))
    for said in mapping.derived:
        click.echo(f"Derived: {said}.")
    if batch.generate_passwords:
        what = ("a link to choose a password" if batch.invite_mode == InviteMode.LINK
                else "a generated password")
        click.echo(f"Invitations: {what}, sent "
                   f"{Schedule.from_json(notes.get('schedule')).describe()}.")
    if notes.get("defaults"):
        click.echo("Defaults: " + "; ".join(f"{column_label(key)}: {value}" for key, value
                                            in notes["defaults"].items())
                   + " (where a row has no such column or an empty cell).")
    if mapping.not_imported:
        click.echo("Not imported: " + ", ".join(mapping.not_imported)
                   + " (map one with --map \"HEADING=field\").")
    counts = batch.counts
    if counts.get("short"):
        click.echo(f"Note: {counts['short']} rows left out their empty trailing cells; they were "
                   "read as empty.")
    if notes.get("empty_password_column"):
        click.echo(f"Note: the column “{notes['empty_password_column']}” is empty in every row "
                   "and was ignored.")
    if counts.get("password_ignored"):
        click.echo(f"Note: {counts['password_ignored']} rows of existing users have a password "
                   "in the file; it is ignored unless --update-passwords is given.")


def _apply(batch_id: int) -> dict:
    """Apply the batch (with a progress bar for the hashing on a terminal); an ApplyError ends
    the command with status 1 and nothing written."""
    bar = None

    def progress(stage: str, done: int, total: int) -> None:
        nonlocal bar
        if stage == "Hashing passwords" and sys.stdout.isatty():
            if bar is None:
                bar = click.progressbar(length=total, label="Hashing passwords")
            bar.update(done - bar.pos)
        elif bar is not None:
            bar.render_finish()
            bar = None

    try:
        return apply_batch(batch_id, progress=progress)
    except ApplyError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)


def _write_results(batch: ImportBatch, path: Path) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.writelines(csv_lines(result_lines(db.session, batch)))


@people_cli.command("export")
@click.option("--columns", default="", help="Comma-separated columns (default: every column).")
@click.option("--search", default="", help="Only users matching, as in the user list.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="Write here instead of standard output.")
def export_command(columns: str, search: str, output: Path | None) -> None:
    """Export users as CSV (UTF-8 with BOM) that `flask people import` reads back unchanged."""
    known = [key for key, _ in export_columns(db.session)]
    chosen = [c.strip() for c in columns.split(",") if c.strip()]
    unknown = [c for c in chosen if c not in known]
    if unknown:
        raise click.BadParameter(f"unknown column {', '.join(unknown)}; the columns are "
                                 f"{', '.join(known)}", param_hint="--columns")
    lines = csv_lines(export_rows(db.session, chosen, search))
    if output is None:
        sys.stdout.buffer.writelines(line.encode("utf-8") for line in lines)
    else:
        with output.open("w", encoding="utf-8", newline="") as handle:
            handle.writelines(lines)

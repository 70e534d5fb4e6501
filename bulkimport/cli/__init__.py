"""Command-line commands: `create-admin`, `ensure-admin` (used by `make run`), `purge-batches`;
`people import` and `people export` live with the people blueprint."""

from __future__ import annotations

import sys

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from ..accounts import AccountError, create_admin, ensure_first_admin
from ..extensions import db
from ..importing.staging import purge_expired


def register_commands(app: Flask) -> None:
    """Attach the commands to `flask --app wsgi`."""
    app.cli.add_command(create_admin_command)
    app.cli.add_command(ensure_admin_command)
    app.cli.add_command(purge_batches_command)
    from .people import people_cli

    app.cli.add_command(people_cli)


@click.command("create-admin")
@with_appcontext
@click.option("--username", required=True, help="Login name of the new administrator.")
@click.option("--email", required=True, help="E-mail address of the new administrator.")
@click.option("--firstname", default="Site", show_default=True)
@click.option("--surname", default="Administrator", show_default=True)
def create_admin_command(username: str, email: str, firstname: str, surname: str) -> None:
    """Create an administrator; the password is read from standard input when it is not a
    terminal, and asked for (twice) otherwise."""
    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    try:
        create_admin(db.session, username, email, password, firstname=firstname, surname=surname)
        db.session.commit()
    except AccountError as exc:
        db.session.rollback()
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    click.echo(f"Administrator “{username}” created.")


@click.command("ensure-admin")
@with_appcontext
@click.option("--email", envvar="BULKIMPORT_ADMIN_EMAIL", default="admin@example.com",
              show_default=True, help="E-mail address of the first administrator.")
def ensure_admin_command(email: str) -> None:
    """Create the administrator `admin` with a generated password if there is none, and print
    how to log in; do nothing when an administrator exists."""
    try:
        password = ensure_first_admin(db.session, email)
        db.session.commit()
    except AccountError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    if password:
        url = current_app.config["BASE_URL"].rstrip("/") + "/login"
        click.echo("\n" + "=" * 64)
        click.echo(f"First administrator created. Log in at {url}")
        click.echo("  username: admin")
        click.echo(f"  password: {password}")
        click.echo("This password is shown only once: keep it somewhere safe.")
        click.echo("=" * 64 + "\n")


@click.command("purge-batches")
@with_appcontext
def purge_batches_command() -> None:
    """Delete the staged rows of uploads past their time to live (run it from cron)."""
    count = purge_expired(db.session)
    db.session.commit()
    click.echo(f"{count} expired upload(s) purged.")

"""bulkimport: create or update many user accounts from one CSV file.

`create_app` is the application factory: configuration, extensions, blueprints, error pages and
command-line commands are all wired here.
"""

from __future__ import annotations

from flask import Flask, session
from sqlalchemy import event
from sqlalchemy.engine import Engine

from . import clock
from .config import load_config
from .extensions import bootstrap, csrf, db, login_manager, mail, migrate
from .logs import configure_logging
from .mailing.throttle import send_rate_limit


def create_app(overrides: dict | None = None) -> Flask:
    """Build the application; `overrides` (tests, tools) win over every other configuration."""
    app = Flask(__name__, instance_relative_config=True)
    load_config(app.config, app.instance_path, overrides)
    configure_logging(app.config["LOG_LEVEL"], app.config["LOG_FORMAT"])

    options = app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {})
    options.setdefault("hide_parameters", True)  # never log values: they may be personal data
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        options.setdefault("connect_args", {"timeout": 30})
    else:
        options.setdefault("pool_pre_ping", True)

    if app.config["TRUSTED_PROXIES"]:  # the client's address counts failed logins
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    app.extensions[clock.EXTENSION_KEY] = app.config.get("CLOCK") or clock.SYSTEM_CLOCK
    db.init_app(app)
    migrate.init_app(app, db, directory=str(_migrations_dir()), render_as_batch=True)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please log in to see that page."
    login_manager.login_message_category = "info"
    csrf.init_app(app)
    bootstrap.init_app(app)
    mail.init_app(app)
    send_rate_limit.init_app(app)

    from . import headers, web
    from .auth import bp as auth_bp
    from .cli import register_commands
    from .errors import register_error_pages
    from .localisation import bp as localisation_bp
    from .login_sessions import TOKEN_KEY, session_user
    from .people import bp as people_bp
    from .system import bp as system_bp

    @login_manager.user_loader
    def load_user(session_user_id: str):
        """The user of the session's server-side row, if it is live and the cookie names the
        same user and session epoch (bulk password changes of an import move the epoch on)."""
        user = session_user(db.session, session.get(TOKEN_KEY))
        return user if user is not None and user.get_id() == session_user_id else None

    app.register_blueprint(auth_bp)
    app.register_blueprint(people_bp)
    app.register_blueprint(localisation_bp)
    app.register_blueprint(system_bp)
    register_error_pages(app)
    web.init_app(app)
    headers.init_app(app)
    register_commands(app)
    if not app.config["REDIS_URL"] and not app.testing:
        from .sweep import start_sweeper

        @app.before_request
        def start_background_sweeper() -> None:
            """Without Redis, this process sends the mail: start its sweeper with the first
            request (not at import, so that `flask db upgrade` and friends start nothing)."""
            start_sweeper(app)
    return app


def _migrations_dir():
    from pathlib import Path

    return Path(__file__).resolve().parent.parent / "migrations"


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """WAL lets the review page read while a background job writes; foreign keys are off by
    default in SQLite."""
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

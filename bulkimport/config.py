"""Configuration: built-in defaults, then `instance/config.py`, then `BULKIMPORT_*` variables.

Every setting is listed once in `SETTINGS` so that the README table, the environment parsing and
the defaults cannot drift apart.
"""

from __future__ import annotations

import codecs
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


@dataclass(frozen=True)
class Setting:
    """One configuration key: its Flask config name, default, parser and a one-line description."""

    name: str
    default: Any
    parse: Callable[[str], Any]
    help: str

    @property
    def env(self) -> str:
        """The environment variable that overrides this setting."""
        return "BULKIMPORT_" + self.name


SETTINGS: tuple[Setting, ...] = (
    Setting("SECRET_KEY", None, str,
            "Signs sessions and CSRF tokens; generated once into instance/secret_key if unset."),
    Setting("DATABASE_URL", None, str,
            "SQLAlchemy URL (postgresql+psycopg://user@host/db); SQLite in instance/ if unset."),
    Setting("REDIS_URL", "", str,
            "Redis for the RQ queues; when empty, background jobs run in-process (threads)."),
    Setting("BASE_URL", "http://127.0.0.1:5000", str,
            "Public address of the site, used in links that leave it (e-mails)."),
    Setting("MAX_UPLOAD_MB", 20, int, "Largest CSV upload accepted, in megabytes."),
    Setting("ENCODING_FALLBACKS", ["cp1252", "cp1250"], _list,
            "Candidate encodings of a file that is neither UTF-8 nor UTF-16 with BOM: the reading "
            "with the most plausible words wins (the order breaks ties), and a second plausible "
            "reading is offered beside it."),
    Setting("ALLOWED_EMAIL_DOMAINS", [], _list,
            "Intranet domains accepted although reserved (e.g. corp.local), comma separated."),
    Setting("DATE_ORDER", "DMY", str,
            "How dates with slashes in imported files are read: DMY (31/01/2026) or MDY "
            "(01/31/2026); ISO dates (2026-01-31) always work."),
    Setting("TIME_ZONE", "UTC", str,
            "The site's time zone (an IANA name such as Europe/Berlin), in which administrators "
            "choose and read when scheduled invitations go."),
    Setting("MAX_COLUMNS", 200, int,
            "Most columns an uploaded file may have; a wider file is refused, naming the limit."),
    Setting("MAX_STAGED_BATCHES", 5, int,
            "Uploads one administrator may keep waiting for review; a new upload discards the "
            "oldest beyond this."),
    Setting("BATCH_TTL_HOURS", 24, int,
            "Hours a reviewed but unsubmitted upload is kept before it is purged."),
    Setting("BACKGROUND_UPLOAD_KB", 1024, int,
            "Uploads of at least this many KB are read and checked by a background job while "
            "a progress page shows how far it is (0: always in the request)."),
    Setting("READING_STALLED_SECONDS", 120, int,
            "A background reading that reports nothing for this long is shown as stopped."),
    Setting("BACKGROUND_ROWS", 2000, int,
            "Batches with at least this many selected rows are applied by a background job."),
    Setting("APPLY_STALE_SECONDS", 60.0, float,
            "Seconds without a heartbeat after which a batch being applied in the background "
            "counts as abandoned (its worker stopped) and is failed, nothing written; the worker "
            "renews the heartbeat every tenth of this."),
    Setting("BCRYPT_ROUNDS", 12, int, "bcrypt cost factor for new password hashes; hashes of "
            "another cost are redone at the user's next login."),
    Setting("LOGIN_SLOWDOWN_AFTER", 3, int,
            "Failed logins of one account from one address after which each new attempt from "
            "there must wait (1 s, doubling, at most 60 s)."),
    Setting("LOGIN_LOCK_AFTER", 10, int,
            "Failed logins of one account from one address that lock that address out of that "
            "account."),
    Setting("LOGIN_ADDRESS_SLOWDOWN_AFTER", 20, int,
            "Failed logins from one address after which each new attempt from it must wait."),
    Setting("LOGIN_ADDRESS_LOCK_AFTER", 100, int, "Failed logins from one address that lock it."),
    Setting("LOGIN_ACCOUNT_LOCK_ADDRESSES", 10, int,
            "Addresses failing to log in to one account that lock it for every address it has "
            "not logged in from before (those it has still get in)."),
    Setting("LOGIN_KNOWN_ADDRESS_DAYS", 90, int,
            "Days an address an account logged in from keeps passing that account's lock."),
    Setting("LOGIN_LOCK_MINUTES", 15, int,
            "How long a lock lasts, and how long failures are remembered."),
    Setting("SESSION_IDLE_MINUTES", 60, int,
            "Minutes without a request after which a session ends."),
    Setting("SESSION_MAX_HOURS", 12, int,
            "Hours after logging in at which a session ends, however active."),
    Setting("TRUSTED_PROXIES", 0, int,
            "Reverse proxies in front of the app whose X-Forwarded-For/-Proto to trust (1 behind "
            "one nginx); the client address counts failed logins."),
    Setting("HEALTH_TOKEN", "", str,
            "Bearer token that lets monitoring see Redis and SMTP on /healthz (anonymous callers "
            "get liveness only); empty: administrators only."),
    Setting("LOG_LEVEL", "INFO", str, "Logging level of the application logger."),
    Setting("LOG_FORMAT", "text", str,
            "text (readable lines) or json (one JSON object a line, for log collectors)."),
    Setting("SITE_NAME", "bulkimport", str, "The site's name, as shown in e-mails."),
    Setting("MAIL_SERVER", "", str,
            "SMTP relay host; when empty, e-mails are written to instance/outbox/ instead."),
    Setting("MAIL_PORT", 25, int, "SMTP port (587 for STARTTLS, 465 for TLS)."),
    Setting("MAIL_USE_TLS", False, _bool, "Use STARTTLS after connecting."),
    Setting("MAIL_USE_SSL", False, _bool, "Connect with TLS from the start (port 465)."),
    Setting("MAIL_USERNAME", "", str, "SMTP login, if the relay needs one."),
    Setting("MAIL_PASSWORD", "", str, "SMTP password, if the relay needs one."),
    Setting("MAIL_DEFAULT_SENDER", "bulkimport <noreply@localhost>", str,
            "The From address of invitation e-mails."),
    Setting("MAIL_TIMEOUT", 30.0, float, "Seconds any SMTP socket operation may take."),
    Setting("MAIL_RATE_PER_MINUTE", 60, int,
            "E-mails sent per minute by all workers together; 0 means unlimited."),
    Setting("MAIL_GIVE_UP_HOURS", 24.0, float,
            "Hours an invitation is retried after temporary failures before it is failed."),
    Setting("MAIL_CHUNK_SIZE", 50, int, "Invitations one job sends over one SMTP connection."),
    Setting("MAIL_QUEUE_AHEAD", 30, int,
            "Under a send-rate limit, at most this many e-mails are handed to the workers ahead "
            "of the rest, so that an import submitted later waits at most that many for its "
            "turn (half a minute at 60 a minute)."),
    Setting("MAIL_SMALL_BATCH", 50, int,
            "Imports of at most this many invitations, and resends, go before bulk imports."),
    Setting("MAIL_SWEEP_SECONDS", 10.0, float,
            "How often workers look for due invitations that no job will send (Redis lost data, "
            "a job failed while the database was down, a retry came due, a worker died)."),
    Setting("MAIL_LEASE_SECONDS", 60.0, float,
            "How long the invitations a worker claimed stay its own without a heartbeat; it "
            "renews them every quarter of this while it works, so that those of a worker that "
            "died are taken back within this time."),
    Setting("MAIL_RETRY_SECONDS", 60.0, float,
            "First delay before retrying a temporary failure; it doubles each time, up to 1 h."),
    Setting("OUTBOX_RETENTION_DAYS", 7.0, float,
            "Days an e-mail stays in instance/outbox/ (no SMTP server); older ones are deleted "
            "when the outbox is written or listed; 0 keeps them all."),
)


def load_config(app_config: dict, instance_path: str, overrides: dict | None = None) -> None:
    """Fill `app_config` from defaults, `instance/config.py`, the environment and `overrides`.

    `overrides` (used by tests and the app factory's caller) win over everything else.
    """
    for setting in SETTINGS:
        app_config[setting.name] = setting.default
    # Flask's own settings that we default differently; instance/config.py may still change them.
    app_config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      BOOTSTRAP_SERVE_LOCAL=True,
                      WTF_CSRF_TIME_LIMIT=None,  # a long review must not expire its form
                      # Flask-Mail would not send under TESTING, and with MAIL_DEBUG it would print
                      # every message, passwords included, to stderr.
                      MAIL_SUPPRESS_SEND=False, MAIL_DEBUG=False)
    app_config.from_pyfile("config.py", silent=True)
    for setting in SETTINGS:
        raw = os.environ.get(setting.env)
        if raw is not None:
            try:
                app_config[setting.name] = setting.parse(raw)
            except ValueError as exc:
                raise RuntimeError(f"{setting.env}={raw!r} is not valid: {exc}") from None
    if overrides:
        app_config.update(overrides)

    instance = Path(instance_path)
    instance.mkdir(parents=True, exist_ok=True)
    if not app_config["SECRET_KEY"]:
        app_config["SECRET_KEY"] = _persistent_secret(instance / "secret_key")
    if not app_config["DATABASE_URL"]:
        app_config["DATABASE_URL"] = f"sqlite:///{instance / 'bulkimport.sqlite'}"

    for name in app_config["ENCODING_FALLBACKS"]:
        try:
            codecs.lookup(name)
        except LookupError:
            raise RuntimeError(f"BULKIMPORT_ENCODING_FALLBACKS: “{name}” is not an encoding "
                               "Python knows (try cp1252, latin-1, iso8859-15, cp1250)") from None
    for name, allowed in (("LOG_FORMAT", ("text", "json")), ("DATE_ORDER", ("DMY", "MDY"))):
        if app_config[name] not in allowed:
            raise RuntimeError(f"BULKIMPORT_{name}={app_config[name]!r} is not valid: use "
                               + " or ".join(allowed))
    try:
        ZoneInfo(app_config["TIME_ZONE"])
    except (ZoneInfoNotFoundError, ValueError):
        raise RuntimeError(f"BULKIMPORT_TIME_ZONE={app_config['TIME_ZONE']!r} is not a time "
                           "zone: use an IANA name such as Europe/Berlin or UTC") from None
    app_config["SQLALCHEMY_DATABASE_URI"] = app_config["DATABASE_URL"]
    app_config["MAX_CONTENT_LENGTH"] = app_config["MAX_UPLOAD_MB"] * 1024 * 1024
    app_config["SESSION_COOKIE_SECURE"] = str(app_config["BASE_URL"]).startswith("https://")


def _persistent_secret(path: Path) -> str:
    """Return the secret stored at `path`, creating it (readable by the owner only) if missing."""
    if not path.exists():
        # Written whole under a temporary name, then linked into place: another process never
        # reads a half-written key, and whoever links first wins.
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
        try:
            os.link(partial, path)
        except FileExistsError:
            pass
        finally:
            partial.unlink()
    return path.read_text().strip()

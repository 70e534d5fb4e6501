"""Typed SQLAlchemy 2 models: users, staged import batches with their rows, invitations, the
password policy, login throttling, sessions and the audit trail."""

from __future__ import annotations

import enum
import unicodedata
from datetime import datetime
from typing import Any

from flask_login import UserMixin
from sqlalchemy import (
    JSON,
    Enum,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.ext.hybrid import hybrid_method, hybrid_property
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .clock import utcnow
from .extensions import db


class BatchStatus(enum.StrEnum):
    """Where an uploaded file is in its journey."""

    READING = "reading"  # a big file being read and checked in the background
    STAGED = "staged"
    QUEUED = "queued"
    APPLYING = "applying"
    APPLIED = "applied"
    FAILED = "failed"
    EXPIRED = "expired"


class RowAction(enum.StrEnum):
    """What validation proposes for a row, and what the administrator chose."""

    ADD = "add"
    UPDATE = "update"
    NOCHANGE = "nochange"
    ERROR = "error"
    SKIP = "skip"
    MISSING = "missing"  # an active user the file does not name (a leaver), when asked
    BLOCK = "block"  # the choice for a missing user: block the account


class RowOutcome(enum.StrEnum):
    """What applying did with a row."""

    ADDED = "added"
    UPDATED = "updated"
    SKIPPED = "skipped"
    ERROR = "error"
    BLOCKED = "blocked"


class InvitationStatus(enum.StrEnum):
    """Where an invitation e-mail is in the outbox."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


class InviteMode(enum.StrEnum):
    """What an invitation e-mail carries: a generated password, or a link to choose one."""

    PASSWORD = "password"
    LINK = "link"


class LinkState(enum.StrEnum):
    """Where a set-password link is: `pending` (its e-mail may have been accepted) and `live`
    (accepted) open the page; the others say why they no longer do."""

    PENDING = "pending"
    LIVE = "live"
    USED = "used"
    SUPERSEDED = "superseded"
    REFUSED = "refused"  # the mail server certainly did not accept its e-mail


class VersionKind(enum.StrEnum):
    """How a template version came to be."""

    SAVE = "save"
    RESTORE = "restore"
    RESET = "reset"


class FieldType(enum.StrEnum):
    """The type of a custom profile field."""

    TEXT = "text"
    NUMBER = "number"
    DATE = "date"
    CHOICE = "choice"
    YESNO = "yesno"


def status_column(kind: type[enum.StrEnum], name: str) -> Enum:
    """A column type storing `kind`'s values as text, with a CHECK constraint named `name` in
    the database so that no other value can be written, by us or anyone."""
    return Enum(kind, name=name, native_enum=False, create_constraint=True, length=16,
                values_callable=lambda members: [m.value for m in members],
                validate_strings=True)


def fold_key(value: str) -> str:
    """The case-insensitive key under which usernames and e-mail addresses must be unique."""
    return unicodedata.normalize("NFKC", value).casefold()


class User(UserMixin, db.Model):
    """A person who can log in. `username_key` and `email_key` carry the case-insensitive
    uniqueness in the database itself, the same on SQLite and PostgreSQL."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(100))
    username_key: Mapped[str] = mapped_column(String(100), unique=True)
    firstname: Mapped[str] = mapped_column(String(100))
    surname: Mapped[str] = mapped_column(String(100))
    email: Mapped[str] = mapped_column(String(254))
    email_key: Mapped[str] = mapped_column(String(254), unique=True)
    language: Mapped[str | None] = mapped_column(String(16))
    password_hash: Mapped[str | None] = mapped_column(String(60))
    # Set when the password was generated and e-mailed; after this moment it no longer logs in.
    temp_password_expires_at: Mapped[datetime | None]
    is_admin: Mapped[bool] = mapped_column(default=False)
    must_change_password: Mapped[bool] = mapped_column(default=False)
    active: Mapped[bool] = mapped_column(default=True)
    # Part of every session's user id (see get_id): raising it ends every session of the user.
    session_epoch: Mapped[int] = mapped_column(default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    invitations: Mapped[list[Invitation]] = relationship(
        back_populates="user", order_by="Invitation.id"
    )

    @property
    def is_active(self) -> bool:
        """Whether the account may log in (Flask-Login asks before logging a user in)."""
        return self.active

    def get_id(self) -> str:
        """The id Flask-Login keeps in the session: the user's id and session epoch, so that a
        session made before the last password change no longer loads the user."""
        return f"{self.id}:{self.session_epoch}"

    @property
    def full_name(self) -> str:
        """First name and surname, as shown in lists."""
        return f"{self.firstname} {self.surname}"

    def set_identity(self, username: str, email: str) -> None:
        """Set username and e-mail together with their uniqueness keys."""
        self.username, self.username_key = username, fold_key(username)
        self.email, self.email_key = email, fold_key(email)


class ImportBatch(db.Model):
    """One uploaded CSV file, staged for review and then applied once (or expired)."""

    __tablename__ = "import_batches"

    READING, STAGED, QUEUED, APPLYING, APPLIED, FAILED, EXPIRED = BatchStatus

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    status: Mapped[BatchStatus] = mapped_column(status_column(BatchStatus, "batch_status"),
                                                default=STAGED)
    filename: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int]
    generate_passwords: Mapped[bool] = mapped_column(default=False)  # invitations are sent
    # What the invitations carry, when `generate_passwords` is set.
    invite_mode: Mapped[InviteMode] = mapped_column(
        status_column(InviteMode, "batch_invite_mode"), default=InviteMode.PASSWORD,
        server_default=InviteMode.PASSWORD.value)
    # "Empty cells clear values": an empty cell of an optional column clears the stored value.
    clear_empty: Mapped[bool] = mapped_column(default=False, server_default="0")
    encoding: Mapped[str] = mapped_column(String(32))
    delimiter: Mapped[str] = mapped_column(String(4))
    # [{"heading": "E-mail", "field": "email"}, …]; field is None for unknown columns.
    columns: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    counts: Mapped[dict[str, int]] = mapped_column(JSON)
    # importing.mapping.Mapping.to_json(): what each column becomes, the preset, derivations.
    mapping: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    sheet: Mapped[str | None] = mapped_column(String(100))  # the workbook sheet read
    # "Also set the passwords of existing users": else a file's passwords are for new users.
    update_passwords: Mapped[bool] = mapped_column(default=False, server_default="0")
    # What the review page tells besides the rows: the other plausible encodings, an empty
    # password column ignored, a password column that conflicts with generated passwords.
    notes: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Touched by every change, progress included: a queued or applying batch whose updated_at
    # stops moving has lost its job (see importing.submission.recover_stale_batches).
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    expires_at: Mapped[datetime]
    progress_done: Mapped[int] = mapped_column(default=0)
    progress_total: Mapped[int] = mapped_column(default=0)
    progress_stage: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    applied_at: Mapped[datetime | None]
    result: Mapped[dict[str, int] | None] = mapped_column(JSON)

    owner: Mapped[User] = relationship()

    @property
    def needs_mapping(self) -> bool:
        """Whether the columns wait for the administrator's mapping before rows can be checked."""
        return bool((self.notes or {}).get("needs_mapping"))

    @property
    def refused(self) -> bool:
        """Whether a background reading refused the file (`error` says why; nothing is staged)."""
        return bool((self.notes or {}).get("refused"))

    @property
    def blocked(self) -> str | None:
        """Why the rows could not be checked with the chosen options (then none are staged)."""
        return (self.notes or {}).get("blocked")

    @property
    def unknown_columns(self) -> list[str]:
        """Headings that match no field; their values are not imported."""
        return [c["heading"] for c in self.columns if c["field"] is None]

    @property
    def is_open(self) -> bool:
        """Whether the batch can still be reviewed and submitted."""
        return self.status in (self.STAGED, self.FAILED)


class UploadFile(db.Model):
    """The uploaded bytes of an open batch, encrypted (a file may hold passwords), kept so that a
    changed mapping, encoding or option reads it again without another upload; deleted with
    the staged rows."""

    __tablename__ = "upload_files"

    batch_id: Mapped[int] = mapped_column(
        ForeignKey("import_batches.id", ondelete="CASCADE"), primary_key=True)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class SavedMapping(db.Model):
    """A column mapping an administrator confirmed, proposed again for files with the same
    headings (`signature`: importing.mapping.headings_signature)."""

    __tablename__ = "saved_mappings"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    signature: Mapped[str] = mapped_column(String(64), unique=True)
    mapping: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    used_at: Mapped[datetime | None]


class ImportRow(db.Model):
    """One data row of a batch: its values, the proposed action, the admin's choice and, after
    apply, the outcome. `values` and `raw` are purged once the batch is applied or expires."""

    __tablename__ = "import_rows"
    __table_args__ = (
        Index("ix_import_rows_batch_line", "batch_id", "line"),
        Index("ix_import_rows_batch_proposed", "batch_id", "proposed"),
    )

    ADD, UPDATE, NOCHANGE, ERROR, SKIP, MISSING, BLOCK = RowAction

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("import_batches.id", ondelete="CASCADE"))
    line: Mapped[int]
    end_line: Mapped[int]
    username: Mapped[str] = mapped_column(String(255))
    proposed: Mapped[RowAction] = mapped_column(status_column(RowAction, "row_proposed"))
    choice: Mapped[RowAction] = mapped_column(status_column(RowAction, "row_choice"),
                                              default=SKIP)
    user_id: Mapped[int | None]
    values: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    raw: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True))
    changes: Mapped[dict[str, list[Any]] | None] = mapped_column(JSON(none_as_null=True))
    errors: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True))
    outcome: Mapped[RowOutcome | None] = mapped_column(status_column(RowOutcome, "row_outcome"))


class Invitation(db.Model):
    """The outbox entry for one new user's login credentials; the queue only wakes the workers."""

    __tablename__ = "invitations"

    QUEUED, SENDING, SENT, FAILED = InvitationStatus

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    mode: Mapped[InviteMode] = mapped_column(
        status_column(InviteMode, "invitation_mode"), default=InviteMode.PASSWORD,
        server_default=InviteMode.PASSWORD.value)
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("import_batches.id"), index=True)
    status: Mapped[InvitationStatus] = mapped_column(
        status_column(InvitationStatus, "invitation_status"), default=QUEUED, index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When the current round of attempts began (creation or the last Resend): give-up counts
    # from here.
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    sent_at: Mapped[datetime | None]
    # When the administrator asked for it to go (a start date); None when it went at once.
    scheduled_at: Mapped[datetime | None]
    # Hashes of generated passwords (in link mode, SHA-256 digests of link tokens) whose e-mail
    # the server may have accepted without us learning so (a timeout after DATA, a killed
    # worker): each keeps working until an e-mail is known to be accepted, so that the last
    # accepted e-mail's credential always works.
    pending_hashes: Mapped[list[str]] = mapped_column(JSON, default=list)
    lease_until: Mapped[datetime | None]  # a worker holds it while `sending`, until then
    lease_token: Mapped[str | None] = mapped_column(String(32))  # which worker holds it
    enqueued_at: Mapped[datetime | None]  # when a job that should send it was last queued

    user: Mapped[User] = relationship(back_populates="invitations")

    @hybrid_property
    def resent(self) -> bool:
        """Whether a Resend began the current round: it started after the invitation was made,
        or after the time it was scheduled for (which starts a scheduled one's round)."""
        return self.started_at > (self.scheduled_at or self.created_at)

    @resent.inplace.expression
    @classmethod
    def _resent_expression(cls):
        return cls.started_at > func.coalesce(cls.scheduled_at, cls.created_at)

    @hybrid_method
    def waits_for_its_time(self, now: datetime) -> bool:
        """Whether it was scheduled for later and still waits for that time, not yet tried."""
        return (self.status == InvitationStatus.QUEUED and self.scheduled_at is not None
                and self.attempts == 0 and self.next_attempt_at > now)

    @waits_for_its_time.inplace.expression
    @classmethod
    def _waits_for_its_time_expression(cls, now: datetime):
        return ((cls.status == InvitationStatus.QUEUED) & cls.scheduled_at.is_not(None)
                & (cls.attempts == 0) & (cls.next_attempt_at > now))


class SetPasswordLink(db.Model):
    """A one-time link to choose a password, known by the SHA-256 of its token only (the token
    is 256 random bits, so no slow hash is needed); kept after use so that an old link can say
    why it no longer works."""

    __tablename__ = "set_password_links"

    PENDING, LIVE, USED, SUPERSEDED, REFUSED = LinkState

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    invitation_id: Mapped[int | None] = mapped_column(
        ForeignKey("invitations.id", ondelete="SET NULL"), index=True)
    state: Mapped[LinkState] = mapped_column(status_column(LinkState, "link_state"),
                                             default=PENDING)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]

    user: Mapped[User] = relationship()


class SystemState(db.Model):
    """Small shared facts every process must see, such as "sending is paused because the SMTP
    relay refused our login"."""

    __tablename__ = "system_state"

    MAIL_PAUSED = "mail_paused"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class PasswordPolicy(db.Model):
    """The password rules administrators set (Admin > People > Password policy): a single row,
    id 1; until it is first saved, the defaults below apply."""

    __tablename__ = "password_policy"

    id: Mapped[int] = mapped_column(primary_key=True)
    min_length: Mapped[int] = mapped_column(default=12)
    max_length: Mapped[int] = mapped_column(default=64)
    require_lowercase: Mapped[bool] = mapped_column(default=False)
    require_uppercase: Mapped[bool] = mapped_column(default=False)
    require_digit: Mapped[bool] = mapped_column(default=False)
    require_symbol: Mapped[bool] = mapped_column(default=False)
    refuse_personal: Mapped[bool] = mapped_column(default=True)
    refuse_common: Mapped[bool] = mapped_column(default=True)
    refuse_reuse: Mapped[bool] = mapped_column(default=True)
    temp_password_days: Mapped[int] = mapped_column(default=7)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class LoginFailures(db.Model):
    """Recent failed logins under one throttling key: an account from one address
    (`pair:<account digest>@<ip>`, which also remembers the account's last login from there), an
    address (`address:<ip>`), or an account (`account:<account digest>`, counting the addresses
    that failed). Accounts are named by a keyed digest of the typed username, whether or not it
    exists, so that a password typed as a username is never stored."""

    __tablename__ = "login_failures"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0)
    last_failure_at: Mapped[datetime] = mapped_column(default=utcnow)
    locked_until: Mapped[datetime | None]
    last_success_at: Mapped[datetime | None]


class LoginSession(db.Model):
    """One logged-in browser: the cookie holds a random token, this row its SHA-256, so that a
    session ends when its row is deleted (logout, a password change, a resend) and a copy of the
    table opens no session."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    address: Mapped[str | None] = mapped_column(String(64))


class AuditEvent(db.Model):
    """Something security-relevant that happened: who did it, to whom, from where, and details
    that never include a password. The user ids carry no foreign key: the trail outlives the
    users it names, and imports write it in bulk."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    action: Mapped[str] = mapped_column(String(64))  # no index: imports write it in bulk
    actor_id: Mapped[int | None]
    user_id: Mapped[int | None] = mapped_column(index=True)
    address: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))

    actor: Mapped[User | None] = relationship(
        primaryjoin="foreign(AuditEvent.actor_id) == User.id", viewonly=True)
    user: Mapped[User | None] = relationship(
        primaryjoin="foreign(AuditEvent.user_id) == User.id", viewonly=True)


class Language(db.Model):
    """A language of the site (Admin > System > Localisation); exactly one is the default, to
    which users without a translation of their own language fall back."""

    __tablename__ = "languages"

    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    is_default: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TemplateVersion(db.Model):
    """One saved state of a notification template in one language; the newest is in force.
    A `reset` version has no content: the language uses the shipped template (or falls back)."""

    __tablename__ = "template_versions"
    __table_args__ = (Index("ix_template_versions_name_language", "name", "language", "id"),)

    SAVE, RESTORE, RESET = VersionKind

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    language: Mapped[str] = mapped_column(ForeignKey("languages.code"))
    kind: Mapped[VersionKind] = mapped_column(status_column(VersionKind, "version_kind"),
                                              default=SAVE)
    subject: Mapped[str | None] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)
    restored_from_id: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    created_by: Mapped[User | None] = relationship()


class ProfileField(db.Model):
    """A custom profile field defined by administrators (Admin > People > Profile fields); its
    symbolic `name` is the CSV heading. Retired fields keep their values but leave imports and
    exports."""

    __tablename__ = "profile_fields"

    TEXT, NUMBER, DATE, CHOICE, YESNO = FieldType
    TYPES = tuple(FieldType)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40), unique=True)
    label: Mapped[str] = mapped_column(String(100))
    type: Mapped[FieldType] = mapped_column(status_column(FieldType, "field_type"), default=TEXT)
    options: Mapped[list[str]] = mapped_column(JSON, default=list)
    required: Mapped[bool] = mapped_column(default=False)
    unique: Mapped[bool] = mapped_column(default=False)
    retired: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ProfileValue(db.Model):
    """One user's value of one custom field, stored in its canonical text form (ISO dates,
    numbers with a dot, the choice as defined, yes/no). `unique_key` is set for unique fields
    only, so that the database itself refuses two users with the same value."""

    __tablename__ = "profile_values"
    __table_args__ = (UniqueConstraint("field_id", "unique_key"),)

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                         primary_key=True)
    field_id: Mapped[int] = mapped_column(ForeignKey("profile_fields.id", ondelete="CASCADE"),
                                          primary_key=True, index=True)
    value: Mapped[str] = mapped_column(Text)
    unique_key: Mapped[str | None] = mapped_column(String(255))

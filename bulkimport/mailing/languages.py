"""Languages of the site and the notification templates saved per language, with their
versions: plain functions for the views, the import and the mail worker."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import NamedTuple

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..audit_trail import record_event
from ..models import InviteMode, Language, TemplateVersion
from ..password_policy import load_policy
from .templating import (
    DEFAULT_INVITATION,
    DEFAULT_INVITATION_LINK,
    INVITATION,
    INVITATION_LINK,
    INVITATION_VARIABLES,
    NotificationTemplate,
    check_template,
    sample_context,
)

SHIPPED_LANGUAGE = "en"


class Notification(NamedTuple):
    """A notification template an editor can change."""

    title: str  # what it is for
    shipped: NotificationTemplate
    variables: dict[str, str]
    required: str  # the variable a body must use: the credential the e-mail exists for


NOTIFICATIONS = {
    INVITATION: Notification("Invitation e-mail with a generated password (login credentials "
                             "of a new user)", DEFAULT_INVITATION, INVITATION_VARIABLES,
                             "password"),
    INVITATION_LINK: Notification("Invitation e-mail with a one-time link to choose a password",
                                  DEFAULT_INVITATION_LINK, INVITATION_VARIABLES,
                                  "set_password_url"),
}
TEMPLATE_OF_MODE = {InviteMode.PASSWORD: INVITATION, InviteMode.LINK: INVITATION_LINK}
LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{2,8})?$")


class LocalisationError(Exception):
    """A language or template change that cannot be made; the message says why."""


def language_key(code: str) -> str:
    """The form in which language codes are stored and compared: lower case, `-` separated
    (so that pt_BR, pt-br and PT-BR are one language)."""
    return code.strip().replace("_", "-").lower()


def languages(session: Session) -> list[Language]:
    """The site's languages, the default first."""
    return list(session.scalars(select(Language).order_by(Language.is_default.desc(),
                                                          Language.code)))


def language_codes(session: Session) -> dict[str, str]:
    """{language key: stored code} of every language of the site, for checking imports."""
    return {language_key(code): code for code in session.scalars(select(Language.code))}


def default_language(session: Session) -> str:
    """The code of the site's default language (English until an administrator picks one)."""
    return session.scalar(select(Language.code).where(Language.is_default)) or SHIPPED_LANGUAGE


def add_language(session: Session, code: str, name: str, *, actor_id: int) -> Language:
    """Add a language of the site; refuses malformed and duplicate codes. The caller commits."""
    key = language_key(code)
    if not LANGUAGE_CODE.match(key):
        raise LocalisationError(f"“{code}” is not a language code such as de, fr or pt-BR.")
    name = " ".join(name.split())
    if not name or len(name) > 64:
        raise LocalisationError("Give the language a name of 1 to 64 characters, e.g. Deutsch.")
    if session.get(Language, key):
        raise LocalisationError(f"The language “{key}” is already a language of the site.")
    language = Language(code=key, name=name, is_default=False)
    session.add(language)
    record_event(session, "language_added", actor_id=actor_id, code=key, name=name)
    return language


def set_default_language(session: Session, code: str, *, actor_id: int) -> None:
    """Make `code` the site's default language. The caller commits."""
    if session.get(Language, code) is None:
        raise LocalisationError(f"“{code}” is not a language of the site.")
    session.execute(update(Language).values(is_default=Language.code == code))
    record_event(session, "default_language_changed", actor_id=actor_id, code=code)


@dataclass(frozen=True)
class Effective:
    """The template a language uses and where it comes from (for the editor's header)."""

    template: NotificationTemplate
    source: str  # "saved", "default language", "shipped"
    language: str  # the language whose template it is
    version: TemplateVersion | None


def current_version(session: Session, name: str, language: str) -> TemplateVersion | None:
    """The version in force of `name` in `language`, or None when the language has none of its
    own (never saved, or reset)."""
    newest = session.scalar(select(TemplateVersion).where(
        TemplateVersion.name == name, TemplateVersion.language == language)
        .order_by(TemplateVersion.id.desc()).limit(1))
    return None if newest is None or newest.kind == TemplateVersion.RESET else newest


def effective_template(session: Session, name: str, language: str | None) -> Effective:
    """The template used for a user of `language`: that language's own, else the site's
    default language's, else the shipped English one."""
    code = language_key(language) if language else None
    fallback = default_language(session)
    for candidate, source in ((code, "saved"), (fallback, "default language")):
        if candidate:
            version = current_version(session, name, candidate)
            if version is not None:
                return Effective(as_template(version), source, candidate, version)
    return Effective(NOTIFICATIONS[name].shipped, "shipped", SHIPPED_LANGUAGE, None)


def invitation_template(session: Session, language: str | None,
                        mode: InviteMode = InviteMode.PASSWORD) -> NotificationTemplate:
    """The invitation template of `mode` for a user of `language`, after the fallbacks."""
    return effective_template(session, TEMPLATE_OF_MODE[mode], language).template


def editor_sample(session: Session, language: str, name: str = INVITATION,
                  **person: str) -> dict:
    """Sample variables for the editor's preview and test render of template `name`."""
    config = current_app.config
    return sample_context(language=language, login_url=config["BASE_URL"].rstrip("/") + "/login",
                          site_name=config["SITE_NAME"], link=name == INVITATION_LINK,
                          time_zone=config["TIME_ZONE"],
                          days=load_policy(session).temp_password_days, **person)


def save_template(session: Session, name: str, language: str, template: NotificationTemplate,
                  *, actor_id: int, restored_from: int | None = None) -> TemplateVersion:
    """Check `template` and store it as the newest version; raises LocalisationError with every
    problem, storing nothing, when it is broken. The caller commits."""
    if session.get(Language, language) is None:
        raise LocalisationError(f"“{language}” is not a language of the site.")
    notification = NOTIFICATIONS[name]
    problems = check_template(template, editor_sample(session, language, name),
                              notification.variables, notification.required)
    if problems:
        raise LocalisationError("\n".join(problems))
    version = TemplateVersion(
        name=name, language=language, subject=template.subject, html=template.html,
        text=template.text, created_by_id=actor_id, restored_from_id=restored_from,
        kind=TemplateVersion.RESTORE if restored_from else TemplateVersion.SAVE)
    session.add(version)
    record_event(session, "template_saved", actor_id=actor_id, template=name, language=language,
                 restored_from=restored_from)
    return version


def restore_version(session: Session, version_id: int, *, actor_id: int) -> TemplateVersion:
    """Make an earlier version the newest again (checked like a save). The caller commits."""
    version = session.get(TemplateVersion, version_id)
    if version is None or version.kind == TemplateVersion.RESET:
        raise LocalisationError("That version does not exist or has no content to restore.")
    return save_template(session, version.name, version.language, as_template(version),
                         actor_id=actor_id, restored_from=version.id)


def reset_template(session: Session, name: str, language: str, *, actor_id: int) -> None:
    """Drop the language's own template (a version without content), so that the shipped one,
    or the default language's, is used. The caller commits."""
    session.add(TemplateVersion(name=name, language=language, kind=TemplateVersion.RESET,
                                created_by_id=actor_id))
    record_event(session, "template_reset", actor_id=actor_id, template=name, language=language)


def versions(session: Session, name: str, language: str) -> list[TemplateVersion]:
    """Every version of `name` in `language`, newest first."""
    return list(session.scalars(select(TemplateVersion).where(
        TemplateVersion.name == name, TemplateVersion.language == language)
        .order_by(TemplateVersion.id.desc())))


def difference(old: NotificationTemplate, new: NotificationTemplate) -> dict[str, list[str]]:
    """A unified diff per part (subject, HTML body, text body) from `old` to `new`; parts that
    did not change are left out."""
    diffs = {}
    for field, label in (("subject", "Subject"), ("html", "HTML body"), ("text", "Text body")):
        before, after = getattr(old, field), getattr(new, field)
        if before != after:
            diffs[label] = list(difflib.unified_diff(
                before.splitlines(), after.splitlines(), "selected version", "current",
                lineterm=""))
    return diffs


def as_template(version: TemplateVersion) -> NotificationTemplate:
    """The content of a saved version."""
    return NotificationTemplate(subject=version.subject or "", html=version.html or "",
                                text=version.text or "")

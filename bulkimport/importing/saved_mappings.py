"""Saved column mappings: a mapping an administrator confirmed, proposed again for files with
the same headings, and listed under Admin > People > Saved mappings to rename or delete.

Services add and flush; the caller commits.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import SavedMapping, utcnow
from .mapping import Mapping, headings_signature

MAX_NAME = 100


def apply_saved(session: Session, mapping: Mapping, known: set[str]) -> None:
    """Use the mapping an administrator saved for these headings, if there is one; `known` are
    the targets that exist now."""
    saved = session.scalar(select(SavedMapping).where(
        SavedMapping.signature == headings_signature(mapping.headings)))
    if saved is None:
        return
    remembered = Mapping.from_json(saved.mapping)
    if remembered.headings != mapping.headings:
        return  # the same headings once compared, written differently: ask again
    remembered.forget_unknown(known)
    mapping.targets = remembered.targets
    mapping.username_from_email = remembered.username_from_email
    mapping.saved, mapping.preset = saved.name, None
    saved.used_at = utcnow()


def save_mapping(session: Session, mapping: Mapping, filename: str, owner_id: int) -> SavedMapping:
    """Remember a confirmed mapping for files with the same headings (replacing an older one)."""
    signature = headings_signature(mapping.headings)
    saved = session.scalar(select(SavedMapping).where(SavedMapping.signature == signature))
    if saved is None:
        stem = filename.rsplit(".", 1)[0] or "upload"
        saved = SavedMapping(signature=signature, created_by_id=owner_id,
                             name=f"Columns of {stem}"[:MAX_NAME])
        session.add(saved)
    mapping.saved, mapping.preset = saved.name, None
    saved.mapping = mapping.to_json()
    saved.used_at = utcnow()
    session.flush()
    return saved


def saved_mappings(session: Session) -> list[SavedMapping]:
    """Every saved mapping, most recently used first."""
    return list(session.scalars(select(SavedMapping).order_by(
        SavedMapping.used_at.desc(), SavedMapping.id.desc())))


def rename_mapping(mapping: SavedMapping, name: str) -> str | None:
    """Rename a saved mapping; the reason when the name cannot be used."""
    name = name.strip()
    if not name:
        return "Give the mapping a name."
    if len(name) > MAX_NAME:
        return f"A name has at most {MAX_NAME} characters."
    mapping.name = name
    return None

"""Headings → fields: the presets of the systems administrators export from, the common spellings,
saved mappings, and the values a mapping derives (a username from an address, names from a full
name).

Plain functions without Flask objects, shared by the web's mapping step, the CLI's `--map` and
the reader. A `Mapping` has one target per column: a standard column's key, a profile field's
name, `FULL_NAME`, `NOT_IMPORTED`, or None while nobody has decided.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..columns import BY_KEY, HEADING_ALIASES, REQUIRED, normalise_heading

FULL_NAME = "fullname"  # a full or display name: first word → first name, the rest → surname
FULL_NAME_LABEL = "full name (split into first name and surname)"
NOT_IMPORTED = ""
# Columns that `Download rows with errors` adds: read back and ignored.
ERROR_FILE_COLUMNS = {"error": NOT_IMPORTED, "line": NOT_IMPORTED}
# Other names of a full name, and of an address that is a sign-in name.
FULL_NAME_HEADINGS = frozenset({"fullname", "displayname", "name", "cn", "commonname"})
SIGN_IN_HEADINGS = frozenset({"userprincipalname", "upn", "signinname"})
_BRACKETED = re.compile(r"\[[^\]]*\]|\([^)]*\)")
_REQUIRED_WORD = re.compile(r"\brequired\b", re.IGNORECASE)
_VERSION_LINE = re.compile(r"^version:v\d+(\.\d+)*$", re.IGNORECASE)
_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def heading_key(heading: str) -> str:
    """A heading as compared with field names: bracketed annotations (`[Required]`,
    `(Yes/No)`, `[userPrincipalName]`) and the word Required removed, then no case, spaces,
    '-' or '_'."""
    return normalise_heading(_REQUIRED_WORD.sub("", _BRACKETED.sub("", heading)))


def attribute_of(heading: str) -> str | None:
    """The attribute a heading names in square brackets (Entra: `User name [userPrincipalName]`),
    normalised, or None."""
    match = re.search(r"\[([A-Za-z][\w.]*)\]", heading)
    return normalise_heading(match.group(1)) if match else None


def is_version_line(cells: Sequence[str]) -> bool:
    """Whether a first line is Entra's `version:v1.0` line, which precedes the headings."""
    return bool(cells) and bool(_VERSION_LINE.match(cells[0].strip())) \
        and not any(c.strip() for c in cells[1:])


@dataclass(frozen=True)
class Preset:
    """A system's export recognised from its headings alone: `signature` are heading keys that
    must all be present (`by_attribute`: the bracketed attribute names). A column is read as
    `targets` says, else as a standard column's name or alias, else as the profile field of its
    name; every other column is not imported (the system's own fields, named on the review)."""

    name: str  # as the review page says it: "Read as …"
    signature: frozenset[str]
    targets: dict[str, str]
    by_attribute: bool = False
    exact: bool = False  # the signature is the headings exactly as written (Moodle's)


PRESETS: tuple[Preset, ...] = (
    Preset("a Microsoft Entra bulk-create template",
           frozenset({"userprincipalname", "passwordprofile"}),
           {"userprincipalname": "email", "displayname": FULL_NAME, "passwordprofile": "password",
            # the template's column is "Block sign in (Yes/No)", whatever its attribute says
            "accountenabled": "blocked"},
           by_attribute=True),
    Preset("a Google Workspace bulk-upload file",
           frozenset({"firstname", "lastname", "orgunitpath"}), {}),
    Preset("a Microsoft 365 admin centre template",
           frozenset({"username", "firstname", "lastname", "displayname", "officenumber"}),
           {"username": "email"}),  # its User Name is the sign-in address
    Preset("a WordPress user export", frozenset({"userlogin", "useremail"}), {}),
    Preset("an Active Directory / LDAP export", frozenset({"samaccountname"}),
           {"displayname": FULL_NAME}),
    Preset("an LDAP export", frozenset({"uid", "sn", "mail"}),
           {"uid": "username", "cn": FULL_NAME, "displayname": FULL_NAME}),
    Preset("a Moodle user file", frozenset({"username", "firstname", "lastname", "email"}), {},
           exact=True),
)


@dataclass
class Mapping:
    """What each column of a file becomes, and what is derived. `source` names how it was
    chosen: a preset's name, a saved mapping's name, or None for the headings themselves."""

    headings: list[str]
    targets: list[str | None]
    username_from_email: bool = False
    preset: str | None = None
    saved: str | None = None

    def column(self, target: str) -> int | None:
        """Index of the column mapped to `target`, or None."""
        try:
            return self.targets.index(target)
        except ValueError:
            return None

    @property
    def unresolved(self) -> list[str]:
        """Headings nobody has decided on: no field has their name and no preset knows them."""
        return [h for h, t in zip(self.headings, self.targets, strict=True) if t is None]

    @property
    def not_imported(self) -> list[str]:
        """Headings whose columns are left out, decided or not."""
        return [h for h, t in zip(self.headings, self.targets, strict=True) if not t]

    @property
    def missing(self) -> list[str]:
        """Required fields that no column provides, directly or derived."""
        provided = {t for t in self.targets if t}
        if self.username_from_email and "email" in provided:
            provided.add("username")
        if FULL_NAME in provided:
            provided |= {"firstname", "surname"}
        return [key for key in REQUIRED if key not in provided]

    @property
    def complete(self) -> bool:
        """Whether the rows can be checked: every required field provided, every column decided."""
        return not self.missing and not self.unresolved

    @property
    def derived(self) -> list[str]:
        """Sentences saying what is derived, for the review page and the dry run."""
        said = []
        if self.username_from_email and self.column("username") is None:
            said.append("username: the part of the e-mail address before @")
        full = self.column(FULL_NAME)
        if full is not None:
            names = "firstname" in self.targets and "surname" in self.targets
            when = " where a row leaves them empty" if names else ""
            said.append(f"first name and surname: from “{self.headings[full]}” (first word, "
                        f"then the rest){when}")
        return said

    def forget_unknown(self, known: set[str]) -> None:
        """Undecide targets that no longer exist (a profile field retired since)."""
        self.targets = [t if not t or t in known else None for t in self.targets]

    def fields(self) -> list[str | None]:
        """The field of every column as validation reads it (None: not imported)."""
        return [t or None for t in self.targets]

    def to_json(self) -> dict[str, Any]:
        """The mapping as stored with a batch or a saved mapping."""
        return {"headings": self.headings, "targets": self.targets,
                "username_from_email": self.username_from_email, "preset": self.preset,
                "saved": self.saved}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Mapping:
        """A mapping stored by `to_json`."""
        return cls(list(data["headings"]), list(data["targets"]),
                   bool(data.get("username_from_email")), data.get("preset"), data.get("saved"))


def headings_signature(headings: Iterable[str]) -> str:
    """The key under which a confirmed mapping is remembered: the headings as compared, in
    order."""
    joined = "\x1f".join(heading_key(h) or h.strip().casefold() for h in headings)
    return hashlib.sha256(joined.encode()).hexdigest()


def detect_preset(headings: Sequence[str]) -> Preset | None:
    """The first preset whose signature the headings carry."""
    keys = {heading_key(h) for h in headings}
    attributes = {a for a in map(attribute_of, headings) if a}
    written = {h.strip() for h in headings}
    for preset in PRESETS:
        found = attributes if preset.by_attribute else written if preset.exact else keys
        if preset.signature <= found:
            return preset
    return None


def propose(headings: Sequence[str], custom_fields: Iterable[str] = (),
            rows: Sequence[Sequence[str]] = ()) -> Mapping:
    """The mapping read from the headings alone: a preset if one is recognised, else the
    common spellings and the profile fields' names; `rows` (a sample) tell whether a username
    column holds sign-in addresses."""
    profile = {normalise_heading(name): name for name in custom_fields}
    preset = detect_preset(headings)
    keys = [heading_key(h) for h in headings]
    targets: list[str | None] = []
    for heading, key in zip(headings, keys, strict=True):
        target: str | None
        if preset is not None:  # the system's meaning, else a standard or profile field
            lookup = (attribute_of(heading) if preset.by_attribute else None) or key
            target = preset.targets.get(lookup)
            if target is None:
                target = HEADING_ALIASES.get(lookup) or profile.get(key) or NOT_IMPORTED
        else:
            target = profile.get(key) or _common_target(key, keys)
        targets.append(target)
    mapping = Mapping(list(headings), targets, preset=preset.name if preset else None)
    _sign_in_addresses(mapping, rows)
    # A preset's system signs in with the address; elsewhere the mapping step asks first.
    mapping.username_from_email = preset is not None and mapping.column("username") is None \
        and mapping.column("email") is not None
    return mapping


def _common_target(key: str, keys: Sequence[str]) -> str | None:
    """The target of a heading under the common spellings (no preset)."""
    if key in HEADING_ALIASES:
        return HEADING_ALIASES[key]
    if key in ERROR_FILE_COLUMNS:
        return ERROR_FILE_COLUMNS[key]
    if key == "name":  # "Name" beside "Surname" is the first name, alone a full name
        return "firstname" if any(HEADING_ALIASES.get(k) == "surname" for k in keys) \
            else FULL_NAME
    if key in FULL_NAME_HEADINGS:
        return FULL_NAME
    if key in SIGN_IN_HEADINGS:
        return "email" if not any(HEADING_ALIASES.get(k) == "email" for k in keys) \
            else NOT_IMPORTED
    return None


def _sign_in_addresses(mapping: Mapping, rows: Sequence[Sequence[str]]) -> None:
    """A username column whose values are all addresses, in a file without an e-mail column,
    is a sign-in name: it becomes the e-mail, and the username its part before @."""
    username = mapping.column("username")
    if username is None or mapping.column("email") is not None:
        return
    values = [r[username].strip() for r in rows if username < len(r) and r[username].strip()]
    if values and all(_ADDRESS.match(v) for v in values):
        mapping.targets[username] = "email"


def derive(values: dict[str, Any], mapping: Mapping, full_name: str | None) -> tuple[str, ...]:
    """Fill the derived values of one row in place and return the keys derived: the username
    from the address, the names from the full name where the row leaves them empty."""
    derived: tuple[str, ...] = ()
    if mapping.username_from_email and not values.get("username"):
        email = values.get("email") or ""
        if "@" in email:
            values["username"] = email.rpartition("@")[0]
            derived += ("username",)
    if full_name and not values.get("firstname") and not values.get("surname"):
        first, _, rest = full_name.strip().partition(" ")
        values["firstname"], values["surname"] = first, rest.strip()
        derived += ("firstname", "surname")
    return derived


def target_choices(custom_fields: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """(value, label) of every target a column can be given, for the mapping step's selects."""
    standard = [(c.key, c.label) for c in BY_KEY.values()]
    return [*standard, (FULL_NAME, "Full name (first word → first name, the rest → surname)"),
            *((name, f"Profile field: {label}") for name, label in custom_fields),
            (NOT_IMPORTED, "Do not import")]


class MappingProblem(ValueError):
    """A `--map` setting that cannot be used; the message names it."""


def apply_settings(mapping: Mapping, settings: Iterable[str],
                   targets: Iterable[str]) -> None:
    """Apply the CLI's `--map` settings: `HEADING=field` (empty: not imported),
    `username=email-local-part` and `names=split:HEADING`."""
    known = set(targets) | {NOT_IMPORTED}
    keys = [heading_key(h) or h.casefold() for h in mapping.headings]
    for setting in settings:
        heading, sep, target = setting.partition("=")
        heading, target = heading.strip(), target.strip()
        if not sep:
            raise MappingProblem(f"--map “{setting}”: write HEADING=field.")
        if heading == "username" and target == "email-local-part":
            mapping.username_from_email = True
            continue
        if heading == "names" and target.startswith("split:"):
            heading, target = target[len("split:"):].strip(), FULL_NAME
        index = _find(keys, mapping.headings, heading)
        if index is None:
            raise MappingProblem(f"--map “{setting}”: the file has no column “{heading}” (its "
                                 f"columns: {', '.join(mapping.headings)}).")
        if target not in known and target != FULL_NAME:
            raise MappingProblem(f"--map “{setting}”: “{target}” is not a field (use one of "
                                 f"{', '.join(sorted(t for t in known if t))}, or nothing to "
                                 "leave the column out).")
        if target:
            for other, taken in enumerate(mapping.targets):
                if taken == target and other != index:
                    mapping.targets[other] = NOT_IMPORTED
        mapping.targets[index] = target
    if mapping.column("username") is not None:
        mapping.username_from_email = False


def _find(keys: list[str], headings: list[str], heading: str) -> int | None:
    if heading in headings:
        return headings.index(heading)
    key = heading_key(heading) or heading.casefold()
    return keys.index(key) if key in keys else None


@dataclass
class SampleColumn:
    """One column of the mapping step: heading, target and up to three example values."""

    heading: str
    target: str | None
    examples: list[str] = field(default_factory=list)

"""Web helpers shared by every blueprint: the administrators' guard, strict numbers from
requests, page numbers, CSV downloads, content negotiation, and the template filters the pages
use."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime

from flask import Flask, Response, abort, current_app, request, stream_with_context
from flask_login import current_user

from .columns import label, shown_value
from .extensions import login_manager
from .importing.mapping import FULL_NAME, FULL_NAME_LABEL
from .importing.reader import DELIMITERS, ENCODING_NAMES
from .site_time import local_text

MAX_PAGE = 100_000
_FILTERS = {}


def _filter(name: str):
    """Collect a template filter, registered on the application by `init_app`."""
    def collect(function):
        _FILTERS[name] = function
        return function
    return collect


def init_app(app: Flask) -> None:
    """Register the template filters on `app`."""
    app.jinja_env.filters.update(_FILTERS)


@_filter("local_time")
def local_time(moment: datetime | str | None) -> str:
    """A stored UTC time (or its ISO text) in the site's time zone, naming the zone."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return local_text(moment)


def require_admin():
    """Anonymous visitors go to the login page; logged-in users who are not administrators get
    403 (not a redirect, which would loop)."""
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    if not current_user.is_admin:
        abort(403)
    return None


def whole_number(value) -> int | None:
    """`value` as a non-negative int if it is written with ASCII digits only, else None."""
    text = str(value or "")
    return int(text) if text.isascii() and text.isdigit() and len(text) < 10 else None


def page_number(values) -> int:
    """The `page` of a query string or form as a page number from 1 to MAX_PAGE."""
    return min(max(whole_number(values.get("page")) or 1, 1), MAX_PAGE)


def form_status(form, problems=()) -> int:
    """The status of a page that shows `form` again: 422 when it (or `problems`) holds an
    error, so that every form that fails validation answers alike; else 200."""
    return 422 if form.errors or problems else 200


def wants_json() -> bool:
    """Whether the client asked for JSON rather than a page."""
    accept = request.accept_mimetypes
    return (request.is_json or request.path.endswith(".json")
            or accept.best_match(["text/html", "application/json"]) == "application/json"
            and accept["application/json"] > accept["text/html"])


def csv_response(lines, filename: str) -> Response:
    """A streamed CSV download named `filename`."""
    return Response(stream_with_context(lines), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def site_file_prefix() -> str:
    """The site's name as a download's file name prefix, so that files of two sites never mix;
    in ASCII, which is all a header may carry ("Intranet Łódź" becomes "Intranet-odz")."""
    letters = unicodedata.normalize("NFKD", current_app.config["SITE_NAME"])
    name = "".join(c if (c.isascii() and c.isalnum()) or c in "-_" else "-"
                   for c in letters if not unicodedata.combining(c))
    return re.sub(r"-{2,}", "-", name).strip("-")[:40] or "site"


@_filter("encoding_name")
def encoding_name(codec: str) -> str:
    """An encoding as a person calls it: `UTF-8 with BOM`, `Windows-1252`."""
    return ENCODING_NAMES.get(codec, codec)


@_filter("delimiter_name")
def delimiter_name(delimiter: str) -> str:
    """A delimiter in words with the character itself: `semicolon (;)`."""
    if not delimiter:
        return "none (an Excel workbook)"
    return f"{DELIMITERS.get(delimiter, 'custom')} ({'⇥' if delimiter == chr(9) else delimiter})"


@_filter("status_badge")
def status_badge(status: str) -> str:
    """The Bootstrap badge class of an invitation status."""
    return {"queued": "text-bg-secondary", "sending": "text-bg-info", "sent": "text-bg-success",
            "failed": "text-bg-danger", "expired": "text-bg-warning",
            "scheduled": "text-bg-primary"}.get(status, "text-bg-light")


@_filter("display_value")
def display_value(value, key: str = "") -> str:
    """A stored value of column `key` as shown in the old → new list (`columns.shown_value`)."""
    return shown_value(value, key)


@_filter("column_label")
def column_label(key: str) -> str:
    """The label of a standard column (`Change password next time`), of a mapping's full name,
    or a profile field's name."""
    return FULL_NAME_LABEL if key == FULL_NAME else label(key)

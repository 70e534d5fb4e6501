"""Logging set-up: readable lines by default, one JSON object per line for log collectors
(`BULKIMPORT_LOG_FORMAT=json`). Values that may be personal data are never logged."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LINK_PATH = re.compile(r"(/set-password/)[^\s/?#\"]+")


def redact_links(text: str) -> str:
    """`text` with the token of every set-password link's path replaced: the path is the
    secret of a link that may still work."""
    return LINK_PATH.sub(r"\1[link]", text)


class LinkRedactingFilter(logging.Filter):
    """Redacts set-password links in the lines of a logger that writes request paths (the
    development server's request log)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message without link tokens; never drops it."""
        message = record.getMessage()
        if "/set-password/" in message:
            record.msg, record.args = redact_links(message), None
        return True


class JSONFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, process, and the
    exception when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        entry = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(),
                 "level": record.levelname, "logger": record.name,
                 "message": record.getMessage(), "process": record.process}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, log_format: str) -> None:
    """Configure the root handler once (the app factory may run more than once in a process)."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format=TEXT_FORMAT)
    if log_format == "json":
        for handler in root.handlers:
            handler.setFormatter(JSONFormatter())
    logging.getLogger("bulkimport").setLevel(level)
    werkzeug = logging.getLogger("werkzeug")
    if not any(isinstance(f, LinkRedactingFilter) for f in werkzeug.filters):
        werkzeug.addFilter(LinkRedactingFilter())

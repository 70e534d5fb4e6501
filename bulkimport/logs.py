"""Logging set-up: readable lines by default, one JSON object per line for log collectors
(`BULKIMPORT_LOG_FORMAT=json`). Values that may be personal data are never logged."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


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

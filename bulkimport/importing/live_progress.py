"""The progress of a batch being written, which its own transaction cannot commit for the
progress page to see (the rows and the progress would be committed together, at the end): kept
in Redis when the application has it, since the workers are other processes, and otherwise in
this process, where `make run`'s in-process jobs write it and its pages read it."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from typing import NamedTuple

from flask import Flask, current_app

from ..background import redis_connection
from ..models import ImportBatch
from .apply import WAITING

KEEP_SECONDS = 3600  # a worker killed mid-write leaves its last report for at most this long

log = logging.getLogger(__name__)


class Stage(NamedTuple):
    """Where an apply stands: the stage's plain name, and how far it is of how many."""

    name: str
    done: int
    total: int

    @property
    def label(self) -> str:
        """The stage as the progress page says it: "Adding users: 2,000 of 5,000"."""
        return f"{self.name}: {self.done:,} of {self.total:,}" if self.total else self.name

    @property
    def percent(self) -> int:
        """How far the stage is, 0 to 100."""
        return min(100, 100 * self.done // self.total) if self.total else 0


def of_batch(batch: ImportBatch) -> Stage:
    """What the progress page shows of a batch being read or applied: the live report from its
    writing transaction, else what the batch records."""
    live = read(batch.id) if batch.status == ImportBatch.APPLYING else None
    return live or Stage(batch.progress_stage or WAITING, batch.progress_done,
                         batch.progress_total)


def publish(batch_id: int, stage: Stage) -> None:
    """Make `stage` the batch's live progress, for every process of the site to read. A report
    that cannot be made is let go: the write it describes matters more."""
    app = current_app._get_current_object()
    if not app.config["REDIS_URL"]:
        with _lock(app):
            _local(app)[batch_id] = stage
        return
    from redis.exceptions import RedisError

    try:
        redis_connection(app).set(_key(app, batch_id), json.dumps(stage), ex=KEEP_SECONDS)
    except RedisError as exc:
        log.debug("Progress of batch %s not reported: %s", batch_id, exc)


def read(batch_id: int) -> Stage | None:
    """The batch's live progress, or None when it is not being written (or the report is out of
    reach: the page then shows what the database has)."""
    app = current_app._get_current_object()
    if not app.config["REDIS_URL"]:
        with _lock(app):
            return _local(app).get(batch_id)
    from redis.exceptions import RedisError

    try:
        raw = redis_connection(app).get(_key(app, batch_id))
    except RedisError:
        return None
    return Stage(*json.loads(raw)) if raw else None


def clear(batch_id: int) -> None:
    """Forget the batch's live progress once its transaction has ended, either way."""
    app = current_app._get_current_object()
    if not app.config["REDIS_URL"]:
        with _lock(app):
            _local(app).pop(batch_id, None)
        return
    from redis.exceptions import RedisError

    try:
        redis_connection(app).delete(_key(app, batch_id))
    except RedisError:  # it expires on its own
        pass


def _local(app: Flask) -> dict[int, Stage]:
    return app.extensions.setdefault("bulkimport_apply_progress", {})


def _lock(app: Flask) -> threading.Lock:
    return app.extensions.setdefault("bulkimport_apply_progress_lock", threading.Lock())


def _key(app: Flask, batch_id: int) -> str:
    # Which database, since two sites (or two test runs) may share a Redis; hashed, since its
    # URL may hold a password.
    site = hashlib.sha256(app.config["DATABASE_URL"].encode()).hexdigest()[:16]
    return f"bulkimport:apply-progress:{site}:{batch_id}"

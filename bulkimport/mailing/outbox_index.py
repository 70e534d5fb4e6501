"""The index of the outbox folder: one row per message (file name, To, From, Subject) in an
SQLite file beside the messages, so that the outbox pages count, search and page through them
without reading every file.

The writer adds each message's row as it writes it; the pages reconcile the index with the
folder's file names before reading it, which indexes an outbox written before the index existed
(or by a process that could not reach it) and forgets messages deleted behind its back. The
index holds nothing that the files do not: deleting it only costs one re-reading of the files.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

# A message's file name: the time it was written by the application's clock, then a random part.
MESSAGE_NAME = re.compile(r"^(?P<stamp>[0-9]{8}T[0-9]{12})-[0-9a-f]{8}\.eml$")
# Any file the outbox writes: a message, its .json copy, or either while it is written (.part).
OUTBOX_FILE = re.compile(r"^[0-9]{8}T[0-9]{12}-[0-9a-f]{8}\.(eml|json)(\.part)?$")
STAMP_FORMAT = "%Y%m%dT%H%M%S%f"
INDEX_NAME = "index.sqlite3"
# SQLite in WAL mode lets readers go on while one writer appends; writers (worker processes and
# their threads) queue on its lock, each holding it for one short insert.
BUSY_SECONDS = 30
SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE message (
    name TEXT PRIMARY KEY,      -- the .eml file name, which starts with the time it was written
    recipient TEXT NOT NULL,
    recipient_key TEXT NOT NULL,  -- casefolded, for the search
    sender TEXT NOT NULL,
    subject TEXT NOT NULL       -- masked, as in the .json copy
) WITHOUT ROWID
"""
UNREADABLE_SUBJECT = "(not shown: this file has no masked copy)"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexedMessage:
    """One message as the outbox list shows it."""

    name: str
    recipient: str
    sender: str
    subject: str

    @property
    def written(self) -> datetime:
        """When the outbox wrote it, by the application's clock (naive UTC), from its name."""
        return datetime.strptime(MESSAGE_NAME.match(self.name)["stamp"], STAMP_FORMAT)


@dataclass(frozen=True)
class OutboxPage:
    """A page of the outbox, newest first: its messages, how many match the search, and how many
    the outbox holds in all."""

    messages: list[IndexedMessage]
    matching: int
    total: int


def indexed_message(name: str, view: dict) -> IndexedMessage:
    """The index row of message `name` from its masked view (the .json copy's fields)."""
    return IndexedMessage(name=name, recipient=view.get("to", ""),
                          sender=view.get("from", ""), subject=view.get("subject", ""))


class OutboxIndex:
    """The index of one outbox folder over one SQLite connection, opened on first use and kept
    until `close`: a writer keeps it for a whole chunk of messages, because the last connection
    to close writes the log back into the database and syncs it to disk (milliseconds), while
    adding a row to an open index costs microseconds.

    A connection per writer, never shared: worker processes fork and threads run their own
    transports, and an SQLite connection must cross neither."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._connection: sqlite3.Connection | None = None

    def __enter__(self) -> OutboxIndex:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection, if open."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def record(self, message: IndexedMessage) -> None:
        """Add `message`, just written to the folder; a failure is logged, not raised."""
        try:
            with self._transaction() as index:
                _insert(index, [message])
        except (sqlite3.Error, OSError) as exc:
            # The message is written and must not be sent again for this: the outbox pages
            # index it from its files when they next list the outbox.
            log.warning("The outbox index was not updated for %s: %s", message.name, exc)
            self.close()

    def forget_written_before(self, moment: datetime) -> None:
        """Remove the messages written before `moment`, whose files the purge deleted."""
        with self._transaction() as index:
            index.execute("DELETE FROM message WHERE name < ?", (moment.strftime(STAMP_FORMAT),))

    def synchronise(self) -> None:
        """Make the index list exactly the messages in the folder: index the files it lacks (by
        reading their .json copies) and forget the rows whose files are gone."""
        # The rows first, then the names: a row is added only once its .eml exists, so a row
        # whose file is missing afterwards belongs to a deleted message, never to a new one.
        with self._transaction(write=False) as index:
            indexed = {name for (name,) in index.execute("SELECT name FROM message")}
        on_disk = set(message_names(self.directory))
        gone = indexed - on_disk
        # Read outside the write lock, so that writers wait for the inserts only.
        missing = [indexed_message(name, read_view(self.directory, name))
                   for name in sorted(on_disk - indexed)]
        if not (missing or gone):
            return
        with self._transaction() as index:
            _insert(index, (m for m in missing if (self.directory / m.name).exists()))
            index.executemany("DELETE FROM message WHERE name = ?", ((name,) for name in gone))

    def page(self, *, recipient: str = "", offset: int = 0, limit: int = 50) -> OutboxPage:
        """`limit` messages from the `offset`-th on, newest first, of those whose To contains
        `recipient` (in any case)."""
        key = recipient.strip().casefold()
        where, arguments = ("WHERE instr(recipient_key, ?) > 0", (key,)) if key else ("", ())
        with self._transaction(write=False) as index:
            total = index.execute("SELECT count(*) FROM message").fetchone()[0]
            matching = (index.execute(f"SELECT count(*) FROM message {where}",  # noqa: S608
                                      arguments).fetchone()[0] if key else total)
            rows = index.execute(
                f"SELECT name, recipient, sender, subject FROM message {where} "  # noqa: S608
                "ORDER BY name DESC LIMIT ? OFFSET ?", (*arguments, limit, offset)).fetchall()
        return OutboxPage(messages=[IndexedMessage(*row) for row in rows], matching=matching,
                          total=total)

    @contextmanager
    def _transaction(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """The connection inside one transaction, holding the write lock from the start when
        `write` (so that two writers queue instead of failing to upgrade a read lock)."""
        if self._connection is None:
            self._connection = _connect(self.directory / INDEX_NAME)
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")


def forget_written_before(directory: Path, moment: datetime) -> None:
    """Remove from the index of `directory` the messages written before `moment`, whose files
    the purge has just deleted; a failure is logged, not raised."""
    if not (directory / INDEX_NAME).exists():
        return  # nothing indexed: the next listing indexes what is left
    try:
        with OutboxIndex(directory) as index:
            index.forget_written_before(moment)
    except (sqlite3.Error, OSError) as exc:  # the next listing forgets them, their files gone
        log.warning("The outbox index still lists deleted messages: %s", exc)


def read_view(directory: Path, name: str) -> dict:
    """The masked view of message `name` (its .json copy); a message written by a version that
    kept no such copy, or one being deleted, gets a view that says why it is not shown."""
    try:
        return json.loads((directory / name).with_suffix(".json").read_text())
    except (OSError, ValueError):
        return {"to": "", "from": "", "subject": UNREADABLE_SUBJECT, "date": "",
                "text": "This message is not shown, because it may hold a password. It is in "
                        f"instance/outbox/{name} on the server."}


def browse(directory: Path, *, recipient: str = "", offset: int = 0,
           limit: int = 50) -> OutboxPage:
    """A page of the outbox in `directory` (see `OutboxIndex.page`), after reconciling its
    index with the files."""
    if not directory.is_dir():
        return OutboxPage(messages=[], matching=0, total=0)
    with OutboxIndex(directory) as index:
        index.synchronise()
        return index.page(recipient=recipient, offset=offset, limit=limit)


def message_names(directory: Path) -> Iterator[str]:
    """The names of the message files in `directory` (not their .json copies, not the index)."""
    with os.scandir(directory) as entries:
        for entry in entries:
            if MESSAGE_NAME.match(entry.name):
                yield entry.name


def _insert(index: sqlite3.Connection, messages: Iterable[IndexedMessage]) -> None:
    # OR IGNORE: the writer and a page reconciling the index may both add a new message.
    index.executemany(
        "INSERT OR IGNORE INTO message (name, recipient, recipient_key, sender, subject) "
        "VALUES (?, ?, ?, ?, ?)",
        ((m.name, m.recipient, m.recipient.casefold(), m.sender, m.subject) for m in messages))


def _connect(path: Path) -> sqlite3.Connection:
    """A connection to the index at `path`, which is created, or recreated when it is from
    another schema or not a database at all (a damaged file): it holds nothing the files do
    not."""
    try:
        return _open(path)
    except sqlite3.DatabaseError as exc:
        if isinstance(exc, sqlite3.OperationalError):
            raise  # locked or unreadable: not a reason to throw the index away
        for leftover in (path, path.with_name(f"{path.name}-wal"),
                         path.with_name(f"{path.name}-shm")):
            leftover.unlink(missing_ok=True)
        return _open(path)


def _open(path: Path) -> sqlite3.Connection:
    # The index names recipients: readable by the process owner only, like the messages (SQLite
    # gives its -wal and -shm files the same mode).
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    connection = sqlite3.connect(path, timeout=BUSY_SECONDS, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")  # a crash may lose rows: they come back
        if connection.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            connection.execute("BEGIN IMMEDIATE")
            if connection.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                connection.execute("DROP TABLE IF EXISTS message")  # rebuilt from the files
                connection.execute(SCHEMA)
                connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            connection.execute("COMMIT")
    except BaseException:
        connection.close()
        raise
    return connection

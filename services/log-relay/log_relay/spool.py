"""The durable on-disk spool: every accepted record, and what is still to deliver.

A SQLite database in WAL mode with ``synchronous = FULL``: a record counts as
accepted once the transaction holding it is committed, which survives a
``SIGKILL`` of the relay and a power cut. WAL lets ``log-relay status`` read while
the relay writes. Why SQLite: it is in the standard library, crash-safe, and one
commit (one fsync) carries a whole batch, so durability costs little per record.

Tables: ``records`` (each received record), ``outbox`` (one row per record and
sink still to deliver, keyed by the digest group: sink, app, level), ``groups``
(when each group last went out, so rate limits survive a restart) and ``meta``
(status: heartbeat, last delivery, last error).

A :class:`Spool` object holds one connection and is used by one thread.

Example::

    spool = Spool.open("/var/lib/log-relay/spool.sqlite3")
    spool.append([(time.time(), "10.0.0.5", "2021-04-14 10:00:00", "ERROR", 40,
                   "pump", "m", "f", "too hot", None)], sinks=("mail",), min_level=30)
    spool.pending_groups()     # [PendingGroup(sink='mail', app='pump', level='ERROR', ...)]
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from typing import Iterable, NamedTuple, Optional, Sequence

__all__ = ["Spool", "SpoolError", "SpooledRecord", "PendingGroup", "SpoolStatus", "RecordRow"]

#: One row to append: received_at, peer, date, level, levelno, app, module, function, message, note,
#: sender, seq (the last two None for a sender without acknowledgements: 0.5.x).
RecordRow = tuple

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id          INTEGER PRIMARY KEY,
    received_at REAL NOT NULL,
    peer        TEXT,
    date        TEXT,
    level       TEXT NOT NULL,
    levelno     INTEGER,
    app         TEXT,
    module      TEXT,
    function    TEXT,
    message     TEXT NOT NULL,
    note        TEXT,
    sender      TEXT,
    seq         INTEGER
);
CREATE TABLE IF NOT EXISTS outbox (
    sink        TEXT NOT NULL,
    app         TEXT NOT NULL,
    level       TEXT NOT NULL,
    record_id   INTEGER NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (sink, app, level, record_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS outbox_by_record ON outbox (record_id);
CREATE TABLE IF NOT EXISTS groups (
    sink         TEXT NOT NULL,
    app          TEXT NOT NULL,
    level        TEXT NOT NULL,
    last_sent_at REAL NOT NULL,
    PRIMARY KEY (sink, app, level)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS senders (
    sender    TEXT PRIMARY KEY,
    last_seq  INTEGER NOT NULL,
    last_seen REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dead_letters (
    sink      TEXT NOT NULL,
    record_id INTEGER NOT NULL,
    error     TEXT NOT NULL,
    parked_at REAL NOT NULL,
    notified  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (sink, record_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT
) WITHOUT ROWID;
"""

_INSERT_RECORD = ("INSERT INTO records (id, received_at, peer, date, level, levelno, app, module, "
                  "function, message, note, sender, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
_UPSERT_SENDER = ("INSERT INTO senders (sender, last_seq, last_seen) VALUES (?, ?, ?) "
                  "ON CONFLICT (sender) DO UPDATE SET last_seq = MAX(last_seq, excluded.last_seq), "
                  "last_seen = excluded.last_seen")
# One statement queues a whole batch for every sink: records at or above the email
# threshold, and those whose level is unknown (unparsed input is always delivered).
_INSERT_OUTBOX = (
    "INSERT INTO outbox (sink, app, level, record_id, received_at) "
    "SELECT s.value, COALESCE(r.app, ''), r.level, r.id, r.received_at "
    "FROM records AS r, json_each(?) AS s "
    "WHERE r.id BETWEEN ? AND ? AND (r.levelno IS NULL OR r.levelno >= ?)")


class SpoolError(RuntimeError):
    """The spool cannot be opened or written (path, permissions, disk full, corruption)."""


class SpooledRecord(NamedTuple):
    """A record read back from the spool for delivery."""

    id: int
    received_at: float
    peer: Optional[str]
    date: Optional[str]
    level: str
    app: Optional[str]
    module: Optional[str]
    function: Optional[str]
    message: str
    note: Optional[str]


class PendingGroup(NamedTuple):
    """Undelivered records of one digest group for one sink."""

    sink: str
    app: str
    level: str
    oldest_received_at: float
    count: int


@dataclass(frozen=True)
class SpoolStatus:
    """What ``log-relay status`` reports, read from the spool."""

    path: str
    queue_depth: dict[str, int]
    oldest_undelivered_at: Optional[float]
    records_total: int
    meta: dict[str, str]

    def as_dict(self, now: Optional[float] = None) -> dict:
        now = time.time() if now is None else now
        oldest = self.oldest_undelivered_at
        return {
            "spool": self.path,
            "queue_depth": self.queue_depth,
            "oldest_undelivered_at": _iso(oldest),
            "oldest_undelivered_age_s": None if oldest is None else round(now - oldest, 3),
            "records_in_spool": self.records_total,
            **{key: self.meta[key] for key in sorted(self.meta)},
        }


def _iso(timestamp: Optional[float]) -> Optional[str]:
    if timestamp is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(timestamp))


class Spool:
    """One connection to the spool database (use it from one thread only)."""

    def __init__(self, connection: sqlite3.Connection, path: str) -> None:
        self._db = connection
        self.path = path

    @classmethod
    def open(cls, path: str, *, readonly: bool = False, timeout: float = 30.0) -> Spool:
        """Open (and create, unless ``readonly``) the spool at ``path``; raise :class:`SpoolError`."""
        full = os.path.abspath(os.path.expanduser(str(path)))
        try:
            if readonly:
                if not os.path.exists(full):
                    raise SpoolError(f"spool {full!r} does not exist (has the relay ever run?)")
                # Not mode=ro: a WAL reader may need to create the -shm file.
                db = sqlite3.connect(f"file:{full}?mode=rw", uri=True, timeout=timeout,
                                     isolation_level=None, check_same_thread=False)
            else:
                os.makedirs(os.path.dirname(full), exist_ok=True)
                db = sqlite3.connect(full, timeout=timeout, isolation_level=None,
                                     check_same_thread=False)
            db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            if not readonly:
                mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode.lower() != "wal":
                    raise SpoolError(f"spool {full!r}: the file system does not support WAL "
                                     f"(journal mode stays {mode!r})")
                db.execute("PRAGMA synchronous = FULL")
                db.executescript(_SCHEMA)
                columns = {row[1] for row in db.execute("PRAGMA table_info(records)")}
                for column, kind in (("sender", "TEXT"), ("seq", "INTEGER")):
                    if column not in columns:  # a spool written before acknowledgements
                        db.execute(f"ALTER TABLE records ADD COLUMN {column} {kind}")
            else:
                db.execute("SELECT 1 FROM records LIMIT 1")
        except sqlite3.Error as exc:
            raise SpoolError(f"spool {full!r} cannot be opened: {exc}") from exc
        except OSError as exc:
            raise SpoolError(f"spool {full!r} cannot be created: {exc.strerror or exc}") from exc
        return cls(db, full)

    def close(self) -> None:
        self._db.close()

    # ------------------------------------------------------------------ writing records

    def sender_sequences(self) -> dict[str, int]:
        """The last sequence number committed for each acknowledged sender."""
        return dict(self._db.execute("SELECT sender, last_seq FROM senders").fetchall())

    def next_record_id(self) -> int:
        """The id the next appended record gets (ids are assigned by the single writer)."""
        return self._db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM records").fetchone()[0]

    def append(self, rows: Sequence[RecordRow], *, first_id: int, sinks: Iterable[str],
               min_level: int, senders: Optional[dict[str, int]] = None) -> None:
        """Insert ``rows`` with ids from ``first_id`` and queue them for ``sinks``, and note
        ``senders`` ({sender id: last sequence number}), in one commit."""
        if not rows and not senders:
            return
        last_id = first_id + len(rows) - 1
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if rows:
                db.executemany(_INSERT_RECORD, [(first_id + i, *row) for i, row in enumerate(rows)])
                db.execute(_INSERT_OUTBOX, (json.dumps(list(sinks)), first_id, last_id, min_level))
            if senders:
                now = time.time()
                db.executemany(_UPSERT_SENDER, [(sender, seq, now) for sender, seq in senders.items()])
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------------ delivering

    def pending_groups(self) -> list[PendingGroup]:
        """Every (sink, app, level) group with undelivered records."""
        rows = self._db.execute(
            "SELECT sink, app, level, MIN(received_at), COUNT(*) FROM outbox "
            "GROUP BY sink, app, level").fetchall()
        return [PendingGroup(*row) for row in rows]

    def oldest_pending(self, sink: str, app: str, level: str) -> Optional[float]:
        """When the oldest undelivered record of a group was received, or None."""
        return self._db.execute(
            "SELECT MIN(received_at) FROM outbox WHERE sink = ? AND app = ? AND level = ?",
            (sink, app, level)).fetchone()[0]

    def pending_count(self, sink: str, app: str, level: str) -> int:
        """How many records of a group are still to deliver."""
        return self._db.execute(
            "SELECT COUNT(*) FROM outbox WHERE sink = ? AND app = ? AND level = ?",
            (sink, app, level)).fetchone()[0]

    def last_sent(self) -> dict[tuple[str, str, str], float]:
        """When each group last went out."""
        rows = self._db.execute("SELECT sink, app, level, last_sent_at FROM groups").fetchall()
        return {(sink, app, level): sent for sink, app, level, sent in rows}

    def take_batch(self, sink: str, app: str, level: str, limit: int,
                   max_bytes: Optional[int] = None) -> list[SpooledRecord]:
        """The oldest undelivered records of a group (not removed until :meth:`mark_delivered`),
        at most ``limit`` records and, beyond the first, ``max_bytes`` characters of message."""
        if max_bytes is not None:
            sizes = self._db.execute(
                "SELECT length(r.message) FROM outbox AS o JOIN records AS r ON r.id = o.record_id "
                "WHERE o.sink = ? AND o.app = ? AND o.level = ? ORDER BY o.record_id LIMIT ?",
                (sink, app, level, limit)).fetchall()
            total, fits = 0, 0
            for (size,) in sizes:
                total += size
                if fits and total > max_bytes:
                    break
                fits += 1
            limit = max(fits, 1)
        rows = self._db.execute(
            "SELECT r.id, r.received_at, r.peer, r.date, r.level, r.app, r.module, r.function, "
            "r.message, r.note FROM outbox AS o JOIN records AS r ON r.id = o.record_id "
            "WHERE o.sink = ? AND o.app = ? AND o.level = ? ORDER BY o.record_id LIMIT ?",
            (sink, app, level, limit)).fetchall()
        return [SpooledRecord(*row) for row in rows]

    def mark_delivered(self, sink: str, app: str, level: str, ids: Sequence[int],
                       sent_at: float, summary: str) -> None:
        """Remove delivered records from the outbox and note the delivery, in one commit."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("DELETE FROM outbox WHERE sink = ? AND app = ? AND level = ? "
                           "AND record_id = ?", [(sink, app, level, i) for i in ids])
            db.execute("INSERT INTO groups (sink, app, level, last_sent_at) VALUES (?, ?, ?, ?) "
                       "ON CONFLICT (sink, app, level) DO UPDATE SET last_sent_at = excluded.last_sent_at",
                       (sink, app, level, sent_at))
            self._set_meta({"last_delivery_at": _iso(sent_at), "last_delivery": summary,
                            f"last_delivery_at.{sink}": _iso(sent_at)})
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def park(self, sink: str, app: str, level: str, ids: Sequence[int], error: str) -> None:
        """Move records the sink refuses for good out of its outbox into the dead letters."""
        db = self._db
        now = time.time()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("DELETE FROM outbox WHERE sink = ? AND app = ? AND level = ? "
                           "AND record_id = ?", [(sink, app, level, i) for i in ids])
            db.executemany("INSERT OR REPLACE INTO dead_letters (sink, record_id, error, parked_at) "
                           "VALUES (?, ?, ?, ?)", [(sink, i, error, now) for i in ids])
            self._set_meta({"last_dead_letter": f"{sink}: {len(ids)} record(s) of {app or '?'} "
                                                f"{level}: {error}",
                            "last_dead_letter_at": _iso(now)})
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def dead_letters_to_notify(self, sink: str, limit: int) -> list[tuple[SpooledRecord, str]]:
        """Dead letters of ``sink`` nobody was told about yet, with the error that parked them."""
        rows = self._db.execute(
            "SELECT r.id, r.received_at, r.peer, r.date, r.level, r.app, r.module, r.function, "
            "r.message, r.note, d.error FROM dead_letters AS d JOIN records AS r ON r.id = d.record_id "
            "WHERE d.sink = ? AND d.notified = 0 ORDER BY d.record_id LIMIT ?",
            (sink, limit)).fetchall()
        return [(SpooledRecord(*row[:10]), row[10]) for row in rows]

    def mark_dead_letters_notified(self, sink: str, ids: Sequence[int]) -> None:
        """Note that the dead-letter digest about ``ids`` went out."""
        self._db.executemany("UPDATE dead_letters SET notified = 1 WHERE sink = ? AND record_id = ?",
                             [(sink, i) for i in ids])

    def purge(self, older_than: float) -> int:
        """Delete records received before ``older_than`` that no sink still has to deliver."""
        cursor = self._db.execute(
            "DELETE FROM records WHERE received_at < ? AND NOT EXISTS "
            "(SELECT 1 FROM outbox WHERE outbox.record_id = records.id)", (older_than,))
        self._db.execute("DELETE FROM dead_letters WHERE parked_at < ? AND notified = 1",
                         (older_than,))
        # A sender silent that long has nothing unacknowledged left to send again.
        self._db.execute("DELETE FROM senders WHERE last_seen < ?", (older_than,))
        return cursor.rowcount

    # ------------------------------------------------------------------ status

    def set_meta(self, values: dict[str, Optional[str]]) -> None:
        """Set status entries (``None`` deletes one), in one commit."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._set_meta(values)
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def _set_meta(self, values: dict[str, Optional[str]]) -> None:
        for key, value in values.items():
            if value is None:
                self._db.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                self._db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) "
                                 "DO UPDATE SET value = excluded.value", (key, str(value)))

    def status(self) -> SpoolStatus:
        """Queue depth per sink, oldest undelivered record, and the status entries."""
        db = self._db
        db.execute("BEGIN")  # one consistent snapshot for all the queries
        try:
            depth = dict(db.execute("SELECT sink, COUNT(*) FROM outbox GROUP BY sink").fetchall())
            oldest = db.execute("SELECT MIN(received_at) FROM outbox").fetchone()[0]
            total = db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            meta["dead_letters"] = str(db.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0])
        finally:
            db.execute("COMMIT")
        return SpoolStatus(path=self.path, queue_depth=depth, oldest_undelivered_at=oldest,
                           records_total=total, meta=meta)

    def count(self, sql_where: str = "1", table: str = "records") -> int:
        """Count rows (for tests and benchmarks); ``sql_where`` is trusted code, not input."""
        if table not in ("records", "outbox", "dead_letters"):
            raise ValueError(f"table {table!r} is not records, outbox or dead_letters")
        return self._db.execute(f"SELECT COUNT(*) FROM {table} WHERE {sql_where}").fetchone()[0]

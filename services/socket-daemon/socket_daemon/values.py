"""Named values that lab clients set and read (``set``/``get``), optionally kept in a file.

The file is an SQLite database in WAL mode with ``synchronous=FULL``: a change appends a
few pages to the write-ahead log and fsyncs it, whatever is stored already (the JSON file of
earlier versions was rewritten whole on every change), and SQLite checkpoints the log into the
database periodically. The directory is fsynced once the files exist, so a power cut keeps
every acknowledged change. Names and values are capped in bytes, each and in total.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from dataclasses import dataclass
from typing import Optional

from .legacy_json import SQLITE_HEADER, ValueFileError, fsync_directory, migrate_json_file

__all__ = ["ValueStore", "ValueFileError", "ValueLimitError", "ValueLimits", "Page"]


class ValueLimitError(ValueError):
    """A name or value over its byte limit; the message names the setting."""


@dataclass(frozen=True)
class ValueLimits:
    """Byte limits of a :class:`ValueStore` (UTF-8 sizes)."""

    max_name_size: int = 1024             #: one name
    max_value_size: int = 65536           #: one value
    max_values_size: int = 64 * 1024 * 1024  #: every name and value together


@dataclass(frozen=True)
class Page:
    """Some ``(name, value)`` pairs in name order; ``more`` tells whether others follow."""

    items: list[tuple[str, str]]
    more: bool


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


class ValueStore:
    """Name -> text value, kept in ``path`` (SQLite) when a path is given, else in memory.

    Example::

        store = ValueStore("/var/lib/socket-daemon/values.json")
        store.set("setpoint", "3.5")
        store.get("setpoint")      # '3.5'
    """

    def __init__(self, path: Optional[str] = None, limits: ValueLimits = ValueLimits()) -> None:
        """Open (or create) ``path``; a JSON file of earlier versions is migrated first.

        Raises :class:`ValueFileError` naming the file if it cannot be read.
        """
        self.path = os.path.abspath(os.path.expanduser(path)) if path else None
        self.limits = limits
        self._lock = threading.Lock()
        if self.path and os.path.exists(self.path):
            try:
                with open(self.path, "rb") as handle:
                    header = handle.read(len(SQLITE_HEADER))
            except OSError as exc:
                raise ValueFileError(f"values file {self.path!r} cannot be read: {exc}") from None
            if header and header != SQLITE_HEADER:
                migrate_json_file(self.path)
        try:
            self._db = self._open(self.path)
            self._total, self._count = self._db.execute(
                "SELECT COALESCE(SUM(size), 0), COUNT(*) FROM named_value").fetchone()
        except sqlite3.Error as exc:
            raise ValueFileError(f"values file {self.path!r} cannot be used: {exc}") from None

    @staticmethod
    def _open(path: Optional[str]) -> sqlite3.Connection:
        # Autocommit (isolation_level=None): every statement is its own durable transaction.
        db = sqlite3.connect(path or ":memory:", isolation_level=None, check_same_thread=False)
        if path:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise sqlite3.OperationalError(f"journal_mode WAL refused (got {mode})")
            db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE IF NOT EXISTS named_value ("
                   " name TEXT PRIMARY KEY, value TEXT NOT NULL, size INTEGER NOT NULL)")
        if path:
            fsync_directory(os.path.dirname(path))  # the database and its -wal file now exist
        return db

    @property
    def total_size(self) -> int:
        """Bytes of every name and value stored (UTF-8)."""
        return self._total

    def __len__(self) -> int:
        return self._count

    def listing_size(self) -> int:
        """Bytes of the full ``name = value`` listing, one line per value."""
        return self._total + 4 * self._count - (1 if self._count else 0)

    def set(self, name: str, value: str) -> None:
        """Set ``name`` to ``value``; :class:`ValueLimitError` naming the limit if over one,
        :class:`ValueFileError` if the file cannot be written (nothing changed then)."""
        name_size, value_size = _size(name), _size(value)
        if name_size > self.limits.max_name_size:
            raise ValueLimitError(f"the name is {name_size} bytes, the maximum is "
                                  f"{self.limits.max_name_size} bytes (max_name_size)")
        if value_size > self.limits.max_value_size:
            raise ValueLimitError(f"the value is {value_size} bytes, the maximum is "
                                  f"{self.limits.max_value_size} bytes (max_value_size)")
        size = name_size + value_size
        with self._lock:
            row = self._db.execute("SELECT size FROM named_value WHERE name = ?", (name,)).fetchone()
            previous = row[0] if row else 0
            total = self._total - previous + size
            # Shrinking or replacing by something no larger is always allowed, even over the cap
            # (values migrated from a JSON file may exceed it): it never makes matters worse.
            if size > previous and total > self.limits.max_values_size:
                raise ValueLimitError(
                    f"storing {size} bytes would bring the values to {total} bytes, the maximum "
                    f"is {self.limits.max_values_size} bytes (max_values_size); unset some first")
            try:
                self._db.execute("INSERT INTO named_value (name, value, size) VALUES (?, ?, ?) "
                                 "ON CONFLICT (name) DO UPDATE SET value = excluded.value, "
                                 "size = excluded.size", (name, value, size))
            except sqlite3.Error as exc:  # disk full, read-only: the transaction left nothing
                raise ValueFileError(f"values file {self.path!r} cannot be written: {exc}") from None
            self._total = total
            self._count += 0 if row else 1

    def get(self, name: str) -> str:
        """The value of ``name``; :class:`KeyError` naming it (and a few known names) if unset."""
        with self._lock:
            row = self._db.execute("SELECT value FROM named_value WHERE name = ?", (name,)).fetchone()
            if row is not None:
                return row[0]
            shown = [r[0] for r in self._db.execute("SELECT name FROM named_value ORDER BY name LIMIT 10")]
            known = ", ".join(shown) or "none"
            if self._count > len(shown):
                known += f" and {self._count - len(shown)} more"
            raise KeyError(f"no value named {name!r} (set: {known})")

    def unset(self, name: str) -> None:
        """Remove ``name``; :class:`KeyError` if unset."""
        with self._lock:
            try:
                row = self._db.execute("DELETE FROM named_value WHERE name = ? RETURNING size",
                                       (name,)).fetchone()
            except sqlite3.Error as exc:
                raise ValueFileError(f"values file {self.path!r} cannot be written: {exc}") from None
            if row is None:
                raise KeyError(f"no value named {name!r}")
            self._total -= row[0]
            self._count -= 1

    def page(self, after: Optional[str], max_bytes: int) -> Page:
        """Values whose names sort after ``after`` (all if None), in name order, whose
        ``name = value`` lines fit in ``max_bytes`` (at least one, so every value can be read)."""
        items: list[tuple[str, str]] = []
        used = 0
        with self._lock:
            cursor = self._db.execute(
                "SELECT name, value, size FROM named_value WHERE ? IS NULL OR name > ? ORDER BY name",
                (after, after))
            try:
                for name, value, size in cursor:
                    used += size + 4
                    if items and used > max_bytes:
                        return Page(items, True)
                    items.append((name, value))
            finally:
                cursor.close()
        return Page(items, False)

    def items(self) -> list[tuple[str, str]]:
        """All ``(name, value)`` pairs, sorted by name (memory grows with the store: prefer :meth:`page`)."""
        with self._lock:
            return self._db.execute("SELECT name, value FROM named_value ORDER BY name").fetchall()

    def close(self) -> None:
        """Close the database (SQLite checkpoints the log into it)."""
        with self._lock:
            self._db.close()  # idempotent

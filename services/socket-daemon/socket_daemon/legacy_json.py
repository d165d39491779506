"""Migration of the JSON values file of earlier socket-daemon versions to the SQLite store.

The file keeps its path (configurations and volumes stay as they are) and becomes an SQLite
database; the JSON original is kept next to it as ``<file>.json-backup``. Every step is
crash-safe: until the final rename the JSON file is untouched, so an interrupted migration
simply runs again at the next start.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3

__all__ = ["ValueFileError", "migrate_json_file", "fsync_directory", "SQLITE_HEADER", "BACKUP_SUFFIX"]

SQLITE_HEADER = b"SQLite format 3\x00"
BACKUP_SUFFIX = ".json-backup"


class ValueFileError(ValueError):
    """The values file exists but cannot be read or migrated; names the file."""


def fsync_directory(path: str) -> None:
    """Make the directory entries of ``path`` (created or renamed files) durable."""
    descriptor = os.open(path or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _load(path: str) -> dict[str, str]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise ValueFileError(f"values file {path!r} cannot be read: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ValueFileError(f"values file {path!r} is not a JSON object of names to text values")
    return data


def _remove(path: str) -> None:
    for leftover in (path, f"{path}-wal", f"{path}-shm", f"{path}-journal"):
        try:
            os.remove(leftover)
        except FileNotFoundError:
            pass


def migrate_json_file(path: str) -> int:
    """Turn the JSON values file ``path`` into the SQLite store in place; the number of values.

    Raises :class:`ValueFileError` naming the file if it is not a JSON object of text values.
    Values over today's limits are kept: nothing already accepted is lost.
    """
    values = _load(path)
    staging = f"{path}.migrating"
    _remove(staging)
    try:
        db = sqlite3.connect(staging, isolation_level=None)
        try:
            # Rollback journal, not WAL: once committed, everything is in the one file renamed below.
            db.execute("PRAGMA journal_mode=DELETE")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("CREATE TABLE named_value (name TEXT PRIMARY KEY, value TEXT NOT NULL, "
                       "size INTEGER NOT NULL)")
            db.execute("BEGIN")
            db.executemany("INSERT INTO named_value (name, value, size) VALUES (?, ?, ?)",
                           ((name, value, len(name.encode("utf-8")) + len(value.encode("utf-8")))
                            for name, value in values.items()))
            db.execute("COMMIT")
        finally:
            db.close()
        with open(staging, "rb") as handle:
            os.fsync(handle.fileno())
        backup = path + BACKUP_SUFFIX
        if os.path.exists(backup):
            os.remove(backup)
        try:
            os.link(path, backup)  # the JSON original, under its new name, before it is replaced
        except OSError:  # a file system without hard links
            shutil.copyfile(path, backup)
            with open(backup, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(staging, path)
        fsync_directory(os.path.dirname(path))
    except (OSError, sqlite3.Error) as exc:
        _remove(staging)
        raise ValueFileError(f"values file {path!r} could not be migrated from JSON to SQLite: "
                             f"{exc}") from None
    return len(values)

"""Message bodies of db-admin: many rows after the command line, and table replies.

A 0.5.x message is one line of words. ``insert_many`` needs megabytes of rows,
so db-admin messages may carry a *body*: everything after the first newline
reaches the command untouched as ``self.body`` (``Server.accepts_body``: no
splitting on spaces, no stripping of braces, which JSON needs).

Bodies are CSV (a header line of column names, then rows) or JSON lines (one
object per line, ``{"time": "2024-05-01T12:00:00Z", "current": 1.5e-3}``).
"""

from __future__ import annotations

import csv
import io
import logging
from typing import Any, Sequence

__all__ = ["detect_format", "rows_to_csv", "shorten", "ShortenLongLogArguments"]


def detect_format(body: str) -> str:
    """``jsonl`` when the first non-blank character opens an object, else ``csv``."""
    return "jsonl" if body.lstrip().startswith("{") else "csv"


def rows_to_csv(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A header line and the rows as CSV (empty field = NULL; timestamps in ISO 8601)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if value is None else value.isoformat() if hasattr(value, "isoformat")
                         else value for value in row])
    return out.getvalue().rstrip("\n")


def shorten(text: str, limit: int = 300) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out (for log lines)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


class ShortenLongLogArguments(logging.Filter):
    """Shortens string arguments of log records, such as a message with its many-MB body.

    The server logs the whole message of a refused command; for ``insert_many``
    that is up to ``max_message_size`` (256 MiB) in one log line, and again in
    every alarm mail. The head of the message says which command it was.
    """

    def __init__(self, limit: int = 300) -> None:
        super().__init__()
        self.limit = limit

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and any(self._long(arg) for arg in args):
            # an exception (argparse's "unrecognized arguments: <body>") becomes its shortened text
            record.args = tuple(shorten(str(arg), self.limit) if self._long(arg) else arg
                                for arg in args)
        return True

    def _long(self, arg: object) -> bool:
        return isinstance(arg, (str, BaseException)) and len(str(arg)) > self.limit

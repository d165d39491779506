"""Rows of Python values as a stream in PostgreSQL's COPY text format.

``COPY ... FROM STDIN`` is 100-500 times faster than one INSERT per row, and
the stream is produced lazily, chunk by chunk, so a many-MB batch is never
held twice in memory. Every value goes through a formatter chosen by its
exact type; text is escaped as COPY requires (backslash, tab, newline, CR).
"""

from __future__ import annotations

import datetime
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

from .errors import ColumnCountError

__all__ = ["CopyStream", "format_value"]

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _text(value: str) -> str:
    # The membership tests run in C and are much cheaper than translate() on clean text.
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_ESCAPES)
    return value


def _other(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, (int, float)):  # subclasses such as numpy.float64
        return repr(float(value)) if isinstance(value, float) else str(int(value))
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\\\x" + bytes(value).hex()
    return _text(str(value))


_FORMATTERS: dict[type, Callable[[Any], str]] = {
    float: float.__repr__,
    int: int.__repr__,
    str: _text,
    bool: lambda value: "t" if value else "f",
    type(None): lambda value: "\\N",
    datetime.datetime: datetime.datetime.isoformat,
}


def format_value(value: Any) -> str:
    """One value as COPY text (``None`` is ``\\N``)."""
    return _FORMATTERS.get(type(value), _other)(value)


class CopyStream:
    """A read()-able stream of rows in COPY text format, for ``cursor.copy_expert``.

    Checks the length of every row against ``width`` and raises
    :class:`ColumnCountError` naming the row when it differs; raised from
    ``read()``, it aborts the COPY, so nothing of the batch is stored.

    Example::

        stream = CopyStream([(1.0, "a"), (2.0, "b")], width=2)
        cursor.copy_expert('COPY "t" ("x", "y") FROM STDIN', stream)
    """

    def __init__(self, rows: Iterable[Sequence[Any]], width: int, chunk_rows: int = 2000) -> None:
        self._rows: Iterator[Sequence[Any]] = iter(rows)
        self._width = width
        self._chunk_rows = chunk_rows
        self.rows_read = 0
        #: what read() raised: psycopg2 reports it only as "error in .read() call"
        self.error: Optional[BaseException] = None

    def read(self, size: int = -1) -> str:
        """Return the next chunk of whole rows (``size`` is only a hint), ``""`` at the end."""
        try:
            return self._chunk()
        except BaseException as exc:
            self.error = exc
            raise

    def _chunk(self) -> str:
        formatters = _FORMATTERS
        other = _other
        width = self._width
        lines = []
        for row in self._rows:
            if len(row) != width:
                raise ColumnCountError(
                    f"row {self.rows_read + len(lines) + 1} has {len(row)} values for {width} "
                    f"columns: {list(row)!r}"[:500])
            lines.append("\t".join([formatters.get(type(value), other)(value) for value in row]))
            if len(lines) >= self._chunk_rows:
                break
        self.rows_read += len(lines)
        return "\n".join(lines) + "\n" if lines else ""

"""JSON lines (one object per line) as rows for COPY, read from the text in place, twice.

The first pass collects the column names (in order of first appearance) and a
sample of rows to type new columns; the second yields the rows one by one, so
a many-MB body is never held as Python objects. A key missing from an object
is NULL in that row; a nested object or list is stored as its JSON text.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

from .copy_stream import text_lines

__all__ = ["json_columns", "json_rows"]


def _objects(text: str) -> Iterator[dict]:
    for number, line in enumerate(text_lines(text), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {number} of the body is not valid JSON ({exc.msg}): "
                             f"{line[:200]!r}") from None
        if not isinstance(obj, dict):
            raise ValueError(f"line {number} of the body is not a JSON object: {line[:200]!r}")
        yield obj


def _value(value: Any) -> Any:
    # A nested object or list is stored as its JSON text (for a text or jsonb column), not as
    # Python's repr of it.
    return json.dumps(value) if isinstance(value, (dict, list)) else value


def json_columns(text: str, sample_rows: int = 1000) -> tuple[list[str], list[tuple]]:
    """The column names of a JSON-lines text and its first ``sample_rows`` rows.

    Raises ``ValueError`` naming the line for invalid JSON or a line that is not an object.
    """
    columns: dict[str, None] = {}
    sample = []
    for obj in _objects(text):
        if obj.keys() - columns.keys():
            columns.update(dict.fromkeys(obj))
        if len(sample) < sample_rows:
            sample.append(obj)
    names = list(columns)
    return names, [tuple(_value(obj.get(name)) for name in names) for obj in sample]


def json_rows(text: str, names: list[str]) -> Iterator[tuple]:
    """The rows of a JSON-lines text, one tuple of ``names``' values per object."""
    for obj in _objects(text):
        yield tuple(_value(obj.get(name)) for name in names)

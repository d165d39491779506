"""Validation of SQL names (tables, columns, databases, roles) before any SQL is sent.

lab-utils 0.5.4 formatted names straight into SQL, so a table called
``t; DROP TABLE x`` ran the DROP. Here every name is first checked against
PostgreSQL's rule for an *unquoted* identifier (a letter or underscore, then
letters, digits or underscores, at most 63 bytes), folded to lower case as
PostgreSQL itself folds unquoted names (so ``Beam`` is the table 0.5.4 created
as ``CREATE TABLE Beam``), and then always composed through
:class:`psycopg2.sql.Identifier`, which quotes it. Either step alone would be
safe; the check also gives a clear error naming the bad value instead of a
strange table name in the database.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Sequence

from psycopg2 import sql

__all__ = ["InvalidIdentifierError", "MAX_IDENTIFIER_BYTES", "check_identifier", "check_identifiers",
           "quoted"]

#: PostgreSQL truncates longer names silently (NAMEDATALEN - 1); we refuse them instead.
MAX_IDENTIFIER_BYTES = 63

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class InvalidIdentifierError(ValueError):
    """A table, column, database or role name that is not a plain SQL identifier."""


def check_identifier(name: Any, what: str = "identifier") -> str:
    """Return ``name`` folded to lower case, or raise if it is not a plain identifier.

    ``what`` names the role of the value in the message (``"table name"``...).
    Raises ``TypeError`` for a non-string and :class:`InvalidIdentifierError`
    (a ``ValueError``) for a string that is empty, too long or has other
    characters than ``[A-Za-z0-9_]``.
    """
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a string, not {type(name).__name__} {name!r}")
    if not _IDENTIFIER.match(name):
        raise InvalidIdentifierError(
            f"invalid {what} {name!r}: use a letter or underscore followed by letters, digits "
            f"or underscores")
    if len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise InvalidIdentifierError(
            f"invalid {what} {name!r}: longer than PostgreSQL's {MAX_IDENTIFIER_BYTES} bytes")
    return name.lower()


def check_identifiers(names: Any, what: str = "column name") -> list[str]:
    """Check a non-empty list of distinct names; return them folded to lower case."""
    if isinstance(names, (str, bytes)) or not isinstance(names, Iterable):
        raise TypeError(f"{what}s must be a list of strings, not {type(names).__name__} {names!r}")
    checked = [check_identifier(name, what) for name in names]
    if not checked:
        raise ValueError(f"the list of {what}s is empty")
    seen: set[str] = set()
    for original, name in zip(names, checked):
        if name in seen:
            raise ValueError(f"{what} {original!r} appears twice in {list(names)!r}")
        seen.add(name)
    return checked


def quoted(names: Sequence[str]) -> sql.Composable:
    """Already checked names as a comma-separated list of quoted identifiers."""
    return sql.SQL(", ").join(sql.Identifier(name) for name in names)

"""Column data types and constraints, with lab-utils 0.5.4's members and values.

Both lists are closed on purpose (as in 0.5.4): a column type or a constraint
is never free SQL text from the caller. Unlike 0.5.4, the constraint template
is composed with :mod:`psycopg2.sql`, so the column name in it is quoted.
"""

from __future__ import annotations

import datetime
import decimal
import re
from enum import Enum
from typing import Any, Iterable, Optional, Sequence, Union

from psycopg2 import sql

__all__ = ["DataType", "Constraint", "data_type", "constraint", "constraints", "data_type_of_value",
           "data_type_of_text", "column_types", "is_numeric_type", "NUMERIC_TYPE_NAMES"]


class DataType(Enum):
    """Accepted data types for new columns (0.5.4 members and SQL values).

    Example::

        db.new_column("beam", "current", DataType.double)
        str(DataType.double)  # 'FLOAT(53)'
    """

    bool = "BOOLEAN"        #: Boolean
    short = "SMALLINT"      #: Integer, 2 bytes
    int = "INTEGER"         #: Integer, 4 bytes
    long = "BIGINT"         #: Integer, 8 bytes
    float = "FLOAT(24)"     #: Floating-point number, 4 bytes
    double = "FLOAT(53)"    #: Floating-point number, 8 bytes
    string = "TEXT"         #: String, unlimited length
    time = "TIMESTAMPTZ"    #: Time stamp, with time zone information

    def __str__(self) -> str:
        return str(self.value)

    def as_sql(self) -> sql.Composable:
        """The type as a composable SQL fragment (a fixed keyword, never caller text)."""
        return sql.SQL(self.value)


class Constraint(Enum):
    """Accepted constraints for new columns (0.5.4 members and template values).

    Example::

        db.new_column("beam", "current", DataType.double, [Constraint.positive])
    """

    positive = " CHECK({column_name} >= 0) "         #: The value must be greater or equal to 0
    positive_strict = " CHECK({column_name} > 0) "   #: The value must be strictly positive

    def __str__(self) -> str:
        return str(self.value)

    def as_sql(self, column_name: str) -> sql.Composable:
        """The constraint for ``column_name``, the name quoted as an identifier."""
        return sql.SQL(self.value).format(column_name=sql.Identifier(column_name))


#: ``pg_catalog.format_type`` names of the column types that can be averaged.
NUMERIC_TYPE_NAMES = frozenset({"smallint", "integer", "bigint", "real", "double precision", "numeric"})


def is_numeric_type(type_name: str) -> bool:
    """Whether a ``format_type`` name (``numeric(10,2)`` too) is a type that can be averaged."""
    return type_name in NUMERIC_TYPE_NAMES or type_name.startswith(("numeric", "double", "real"))


def _lookup(enum_cls: type[Enum], value: Any, what: str) -> Any:
    if isinstance(value, enum_cls):
        return value
    if isinstance(value, str):
        text = value.strip()
        for member in enum_cls:  # by member name ("double") or by SQL value ("FLOAT(53)")
            if text == member.name or text.upper() == str(member.value).strip().upper():
                return member
        names = ", ".join(m.name for m in enum_cls)
        raise ValueError(f"{value!r} is not a {what}; use one of: {names}")
    raise TypeError(f"{what} must be a {enum_cls.__name__} or its name, not "
                    f"{type(value).__name__} {value!r}")


def data_type(value: Union[DataType, str]) -> DataType:
    """Return ``value`` as a :class:`DataType`; a string may be a member name or SQL value.

    Raises ``TypeError`` for anything else than a DataType or a string, and
    ``ValueError`` for a string that names no member.
    """
    return _lookup(DataType, value, "data type")


def constraint(value: Union[Constraint, str]) -> Constraint:
    """Return ``value`` as a :class:`Constraint` (member, or member name)."""
    return _lookup(Constraint, value, "constraint")


def constraints(values: Optional[Iterable[Union[Constraint, str]]]) -> list[Constraint]:
    """Check a list of constraints (``None`` is an empty list)."""
    if values is None:
        return []
    if isinstance(values, (str, Constraint)) or not isinstance(values, Iterable):
        raise TypeError(f"constraints must be a list of Constraint, not {type(values).__name__} {values!r}")
    return [constraint(value) for value in values]


def data_type_of_value(value: Any) -> DataType:
    """The column type for a Python value, used when inserts create missing columns.

    ``bool`` -> BOOLEAN, ``int`` -> BIGINT, ``float``/``Decimal`` -> FLOAT(53),
    ``str`` -> TEXT, ``datetime`` -> TIMESTAMPTZ. ``None`` and other types raise
    ``TypeError``: the type of a column cannot be guessed from them.
    """
    if isinstance(value, bool):  # before int: bool is an int subclass
        return DataType.bool
    if isinstance(value, int):
        return DataType.long
    if isinstance(value, (float, decimal.Decimal)):
        return DataType.double
    if isinstance(value, str):
        return DataType.string
    if isinstance(value, datetime.datetime):
        return DataType.time
    raise TypeError(f"cannot choose a column type for {type(value).__name__} value {value!r}; "
                    f"create the column first with new_column()")


_INTEGER = re.compile(r"[+-]?\d+\Z")
_BOOLEANS = {"true", "false", "t", "f"}


def data_type_of_text(values: Iterable[str]) -> Optional[DataType]:
    """The column type for values given as text (CSV fields, command words).

    Integers -> BIGINT, numbers -> FLOAT(53), ``true``/``false`` -> BOOLEAN,
    ISO 8601 timestamps -> TIMESTAMPTZ, anything else -> TEXT; a mix takes the
    type that holds all (integers and numbers -> FLOAT(53), otherwise TEXT).
    Empty values are ignored; ``None`` when there is no non-empty value.
    """
    found: set[DataType] = set()
    for raw in values:
        text = raw.strip()
        if not text:
            continue
        if _INTEGER.match(text):
            found.add(DataType.long)
            continue
        try:
            float(text)
        except ValueError:
            pass
        else:
            found.add(DataType.double)
            continue
        if text.lower() in _BOOLEANS:
            found.add(DataType.bool)
            continue
        try:
            datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            found.add(DataType.string)
            break
        found.add(DataType.time)
    if not found:
        return None
    if len(found) == 1:
        return found.pop()
    if found <= {DataType.long, DataType.double}:
        return DataType.double
    return DataType.string


def column_types(names: Sequence[str], rows: Iterable[Sequence[Any]], *,
                 text_is_typed: bool) -> dict[str, DataType]:
    """The column type of each of ``names`` from sample ``rows`` (used to create missing columns).

    ``text_is_typed``: strings are text to read (CSV fields, command words,
    JSON strings: ``"12"`` is BIGINT, an ISO time TIMESTAMPTZ), as
    :func:`data_type_of_text`; otherwise a str is TEXT. Other values as
    :func:`data_type_of_value`. Raises ``TypeError`` naming a column that has
    no value to guess its type from.
    """
    samples: list[list[Any]] = [[] for _ in names]
    for row in rows:
        for values, value in zip(samples, row):
            if value is not None and value != "":
                values.append(value)
    types = {}
    for name, values in zip(names, samples):
        strings = [v for v in values if isinstance(v, str)]
        others = [v for v in values if not isinstance(v, str)]
        if others:
            kind: Optional[DataType] = data_type_of_value(others[0])
        elif strings:
            kind = data_type_of_text(strings) if text_is_typed else DataType.string
        else:
            kind = None
        if kind is None:
            raise TypeError(f"cannot create column {name!r}: it has no value to guess its type from (only None "
                            f"values or empty text); "
                            f"create it first (new_column / add_column)")
        types[name] = kind
    return types

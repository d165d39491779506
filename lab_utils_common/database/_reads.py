"""Reads room of ``Database``: the newest row, rows in a time range, averages per bucket."""

from __future__ import annotations

import datetime
from typing import Any, Optional, Sequence, Union

from psycopg2 import sql

from . import timescale
from .errors import MissingColumnError
from .identifiers import check_identifier, check_identifiers, quoted
from .types import is_numeric_type

__all__ = ["ReadsRoom", "Row", "Timestamp"]

Row = tuple
Timestamp = Union[datetime.datetime, str]


class ReadsRoom:
    """Reads of a :class:`~lab_utils_common.database.Database` (a mixin of it)."""

    def _select_columns(self, table: str, columns: Optional[Sequence[str]], index: str) -> list[str]:
        existing = self.list_columns(table)
        if index not in existing:
            raise MissingColumnError(f"table {table!r} has no time column {index!r}; "
                                     f"columns: {list(existing)}")
        if columns is None:
            return [c for c in existing if c != index]
        names = [c for c in check_identifiers(columns, "column name") if c != index]
        missing = [c for c in names if c not in existing]
        if missing:
            raise MissingColumnError(f"column(s) {missing} do not exist in table {table!r}; "
                                     f"existing columns: {list(existing)}")
        return names

    def fetch_latest(self, table_name: str, columns: Optional[Sequence[str]] = None, *,
                     index_name: str = "time") -> Optional[Row]:
        """The newest row as ``(time, *columns)``, or None for an empty table.

        ``columns`` defaults to every column but the time column.
        """
        table = check_identifier(table_name, "table name")
        index = check_identifier(index_name, "time column name")
        names = self._select_columns(table, columns, index)
        query = sql.SQL("SELECT {cols} FROM {table} ORDER BY {index} DESC LIMIT 1").format(
            cols=quoted([index, *names]), table=sql.Identifier(table), index=sql.Identifier(index))

        def action(cur: Any) -> Optional[Row]:
            cur.execute(query)
            return cur.fetchone()

        return self._run(f"fetch_latest({table!r})", action, retry=True)

    def fetch(self, table_name: str, columns: Optional[Sequence[str]] = None,
              since: Optional[Timestamp] = None, until: Optional[Timestamp] = None,
              bucket: Optional[Union[str, datetime.timedelta]] = None, *,
              index_name: str = "time", limit: Optional[int] = None) -> list[Row]:
        """Rows ``(time, *columns)`` with ``since <= time < until``, oldest first.

        With ``bucket`` (``"1 minute"``, a ``timedelta``) each row is a bucket:
        its start time and the average of each column (numeric columns only).
        ``since``/``until`` are datetimes or timestamps as text; ``columns``
        defaults to every column but the time column.
        """
        table = check_identifier(table_name, "table name")
        index = check_identifier(index_name, "time column name")
        names = self._select_columns(table, columns, index)
        for value, what in ((since, "since"), (until, "until")):
            if value is not None and not isinstance(value, (datetime.datetime, str)):
                raise TypeError(f"{what} must be a datetime or text, not {type(value).__name__} {value!r}")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0):
            raise ValueError(f"limit must be a positive integer, not {limit!r}")
        params: list[Any] = []
        if bucket is not None:
            params.append(timescale.interval(bucket, "bucket"))
            types = self.list_columns(table)
            not_numeric = [c for c in names if not is_numeric_type(types[c])]
            if not_numeric:
                raise ValueError(f"cannot average non-numeric column(s) {not_numeric} of table "
                                 f"{table!r}: {[types[c] for c in not_numeric]}")
            head = timescale.bucket_expression(index, bool(self.timescaledb_version))
            selected = sql.SQL(", ").join(
                [sql.SQL("{} AS {}").format(head, sql.Identifier(index))]
                + [sql.SQL("avg({col})").format(col=sql.Identifier(c)) for c in names])
            tail = sql.SQL(" GROUP BY 1 ORDER BY 1")
        else:
            selected = quoted([index, *names])
            tail = sql.SQL(" ORDER BY {index}").format(index=sql.Identifier(index))
        where = []
        if since is not None:
            where.append(sql.SQL("{index} >= %s::timestamptz").format(index=sql.Identifier(index)))
            params.append(since)
        if until is not None:
            where.append(sql.SQL("{index} < %s::timestamptz").format(index=sql.Identifier(index)))
            params.append(until)
        query = sql.SQL("SELECT {selected} FROM {table}").format(selected=selected,
                                                                table=sql.Identifier(table))
        if where:
            query += sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where)
        query += tail
        if limit is not None:
            query += sql.SQL(" LIMIT {}").format(sql.Literal(limit))

        def action(cur: Any) -> list[Row]:
            cur.execute(query, params)
            return cur.fetchall()

        return self._run(f"fetch({table!r})", action, retry=True)

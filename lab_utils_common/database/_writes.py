"""Writes room of ``Database``: INSERT of one row, COPY of many rows and of CSV text."""

from __future__ import annotations

import csv
import io
import itertools
from typing import Any, Iterable, Optional, Sequence

import psycopg2
import psycopg2.errors
from psycopg2 import sql

from .copy_stream import CopyStream
from .errors import ColumnCountError
from .identifiers import check_identifier, check_identifiers, quoted
from .logger import logger
from .types import data_type_of_text

__all__ = ["WritesRoom"]


def _without_empty_lines(text: str) -> str:
    """CSV text without its empty lines (outside quoted fields, which may hold any line)."""
    if "\n\n" not in text and "\n\r\n" not in text and not text.startswith(("\n", "\r\n")):
        return text  # the usual case: no copy of a many-MB text
    kept = []
    quoted_field = False
    for line in text.split("\n"):
        if quoted_field or line not in ("", "\r"):
            kept.append(line)
            quoted_field ^= line.count('"') % 2 == 1  # "" inside a quoted field counts twice
    return "\n".join(kept) + "\n"


class WritesRoom:
    """Inserts of a :class:`~lab_utils_common.database.Database` (a mixin of it)."""

    def _forget_queries(self, table: str) -> None:
        for key in [key for key in self._insert_queries if key[0].lower() == table]:
            del self._insert_queries[key]

    def _insert_query(self, table_name: str, columns: Sequence[str], copy: bool) -> bytes:
        key = (table_name, tuple(columns), copy)
        query = self._insert_queries.get(key)
        if query is None:
            table = check_identifier(table_name, "table name")
            names = check_identifiers(columns, "column name")
            if copy:
                composed = sql.SQL("COPY {table} ({columns}) FROM STDIN").format(
                    table=sql.Identifier(table), columns=quoted(names))
            else:
                composed = sql.SQL("INSERT INTO {table} ({columns}) VALUES ({values})").format(
                    table=sql.Identifier(table), columns=quoted(names),
                    values=sql.SQL(", ").join(sql.Placeholder() * len(names)))
            with self._lock:
                self._ensure_connection()
                query = composed.as_string(self.connection).encode()
            if len(self._insert_queries) > 1000:  # bound the cache: column sets could be dynamic
                self._insert_queries.clear()
            self._insert_queries[key] = query
        return query

    def new_entry(self, table_name: str, columns: Sequence[str], data: Sequence[Any],
                  check_columns: bool = False, *, create_columns: Optional[bool] = None) -> None:
        """Insert one row (``columns[i]`` gets ``data[i]``); committed when this returns.

        ``check_columns`` checks first that the table and columns exist
        (raising :class:`MissingTableError`/:class:`MissingColumnError`);
        ``create_columns`` (default: the configuration's) adds missing columns
        typed from the values. Raises :class:`ColumnCountError` if the lengths
        differ, :class:`ConnectionLostError` if the connection broke during
        the insert (the row may or may not be stored).
        """
        if isinstance(data, (str, bytes)) or not hasattr(data, "__len__"):
            raise TypeError(f"data must be a list of values, not {type(data).__name__} {data!r}")
        query = self._insert_query(table_name, columns, False)
        if len(data) != len(columns):
            raise ColumnCountError(f"{len(data)} values {list(data)!r} for {len(columns)} columns "
                                   f"{list(columns)!r} of table {table_name!r}")
        table = table_name.lower()
        if check_columns:
            self._require_table(table, "insert")
            self._check_columns_exist(table, columns)
        try:
            self._run(f"INSERT into {table!r}", lambda cur: cur.execute(query, data), retry=False)
        except psycopg2.errors.UndefinedColumn:
            create = self.create_columns if create_columns is None else create_columns
            if not create:
                raise
            # The failed statement stored nothing (autocommit): safe to add the columns and repeat.
            self._add_missing_columns(table, columns, [data])
            self._run(f"INSERT into {table!r}", lambda cur: cur.execute(query, data), retry=False)
        if logger.isEnabledFor(10):
            logger.debug("Inserted into <%s>: %s", table, dict(zip(columns, data)))

    def new_entries(self, table_name: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], *,
                    check_columns: bool = False, create_columns: Optional[bool] = None) -> int:
        """Insert many rows in one ``COPY``; all or none are stored. Returns the number of rows.

        ``rows`` is any iterable of sequences (a generator is streamed, never
        held in memory whole unless columns have to be created).
        Raises :class:`ColumnCountError` naming the first row of the wrong
        length (nothing is stored), and as :meth:`new_entry` otherwise.
        """
        query = self._insert_query(table_name, columns, True)
        table = table_name.lower()
        create = self.create_columns if create_columns is None else create_columns
        if check_columns or create:
            self._require_table(table, "insert")
        if create:
            rows = rows if isinstance(rows, Sequence) else list(rows)
            for number, row in enumerate(rows, 1):  # before creating anything
                if len(row) != len(columns):
                    raise ColumnCountError(f"row {number} has {len(row)} values for {len(columns)} "
                                           f"columns: {list(row)!r}"[:500])
            self._add_missing_columns(table, columns, rows)
        elif check_columns:
            self._check_columns_exist(table, columns)
        stream = CopyStream(rows, len(columns))

        def copy(cur: Any) -> int:
            try:
                cur.copy_expert(query, stream, size=1 << 16)
            except psycopg2.Error:
                if stream.error is not None:  # the COPY was aborted because of this row
                    raise stream.error from None
                raise
            return stream.rows_read

        count = self._run(f"COPY into {table!r}", copy, retry=False)
        logger.debug("Copied %d rows into <%s>", count, table)
        return count

    def new_entries_csv(self, table_name: str, csv_text: str, *,
                        create_columns: Optional[bool] = None) -> int:
        """Insert CSV text (a header line of column names, then rows) in one ``COPY``.

        The server parses the fields as the columns' types (an empty field is
        NULL), so the text is never converted in Python: this is the fastest
        way in. Empty lines are skipped, as Python's csv module does (COPY
        would refuse them as rows without values, and in one-column text as
        NULL). ``create_columns`` types missing columns from the first 1000
        rows (integers, numbers, booleans, ISO timestamps, else text). All or
        none of the rows are stored; returns their number.
        """
        if not isinstance(csv_text, str):
            raise TypeError(f"csv_text must be str, not {type(csv_text).__name__}")
        table = check_identifier(table_name, "table name")
        csv_text = _without_empty_lines(csv_text.lstrip("\ufeff"))
        header, _, body = csv_text.partition("\n")
        names = check_identifiers([name.strip() for name in next(csv.reader([header]), [])],
                                  "CSV header column name")
        create = self.create_columns if create_columns is None else create_columns
        if create:
            self._require_table(table, "insert")
            existing = self.list_columns(table)
            missing = [i for i, name in enumerate(names) if name not in existing]
            if missing:
                sample = list(itertools.islice(csv.reader(io.StringIO(body)), 1000))
                for i in missing:
                    kind = data_type_of_text(row[i] for row in sample if len(row) > i)
                    if kind is None:
                        raise TypeError(f"cannot create column {names[i]!r} in table {table!r}: "
                                        f"its CSV fields are all empty; create it with new_column()")
                    self.new_column(table, names[i], kind)
        # The header goes too (HEADER skips it) so the server's line numbers are the text's.
        query = sql.SQL("COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv, HEADER true)").format(
            table=sql.Identifier(table), columns=quoted(names))

        def copy(cur: Any) -> int:
            cur.copy_expert(query, io.StringIO(csv_text), size=1 << 20)
            return cur.rowcount

        count = self._run(f"COPY into {table!r}", copy, retry=False)
        logger.debug("Copied %d CSV rows into <%s>", count, table)
        return count

"""Writes room of ``Database``: INSERT of one row, COPY of many rows and of CSV text."""

from __future__ import annotations

import csv
import itertools
from typing import Any, Iterable, Optional, Sequence

import psycopg2
import psycopg2.errors
from psycopg2 import sql

from .copy_stream import CopyStream, CsvTextStream, text_lines
from .errors import ColumnCountError
from .identifiers import check_identifier, check_identifiers, quoted
from .json_lines import json_columns, json_rows
from .logger import logger
from .types import column_types

#: Rows read to choose the types of the columns an insert creates.
TYPE_SAMPLE_ROWS = 1000

__all__ = ["WritesRoom"]


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
        typed from the values, in the row's transaction. Raises
        :class:`ColumnCountError` if the lengths differ,
        :class:`ConnectionLostError` if the connection broke during the insert
        (the row may or may not be stored).
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
            # The failed statement stored nothing (autocommit): add the columns and the row together.
            types = self._types_of_missing(table, columns, [data], text_is_typed=False)

            def insert(cur: Any) -> None:
                self.ensure_columns(table, types, cursor=cur)
                cur.execute(query, data)

            self._run_in_transaction(f"INSERT into {table!r}", insert)
        if logger.isEnabledFor(10):
            logger.debug("Inserted into <%s>: %s", table, dict(zip(columns, data)))

    def _types_of_missing(self, table: str, columns: Sequence[str], sample: Iterable[Sequence[Any]],
                          *, text_is_typed: bool) -> dict:
        """Types for the columns of ``columns`` that ``table`` lacks, from sample rows."""
        names = check_identifiers(columns, "column name")
        existing = self.list_columns(table)
        missing = [i for i, name in enumerate(names) if name not in existing]
        if not missing:
            return {}
        rows = [[row[i] if i < len(row) else None for i in missing] for row in sample]
        return column_types([names[i] for i in missing], rows, text_is_typed=text_is_typed)

    def _copy(self, table: str, query: Any, stream: Any, types: dict, what: str) -> int:
        """COPY ``stream`` into ``table``, with the new columns ``types`` in the same transaction."""

        def copy(cur: Any) -> int:
            if types:
                self.ensure_columns(table, types, cursor=cur)
            try:
                cur.copy_expert(query, stream, size=1 << 16)
            except psycopg2.Error:
                error = getattr(stream, "error", None)
                if error is not None:  # the COPY was aborted because of this row
                    raise error from None
                raise
            return getattr(stream, "rows_read", None) or cur.rowcount

        if types:
            return self._run_in_transaction(f"{what} into {table!r}", copy)
        return self._run(f"{what} into {table!r}", copy, retry=False)

    def new_entries(self, table_name: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], *,
                    check_columns: bool = False, create_columns: Optional[bool] = None) -> int:
        """Insert many rows in one ``COPY``; all or none are stored. Returns the number of rows.

        ``rows`` is any iterable of sequences (a generator is streamed, never
        held in memory whole). ``create_columns`` types missing columns from
        the first 1000 rows and adds them in the COPY's transaction.
        Raises :class:`ColumnCountError` naming the first row of the wrong
        length (nothing is stored), and as :meth:`new_entry` otherwise.
        """
        query = self._insert_query(table_name, columns, True)
        table = table_name.lower()
        create = self.create_columns if create_columns is None else create_columns
        if check_columns or create:
            self._require_table(table, "insert")
        types: dict = {}
        if create:
            iterator = iter(rows)
            sample = list(itertools.islice(iterator, TYPE_SAMPLE_ROWS))
            for number, row in enumerate(sample, 1):  # before creating anything
                if len(row) != len(columns):
                    raise ColumnCountError(f"row {number} has {len(row)} values for {len(columns)} "
                                           f"columns: {list(row)!r}"[:500])
            types = self._types_of_missing(table, columns, sample, text_is_typed=False)
            rows = itertools.chain(sample, iterator)
        elif check_columns:
            self._check_columns_exist(table, columns)
        count = self._copy(table, query, CopyStream(rows, len(columns)), types, "COPY")
        logger.debug("Copied %d rows into <%s>", count, table)
        return count

    def new_entries_csv(self, table_name: str, csv_text: str, *,
                        create_columns: Optional[bool] = None) -> int:
        """Insert CSV text (a header line of column names, then rows) in one ``COPY``.

        The server parses the fields as the columns' types (an empty field is
        NULL). The text is streamed to the server in chunks of
        ``copy_chunk_bytes`` (about twice that in memory, whatever the size of
        the text); empty lines are skipped, as Python's csv module does, and a
        line ``\\.`` is data, not COPY's end marker. ``create_columns`` types
        missing columns from the first 1000 rows (integers, numbers, booleans,
        ISO timestamps, else text) and adds them in the COPY's transaction.
        All or none of the rows (and new columns) are stored; returns the
        number of rows.
        """
        if not isinstance(csv_text, str):
            raise TypeError(f"csv_text must be str, not {type(csv_text).__name__}")
        table = check_identifier(table_name, "table name")
        start = 1 if csv_text.startswith("\ufeff") else 0
        header = ""
        for header in text_lines(csv_text, start):  # the first line that is not empty
            if header.strip():
                break
            start += len(header) + 1
        names = check_identifiers([name.strip() for name in next(csv.reader([header]), [])],
                                  "CSV header column name")
        create = self.create_columns if create_columns is None else create_columns
        types: dict = {}
        if create:
            self._require_table(table, "insert")
            lines = (line for line in text_lines(csv_text, start + len(header) + 1) if line.strip())
            sample = list(itertools.islice(csv.reader(lines), TYPE_SAMPLE_ROWS))
            types = self._types_of_missing(table, names, sample, text_is_typed=True)
        # The header goes too (HEADER skips it) so the server's line numbers are the text's.
        query = sql.SQL("COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv, HEADER true)").format(
            table=sql.Identifier(table), columns=quoted(names))
        stream = CsvTextStream(csv_text, start, self.copy_chunk_bytes)
        count = self._copy(table, query, stream, types, "COPY")
        logger.debug("Copied %d CSV rows into <%s>", count, table)
        return count

    def new_entries_jsonl(self, table_name: str, text: str, *,
                          create_columns: Optional[bool] = None) -> int:
        """Insert JSON lines (one object per line, keys are columns) in one ``COPY``.

        A key missing from an object is NULL; a nested object or list is
        stored as its JSON text. The text is read twice in place (names, then
        rows), never held as Python objects. ``create_columns`` types missing
        columns from the first 1000 objects (strings read as
        :meth:`new_entries_csv` reads fields). All or none; returns the number of rows.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be str, not {type(text).__name__}")
        table = check_identifier(table_name, "table name")
        keys, sample = json_columns(text, TYPE_SAMPLE_ROWS)
        if not keys:
            raise ValueError("no JSON object with a key in the text: nothing to insert")
        names = check_identifiers(keys, "JSON key (column name)")
        create = self.create_columns if create_columns is None else create_columns
        types: dict = {}
        if create:
            self._require_table(table, "insert")
            types = self._types_of_missing(table, names, sample, text_is_typed=True)
        query = self._insert_query(table, names, True)
        stream = CopyStream(json_rows(text, keys), len(names))
        count = self._copy(table, query, stream, types, "COPY")
        logger.debug("Copied %d JSON rows into <%s>", count, table)
        return count

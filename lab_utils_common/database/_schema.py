"""Schema room of ``Database``: databases, tables, columns; ``ensure_columns`` in one transaction."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Union

import psycopg2
import psycopg2.errors
from psycopg2 import sql

from .errors import MissingColumnError, MissingTableError, TimescaleDBUnavailableError
from .identifiers import check_identifier, check_identifiers
from .logger import logger
from .types import Constraint, DataType, constraints as check_constraints, data_type as check_data_type

__all__ = ["SchemaRoom", "MAX_COLUMNS"]

#: PostgreSQL's limit of columns per table (MaxHeapAttributeNumber).
MAX_COLUMNS = 1600


class SchemaRoom:
    """Tables and columns of a :class:`~lab_utils_common.database.Database` (a mixin of it)."""

    def check_table(self, table_name: str) -> bool:
        """Whether a table (or view) ``table_name`` exists in the current schema."""
        table = check_identifier(table_name, "table name")

        def action(cur: Any) -> bool:
            cur.execute("SELECT EXISTS (SELECT 1 FROM information_schema.tables "
                        "WHERE table_schema = current_schema() AND table_name = %s)", (table,))
            return bool(cur.fetchone()[0])

        return self._run(f"check_table({table!r})", action, retry=True)

    def check_column(self, table_name: str, column_name: str) -> bool:
        """Whether column ``column_name`` exists in table ``table_name``."""
        table = check_identifier(table_name, "table name")
        column = check_identifier(column_name, "column name")

        def action(cur: Any) -> bool:
            cur.execute("SELECT EXISTS (SELECT 1 FROM information_schema.columns "
                        "WHERE table_schema = current_schema() AND table_name = %s "
                        "AND column_name = %s)", (table, column))
            return bool(cur.fetchone()[0])

        return self._run(f"check_column({table!r}, {column!r})", action, retry=True)

    def list_columns(self, table_name: str) -> dict[str, str]:
        """The columns of ``table_name`` in table order, as ``{name: SQL type}``.

        Raises :class:`MissingTableError` if there is no such table.
        """
        table = check_identifier(table_name, "table name")

        def action(cur: Any) -> list:
            cur.execute("SELECT a.attname, format_type(a.atttypid, a.atttypmod) "
                        "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                        "WHERE c.relname = %s AND c.relnamespace = current_schema()::regnamespace "
                        "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum", (table,))
            return cur.fetchall()

        rows = self._run(f"list_columns({table!r})", action, retry=True)
        if not rows and not self.check_table(table):
            raise MissingTableError(f"table {table!r} does not exist in {self.server}")
        return {name: type_name for name, type_name in rows}

    def _require_table(self, table: str, doing: str) -> None:
        if not self.check_table(table):
            raise MissingTableError(f"cannot {doing}: table {table!r} does not exist in {self.server}")

    def create_database(self, db_name: str, owner: str = "postgres", *,
                        timescaledb_extension: Optional[bool] = None, exist_ok: bool = False) -> bool:
        """Create database ``db_name`` owned by ``owner``; returns False if it existed (``exist_ok``).

        ``timescaledb_extension`` (default: the ``timescaledb`` setting)
        installs the extension in the new database; when the server does not
        have it, :class:`TimescaleDBUnavailableError` is raised before anything
        is created.
        """
        name = check_identifier(db_name, "database name")
        owner_name = check_identifier(owner, "owner role name")
        extension = self.timescaledb if timescaledb_extension is None else bool(timescaledb_extension)

        def create(cur: Any) -> bool:
            if extension:
                cur.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
                if cur.fetchone() is None:
                    raise TimescaleDBUnavailableError(
                        f"cannot install TimescaleDB in new database {name!r}: the server "
                        f"{self.host}:{self.port} does not have the timescaledb extension (pass "
                        f"timescaledb_extension=False or set timescaledb = off)")
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is not None:
                if exist_ok:
                    return False
                raise psycopg2.errors.DuplicateDatabase(f"database {name!r} already exists")
            cur.execute(sql.SQL("CREATE DATABASE {} WITH OWNER {}").format(
                sql.Identifier(name), sql.Identifier(owner_name)))
            return True

        logger.info("Creating database <%s>", name)
        created = self._run(f"create_database({name!r})", create, retry=False)
        if extension:
            conn = self._open(name)
            try:
                with conn.cursor() as cur:
                    cur.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            finally:
                conn.close()
        logger.info("Database <%s> %s", name, "created" if created else "already exists")
        return created

    def new_column(self, table_name: str, column_name: str, data_type: Union[DataType, str],
                   constraints: Optional[Sequence[Union[Constraint, str]]] = None) -> bool:
        """Add a column to a table; return False if it already existed (as 0.5.4: no error).

        Raises ``TypeError``/``ValueError`` for a bad name, data type or
        constraint (before any SQL), :class:`MissingTableError` if the table
        does not exist.
        """
        table = check_identifier(table_name, "table name")
        column = check_identifier(column_name, "column name")
        kind = check_data_type(data_type)
        checks = check_constraints(constraints)
        self._require_table(table, f"create column {column!r}")
        if self.check_column(table, column):
            logger.info("Column <%s> already exists in table <%s>", column, table)
            return False
        query = sql.SQL("ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {kind}{checks}").format(
            table=sql.Identifier(table), column=sql.Identifier(column), kind=kind.as_sql(),
            checks=sql.Composed([c.as_sql(column) for c in checks]))
        logger.info("Creating column <%s> in table <%s>", column, table)
        self._run(f"new_column({table!r}, {column!r})", lambda cur: cur.execute(query), retry=True)
        self._forget_queries(table)
        logger.info("Column <%s> successfully created in table <%s>", column, table)
        return True

    def _check_columns_exist(self, table: str, columns: Sequence[str]) -> None:
        existing = self.list_columns(table)
        missing = [c for c in check_identifiers(columns, "column name") if c not in existing]
        if missing:
            raise MissingColumnError(f"column(s) {missing} do not exist in table {table!r}; "
                                     f"existing columns: {list(existing)}")

    def ensure_columns(self, table_name: str, columns: Mapping[str, Union[DataType, str]], *,
                       cursor: Any = None) -> list[str]:
        """Add the columns of ``columns`` (``{name: type}``) that the table lacks; return their names.

        All are added by one ``ALTER TABLE``, so all or none: a table never
        keeps half of a command's new columns. PostgreSQL's limit of 1600
        columns per table (dropped ones count) is checked first, naming it.
        With ``cursor`` it runs on that cursor (inside the caller's
        transaction, e.g. with the rows the columns are for).
        """
        table = check_identifier(table_name, "table name")
        wanted = {check_identifier(name, "column name"): check_data_type(kind)
                  for name, kind in columns.items()}

        def add(cur: Any) -> list[str]:
            cur.execute("SELECT a.attname, a.attisdropped FROM pg_attribute a JOIN pg_class c "
                        "ON c.oid = a.attrelid WHERE c.relname = %s AND c.relkind IN ('r', 'p') "
                        "AND c.relnamespace = current_schema()::regnamespace AND a.attnum > 0", (table,))
            rows = cur.fetchall()
            if not rows:
                raise MissingTableError(f"cannot add columns: table {table!r} does not exist in {self.server}")
            existing = {name for name, dropped in rows if not dropped}
            missing = [name for name in wanted if name not in existing]
            if not missing:
                return []
            if len(rows) + len(missing) > MAX_COLUMNS:
                raise ValueError(
                    f"cannot add {len(missing)} columns to table {table!r}: it uses {len(rows)} of "
                    f"PostgreSQL's {MAX_COLUMNS} column slots (dropped columns count too); nothing "
                    f"was added")
            cur.execute(sql.SQL("ALTER TABLE {table} ").format(table=sql.Identifier(table))
                        + sql.SQL(", ").join(
                            sql.SQL("ADD COLUMN IF NOT EXISTS {column} {kind}").format(
                                column=sql.Identifier(name), kind=wanted[name].as_sql())
                            for name in missing))
            return missing

        added = add(cursor) if cursor is not None else self._run(
            f"ensure_columns({table!r})", add, retry=False)
        if added:
            self._forget_queries(table)
            logger.info("Created %d column(s) in table <%s>: %s", len(added), table,
                        ", ".join(f"{name} {wanted[name]}" for name in added))
        return added

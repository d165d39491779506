"""The db-admin daemon: :class:`~lab_utils_common.database.Database` operations as socket commands.

Commands (besides ``quit``, ``status``, ``help``)::

    create_database NAME [--owner ROLE] [--no-timescaledb] [--exist-ok]
    create_table TABLE [--no-default-now] [--if-not-exists]
    add_column TABLE COLUMN TYPE [--constraint positive|positive_strict ...]
    insert TABLE COLUMN=VALUE ... [--create-columns]
    insert_many TABLE [--format csv|jsonl] [--create-columns]   + body lines
    columns TABLE
    latest TABLE [COLUMN ...]
    query TABLE [--columns A,B] [--since T] [--until T] [--bucket I] [--limit N]
    aggregate_view TABLE [--index time] [--no-recreate]
    retention TABLE INTERVAL|off
    compression TABLE INTERVAL|off [--segment-by A,B]

Replies: one line for actions, CSV (header line, then rows) for data. A
refused or failed operation replies ``Error! <what went wrong>``.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional

import psycopg2

from lab_utils_common.database import Constraint, Database, DataType
from lab_utils_common.database.identifiers import check_identifier
from lab_utils_common.database.types import data_type_of_text, data_type_of_value
from lab_utils_common.socket_comm import MessageError, Server

from .bodies import (ShortenLongLogArguments, detect_format,
                     parse_json_lines, rows_to_csv)

__all__ = ["DbAdmin", "DEV_DB_PASSWORD"]

#: Content of the committed secrets/db_password.dev, which compose uses when no password file is set.
DEV_DB_PASSWORD = "dev-only-change-me"


def _refusals_as_errors(handler: Callable[["DbAdmin"], None]) -> Callable[["DbAdmin"], None]:
    """Expected failures (bad names, values, database errors) become ``Error!`` replies.

    The server turns other exceptions into "Unknown exception! Check daemon
    log!"; these are not unknown: the client gets the reason, the log one line.
    """

    @functools.wraps(handler)
    def wrapper(self: "DbAdmin") -> None:
        try:
            handler(self)
        except (ValueError, TypeError, psycopg2.Error) as exc:
            text = str(exc).strip() or type(exc).__name__
            self.logger.warning("Command %s refused: %s: %s", getattr(self.namespace, "which", "?"),
                                type(exc).__name__, text)
            raise MessageError(f"{type(exc).__name__}: {text}") from None

    return wrapper


def _csv_list(text: Optional[str]) -> Optional[list[str]]:
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


class DbAdmin(Server):
    """Socket daemon in front of a PostgreSQL/TimescaleDB database.

    Example::

        admin = DbAdmin(config_file="server.ini", database_config="database.ini")
        admin.connect_database()     # waits for the database, logging why
        admin.start_daemon()         # lab-utils-client --port 1508 columns beam
    """

    logger_name = "db-admin"
    port = 1508
    pid_file_name = "/tmp/db-admin.pid"
    #: insert_many bodies are many MB (about 40 bytes per row of 3 numbers)
    max_message_size = 256 * 1024 * 1024
    receive_timeout = 120.0
    accepts_body = True  # insert_many's rows: the lines after the command, as self.body

    def __init__(self, config_file: Optional[str] = None, pid_file_name: Optional[str] = None,
                 host: Optional[str] = None, port: Optional[int] = None, *,
                 token_file: Optional[str] = None, database_config: Optional[str] = None,
                 database: Optional[Database] = None) -> None:
        """As :class:`Server`; ``database_config`` is a 0.5.x ``database.ini`` (or pass ``database``)."""
        self.db = database if database is not None else Database(config_file=database_config)
        super().__init__(config_file, pid_file_name, host, port, token_file=token_file)
        if not any(isinstance(f, ShortenLongLogArguments) for f in self.logger.filters):
            self.logger.addFilter(ShortenLongLogArguments())  # no insert_many body in the log
        if self.db.has_password(DEV_DB_PASSWORD):
            self.logger.warning(
                "The database password is the public development placeholder of "
                "secrets/db_password.dev: anyone who can reach %s can log in. Put a real password in "
                "the file named by LABUTILS_DB_PASSWORD_FILE (compose) or LABUTILS_DATABASE_PASSWORD_FILE",
                self.db.server)

    def connect_database(self, wait: float = float("inf")) -> None:
        """Connect, retrying with back-off for ``wait`` seconds; each failure is logged with its reason."""
        self.db.connect(wait=wait)
        self.logger.info("Database %s ready (%s, TimescaleDB %s)", self.db.server,
                         self.db.db_version.split(",")[0],
                         self.db.timescaledb_version or "not installed")

    # ------------------------------------------------------------------ commands
    def create_parser(self) -> None:
        """The built-in commands plus the database operations."""
        super().create_parser()
        self.parser.description = "db-admin: PostgreSQL/TimescaleDB operations"
        self.parser.epilog = ("Send many rows with insert_many: the rows follow the command on the "
                              "next lines (CSV with a header line, or JSON lines).")
        types = ", ".join(member.name for member in DataType)

        sp = self.add_command("create_database", self.create_database, "creates a database")
        sp.add_argument("name", help="database name")
        sp.add_argument("--owner", help="owner role (default: the connected user)")
        sp.add_argument("--no-timescaledb", action="store_true", help="do not install TimescaleDB in it")
        sp.add_argument("--exist-ok", action="store_true", help="no error if it exists")

        sp = self.add_command("create_table", self.create_table, "creates a time table (hypertable)")
        sp.add_argument("table", help="table name")
        sp.add_argument("--no-default-now", action="store_true", help="time has no default NOW()")
        sp.add_argument("--if-not-exists", action="store_true", help="no error if it exists")

        sp = self.add_command("add_column", self.add_column, "adds a column to a table")
        sp.add_argument("table", help="table name")
        sp.add_argument("column", help="column name")
        sp.add_argument("type", help=f"data type: {types}")
        sp.add_argument("--constraint", action="append", default=[],
                        help=f"{', '.join(m.name for m in Constraint)} (repeatable)")

        sp = self.add_command("insert", self.insert, "inserts one row: COLUMN=VALUE words")
        sp.add_argument("table", help="table name")
        sp.add_argument("values", nargs="+", metavar="COLUMN=VALUE",
                        help="values as text, converted by the server; COLUMN= is NULL")
        sp.add_argument("--create-columns", action="store_true", help="create missing columns")

        sp = self.add_command("insert_many", self.insert_many,
                              "inserts the rows in the lines after the command")
        sp.add_argument("table", help="table name")
        sp.add_argument("--format", choices=("csv", "jsonl"), help="default: guessed from the body")
        sp.add_argument("--create-columns", action="store_true", help="create missing columns")

        sp = self.add_command("columns", self.columns, "lists the columns of a table and their types")
        sp.add_argument("table", help="table name")

        sp = self.add_command("latest", self.latest, "the newest row, as CSV")
        sp.add_argument("table", help="table name")
        sp.add_argument("column", nargs="*", help="columns (default: all)")

        sp = self.add_command("query", self.query, "rows in a time range, as CSV")
        sp.add_argument("table", help="table name")
        sp.add_argument("--columns", help="comma-separated columns (default: all)")
        sp.add_argument("--since", help="first time, e.g. 2024-05-01T00:00:00Z (included)")
        sp.add_argument("--until", help="end time (excluded)")
        sp.add_argument("--bucket", help="average per bucket, e.g. '1 minute' (braces: {1 minute})")
        sp.add_argument("--limit", type=int, help="at most this many rows")

        sp = self.add_command("aggregate_view", self.aggregate_view,
                              "creates TABLE_1min, 1-minute averages")
        sp.add_argument("table", help="table name")
        sp.add_argument("--index", default="time", help="time column (default: time)")
        sp.add_argument("--no-recreate", action="store_true", help="error if the view exists")

        sp = self.add_command("retention", self.retention, "drops data older than INTERVAL (TimescaleDB)")
        sp.add_argument("table", help="table name")
        sp.add_argument("interval", help="e.g. {90 days}, or off")

        sp = self.add_command("compression", self.compression, "compresses data older than INTERVAL")
        sp.add_argument("table", help="table name")
        sp.add_argument("interval", help="e.g. {7 days}, or off")
        sp.add_argument("--segment-by", help="comma-separated columns whose values repeat")

    @_refusals_as_errors
    def create_database(self) -> None:
        """``create_database NAME``: create a database (with TimescaleDB unless told otherwise)."""
        ns = self.namespace
        created = self.db.create_database(
            ns.name, owner=ns.owner or self.db.user, exist_ok=ns.exist_ok,
            timescaledb_extension=False if ns.no_timescaledb else None)
        self.reply = f"database {ns.name.lower()} {'created' if created else 'already exists'}"

    @_refusals_as_errors
    def create_table(self) -> None:
        """``create_table TABLE``: a time table (a hypertable with TimescaleDB)."""
        ns = self.namespace
        created = self.db.create_timescale_db(ns.table, default_now=not ns.no_default_now,
                                              if_not_exists=ns.if_not_exists)
        self.reply = f"table {ns.table.lower()} {'created' if created else 'already exists'}"

    @_refusals_as_errors
    def add_column(self) -> None:
        """``add_column TABLE COLUMN TYPE``: add a column (no error if it exists)."""
        ns = self.namespace
        added = self.db.new_column(ns.table, ns.column, ns.type, ns.constraint or None)
        self.reply = f"column {ns.column.lower()} {'added to' if added else 'already in'} {ns.table.lower()}"

    def _create_missing(self, table: str, columns: list[str], samples: list[list[Any]]) -> None:
        existing = self.db.list_columns(table)
        for column, values in zip(columns, samples):
            if check_identifier(column, "column name") in existing:
                continue
            present = [value for value in values if value is not None]
            if present and all(isinstance(value, str) for value in present):
                kind = data_type_of_text(present)
            elif present:
                kind = data_type_of_value(next(v for v in present if not isinstance(v, str)))
            else:
                kind = None
            if kind is None:
                raise TypeError(f"cannot create column {column!r}: it has no value to guess its type from")
            self.db.new_column(table, column, kind)
            self.logger.info("Created column %s %s in table %s", column, kind, table)

    @_refusals_as_errors
    def insert(self) -> None:
        """``insert TABLE COLUMN=VALUE ...``: one row; the server converts the text values."""
        ns = self.namespace
        columns, values = [], []
        for word in ns.values:
            column, equals, value = word.partition("=")
            if not equals:
                raise ValueError(f"{word!r} is not COLUMN=VALUE")
            columns.append(column.strip())
            values.append(value if value != "" else None)
        if ns.create_columns:
            self._create_missing(ns.table, columns, [[value] for value in values])
        self.db.new_entry(ns.table, columns, values)
        self.reply = f"1 row inserted into {ns.table.lower()}"

    @_refusals_as_errors
    def insert_many(self) -> None:
        """``insert_many TABLE`` + body: all rows in one COPY, all or none stored."""
        ns = self.namespace
        body = self.body
        if not body.strip():
            raise ValueError("insert_many needs rows on the lines after the command "
                             "(CSV with a header line, or JSON lines)")
        kind = ns.format or detect_format(body)
        if kind == "csv":
            count = self.db.new_entries_csv(ns.table, body, create_columns=ns.create_columns)
        else:
            columns, rows = parse_json_lines(body)
            if ns.create_columns:
                samples = [[row[i] for row in rows[:1000]] for i in range(len(columns))]
                self._create_missing(ns.table, columns, samples)
            count = self.db.new_entries(ns.table, columns, rows)
        self.logger.info("Inserted %d rows into %s", count, ns.table)
        self.reply = f"{count} rows inserted into {ns.table.lower()}"

    @_refusals_as_errors
    def columns(self) -> None:
        """``columns TABLE``: ``name type`` lines."""
        self.reply = "\n".join(f"{name} {kind}" for name, kind in
                               self.db.list_columns(self.namespace.table).items())

    @_refusals_as_errors
    def latest(self) -> None:
        """``latest TABLE [COLUMN ...]``: the newest row as CSV (header only when empty)."""
        ns = self.namespace
        columns = self._result_columns(ns.table, ns.column or None)
        row = self.db.fetch_latest(ns.table, ns.column or None)
        self.reply = rows_to_csv(columns, [row] if row is not None else [])

    @_refusals_as_errors
    def query(self) -> None:
        """``query TABLE [--since T] [--until T] [--bucket I]``: rows as CSV, oldest first."""
        ns = self.namespace
        wanted = _csv_list(ns.columns)
        if ns.limit is not None and ns.limit <= 0:
            raise ValueError(f"--limit must be positive, not {ns.limit}")
        rows = self.db.fetch(ns.table, wanted, since=ns.since, until=ns.until, bucket=ns.bucket,
                             limit=ns.limit)
        self.reply = rows_to_csv(self._result_columns(ns.table, wanted), rows)

    def _result_columns(self, table: str, wanted: Optional[list[str]]) -> list[str]:
        if wanted is not None:
            return ["time", *[c.lower() for c in wanted if c.lower() != "time"]]
        return ["time", *[c for c in self.db.list_columns(table) if c != "time"]]

    @_refusals_as_errors
    def aggregate_view(self) -> None:
        """``aggregate_view TABLE``: 1-minute averages of every numeric column."""
        ns = self.namespace
        view = self.db.create_aggregate_view(ns.table, ns.index, recreate=not ns.no_recreate)
        self.reply = f"view {view} created"

    @_refusals_as_errors
    def retention(self) -> None:
        """``retention TABLE INTERVAL|off``: set or remove the retention policy."""
        ns = self.namespace
        if ns.interval.strip().lower() == "off":
            self.db.remove_retention_policy(ns.table)
            self.reply = f"retention policy of {ns.table.lower()} removed"
        else:
            self.db.set_retention_policy(ns.table, ns.interval)
            self.reply = f"data of {ns.table.lower()} older than {ns.interval} will be dropped"

    @_refusals_as_errors
    def compression(self) -> None:
        """``compression TABLE INTERVAL|off``: set or remove the compression policy."""
        ns = self.namespace
        if ns.interval.strip().lower() == "off":
            self.db.remove_compression_policy(ns.table)
            self.reply = f"compression policy of {ns.table.lower()} removed"
        else:
            self.db.set_compression_policy(ns.table, ns.interval, _csv_list(ns.segment_by))
            self.reply = f"data of {ns.table.lower()} older than {ns.interval} will be compressed"

    def status_fields(self) -> dict[str, Any]:
        """The server's fields plus the database's (from memory: status never waits for the database)."""
        fields = super().status_fields()
        conn = self.db.connection
        fields.update({
            "database": self.db.server,
            "database_connected": conn is not None and not conn.closed,
            "database_version": (self.db.db_version or "").split(",")[0],
            "timescaledb": self.db.timescaledb_version or ("off" if not self.db.timescaledb else "not installed"),
        })
        return fields

    def quit(self) -> None:
        """Close the database connection, then stop (``Goodbye!``)."""
        super().quit()
        self.db.close()

    def close(self) -> None:
        """Release socket and PID lock, and close the database connection (also when start fails)."""
        super().close()
        self.db.close()


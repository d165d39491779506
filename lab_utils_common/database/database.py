"""``Database``: lab-utils 0.5.4's PostgreSQL/TimescaleDB interface, made safe and fast.

The 0.5.4 API is kept (constructor and defaults, ``connect``, ``close``,
``config``, ``check_table``, ``check_column``, ``create_database``,
``create_timescale_db``, ``new_column``, ``new_entry``,
``create_aggregate_view``), with these differences:

- every name is checked and quoted, every value is a parameter;
- statements run in autocommit mode: ``new_entry`` is one round trip
  (0.5.4: BEGIN, INSERT, COMMIT), and is committed when it returns;
- a connection the server dropped (restart, idle timeout) is noticed before
  the next statement and re-established; a connection that breaks while a
  statement is in flight raises :class:`ConnectionLostError`. An insert thus
  either returns (stored) or raises; it is never dropped silently;
- additions: ``new_entries`` (COPY), ``list_columns``, ``fetch_latest``,
  ``fetch``, retention and compression policies, ``status``, and optional
  column creation on insert, ``new_entries_csv`` (COPY of CSV text).
"""

from __future__ import annotations

import csv
import datetime
import hmac
import io
import itertools
import os
import select
import socket
import threading
import time
from typing import Any, Callable, Iterable, Optional, Sequence, TypeVar, Union

import psycopg2
import psycopg2.errors
from psycopg2 import sql
from psycopg2.extensions import connection as PgConnection

from ..config import Option, load_section, non_negative_float, parse_bool, port_number, positive_int
from . import timescale
from .copy_stream import CopyStream
from .errors import (ColumnCountError, ConnectionLostError, DatabaseUnavailableError,
                     MissingColumnError, MissingTableError, NotConnectedError,
                     TimescaleDBUnavailableError)
from .identifiers import check_identifier, check_identifiers, quoted
from .logger import logger
from .types import NUMERIC_TYPE_NAMES, Constraint, DataType, constraints as check_constraints
from .types import data_type as check_data_type, data_type_of_text, data_type_of_value

__all__ = ["Database", "DATABASE_OPTIONS"]

T = TypeVar("T")
Row = tuple
Timestamp = Union[datetime.datetime, str]


#: ``[Overall]`` options of ``database.ini`` (environment: ``LABUTILS_DATABASE_<OPTION>``).
DATABASE_OPTIONS = (
    Option("host", str, "localhost", help="PostgreSQL host"),
    Option("port", port_number, 5432, help="PostgreSQL port"),
    Option("database", str, "beam", help="database name"),
    Option("user", str, "cw-beam", help="user name"),
    Option("passfile", str, "~/.pgpass", help="pgpass file with the password"),
    Option("password", str, "", secret=True,
           help="password; prefer LABUTILS_DATABASE_PASSWORD_FILE or the passfile"),
    Option("timescaledb", parse_bool, True,
           help="use TimescaleDB (hypertables, continuous aggregates); off = stock PostgreSQL"),
    Option("connect_timeout", positive_int, 10, help="seconds to wait for one connection attempt"),
    Option("reconnect_timeout", non_negative_float, 10.0,
           help="seconds an operation keeps trying to re-establish a lost connection"),
    Option("create_columns", parse_bool, False,
           help="inserts create missing columns, typed from the Python values"),
    Option("application_name", str, "lab-utils", help="name shown in pg_stat_activity"),
)

def _one_line(exc: BaseException) -> str:
    """libpq's multi-line message as one log line."""
    return "; ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())


def _without_empty_lines(text: str) -> str:
    """CSV text without its empty lines (outside quoted fields, which may hold any line)."""
    if "\n\n" not in text and "\n\r\n" not in text and not text.startswith(("\n", "\r\n")):
        return text  # the usual case: no copy of a many-MB text
    kept = []
    quoted = False
    for line in text.split("\n"):
        if quoted or line not in ("", "\r"):
            kept.append(line)
            quoted ^= line.count('"') % 2 == 1  # "" inside a quoted field counts twice
    return "\n".join(kept) + "\n"


class _Secret(str):
    """A password: a str for libpq, shown as ``<secret>`` in reprs, logs and tracebacks."""

    def __repr__(self) -> str:
        return "<secret>" if self else "''"


# Server error classes that mean "this connection is gone" (admin shutdown, crash, ...).
_CONNECTION_GONE_CODES = {"57P01", "57P02", "57P03", "08000", "08003", "08006"}


class Database:
    """A connection to a PostgreSQL (optionally TimescaleDB) database.

    Settings: built-in defaults (0.5.4's) < ``config_file`` section
    ``[Overall]`` < environment (``LABUTILS_DATABASE_HOST``...,
    ``LABUTILS_DATABASE_PASSWORD_FILE``) < constructor arguments.

    Example::

        from lab_utils_common.database import Database, DataType

        db = Database(config_file="database.ini")
        db.connect()
        db.create_timescale_db("beam")
        db.new_column("beam", "current", DataType.double)
        db.new_entry("beam", ["current"], [1.5e-3])
        db.new_entries("beam", ["time", "current"], [(t, 1e-3) for t in times])
        db.fetch("beam", ["current"], since="2024-01-01", bucket="1 minute")
        db.close()
    """

    host: str = "localhost"         #: The host name where the database is located
    port: int = 5432                #: Connection port
    database: str = "beam"          #: The database name to connect to
    user: str = "cw-beam"           #: User name
    passfile: str = "~/.pgpass"     #: Location of the pgpass file with the credentials
    timescaledb: bool = True        #: Use TimescaleDB features (off: stock PostgreSQL)
    connect_timeout: int = 10       #: Seconds for one connection attempt
    reconnect_timeout: float = 10.0  #: Seconds an operation retries a lost connection
    create_columns: bool = False    #: Inserts create missing columns by default
    application_name: str = "lab-utils"

    connection: Optional[PgConnection] = None  #: The psycopg2 connection, None when closed
    cursor: Any = None               #: A cursor of ``connection``
    db_version: str = ""             #: ``SELECT version()`` of the server
    timescaledb_version: Optional[str] = None  #: Extension version in this database, or None

    def __init__(self, config_file: Optional[str] = None, host: Optional[str] = None,
                 port: Optional[int] = None, database: Optional[str] = None,
                 user: Optional[str] = None, passfile: Optional[str] = None, *,
                 password: Optional[str] = None, timescaledb: Optional[bool] = None,
                 connect_timeout: Optional[int] = None, reconnect_timeout: Optional[float] = None,
                 create_columns: Optional[bool] = None) -> None:
        """Load the settings (file, environment, arguments); does not connect yet.

        Raises :class:`configparser.Error` (a ``ConfigError``) for a missing
        or invalid configuration file or value.
        """
        self._lock = threading.RLock()
        self._password = _Secret("")
        self._ever_connected = False
        self._closed_by_user = False
        self._insert_queries: dict[tuple, bytes] = {}
        self._overrides = dict(host=host, port=port, database=database, user=user,
                               passfile=passfile, password=password, timescaledb=timescaledb,
                               connect_timeout=connect_timeout, reconnect_timeout=reconnect_timeout,
                               create_columns=create_columns)
        self._load(config_file)

    # ------------------------------------------------------------------ configuration

    def _load(self, config_file: Optional[str]) -> None:
        values = load_section("Overall", DATABASE_OPTIONS, config_file, env_section="DATABASE",
                              overrides=self._overrides)
        self._password = _Secret(values.pop("password"))
        values["passfile"] = os.path.abspath(os.path.expanduser(values["passfile"]))
        for name, value in values.items():
            setattr(self, name, value)

    def config(self, config_file: str) -> None:
        """Load the ``[Overall]`` section of ``config_file`` (0.5.4 ``database.ini``).

        The environment and the constructor's arguments still take precedence.
        Raises :class:`configparser.Error` if the file is missing or invalid.
        """
        logger.info("Loading configuration file %s", os.path.abspath(os.path.expanduser(config_file)))
        self._load(config_file)

    def __repr__(self) -> str:
        return f"<Database {self.server} {'connected' if self.connection is not None else 'closed'}>"

    @property
    def server(self) -> str:
        """``user@host:port/database``, for messages (never the password)."""
        return f"{self.user}@{self.host}:{self.port}/{self.database}"

    def has_password(self, candidate: str) -> bool:
        """Whether the configured password is ``candidate`` (constant time), e.g. a known placeholder."""
        return hmac.compare_digest(self._password.encode("utf-8"), candidate.encode("utf-8"))

    # ------------------------------------------------------------------ connection

    def _open(self, dbname: Optional[str] = None) -> PgConnection:
        params: dict[str, Any] = dict(dbname=dbname or self.database, user=self.user, host=self.host,
                                      port=self.port, passfile=self.passfile,
                                      connect_timeout=self.connect_timeout,
                                      application_name=self.application_name,
                                      # a silently dead peer (cable, VM pause) is noticed in ~1 min
                                      keepalives=1, keepalives_idle=30, keepalives_interval=10,
                                      keepalives_count=3)
        if self._password:
            params["password"] = self._password
        try:
            conn = psycopg2.connect(**params)
        except psycopg2.OperationalError as exc:
            hint = ""
            if not self._password and not os.path.exists(self.passfile):
                hint = f" (no password set and passfile {self.passfile!r} does not exist)"
            raise DatabaseUnavailableError(
                f"cannot connect to PostgreSQL {self.user}@{self.host}:{self.port}/"
                f"{dbname or self.database}: {_one_line(exc)}{hint}") from exc
        conn.autocommit = True
        return conn

    def _attach(self, conn: PgConnection) -> None:
        self.connection = conn
        self.cursor = conn.cursor()
        self.cursor.execute("SELECT version(), (SELECT extversion FROM pg_extension "
                            "WHERE extname = 'timescaledb')")
        version, ts_version = self.cursor.fetchone()
        self.db_version = version
        self.timescaledb_version = ts_version

    def connect(self, print_version: bool = False, *, wait: float = 0.0,
                on_retry: Optional[Callable[[Exception, float], None]] = None) -> None:
        """Connect to the database; log the server version when ``print_version``.

        With ``wait`` > 0, keep trying for that many seconds (``math.inf``:
        forever) with an exponential back-off, logging each failure and calling
        ``on_retry(error, delay)`` before each pause. Raises
        :class:`DatabaseUnavailableError` (a ``psycopg2.OperationalError``).
        """
        with self._lock:
            logger.info("Connecting to database <%s> on host <%s> over port <%d> as user <%s>",
                        self.database, self.host, self.port, self.user)
            self._drop_connection()
            conn = self._open_with_retries(wait, on_retry)
            self._attach(conn)
            self._ever_connected = True
            self._closed_by_user = False
            if print_version:
                logger.info("Connection successful, database version: %s", self.db_version)
            else:
                logger.info("Connection successful")
                logger.debug("Database version: %s", self.db_version)

    def _open_with_retries(self, wait: float,
                           on_retry: Optional[Callable[[Exception, float], None]] = None) -> PgConnection:
        deadline = time.monotonic() + wait
        delay = 0.1
        while True:
            try:
                return self._open()
            except DatabaseUnavailableError as exc:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise
                pause = min(delay, remaining)
                logger.warning("%s; retrying in %.1f s", exc, pause)
                if on_retry is not None:
                    on_retry(exc, pause)
                time.sleep(pause)  # back-off between attempts, not a synchronisation
                delay = min(delay * 2, 5.0)

    def close(self) -> None:
        """Close the connection; operations raise :class:`NotConnectedError` until ``connect()``."""
        with self._lock:
            if self.connection is not None:
                logger.info("Closing connection to database <%s>", self.database)
            self._drop_connection()
            self._closed_by_user = True

    def _drop_connection(self) -> None:
        conn, self.connection, self.cursor = self.connection, None, None
        if conn is not None and not conn.closed:
            try:
                conn.close()
            except psycopg2.Error:  # already broken: nothing left to release
                pass

    def __enter__(self) -> "Database":
        if self.connection is None:
            self.connect()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._drop_connection()
        except Exception:  # interpreter shutdown: modules may be gone
            pass

    def _connection_is_stale(self) -> bool:
        conn = self.connection
        if conn is None or conn.closed:
            return True
        # An idle connection has nothing to read. If the server sent something unasked,
        # peek at it: end of stream, or an ErrorResponse ('E', always FATAL while idle:
        # "terminating connection due to administrator command" on a restart), means the
        # connection is dead. A notice or parameter status is harmless. psycopg2's own
        # poll() does not notice either on a synchronous connection.
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
        if not readable:
            return False
        try:
            with socket.socket(fileno=os.dup(conn.fileno())) as sock:
                head = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        except OSError:
            return True
        return head in (b"", b"E")

    def _ensure_connection(self) -> None:
        if self.connection is None and (self._closed_by_user or not self._ever_connected):
            raise NotConnectedError(
                f"not connected to {self.server}: call connect() first"
                + (" (the connection was closed with close())" if self._closed_by_user else ""))
        if self._connection_is_stale():
            logger.warning("Connection to %s was lost; reconnecting", self.server)
            self._drop_connection()
            try:
                conn = self._open_with_retries(self.reconnect_timeout)
            except DatabaseUnavailableError as exc:
                raise DatabaseUnavailableError(
                    f"{exc} (still failing after {self.reconnect_timeout} s of retries)") from exc
            self._attach(conn)
            logger.info("Reconnected to %s", self.server)

    def _is_connection_error(self, exc: psycopg2.Error) -> bool:
        conn = self.connection
        return (conn is None or bool(conn.closed) or isinstance(exc, psycopg2.InterfaceError)
                or getattr(exc, "pgcode", None) in _CONNECTION_GONE_CODES)

    def _run(self, what: str, action: Callable[[Any], T], *, retry: bool) -> T:
        """Run ``action(cursor)`` on a live connection.

        ``retry``: the action is safe to repeat (a read, an idempotent DDL); it
        is repeated once on a fresh connection if the connection broke under it.
        Otherwise a broken connection raises :class:`ConnectionLostError`.
        """
        with self._lock:
            self._ensure_connection()
            try:
                return action(self.cursor)
            except psycopg2.Error as exc:
                if not self._is_connection_error(exc):
                    raise
                self._drop_connection()
                if not retry:
                    raise ConnectionLostError(
                        f"connection to {self.server} lost during {what}: {_one_line(exc)}; "
                        f"it may or may not have been committed; the next call reconnects") from exc
            logger.warning("Connection to %s lost during %s; retrying once", self.server, what)
            self._ensure_connection()
            return action(self.cursor)

    # ------------------------------------------------------------------ checks

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

    # ------------------------------------------------------------------ TimescaleDB

    def _require_timescaledb(self, feature: str) -> None:
        """Make sure the extension is installed in this database, or raise a clear error."""
        if not self.timescaledb:
            raise TimescaleDBUnavailableError(
                f"{feature} needs TimescaleDB, but the configuration says timescaledb = off")
        if self.timescaledb_version:
            return

        def install(cur: Any) -> Optional[str]:
            cur.execute("SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'")
            if cur.fetchone() is None:
                return None
            cur.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
            return cur.fetchone()[0]

        version = self._run("installing the timescaledb extension", install, retry=True)
        if version is None:
            raise TimescaleDBUnavailableError(
                f"{feature} needs TimescaleDB, but the server {self.host}:{self.port} does not have "
                f"the timescaledb extension; install it, or set timescaledb = off in [Overall] "
                f"(LABUTILS_DATABASE_TIMESCALEDB=off) to use plain PostgreSQL tables")
        logger.info("Installed the timescaledb extension %s in database <%s>", version, self.database)
        self.timescaledb_version = version

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

    def create_timescale_db(self, table_name: str, default_now: bool = True, *,
                            if_not_exists: bool = False) -> bool:
        """Create table ``table_name`` with one column ``time TIMESTAMPTZ NOT NULL``, as a hypertable.

        ``default_now`` makes ``time`` default to ``NOW()``. With
        ``timescaledb = off`` it is a plain table indexed on ``time``.
        Returns False if the table existed and ``if_not_exists`` is set.
        """
        table = check_identifier(table_name, "table name")
        if not isinstance(default_now, bool):
            raise TypeError(f"default_now must be a bool, not {type(default_now).__name__} {default_now!r}")
        if self.timescaledb:
            self._require_timescaledb(f"create_timescale_db({table!r})")
        if if_not_exists and self.check_table(table):
            return False
        query = timescale.time_table(table, default_now, self.timescaledb)
        logger.info("Creating %s table <%s>", "TimescaleDB" if self.timescaledb else "time", table)
        self._run(f"create_timescale_db({table!r})", lambda cur: cur.execute(query), retry=False)
        self._forget_queries(table)
        return True

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
        return True

    # ------------------------------------------------------------------ inserts

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

    def _check_columns_exist(self, table: str, columns: Sequence[str]) -> None:
        existing = self.list_columns(table)
        missing = [c for c in check_identifiers(columns, "column name") if c not in existing]
        if missing:
            raise MissingColumnError(f"column(s) {missing} do not exist in table {table!r}; "
                                     f"existing columns: {list(existing)}")

    def _add_missing_columns(self, table: str, columns: Sequence[str],
                             rows: Sequence[Sequence[Any]]) -> list[str]:
        existing = self.list_columns(table)
        added = []
        for index, column in enumerate(check_identifiers(columns, "column name")):
            if column in existing:
                continue
            sample = next((row[index] for row in rows if row[index] is not None), None)
            if sample is None:
                raise TypeError(f"cannot create column {column!r} in table {table!r}: it has only "
                                f"None values, so its type is unknown; create it with new_column()")
            self.new_column(table, column, data_type_of_value(sample))
            added.append(column)
        return added

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

    # ------------------------------------------------------------------ read back

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
            not_numeric = [c for c in names if types[c] not in NUMERIC_TYPE_NAMES
                           and not types[c].startswith(("numeric", "double", "real"))]
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

    # ------------------------------------------------------------------ aggregates and policies

    def create_aggregate_view(self, table_name: str, index_name: str = "time",
                              recreate: bool = True) -> str:
        """Create ``<table>_1min``: the 1-minute average of every numeric column. Returns its name.

        With TimescaleDB a continuous aggregate refreshed every minute by a
        policy; with ``timescaledb = off`` a plain view (``date_bin``) giving
        the same rows. ``recreate`` drops an existing view of that name first.
        """
        table = check_identifier(table_name, "table name")
        index = check_identifier(index_name, "index column name")
        view = check_identifier(timescale.aggregate_view_name(table), "aggregate view name")
        use_timescale = bool(self.timescaledb)
        if use_timescale:
            self._require_timescaledb(f"create_aggregate_view({table!r})")
        self._require_table(table, "create an aggregate view")
        types = self.list_columns(table)
        if index not in types:
            raise MissingColumnError(f"index column {index!r} not found in table {table!r}")
        numeric = [c for c, t in types.items() if c != index and
                   (t in NUMERIC_TYPE_NAMES or t.startswith(("numeric", "double", "real")))]
        if not numeric:
            raise psycopg2.IntegrityError(f"cannot create an aggregate view of table {table!r}: "
                                          f"no numeric column in {types}")

        def create(cur: Any) -> None:
            if recreate:
                cur.execute(timescale.drop_aggregate_view(view, use_timescale))
            cur.execute(timescale.aggregate_view(table, view, index, numeric, use_timescale))
            if use_timescale:
                cur.execute(timescale.aggregate_refresh_policy(view))

        logger.info("Creating aggregate view <%s> of table <%s>", view, table)
        self._run(f"create_aggregate_view({table!r})", create, retry=False)
        return view

    def set_retention_policy(self, table_name: str, drop_after: Union[str, datetime.timedelta]) -> None:
        """Drop data older than ``drop_after`` (``"90 days"``), replacing any previous policy."""
        table = check_identifier(table_name, "table name")
        age = timescale.interval(drop_after, "drop_after")
        self._require_timescaledb(f"set_retention_policy({table!r})")
        self._require_table(table, "set a retention policy")
        query = timescale.retention_policy(table)
        self._run(f"set_retention_policy({table!r})", lambda cur: cur.execute(query, (age,)), retry=True)

    def remove_retention_policy(self, table_name: str) -> None:
        """Keep all data of ``table_name`` (no error if it had no policy)."""
        table = check_identifier(table_name, "table name")
        self._require_timescaledb(f"remove_retention_policy({table!r})")
        query = timescale.remove_retention_policy(table)
        self._run(f"remove_retention_policy({table!r})", lambda cur: cur.execute(query), retry=True)

    def set_compression_policy(self, table_name: str, compress_after: Union[str, datetime.timedelta],
                               segment_by: Optional[Sequence[str]] = None) -> None:
        """Compress chunks older than ``compress_after``, replacing any previous policy.

        ``segment_by``: columns whose values repeat (a sensor id) to compress by.
        """
        table = check_identifier(table_name, "table name")
        age = timescale.interval(compress_after, "compress_after")
        segments = check_identifiers(segment_by, "segment_by column name") if segment_by else None
        self._require_timescaledb(f"set_compression_policy({table!r})")
        self._require_table(table, "set a compression policy")
        query = timescale.compression_policy(table, segments)
        self._run(f"set_compression_policy({table!r})", lambda cur: cur.execute(query, (age,)),
                  retry=True)

    def remove_compression_policy(self, table_name: str) -> None:
        """Stop compressing new chunks of ``table_name`` (compressed chunks stay compressed)."""
        table = check_identifier(table_name, "table name")
        self._require_timescaledb(f"remove_compression_policy({table!r})")
        query = timescale.remove_compression_policy(table)
        self._run(f"remove_compression_policy({table!r})", lambda cur: cur.execute(query), retry=True)

    def policies(self, table_name: str) -> dict[str, dict]:
        """The TimescaleDB jobs of a table and its aggregate view, as ``{proc_name: config}``."""
        table = check_identifier(table_name, "table name")
        self._require_timescaledb(f"policies({table!r})")

        def action(cur: Any) -> dict[str, dict]:
            cur.execute("SELECT proc_name, config FROM timescaledb_information.jobs "
                        "WHERE hypertable_name IN (%s, %s) ORDER BY job_id",
                        (table, timescale.aggregate_view_name(table)))
            return {name: config for name, config in cur.fetchall()}

        return self._run(f"policies({table!r})", action, retry=True)

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        """Connection facts for health checks: server, connected, versions (no secrets)."""
        info: dict[str, Any] = {"server": self.server, "timescaledb_mode": bool(self.timescaledb)}
        try:
            def action(cur: Any) -> tuple:
                cur.execute("SELECT current_setting('server_version'), (SELECT extversion FROM "
                            "pg_extension WHERE extname = 'timescaledb')")
                return cur.fetchone()

            version, ts_version = self._run("status", action, retry=True)
            info.update(connected=True, server_version=version, timescaledb_version=ts_version)
        except psycopg2.Error as exc:
            info.update(connected=False, error=str(exc).strip())
        return info

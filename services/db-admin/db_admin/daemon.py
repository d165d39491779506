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
``create_database``, ``retention`` and ``aggregate_view`` (which may replace a
view) are admin commands (:attr:`DbAdmin.admin_commands`). With the Apache
edition of TimescaleDB, db-admin applies the retention schedule itself every
``retention_interval`` seconds (``drop_chunks``), logging each run.
"""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any, Callable, Optional

import psycopg2

from lab_utils_common.database import Constraint, Database, DataType
from lab_utils_common.database.identifiers import check_identifiers
from lab_utils_common.database.types import column_types
from lab_utils_common.socket_comm import MessageError, Server

from .bodies import ShortenLongLogArguments, detect_format, rows_to_csv

__all__ = ["DbAdmin", "DEV_DB_PASSWORD"]

#: Content of the committed secrets/db_password.dev, which compose uses when no password file is set.
DEV_DB_PASSWORD = "dev-only-change-me"
#: ``query`` without ``--limit`` returns at most this many rows (setting ``query_row_limit``).
QUERY_ROW_LIMIT = 100_000
#: Seconds between two runs of the Apache-edition retention and job checks (``retention_interval``).
RETENTION_INTERVAL = 3600.0


def _refusals_as_errors(handler: Callable[[DbAdmin], None]) -> Callable[[DbAdmin], None]:
    """Expected failures (bad names, values, database errors) become ``Error!`` replies.

    The server turns other exceptions into "Unknown exception! Check daemon
    log!"; these are not unknown: the client gets the reason, the log one line.
    """

    @functools.wraps(handler)
    def wrapper(self: DbAdmin) -> None:
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
    #: destructive commands: refused without a token (see Server.admin_commands)
    admin_commands = getattr(Server, "admin_commands", frozenset()) | {
        "retention", "create_database", "aggregate_view"}
    port = 1508
    pid_file_name = "/tmp/db-admin.pid"
    #: insert_many bodies are many MB (about 40 bytes per row of 3 numbers)
    max_message_size = 256 * 1024 * 1024
    receive_timeout = 120.0
    accepts_body = True  # insert_many's rows: the lines after the command, as self.body

    def __init__(self, config_file: Optional[str] = None, pid_file_name: Optional[str] = None,
                 host: Optional[str] = None, port: Optional[int] = None, *,
                 token_file: Optional[str] = None, database_config: Optional[str] = None,
                 database: Optional[Database] = None, query_row_limit: Optional[int] = None,
                 retention_interval: Optional[float] = None) -> None:
        """As :class:`Server`; ``database_config`` is a 0.5.x ``database.ini`` (or pass ``database``).

        ``query_row_limit``: most rows ``query`` returns (default 100000);
        ``retention_interval``: seconds between Apache-edition retention runs (default 3600).
        """
        self.db = database if database is not None else Database(config_file=database_config)
        self.query_row_limit = QUERY_ROW_LIMIT if query_row_limit is None else int(query_row_limit)
        self.retention_interval = (RETENTION_INTERVAL if retention_interval is None
                                   else float(retention_interval))
        if self.query_row_limit <= 0:
            raise ValueError(f"query_row_limit must be a positive number of rows, not {query_row_limit!r}")
        if not 0 < self.retention_interval < float("inf"):
            raise ValueError(f"retention_interval must be a positive number of seconds, "
                             f"not {retention_interval!r}")
        self._maintenance_stop = threading.Event()
        self._maintenance_thread: Optional[threading.Thread] = None
        self._jobs_logged: set[tuple] = set()
        #: the last maintenance run: retention results and failed jobs (status reads it, never the database)
        self.maintenance: dict[str, Any] = {}
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
                         self.db.db_version.split(",")[0], self._timescaledb_text())
        if self.db.timescaledb and self._maintenance_thread is None:
            self._maintenance_thread = threading.Thread(target=self._maintain, daemon=True,
                                                        name="db-admin-maintenance")
            self._maintenance_thread.start()

    def _timescaledb_text(self) -> str:
        if not self.db.timescaledb:
            return "off"
        if not self.db.timescaledb_version:
            return "not installed"
        return f"{self.db.timescaledb_version} ({self.db.timescaledb_edition} edition)"

    def _maintain(self) -> None:
        """Every ``retention_interval``: the Apache edition's retention, and the failed TimescaleDB jobs."""
        while not self._maintenance_stop.is_set():
            self.run_maintenance()
            self._maintenance_stop.wait(self.retention_interval)

    def run_maintenance(self) -> dict[str, Any]:
        """One maintenance run now (also the ``retention TABLE now`` command); returns its results."""
        done: dict[str, Any] = {}
        try:
            if self.db.timescaledb_edition == "apache":
                done["retention"] = self.db.run_retention()
            jobs = self.db.failed_jobs()
            done["failed_jobs"] = jobs
            for job in jobs:  # each failure logged once, not at every run
                key = (job["job_id"], job["finish_time"])
                if key in self._jobs_logged:
                    continue
                self._jobs_logged.add(key)
                # 0A000: a job the edition refuses (the Apache edition's own stats-retention job)
                level = logging.WARNING if job["sqlerrcode"] == "0A000" else logging.ERROR
                self.logger.log(level, "TimescaleDB job %s (%s) failed at %s: %s", job["job_id"],
                                job["proc_name"], job["finish_time"], job["err_message"])
        except Exception as exc:  # the database is away: the next run tries again
            done["error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
            self.logger.warning("Database maintenance failed: %s", done["error"])
        self.maintenance = done
        return done

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
        sp.add_argument("--limit", type=int,
                        help="at most this many rows (default and maximum: query_row_limit)")

        sp = self.add_command("aggregate_view", self.aggregate_view,
                              "creates TABLE_1min, 1-minute averages")
        sp.add_argument("table", help="table name")
        sp.add_argument("--index", default="time", help="time column (default: time)")
        sp.add_argument("--no-recreate", action="store_true", help="error if the view exists")

        sp = self.add_command("retention", self.retention, "drops data older than INTERVAL (TimescaleDB)")
        sp.add_argument("table", help="table name")
        sp.add_argument("interval", help="e.g. {90 days}, or off, or now (run the schedule now)")

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

    def _missing_types(self, table: str, columns: list[str], values: list[Any]) -> dict:
        existing = self.db.list_columns(table)
        names = check_identifiers(columns, "column name")
        missing = [i for i, name in enumerate(names) if name not in existing]
        return column_types([names[i] for i in missing], [[values[i] for i in missing]],
                            text_is_typed=True)

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
            # command words are text: "12" makes a BIGINT column, as in insert_many
            self.db.ensure_columns(ns.table, self._missing_types(ns.table, columns, values))
        self.db.new_entry(ns.table, columns, values)
        self.reply = f"1 row inserted into {ns.table.lower()}"

    @_refusals_as_errors
    def insert_many(self) -> None:
        """``insert_many TABLE`` + body: all rows in one COPY, all or none stored."""
        ns = self.namespace
        # the body is handed to COPY in place, chunk by chunk: never copied or parsed whole
        body = self.body
        if not body.strip():
            raise ValueError("insert_many needs rows on the lines after the command "
                             "(CSV with a header line, or JSON lines)")
        kind = ns.format or detect_format(body[:4096])
        if kind == "csv":
            count = self.db.new_entries_csv(ns.table, body, create_columns=ns.create_columns)
        else:
            count = self.db.new_entries_jsonl(ns.table, body, create_columns=ns.create_columns)
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
        if ns.limit is not None and ns.limit > self.query_row_limit:
            raise ValueError(f"--limit {ns.limit} is above this daemon's query_row_limit "
                             f"({self.query_row_limit} rows); narrow --since/--until instead")
        limit = ns.limit if ns.limit is not None else self.query_row_limit
        # one row more than asked: whether there were more rows than the reply holds
        rows = self.db.fetch(ns.table, wanted, since=ns.since, until=ns.until, bucket=ns.bucket,
                             limit=limit + 1)
        cut = len(rows) > limit
        del rows[limit:]
        reply = rows_to_csv(self._result_columns(ns.table, wanted), rows)
        if cut and ns.limit is None:
            last = rows[-1][0]
            last_time = last.isoformat() if hasattr(last, "isoformat") else last
            reply += (f"\n# cut at {limit} rows (query_row_limit): more rows follow; ask again with "
                      f"--since {last_time} (its rows come again) or narrow --since/--until")
        self.reply = reply

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
        table = ns.table.lower()
        word = ns.interval.strip().lower()
        if word == "off":
            self.db.remove_retention_policy(ns.table)
            self.reply = f"retention policy of {table} removed"
        elif word == "now":
            done = self.run_maintenance()
            if "error" in done:
                raise ValueError(f"retention run failed: {done['error']}")
            runs = [run for run in done.get("retention", []) if run["table"] == table]
            if not runs:
                self.reply = f"no retention scheduled by db-admin for {table}"
            elif runs[0]["error"]:
                raise ValueError(f"retention of {table} failed: {runs[0]['error']}")
            else:
                self.reply = f"retention of {table}: {runs[0]['dropped']} chunk(s) dropped"
        else:
            self.db.set_retention_policy(ns.table, ns.interval)
            self.reply = f"data of {table} older than {ns.interval} will be dropped"
            if self.db.timescaledb_edition == "apache":
                self.reply += (f" (by db-admin every {self.retention_interval:g} s: the Apache "
                               f"edition has no retention policies)")

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
            "timescaledb": self._timescaledb_text(),
            "timescaledb_edition": self.db.timescaledb_edition,
        })
        done = self.maintenance
        if "error" in done:
            fields["maintenance_error"] = done["error"]
        for run in done.get("retention", []):
            fields[f"retention_{run['table']}"] = (
                f"failed: {run['error']}" if run["error"] else f"{run['dropped']} chunk(s) dropped")
        jobs = done.get("failed_jobs", [])
        if self.db.timescaledb_version:
            fields["failed_jobs"] = len(jobs)
        for job in jobs:
            fields[f"failed_job_{job['job_id']}"] = (
                f"{job['proc_name']} failed at {job['finish_time']}: "
                f"{job['err_message'] or 'SQLSTATE ' + str(job['sqlerrcode'])}")
        return fields

    def quit(self) -> None:
        """Close the database connection, then stop (``Goodbye!``)."""
        super().quit()
        self.db.close()

    def close(self) -> None:
        """Release socket and PID lock, stop maintenance, close the database (also when start fails)."""
        super().close()
        self._maintenance_stop.set()
        thread = self._maintenance_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(30)
        self.db.close()


"""Connection room of ``Database``: connect with back-off, notice a dropped connection, run statements.

A connection the server dropped (restart, idle timeout) is noticed before the
next statement and re-established; a connection that breaks while a statement
is in flight raises :class:`ConnectionLostError`, so an insert either returns
(stored) or raises. At connect the server's version and the TimescaleDB
extension's version and edition (``timescaledb.license``) are read.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from typing import Any, Callable, Optional, TypeVar

import psycopg2
from psycopg2.extensions import connection as PgConnection

from .errors import ConnectionLostError, DatabaseUnavailableError, NotConnectedError
from .logger import logger

__all__ = ["ConnectionRoom", "one_line", "Secret"]

T = TypeVar("T")


def one_line(exc: BaseException) -> str:
    """libpq's multi-line message as one log line."""
    return "; ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())


class Secret(str):
    """A password: a str for libpq, shown as ``<secret>`` in reprs, logs and tracebacks."""

    def __repr__(self) -> str:
        return "<secret>" if self else "''"


# The server's version, TimescaleDB's in this database, and its edition (NULL when not loaded).
_FACTS = ("SELECT version(), (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'), "
          "current_setting('timescaledb.license', true)")

# Server error classes that mean "this connection is gone" (admin shutdown, crash, ...).
_CONNECTION_GONE_CODES = {"57P01", "57P02", "57P03", "08000", "08003", "08006"}


class ConnectionRoom:
    """The connection of a :class:`~lab_utils_common.database.Database` (a mixin of it)."""

    host: str
    port: int
    database: str
    user: str
    passfile: str
    connect_timeout: int
    reconnect_timeout: float
    application_name: str
    server: str
    _password: Secret
    _lock: threading.RLock
    _ever_connected: bool
    _closed_by_user: bool

    connection: Optional[PgConnection] = None  #: The psycopg2 connection, None when closed
    cursor: Any = None               #: A cursor of ``connection``
    db_version: str = ""             #: ``SELECT version()`` of the server
    timescaledb_version: Optional[str] = None  #: Extension version in this database, or None
    timescaledb_license: Optional[str] = None  #: ``timescaledb.license``: "apache", "timescale" or None

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
                f"{dbname or self.database}: {one_line(exc)}{hint}") from exc
        conn.autocommit = True
        return conn

    def _attach(self, conn: PgConnection) -> None:
        self.connection = conn
        self.cursor = conn.cursor()
        self.cursor.execute(_FACTS)
        self.db_version, self.timescaledb_version, self.timescaledb_license = self.cursor.fetchone()

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
            if self.timescaledb_version:
                logger.debug("TimescaleDB %s, %s license", self.timescaledb_version,
                             self.timescaledb_license)
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
            was_open = self.connection is not None
            if was_open:
                logger.info("Closing connection to database <%s>", self.database)
            self._drop_connection()
            self._closed_by_user = True
            if was_open:
                logger.info("Connection to database <%s> closed", self.database)

    def _drop_connection(self) -> None:
        conn, self.connection, self.cursor = self.connection, None, None
        if conn is not None and not conn.closed:
            try:
                conn.close()
            except psycopg2.Error:  # already broken: nothing left to release
                pass

    def __enter__(self) -> ConnectionRoom:
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
                        f"connection to {self.server} lost during {what}: {one_line(exc)}; "
                        f"it may or may not have been committed; the next call reconnects") from exc
            logger.warning("Connection to %s lost during %s; retrying once", self.server, what)
            self._ensure_connection()
            return action(self.cursor)

    def _run_in_transaction(self, what: str, action: Callable[[Any], T]) -> T:
        """``_run`` of ``action`` inside BEGIN ... COMMIT: all its statements take effect, or none."""

        def transaction(cur: Any) -> T:
            cur.execute("BEGIN")
            try:
                result = action(cur)
            except BaseException:
                if not cur.connection.closed:
                    try:
                        cur.execute("ROLLBACK")
                    except psycopg2.Error:  # the connection broke: the server rolls back itself
                        pass
                raise
            cur.execute("COMMIT")
            return result

        return self._run(what, transaction, retry=False)

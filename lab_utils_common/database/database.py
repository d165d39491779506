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
- every error is logged at ERROR on the application's logger before it is
  raised, as 0.5.4 does, with 0.5.4's INFO lines;
- additions: ``new_entries`` (COPY), ``new_entries_csv`` and
  ``new_entries_jsonl`` (text streamed to COPY), ``ensure_columns`` and
  optional column creation on insert (one transaction with the rows),
  ``list_columns``, ``fetch_latest``, ``fetch``, retention and compression,
  ``status``; TimescaleDB's edition (TSL or Apache) is read at connect and
  each feature does what that edition allows (docs/db-admin.md).

The work is done in rooms, one file each: ``_connection``, ``_schema``,
``_writes`` (with ``copy_stream`` and ``json_lines``), ``_reads`` and
``_timescale`` (with the SQL of ``timescale``); this module is the facade.
"""

from __future__ import annotations

import functools
import hmac
import logging
import os
import threading
from typing import Any, Callable, Optional

from ..config import Option, load_section, non_negative_float, parse_bool, port_number, positive_int
from ..custom_logging import getLogger
from ._connection import ConnectionRoom, Secret
from ._reads import ReadsRoom
from ._schema import SchemaRoom
from ._timescale import TimescaleRoom
from ._writes import WritesRoom
from .logger import logger

__all__ = ["Database", "DATABASE_OPTIONS"]


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
           help="use TimescaleDB (hypertables, aggregates, retention); off = stock PostgreSQL"),
    Option("connect_timeout", positive_int, 10, help="seconds to wait for one connection attempt"),
    Option("reconnect_timeout", non_negative_float, 10.0,
           help="seconds an operation keeps trying to re-establish a lost connection"),
    Option("create_columns", parse_bool, False,
           help="inserts create missing columns, typed from the Python values"),
    Option("application_name", str, "lab-utils", help="name shown in pg_stat_activity"),
    Option("copy_chunk_bytes", positive_int, 1 << 20,
           help="bytes of rows sent to COPY at a time (memory of a bulk insert: about twice this)"),
)

_logging_depth = threading.local()


def _log_error_from(method: Callable, message: str, *args: Any) -> None:
    """Log at ERROR as if from inside ``method``: 0.5.4 logs in the method itself, so the console's
    function column names it (``new_entry``), not this module's wrapper."""
    target = getLogger()
    if target.isEnabledFor(logging.ERROR):
        code = method.__code__
        target.handle(target.makeRecord(target.name, logging.ERROR, code.co_filename, code.co_firstlineno,
                                        message, args, None, func=method.__name__))


def _logs_errors(method: Callable) -> Callable:
    """Log an error at ERROR (``Type: message``) before it leaves ``Database``, as 0.5.4 does.

    Only the outermost public call logs, so an error is logged once.
    """

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        depth = getattr(_logging_depth, "value", 0)
        _logging_depth.value = depth + 1
        try:
            return method(*args, **kwargs)
        except Exception as exc:
            if depth == 0:
                _log_error_from(method, "%s: %s", type(exc).__name__, str(exc).strip())
            raise
        finally:
            _logging_depth.value = depth

    return wrapper


class Database(ConnectionRoom, SchemaRoom, WritesRoom, ReadsRoom, TimescaleRoom):
    """A connection to a PostgreSQL (optionally TimescaleDB) database.

    Settings: built-in defaults (0.5.4's) < ``config_file`` section
    ``[Overall]`` < environment (``LABUTILS_DATABASE_HOST``...,
    ``LABUTILS_DATABASE_PASSWORD_FILE``) < constructor arguments.
    The work is done in rooms (``_connection``, ``_schema``, ``_writes``,
    ``_reads``, ``_timescale``); this class is the 0.5.4 facade over them.

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
    copy_chunk_bytes: int = 1 << 20  #: Bytes of rows sent to COPY at a time

    def __init__(self, config_file: Optional[str] = None, host: Optional[str] = None,
                 port: Optional[int] = None, database: Optional[str] = None,
                 user: Optional[str] = None, passfile: Optional[str] = None, *,
                 password: Optional[str] = None, timescaledb: Optional[bool] = None,
                 connect_timeout: Optional[int] = None, reconnect_timeout: Optional[float] = None,
                 create_columns: Optional[bool] = None, copy_chunk_bytes: Optional[int] = None) -> None:
        """Load the settings (file, environment, arguments); does not connect yet.

        Raises :class:`configparser.Error` (a ``ConfigError``) for a missing
        or invalid configuration file or value.
        """
        self._lock = threading.RLock()
        self._password = Secret("")
        self._ever_connected = False
        self._closed_by_user = False
        self._insert_queries: dict[tuple, bytes] = {}
        self._retention_runs: dict[str, dict[str, Any]] = {}
        self._overrides = dict(host=host, port=port, database=database, user=user,
                               passfile=passfile, password=password, timescaledb=timescaledb,
                               connect_timeout=connect_timeout, reconnect_timeout=reconnect_timeout,
                               create_columns=create_columns, copy_chunk_bytes=copy_chunk_bytes)
        if config_file is None:
            self._load(None)
        else:
            self.config(config_file)  # as 0.5.4: through config(), with its INFO lines

    def _load(self, config_file: Optional[str]) -> None:
        values = load_section("Overall", DATABASE_OPTIONS, config_file, env_section="DATABASE",
                              overrides=self._overrides)
        self._password = Secret(values.pop("password"))
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
        logger.info("Configuration loaded")

    def __repr__(self) -> str:
        return f"<Database {self.server} {'connected' if self.connection is not None else 'closed'}>"

    @property
    def server(self) -> str:
        """``user@host:port/database``, for messages (never the password)."""
        return f"{self.user}@{self.host}:{self.port}/{self.database}"

    def has_password(self, candidate: str) -> bool:
        """Whether the configured password is ``candidate`` (constant time), e.g. a known placeholder."""
        return hmac.compare_digest(self._password.encode("utf-8"), candidate.encode("utf-8"))


# The 0.5.4 contract: every public operation logs its error at ERROR before raising it.
for _name, _member in list(vars(Database).items()) + [
        (name, member) for room in Database.__mro__[1:] for name, member in vars(room).items()]:
    if (callable(_member) and not _name.startswith("_") and not isinstance(_member, type)
            and _name not in ("server",) and not hasattr(Database.__dict__.get(_name), "__wrapped__")):
        setattr(Database, _name, _logs_errors(_member))
del _name, _member

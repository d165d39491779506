"""``db-admin``: wait for the database, then serve database commands until quit or SIGTERM.

Exit status: 0 stopped cleanly, 1 could not start (address in use, PID lock held),
2 bad configuration.
"""

from __future__ import annotations

import argparse
import configparser
import logging
import signal
import sys
from typing import Optional, Sequence

from lab_utils_common.config import Option, load_section, read_config_file
from lab_utils_common.socket_comm import PidLockError, TokenFileError

from .daemon import DbAdmin

__all__ = ["main", "admin_settings"]

EXIT_OK, EXIT_START_FAILED, EXIT_CONFIG = 0, 1, 2

#: Section of the --config file with db-admin's own options; env LABUTILS_DB_ADMIN_<OPTION>.
SECTION = "DbAdmin"
ENV_SECTION = "DB_ADMIN"


def admin_settings(config_file: Optional[str], overrides: Optional[dict] = None) -> dict:
    """``[DbAdmin]`` logging_config and database_config (the section may be absent)."""
    parser = read_config_file(config_file) if config_file else None
    if parser is not None and not parser.has_section(SECTION):
        parser = None
    return load_section(SECTION, [Option("logging_config", str, None),
                                  Option("database_config", str, None)],
                        parser=parser, env_section=ENV_SECTION, overrides=overrides)


def _configure_logging(logging_config: Optional[str]) -> None:
    from lab_utils_common.custom_logging import configure_logging
    handlers = configure_logging(logging_config, logger_name="db-admin")
    if handlers:  # drop records below every handler's threshold at the logger, cheaply
        logging.getLogger().setLevel(min(handler.level or logging.DEBUG for handler in handlers))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="db-admin",
        description="Database daemon: create databases, tables and columns, insert and query rows "
                    "of a PostgreSQL/TimescaleDB database. Talk to it with lab-utils-client.")
    parser.add_argument("--config", metavar="FILE",
                        help="server INI: [Overall] host, port, pid_file, token_file, "
                             "max_message_size...; [DbAdmin] logging_config, database_config")
    parser.add_argument("--database-config", metavar="FILE",
                        help="0.5.x database.ini: [Overall] host, port, database, user, passfile, "
                             "password, timescaledb...")
    parser.add_argument("--host", help="address to bind (default localhost; 0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, help="TCP port (default 1508)")
    parser.add_argument("--pid-file", metavar="FILE", help="PID lock file (default /tmp/db-admin.pid)")
    parser.add_argument("--logging-config", metavar="FILE", help="logging.ini for custom_logging")
    return parser


def _stop_waiting(signum: int, _frame: object) -> None:
    raise SystemExit(EXIT_OK)  # SIGTERM while waiting for the database: leave cleanly


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the daemon; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        settings = admin_settings(args.config, {"logging_config": args.logging_config,
                                                "database_config": args.database_config})
        _configure_logging(settings["logging_config"])
    except (configparser.Error, OSError) as exc:
        print(f"db-admin: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    logger = logging.getLogger("db-admin")
    try:
        admin = DbAdmin(config_file=args.config, pid_file_name=args.pid_file, host=args.host,
                        port=args.port, database_config=settings["database_config"])
    except (configparser.Error, TokenFileError) as exc:
        logger.error("%s", exc)
        print(f"db-admin: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except PidLockError as exc:
        print(f"db-admin: {exc}", file=sys.stderr)
        return EXIT_START_FAILED
    previous = signal.signal(signal.SIGTERM, _stop_waiting)
    try:
        admin.connect_database()  # logs every failed attempt and its reason, retries forever
    except (SystemExit, KeyboardInterrupt):
        logger.info("Stopped while waiting for the database")
        admin.close()
        return EXIT_OK
    finally:
        signal.signal(signal.SIGTERM, previous)
    try:
        admin.start_daemon()
    except OSError as exc:
        print(f"db-admin: {exc}", file=sys.stderr)
        return EXIT_START_FAILED
    finally:
        admin.db.close()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

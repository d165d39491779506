"""``db-admin``: wait for the database, then serve database commands until quit or SIGTERM.

Exit status: 0 stopped cleanly, 1 could not start (address in use, PID lock held),
2 bad configuration.
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence

from lab_utils_common.config import Option, positive_float, positive_int
from lab_utils_common.socket_comm import DaemonCommand

from .daemon import DbAdmin

__all__ = ["main", "COMMAND"]

#: ``[DbAdmin]`` of the --config file; environment LABUTILS_DB_ADMIN_<OPTION>.
COMMAND = DaemonCommand(
    DbAdmin, "db-admin",
    description="Database daemon: create databases, tables and columns, insert and query rows "
                "of a PostgreSQL/TimescaleDB database. Talk to it with lab-utils-client.",
    options=[Option("database_config", str, None,
                    help="0.5.x database.ini: [Overall] host, port, database, user, passfile, "
                         "password, timescaledb..."),
             Option("query_row_limit", positive_int, 100_000,
                    help="most rows one query returns (a cut reply says so in its last line)"),
             Option("retention_interval", positive_float, 3600.0,
                    help="seconds between retention runs of db-admin (TimescaleDB Apache edition)")],
    # Logs every failed attempt and its reason, retries until the database answers.
    prepare=DbAdmin.connect_database)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the daemon; returns the exit status."""
    return COMMAND.main(argv)


if __name__ == "__main__":
    sys.exit(main())

"""``socket-daemon``: run the lab command daemon until quit, SIGTERM or SIGINT.

Exit status: 0 stopped cleanly, 1 could not start (address in use, another
instance holds the PID lock), 2 bad configuration.
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence

from lab_utils_common.config import Option, byte_count
from lab_utils_common.socket_comm import DaemonCommand

from .daemon import SocketDaemon
from .values import ValueFileError

__all__ = ["main", "COMMAND"]

#: ``[SocketDaemon]`` of the --config file; environment LABUTILS_SOCKET_DAEMON_<OPTION>.
COMMAND = DaemonCommand(
    SocketDaemon, "socket-daemon",
    description="Lab command daemon (lab_utils_common.socket_comm.Server): named values, echo, "
                "log level, uptime, status. Talk to it with lab-utils-client.",
    options=[Option("values_file", str, None,
                    help="SQLite file keeping the named values (a JSON file of earlier versions is "
                         "migrated, the original kept as FILE.json-backup)"),
             Option("max_name_size", byte_count(1, 64 * 1024), SocketDaemon.max_name_size,
                    help="bytes of one value name"),
             Option("max_value_size", byte_count(1, 1024 ** 3), SocketDaemon.max_value_size,
                    help="bytes of one value"),
             Option("max_values_size", byte_count(1, 1024 ** 4), SocketDaemon.max_values_size,
                    help="bytes of every name and value together"),
             Option("max_values_reply", byte_count(1024, 1024 ** 3), SocketDaemon.max_values_reply,
                    help="bytes of one 'values' reply (larger listings: 'values --after')")],
    config_errors=(ValueFileError,))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the daemon; returns the exit status."""
    return COMMAND.main(argv)


if __name__ == "__main__":
    sys.exit(main())

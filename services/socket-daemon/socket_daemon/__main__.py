"""``socket-daemon``: run the lab command daemon until quit, SIGTERM or SIGINT.

Exit status: 0 stopped cleanly, 1 could not start (address in use, another
instance holds the PID lock), 2 bad configuration.
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence

from lab_utils_common.config import Option
from lab_utils_common.socket_comm import DaemonCommand

from .daemon import SocketDaemon
from .values import ValueFileError

__all__ = ["main", "COMMAND"]

#: ``[SocketDaemon]`` of the --config file; environment LABUTILS_SOCKET_DAEMON_<OPTION>.
COMMAND = DaemonCommand(
    SocketDaemon, "socket-daemon",
    description="Lab command daemon (lab_utils_common.socket_comm.Server): named values, echo, "
                "log level, uptime, status. Talk to it with lab-utils-client.",
    options=[Option("values_file", str, None, help="JSON file keeping the named values")],
    config_errors=(ValueFileError,))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the daemon; returns the exit status."""
    return COMMAND.main(argv)


if __name__ == "__main__":
    sys.exit(main())

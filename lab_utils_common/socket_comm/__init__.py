"""Server/client communication via TCP sockets, wire-compatible with lab-utils 0.5.x.

A lab daemon subclasses :class:`Server` and adds its commands; :class:`Client`
(or the ``lab-utils-client`` command) sends it a message and gets the reply.
:func:`run_daemon` (or :class:`DaemonCommand`) turns the subclass into a console
program. See :class:`Server` for an example and docs/socket-daemon.md for the protocol.
"""

from .auth_token import TokenFileError, read_token_file
from .client import Client
from .daemon_main import EXIT_CONFIG, EXIT_OK, EXIT_START_FAILED, DaemonCommand, run_daemon
from .lock import PidLockError
from .message import AUTH_PREFIX, ERROR_PREFIX, add_token, buffer_size, is_error_reply, split_message, take_token
from .parser import ArgumentParser, MessageError
from .server import Server

__all__ = [
    "Server",
    "Client",
    "ArgumentParser",
    "MessageError",
    "buffer_size",
    "PidLockError",
    "TokenFileError",
    "read_token_file",
    "split_message",
    "add_token",
    "take_token",
    "is_error_reply",
    "AUTH_PREFIX",
    "ERROR_PREFIX",
    "DaemonCommand",
    "run_daemon",
    "EXIT_OK",
    "EXIT_START_FAILED",
    "EXIT_CONFIG",
]

"""The socket-daemon: a :class:`~lab_utils_common.socket_comm.Server` with everyday lab commands.

Commands besides ``quit``, ``status`` and ``help``: ``echo``, ``set``, ``get``,
``unset``, ``values``, ``log_level`` and ``uptime``. It is also the worked
example of subclassing ``Server``.
"""

from __future__ import annotations

import datetime
import logging
import time
from typing import Optional

from lab_utils_common.config import log_level as parse_log_level
from lab_utils_common.custom_logging import set_handler_level
from lab_utils_common.socket_comm import MessageError, Server
from lab_utils_common.socket_comm.admin import alarm_level, existing_logger

from .values import ValueStore

__all__ = ["SocketDaemon"]


def _format_duration(seconds: float) -> str:
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days} d {hours:02d}:{minutes:02d}:{secs:02d}"


class SocketDaemon(Server):
    """Command daemon with named values, echo, log level change and uptime.

    Example::

        daemon = SocketDaemon(config_file="server.ini", values_file="/var/lib/values.json")
        daemon.start_daemon()      # then: lab-utils-client set {pump speed} 40
    """

    logger_name = "socket-daemon"
    pid_file_name = "/tmp/socket-daemon.pid"

    def __init__(self, config_file: Optional[str] = None, pid_file_name: Optional[str] = None,
                 host: Optional[str] = None, port: Optional[int] = None, *,
                 token_file: Optional[str] = None, values_file: Optional[str] = None) -> None:
        """As :class:`Server`, plus ``values_file`` (JSON) to keep named values across restarts."""
        self.values = ValueStore(values_file)
        self.started_wall = datetime.datetime.now(datetime.timezone.utc)
        super().__init__(config_file, pid_file_name, host, port, token_file=token_file)

    def create_parser(self) -> None:
        """The built-in commands plus echo, set, get, unset, values, log_level, uptime."""
        super().create_parser()
        self.parser.description = "socket-daemon: named values, echo, log level, uptime"
        self.add_command("echo", self.echo, "replies with the text it got") \
            .add_argument("text", nargs="*", help="any words")
        command = self.add_command("set", self.set_value, "sets a named value")
        command.add_argument("name", help="value name, in braces if it has spaces")
        command.add_argument("value", nargs="+", help="the value (words are joined by spaces)")
        self.add_command("get", self.get_value, "replies with a named value") \
            .add_argument("name", help="value name")
        self.add_command("unset", self.unset_value, "removes a named value") \
            .add_argument("name", help="value name")
        self.add_command("values", self.list_values, "lists every named value")
        command = self.add_command("log_level", self.change_log_level, "changes the log level of a logger")
        command.add_argument("level", help="DEBUG, INFO, SUCCESS, WARNING, ERROR or CRITICAL")
        command.add_argument("--logger", default="", help="logger name (default: root, and the console)")
        self.add_command("uptime", self.uptime, "time since the daemon started")

    def echo(self) -> None:
        """``echo WORDS...``: reply with the words."""
        self.reply = " ".join(self.namespace.text)

    def set_value(self) -> None:
        """``set NAME VALUE``: store a value (saved to values_file when configured)."""
        name, value = self.namespace.name, " ".join(self.namespace.value)
        if not name:
            raise MessageError("the value name is empty")
        self.values.set(name, value)
        self.logger.info("Value %r set to %r", name, value)
        self.reply = f"{name} = {value}"

    def get_value(self) -> None:
        """``get NAME``: reply with the value alone (handy in scripts)."""
        try:
            self.reply = self.values.get(self.namespace.name)
        except KeyError as exc:
            raise MessageError(exc.args[0]) from None

    def unset_value(self) -> None:
        """``unset NAME``: remove a value."""
        try:
            self.values.unset(self.namespace.name)
        except KeyError as exc:
            raise MessageError(exc.args[0]) from None
        self.reply = f"unset {self.namespace.name}"

    def list_values(self) -> None:
        """``values``: one ``name = value`` line per value."""
        self.reply = "\n".join(f"{name} = {value}" for name, value in self.values.items()) or "(no values)"

    def change_log_level(self) -> None:
        """``log_level LEVEL [--logger NAME]``: set a logger's level (root: the console's)."""
        try:
            level = parse_log_level(self.namespace.level)
        except ValueError as exc:
            raise MessageError(str(exc)) from None
        name = self.namespace.logger or None
        # An unknown name is refused: logging keeps every logger it ever created (a leak per name).
        if name is not None and existing_logger(name) is None:
            raise MessageError(f"no logger named {name!r} in this daemon")
        # Root: the console handler changes and the root logger follows the lowest handler level;
        # file and alarm handlers keep their thresholds (an alarm relay flooded with DEBUG records
        # would drown the real alarms). Without configure_logging's console: the root logger.
        if name is not None or not set_handler_level(level, "console"):
            if level > alarm_level():  # would silence alarms: only with a token
                self.require_admin(f"'log_level {logging.getLevelName(level)} --logger {name or 'root'}'")
            existing_logger(name).setLevel(level)
        label = name or "root"
        self.logger.info("Log level of %r set to %s", label, logging.getLevelName(level))
        self.reply = f"log level of {label!r} set to {logging.getLevelName(level)}"

    def uptime(self) -> None:
        """``uptime``: time since start and the start time (UTC)."""
        seconds = time.monotonic() - self.started_at if self.started_at is not None else 0.0
        self.reply = (f"up {_format_duration(seconds)} since "
                      f"{self.started_wall.strftime('%Y-%m-%d %H:%M:%S')} UTC")

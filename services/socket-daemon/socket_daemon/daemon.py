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

from .values import ValueFileError, ValueLimitError, ValueLimits, ValueStore

__all__ = ["SocketDaemon"]


def _shown(text: str, limit: int = 200) -> str:
    # A log line names a value, it does not copy 64 KiB of it (a client could flood the log).
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text.encode())} bytes)"


def _braced(name: str) -> str:
    return f"{{{name}}}" if " " in name or not name else name


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
    max_name_size: int = ValueLimits.max_name_size      #: Bytes of one value name.
    max_value_size: int = ValueLimits.max_value_size    #: Bytes of one value.
    max_values_size: int = ValueLimits.max_values_size  #: Bytes of every name and value together.
    max_values_reply: int = 1024 * 1024                 #: Bytes of one ``values`` reply (a page).

    def __init__(self, config_file: Optional[str] = None, pid_file_name: Optional[str] = None,
                 host: Optional[str] = None, port: Optional[int] = None, *,
                 token_file: Optional[str] = None, values_file: Optional[str] = None,
                 max_name_size: Optional[int] = None, max_value_size: Optional[int] = None,
                 max_values_size: Optional[int] = None, max_values_reply: Optional[int] = None) -> None:
        """As :class:`Server`, plus ``values_file`` (SQLite; a JSON file of earlier versions is
        migrated) to keep named values across restarts, and their byte limits."""
        for name, value in (("max_name_size", max_name_size), ("max_value_size", max_value_size),
                            ("max_values_size", max_values_size), ("max_values_reply", max_values_reply)):
            if value is not None:
                setattr(self, name, value)
        self.started_wall = datetime.datetime.now(datetime.UTC)
        super().__init__(config_file, pid_file_name, host, port, token_file=token_file)
        # Opened (and a JSON file migrated) only once this instance holds the PID lock.
        try:
            self.values = ValueStore(values_file, ValueLimits(self.max_name_size, self.max_value_size,
                                                              self.max_values_size))
        except BaseException:
            super().close()
            raise

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
        self.add_command("values", self.list_values, "lists every named value (one page with --after)") \
            .add_argument("--after", nargs="?", const="", metavar="NAME",
                          help="page: the values after NAME (first page: no NAME), up to "
                               "max_values_reply bytes; a last line '(more: ...)' gives the next command")
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
        try:
            self.values.set(name, value)
        except (ValueLimitError, ValueFileError) as exc:
            raise MessageError(f"value {_shown(name, 80)} not set: {exc}") from None
        self.logger.info("Value %s set to %s", _shown(name, 80), _shown(value))
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
        except ValueFileError as exc:
            raise MessageError(f"value {_shown(self.namespace.name, 80)} not unset: {exc}") from None
        self.reply = f"unset {self.namespace.name}"

    def list_values(self) -> None:
        """``values [--after [NAME]]``: one ``name = value`` line per value, at most max_values_reply bytes."""
        after = self.namespace.after
        if after is None:
            size = self.values.listing_size()
            if size > self.max_values_reply:
                raise MessageError(
                    f"the {len(self.values)} values take {size} bytes, more than one reply may hold: "
                    f"{self.max_values_reply} bytes (max_values_reply); list them in pages with "
                    f"'values --after' (then 'values --after NAME'), or read one with 'get NAME'")
        page = self.values.page(after or None, self.max_values_reply)
        lines = [f"{name} = {value}" for name, value in page.items]
        if page.more:
            lines.append(f"(more: values --after {_braced(page.items[-1][0])})")
        self.reply = "\n".join(lines) or "(no values)"

    def change_log_level(self) -> None:
        """``log_level LEVEL [--logger NAME]``: set a logger's level (root: the console's).

        Only loggers that exist (a name per message must not create a logger each), and a level
        above INFO on a logger (which could keep alarm records from the relay and mail) only when
        the daemon has a token or runs with ``allow_unauthenticated_admin``.
        """
        try:
            level = parse_log_level(self.namespace.level)
        except ValueError as exc:
            raise MessageError(str(exc)) from None
        name = self.namespace.logger or None
        if name == "root":
            name = None  # logging.getLogger("root") is the root logger too: the console's level
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

    def close(self) -> None:
        """As :meth:`Server.close`, then close the values file (SQLite folds its log into it)."""
        super().close()
        if getattr(self, "values", None) is not None:
            self.values.close()

"""Formatters: coloured console text, JSON lines, and the one-line alarm record."""

from __future__ import annotations

import copy
import json
import logging
import os
from typing import IO, Any, Mapping, Optional, Sequence

from lab_utils_common.alarm_wire import ALARM_DATEFMT, ALARM_FORMAT, escape_message

__all__ = [
    "CONSOLE_FORMAT",
    "COLOURED_CONSOLE_FORMAT",
    "DATEFMT",
    "ColoredFormatter",
    "JsonLinesFormatter",
    "AlarmFormatter",
    "colour_allowed",
    "LEGACY_MODULES",
    "legacy_module",
]

#: 0.5.4's console formats and date format.
COLOURED_CONSOLE_FORMAT = "%(asctime)s  %(name)-20s %(module)-30s %(funcName)-25s %(message)s"
CONSOLE_FORMAT = "%(levelname)-9s %(asctime)s  %(name)-20s %(module)-20s %(funcName)-20s %(message)s"
DATEFMT = "%Y-%m-%d %H:%M:%S"

#: The packages that were one module each in 0.5.4: their records show that module's name.
LEGACY_MODULES = ("socket_comm", "database", "custom_logging")

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def legacy_module(record: logging.LogRecord) -> str:
    """The module name 0.5.4 printed for ``record``: ``socket_comm`` for any file of that package.

    0.5.4's ``socket_comm``, ``database`` and ``custom_logging`` were single files; here they
    are packages, so a record's own ``module`` would be ``server`` or ``connection``. Operators'
    greps and alarm rules match the 0.5.4 names. Records from elsewhere keep their module.
    """
    path = record.pathname or ""
    if path.startswith(_PACKAGE_DIR):
        package = path[len(_PACKAGE_DIR):].split(os.sep, 1)[0]
        if package in LEGACY_MODULES:
            return package
    return record.module


def colour_allowed(stream: IO[Any], environ: Optional[Mapping[str, str]] = None) -> bool:
    """True when ``stream`` is a terminal and ``NO_COLOR`` is not set (https://no-color.org)."""
    environ = os.environ if environ is None else environ
    if environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (ValueError, OSError):  # a closed or detached stream
        return False


class ColoredFormatter(logging.Formatter):
    """Console formatter that prepends the level name in colour, padded to 9 columns (0.5.4).

    The level name stays plain while ``NO_COLOR`` is set, and when ``stream``
    (the handler's stream, if given) is not a terminal; the columns stay 0.5.4's.

    Example::

        handler = logging.StreamHandler()
        handler.setFormatter(ColoredFormatter(COLOURED_CONSOLE_FORMAT, DATEFMT, stream=handler.stream))
    """

    colours = {
        "black": 30, "red": 31, "green": 32, "yellow": 33, "blue": 34, "magenta": 35,
        "cyan": 36, "white": 37, "bgred": 41, "bggrey": 100,
    }  #: Terminal colour codes.
    colour_map = {
        "INFO": "cyan", "WARNING": "yellow", "ERROR": "red", "CRITICAL": "bgred",
        "EXCEPTION": "bgred", "DEBUG": "bggrey", "SUCCESS": "green",
    }  #: Level name to colour name.
    prefix = "\033["  #: Starts a terminal colour sequence.
    suffix = "\033[0m"  #: Resets the terminal colour.

    def __init__(self, fmt: Optional[str] = None, datefmt: Optional[str] = None, style: str = "%",
                 validate: bool = True, *, stream: Optional[IO[Any]] = None,
                 colour: Optional[bool] = None, **kwargs: Any) -> None:
        super().__init__(fmt, datefmt, style, validate, **kwargs)
        self.stream = stream
        self.colour = colour  # None: decided per record from NO_COLOR and the stream

    def format(self, record: logging.LogRecord) -> str:
        """The parent's text, after the (coloured) level name padded to 9 columns."""
        message = super().format(record)
        padding = "".ljust(9 - len(record.levelname))
        if self.colour is False or (self.colour is None and (
                os.environ.get("NO_COLOR") or (self.stream is not None and not colour_allowed(self.stream)))):
            return record.levelname + padding + message
        colour = self.colour_map.get(record.levelname, "white")
        code = self.colours.get(colour, self.colours["white"])
        header = f"{self.prefix}{code}m{record.levelname}{self.suffix}"
        return header + "".ljust(9 - len(record.levelname)) + message


# The attributes every LogRecord has; anything else came from ``extra=`` and goes into JSON.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "taskName"}


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per record and line, for container logs and the daily files.

    The keys are 0.5.4's file format (python-json-logger with ``asctime levelname
    name module funcName message``), plus ``exc_info`` / ``stack_info`` when
    present and any ``extra=`` fields.

    Example::

        handler.setFormatter(JsonLinesFormatter())
        # {"asctime": "2024-05-01 10:00:00", "levelname": "ERROR", "name": "pump", ...}
    """

    default_fields = ("asctime", "levelname", "name", "module", "funcName", "message")

    def __init__(self, fields: Sequence[str] = default_fields, datefmt: Optional[str] = DATEFMT,
                 *, include_extra: bool = True) -> None:
        super().__init__(datefmt=datefmt)
        self.fields = tuple(fields)
        self.include_extra = include_extra

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON (newlines inside values are escaped by JSON)."""
        record.message = record.getMessage()
        record.asctime = self.formatTime(record, self.datefmt)
        document: dict[str, Any] = {}
        for name in self.fields:
            document[name] = getattr(record, name, None)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            document["exc_info"] = record.exc_text
        if record.stack_info:
            document["stack_info"] = self.formatStack(record.stack_info)
        if self.include_extra:
            for key, value in vars(record).items():
                if key not in _RECORD_ATTRIBUTES and key not in document and not key.startswith("_"):
                    document[key] = value
        return json.dumps(document, ensure_ascii=False, default=str)


class AlarmFormatter(logging.Formatter):
    """The alarm line of lab-utils 0.5.x, kept to one line.

    Formats with :data:`~lab_utils_common.alarm_wire.ALARM_FORMAT`; the message,
    with any traceback appended to it, is escaped with
    :func:`~lab_utils_common.alarm_wire.escape_message`, so a record is one line
    that 0.5.x receivers still split into the same fields.

    Example::

        AlarmFormatter().format(record)
        # '{pump} --date {2024-05-01 10:00:00} --level {ERROR} --app {pump} ... --message {a\\nb}'
    """

    def __init__(self, fmt: str = ALARM_FORMAT, datefmt: str = ALARM_DATEFMT) -> None:
        super().__init__(fmt, datefmt)

    def format(self, record: logging.LogRecord) -> str:
        """One line, no terminator; the traceback goes into the escaped message field."""
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            message = f"{message}\n{record.exc_text}"
        if record.stack_info:
            message = f"{message}\n{self.formatStack(record.stack_info)}"
        view = copy.copy(record)
        view.message = escape_message(message)
        if self.usesTime():
            view.asctime = self.formatTime(view, self.datefmt)
        line = self.formatMessage(view)
        # Other fields (a logger or function name) are not expected to hold line breaks,
        # but one line per record is the contract.
        return line.replace("\r", " ").replace("\n", " ")

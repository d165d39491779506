"""configure_logging: the 0.5.x ``logging.ini`` sections turned into handlers behind a queue."""

from __future__ import annotations

import atexit
import configparser
import copy
import logging
import logging.handlers
import os
import queue
import sys
import threading
import time
from typing import Any, Callable, Iterable, Mapping, Optional, Union

from lab_utils_common.config import (
    ConfigError,
    MissingOptionError,
    Option,
    load_section,
    log_level as parse_log_level,
    parse_bool,
    port_number,
    positive_int,
    read_config_file,
)
from lab_utils_common.custom_logging.file_handler import CustomTimedRotatingFileHandler
from lab_utils_common.custom_logging.formatters import (
    COLOURED_CONSOLE_FORMAT,
    CONSOLE_FORMAT,
    DATEFMT,
    ColoredFormatter,
    JsonLinesFormatter,
    colour_allowed,
    legacy_module,
)
from lab_utils_common.custom_logging.levels import SUCCESS, getLogger, set_app_name
from lab_utils_common.custom_logging.slack_handler import SlackWebhookHandler
from lab_utils_common.custom_logging.smtp_handler import TlsSMTPHandler
from lab_utils_common.custom_logging.socket_handler import NonPickledSocketHandler
from lab_utils_common.mail import MailSettings

__all__ = ["configure_logging", "unconfigure_logging", "set_handler_level", "HANDLER_NAMES",
           "FILE_FORMAT", "MAIL_FORMAT"]

#: 0.5.4's format of mails and of text log files.
MAIL_FORMAT = "%(asctime)s %(levelname)s %(name)s %(module)s %(funcName)s %(message)s"
FILE_FORMAT = MAIL_FORMAT

#: The ``name`` configure_logging gives each handler it builds, one per ``logging.ini`` section.
HANDLER_NAMES = ("console", "file", "alarm", "slack", "mail")

_lock = threading.Lock()
_active: dict[str, Any] = {}
_atexit_registered = False


def _choice(*allowed: str) -> Callable[[str], str]:
    def convert(text: str) -> str:
        value = str(text).strip().lower()
        if value not in allowed:
            raise ValueError(f"{text!r} is not one of: {', '.join(allowed)}")
        return value
    return convert


def _alarm_port(text: str) -> int:
    """0.5.x wrote ``port = default`` for logging's DEFAULT_TCP_LOGGING_PORT (9020)."""
    if str(text).strip().lower() == "default":
        return logging.handlers.DEFAULT_TCP_LOGGING_PORT
    return port_number(text)


def _days_to_keep(text: str) -> Optional[int]:
    if str(text).strip().lower() in ("", "0", "none", "all"):
        return None
    return positive_int(text)


class _QueueHandler(logging.handlers.QueueHandler):
    """Hands records to the listener thread with the message merged and the traceback as text.

    The standard ``prepare`` formats the traceback into the message itself; keeping it in
    ``exc_text`` lets the JSON and alarm formatters put it where it belongs.
    """

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        prepared = copy.copy(record)
        prepared.module = legacy_module(record)  # 0.5.4's module names in every handler's output
        prepared.message = record.getMessage()
        prepared.msg = prepared.message
        prepared.args = None
        if record.exc_info:
            prepared.exc_text = record.exc_text or logging.Formatter().formatException(record.exc_info)
            prepared.exc_info = None
        return prepared


def _console_handler(values: Mapping[str, Any], environ: Mapping[str, str]) -> logging.Handler:
    stream = sys.stdout if values["stream"] == "stdout" else sys.stderr
    handler = logging.StreamHandler(stream)
    if values["format"] == "json":
        handler.setFormatter(JsonLinesFormatter())
    elif values["use_coloured_output"]:
        # 0.5.4's columns whether or not the stream takes colour (ColoredFormatter leaves it out)
        handler.setFormatter(ColoredFormatter(COLOURED_CONSOLE_FORMAT, DATEFMT, stream=stream,
                                              colour=colour_allowed(stream, environ)))
    else:
        handler.setFormatter(logging.Formatter(CONSOLE_FORMAT, DATEFMT))
    return handler


#: Handlers that wait for a remote server (up to their timeout per record while it is down). Each
#: gets a thread of its own, so console, file and alarm lines never queue up behind a mail.
_SLOW_HANDLERS = ("slack", "mail")

#: How long unconfigure_logging (at exit) lets a slow handler deliver what it still holds.
_SLOW_HANDLER_EXIT_WAIT = 15.0


#: Records a slow handler may hold waiting (``queue_size`` of its section).
_SLOW_QUEUE_SIZE = 1000


class _Forwarder(logging.handlers.QueueHandler):
    """Passes records from the main listener to a slow handler's own bounded queue.

    When the queue is full the record is dropped and counted in :attr:`dropped`; once there
    is room again, one WARNING record saying how many goes to the handler in their place.
    """

    def __init__(self, own: queue.Queue, handler: logging.Handler, queue_size: int) -> None:
        super().__init__(own)
        self.target = handler
        self.queue_size = queue_size
        self.dropped = 0
        self.unreported = 0

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return copy.copy(record)  # the main listener's formatters keep using the original

    def enqueue(self, record: logging.LogRecord) -> None:
        # Only the main listener's thread puts records here: qsize() is exact for it.
        if self.unreported and self.queue.qsize() < self.queue_size:
            report = logging.LogRecord(
                record.name, logging.WARNING, __file__, 0,
                "%d record(s) for the %s handler dropped: its queue (queue_size=%d) was full "
                "while it waited for its server", (self.unreported, self.target.name,
                                                   self.queue_size), None, func="configure_logging")
            report.dropped_records = self.unreported
            self.queue.put_nowait(report)
            self.unreported = 0
        if self.queue.qsize() >= self.queue_size:
            self.dropped += 1
            self.unreported += 1
            return
        self.queue.put_nowait(record)


def _start_listeners(records: queue.SimpleQueue,
                     handlers: list[logging.Handler]) -> list[logging.handlers.QueueListener]:
    """The main listener (first) and one per slow handler; all started."""
    listeners = []
    targets: list[logging.Handler] = []
    for handler in handlers:
        if handler.name in _SLOW_HANDLERS:
            size = getattr(handler, "queue_size", _SLOW_QUEUE_SIZE)
            own: queue.Queue = queue.Queue(size + 2)  # + a drop report and the stop sentinel
            listeners.append(logging.handlers.QueueListener(own, handler, respect_handler_level=True))
            targets.append(_Forwarder(own, handler, size))
        else:
            targets.append(handler)
    listeners.insert(0, logging.handlers.QueueListener(records, *targets, respect_handler_level=True))
    for listener in listeners:
        listener.start()
    return listeners


def _stop_listeners(listeners: list[logging.handlers.QueueListener]) -> None:
    """Deliver what is queued: the main listener fully, slow handlers within _SLOW_HANDLER_EXIT_WAIT;
    say once, on stderr, exactly how many records a slow handler dropped or gave up."""
    if not listeners:
        return
    forwarders = {id(handler.queue): handler for handler in listeners[0].handlers
                  if isinstance(handler, _Forwarder)}
    listeners[0].stop()
    deadline = time.monotonic() + _SLOW_HANDLER_EXIT_WAIT
    for listener in listeners[1:]:
        thread = listener._thread  # noqa: SLF001 - QueueListener.stop() has no timeout
        if thread is None:
            continue
        listener.enqueue_sentinel()
        thread.join(max(0.0, deadline - time.monotonic()))
        forwarder = forwarders.get(id(listener.queue))
        given_up = 0
        dropped = forwarder.unreported if forwarder is not None else 0
        if thread.is_alive():
            while True:  # what the handler will never send: counted, then let go
                try:
                    item = listener.queue.get_nowait()
                except queue.Empty:
                    break
                if item is listener._sentinel:  # noqa: SLF001
                    listener.queue.put_nowait(item)
                    break
                report = getattr(item, "dropped_records", None)
                if report is not None:
                    dropped += report  # a drop report that never went out
                else:
                    given_up += 1
        if given_up or dropped:
            print(f"lab_utils_common: {listener.handlers[0]!r}: {given_up} queued record(s) given "
                  f"up at exit after {_SLOW_HANDLER_EXIT_WAIT:g} s"
                  + (f", {dropped} more dropped earlier (queue_size full) and not yet reported"
                     if dropped else ""), file=sys.stderr)
        listener._thread = None  # noqa: SLF001 - a daemon thread: it does not hold up the exit


#: The ``logging.ini`` section of each handler name.
_SECTIONS = {"ConsoleLogger": "console", "FileLogger": "file", "AlarmLogger": "alarm",
             "SlackLogger": "slack", "MailHandler": "mail"}


def _build_handlers(config_file: Optional[str], environ: Mapping[str, str],
                    handlers: list[logging.Handler], only: Optional[frozenset[str]] = None) -> None:
    """Append the configured handlers to ``handlers`` (the caller closes them on error)."""
    parser: Optional[configparser.ConfigParser] = read_config_file(config_file) if config_file else None

    def section(name: str, options: list[Option]) -> dict[str, Any]:
        # A 0.5.x file may leave out the sections it does not use: then only the
        # defaults and the environment count.
        if parser is not None and parser.has_section(name):
            return load_section(name, options, config_file, parser=parser, environ=environ)
        return load_section(name, options, environ=environ)

    def active(name: str, default: bool) -> bool:
        if only is not None and _SECTIONS[name] not in only:
            return False  # not wanted: its section is not even read
        return section(name, [Option("active", parse_bool, default)])["active"]

    if active("ConsoleLogger", True):
        values = section("ConsoleLogger", [
            Option("active", parse_bool, True),
            Option("use_coloured_output", parse_bool, True),
            Option("log_level", parse_log_level, logging.INFO),
            Option("format", _choice("text", "json"), "text"),
            Option("stream", _choice("stdout", "stderr"), "stdout"),
        ])
        handler = _console_handler(values, environ)
        handler.set_name("console")
        handler.setLevel(values["log_level"])
        handlers.append(handler)

    if active("FileLogger", False):
        values = section("FileLogger", [
            Option("active", parse_bool, False),
            Option("log_level", parse_log_level, logging.INFO),
            Option("log_path", str),
            Option("log_basename", str),
            Option("log_extension", str, ".log"),
            Option("days_to_keep", _days_to_keep, None),
            Option("format", _choice("json", "text"), "json"),
        ])
        file_handler = CustomTimedRotatingFileHandler(
            values["log_path"], values["log_basename"], values["log_extension"],
            days_to_keep=values["days_to_keep"])
        file_handler.set_name("file")
        file_handler.setLevel(values["log_level"])
        file_handler.setFormatter(JsonLinesFormatter() if values["format"] == "json"
                                  else logging.Formatter(FILE_FORMAT, DATEFMT))
        handlers.append(file_handler)

    if active("AlarmLogger", False):
        values = section("AlarmLogger", [
            Option("active", parse_bool, False),
            Option("host", str, "localhost"),
            Option("port", _alarm_port, logging.handlers.DEFAULT_TCP_LOGGING_PORT),
            Option("log_level", parse_log_level, logging.WARNING),
            Option("queue_size", positive_int, 10_000),
        ])
        alarm_handler = NonPickledSocketHandler(values["host"], values["port"],
                                                queue_size=values["queue_size"])
        alarm_handler.set_name("alarm")
        alarm_handler.setLevel(values["log_level"])
        handlers.append(alarm_handler)

    if active("SlackLogger", False):
        values = section("SlackLogger", [
            Option("active", parse_bool, False),
            # 0.5.x's api_file now holds the webhook URL; webhook_url_file and webhook_url
            # are the names log-relay reads from the same section.
            Option("api_file", str, None),
            Option("webhook_url_file", str, None),
            Option("webhook_url", str, None, secret=True),
            Option("log_level", parse_log_level, SUCCESS),
            Option("channel", str, None),
            Option("user", str, None),
            Option("queue_size", positive_int, _SLOW_QUEUE_SIZE),
        ])
        option = "webhook_url_file" if values["webhook_url_file"] else "api_file"
        url_file = values["webhook_url_file"] or values["api_file"]
        if not values["webhook_url"] and not url_file:
            raise MissingOptionError(
                "section [SlackLogger] is active but names no webhook: set option 'api_file' (a file "
                "holding the webhook URL) or LABUTILS_SLACKLOGGER_API_FILE",
                file=config_file, section="SlackLogger", option="api_file")
        try:
            slack_handler = SlackWebhookHandler(values["webhook_url"] or None,
                                                webhook_file=url_file,
                                                channel=values["channel"] or None,
                                                username=values["user"] or None)
        except (OSError, ValueError) as exc:
            shown = "<secret>" if values["webhook_url"] else repr(url_file)
            raise ConfigError(f"option {option!r} of section [SlackLogger] = {shown}: {exc}",
                              file=config_file, section="SlackLogger", option=option,
                              value=None if values["webhook_url"] else url_file) from None
        slack_handler.set_name("slack")
        slack_handler.queue_size = values["queue_size"]  # type: ignore[attr-defined]
        slack_handler.setLevel(values["log_level"])
        handlers.append(slack_handler)

    if active("MailHandler", False):
        values = section("MailHandler", [Option("log_level", parse_log_level, SUCCESS),
                                         Option("queue_size", positive_int, _SLOW_QUEUE_SIZE)])
        level = values["log_level"]
        has_section = parser is not None and parser.has_section("MailHandler")
        settings = MailSettings.from_config(config_file if has_section else None, environ=environ)
        mail_handler = TlsSMTPHandler.from_settings(settings)
        mail_handler.set_name("mail")
        mail_handler.queue_size = values["queue_size"]  # type: ignore[attr-defined]
        mail_handler.setLevel(level)
        mail_handler.setFormatter(logging.Formatter(MAIL_FORMAT, DATEFMT))
        handlers.append(mail_handler)


def _lowest_level(handlers: list[logging.Handler]) -> int:
    """The root threshold that lets through what some handler shows, and nothing else."""
    # Python's own default when no handler is active (nothing would be shown anyway).
    return min((handler.level for handler in handlers), default=logging.WARNING)


def set_handler_level(level: Union[int, str], handler: str = "console") -> list[logging.Handler]:
    """Change the threshold of the handler :func:`configure_logging` built for one section.

    ``handler`` is one of :data:`HANDLER_NAMES` (``console``, ``file``, ``alarm``,
    ``slack``, ``mail``). The root logger's level then follows the lowest handler
    level again, unless configure_logging was given an explicit ``log_level``.
    Returns the handlers changed: empty when logging is not configured or that
    handler is not active. Raises ``ValueError`` for an unknown level or name.

    Example::

        set_handler_level("DEBUG")              # console shows debug lines from now on
        set_handler_level("ERROR", "mail")      # fewer mails during a bake-out
    """
    if handler not in HANDLER_NAMES:
        raise ValueError(f"{handler!r} is not a handler name (use one of: {', '.join(HANDLER_NAMES)})")
    number = parse_log_level(level) if isinstance(level, str) else int(level)
    with _lock:
        handlers = _active.get("handlers", [])
        changed = [built for built in handlers if built.name == handler]
        for built in changed:
            built.setLevel(number)
        if changed and _active.get("explicit_level") is None:
            logging.getLogger().setLevel(_lowest_level(handlers))
    return changed


def unconfigure_logging() -> None:
    """Undo :func:`configure_logging`: stop the queue listener, flush and close its handlers."""
    with _lock:
        listeners = _active.pop("listeners", [])
        front = _active.pop("front", None)
        handlers = _active.pop("handlers", [])
        _active.pop("explicit_level", None)
    root = logging.getLogger()
    if front is not None:
        root.removeHandler(front)
    _stop_listeners(listeners)  # delivers what is still queued
    for handler in handlers:
        try:
            handler.flush()
            handler.close()
        except Exception:  # closing one handler must not keep the others open
            pass


def configure_logging(config_file: Optional[str] = None, fallback: bool = False,
                      logger_name: str = "root",
                      log_level: Union[int, str, None] = None, *,
                      environ: Optional[Mapping[str, str]] = None,
                      only: Optional[Iterable[str]] = None) -> list[logging.Handler]:
    """Set up logging from a 0.5.x ``logging.ini`` (and ``LABUTILS_<SECTION>_<OPTION>`` variables).

    Sections: ``[ConsoleLogger]`` (on by default; new ``format = text|json``),
    ``[FileLogger]``, ``[AlarmLogger]`` (new ``host``, ``queue_size``),
    ``[SlackLogger]`` (``api_file`` holds a webhook URL), ``[MailHandler]``
    (see :class:`~lab_utils_common.mail.MailSettings`); a missing section is
    inactive. Records reach the handlers through a queue and a background
    thread, so no logging call waits for a mail or web server. The root logger's
    threshold is the lowest active handler's level, so a record no handler shows
    is dropped before it is built and queued; an explicit ``log_level`` sets it
    instead. :func:`set_handler_level` changes a handler's level later. ``only``
    (names from :data:`HANDLER_NAMES`) builds just those handlers and ignores the
    other sections (log-relay: ``only=["console"]``). Calling it again replaces
    the previous setup.

    Raises :class:`configparser.Error` (a :class:`~lab_utils_common.config.ConfigError`)
    naming file, section, option and value, or :class:`OSError` (log directory);
    with ``fallback=True`` prints the problem and logs to the console instead.
    Returns the handlers.

    Example::

        from lab_utils_common.custom_logging import configure_logging, getLogger
        configure_logging("logging.ini", logger_name="pump")
        getLogger().success("pump started")
    """
    global _atexit_registered
    environ = os.environ if environ is None else environ
    set_app_name(logger_name)
    explicit = None if log_level is None else (
        parse_log_level(log_level) if isinstance(log_level, str) else int(log_level))
    wanted = None if only is None else frozenset(only)
    if wanted is not None and not wanted <= set(HANDLER_NAMES):
        raise ValueError(f"only={sorted(wanted - set(HANDLER_NAMES))} names no handler "
                         f"(use: {', '.join(HANDLER_NAMES)})")
    unconfigure_logging()
    handlers: list[logging.Handler] = []
    try:
        _build_handlers(config_file, environ, handlers, wanted)
    except (configparser.Error, OSError) as exc:
        for built in handlers:
            built.close()
        if not fallback:
            raise
        print(f"{type(exc).__name__}: {exc}\nDefault logger will be used", file=sys.stderr)
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name("console")
        handler.setFormatter(logging.Formatter(CONSOLE_FORMAT, DATEFMT))
        handlers = [handler]

    records: queue.SimpleQueue = queue.SimpleQueue()
    front = _QueueHandler(records)
    root = logging.getLogger()
    root.setLevel(_lowest_level(handlers) if explicit is None else explicit)
    root.addHandler(front)
    listeners = _start_listeners(records, handlers)
    with _lock:
        _active.update(listeners=listeners, front=front, handlers=handlers, explicit_level=explicit)
        if not _atexit_registered:
            # Runs before logging's own shutdown (atexit is last-in, first-out), so the
            # queue is delivered before the handlers are closed.
            atexit.register(unconfigure_logging)
            _atexit_registered = True

    logger = getLogger(logger_name)
    logger.info("Logging system set up and running")
    logger.debug("Active handlers: %s", ", ".join(repr(h) for h in handlers) or "none")
    return handlers

"""Daemon-like TCP server: lab-utils 0.5.x's ``Server``, serving many clients at once.

``Server`` is the class a lab subclasses (``create_parser``, ``sp``, ``namespace``,
``reply``, ``quit``) and holds the settings and the per-connection budgets. The
work is split: :mod:`.connection` frames bytes, :mod:`.dispatcher` turns them into
a request and runs its handler, :mod:`.controller` binds, runs the event loop
thread, handles signals and stops. Handlers run one at a time on the thread that
called :meth:`Server.start_daemon` unless the subclass raises ``handler_threads``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import threading
import time
from functools import partial
from typing import Any, Callable, Optional, Pattern, Union

from zc.lockfile import LockFile

from lab_utils_common.config import Option, load_section, parse_bool, port_number, positive_float, positive_int

from ._log import get_logger
from .admin import admin_refusal
from .auth_token import read_token_file
from .connection import Connection
from .controller import Controller
from .dispatcher import PARSE_TIMEOUT, Dispatcher, Reply, Request
from .lock import acquire_pid_lock
from .log_limits import RateLimit
from .memory import trim
from .message import SPLIT_PATTERN, buffer_size, take_token
from .parse_lane import EXPIRED
from .parser import ArgumentParser, MessageError

__all__ = ["Server"]


class _RequestState(threading.local):
    """The per-request attributes 0.5.x handlers use, one set per handler thread."""

    message: str = ""
    body: str = ""
    namespace: Optional[argparse.Namespace] = None
    reply: str = ""


class Server:
    """Daemon-like TCP server: one message per connection, parsed into a command, one reply.

    Subclass it exactly as in lab-utils 0.5.x: override :meth:`create_parser`,
    call ``super().create_parser()``, add subparsers to :attr:`sp` with
    ``set_defaults(func=self.method, which='name')``; the method reads
    :attr:`namespace` and sets :attr:`reply`. ``quit``, ``status`` and ``help``
    are built in. :meth:`start_daemon` blocks until ``quit``, SIGTERM or SIGINT.

    Example::

        class Thermometer(Server):
            def create_parser(self):
                super().create_parser()
                sp = self.sp.add_parser("read", description="reads a channel")
                sp.add_argument("channel", help="channel name")
                sp.set_defaults(func=self.read, which="read")

            def read(self):
                self.reply = f"{self.namespace.channel} = 21.5"

        Thermometer(config_file="server.ini").start_daemon()

    Settings are class attributes (a subclass changes its defaults there), read
    from ``[Overall]`` of the configuration file and from the environment
    (``LABUTILS_SERVER_<OPTION>``), then the constructor arguments win.
    """

    # ---- lab-utils 0.5.x attributes
    quit_flag: bool = False                 #: Set to stop the daemon (checked every socket_timeout s).
    host: str = "localhost"                 #: Host address to bind ("0.0.0.0" in a container).
    port: int = 1507                        #: TCP port (0: the system chooses, see server_address).
    sock: Optional[socket.socket] = None    #: Listening socket.
    address: Optional[int] = None           #: Bound port, as 0.5.x stored it.
    #: Listen queue; 0.5.x had 1, which refused connections under load.
    max_backlog: int = 128
    socket_timeout: float = 1.0             #: How often the loop checks quit_flag (s).
    logger: Any = None                      #: The application logger (custom_logging.getLogger()).
    pid_file_name: str = "/tmp/socket_comm.pid"  #: PID lock file (config option pid_file).
    lock: Optional[LockFile] = None         #: The held zc.lockfile.LockFile.
    parser: Optional[ArgumentParser] = None  #: Message parser built by create_parser().
    delimiter_left: str = "{"               #: Opens a word that keeps its spaces.
    delimiter_right: str = "}"              #: Closes it.
    regex: Pattern = SPLIT_PATTERN          #: Splits a message into words.
    sp: Any = None                          #: The subparsers action: add commands here.

    # ---- beyond 0.5.x
    max_message_size: int = 1024 * 1024     #: Longest accepted message in bytes; longer: error reply.
    receive_timeout: float = 30.0           #: Seconds a client has to send its whole message.
    message_gap: float = 0.015              #: Pause that ends a message from a 0.5.x client (s).
    send_timeout: float = 30.0              #: Seconds a reply may take to leave before the socket is dropped.
    shutdown_timeout: float = 5.0           #: Seconds to finish open requests when stopping.
    #: Authenticated connections (see auth_timeout) beyond this get a busy error; 'status' is always answered.
    max_connections: int = 512
    #: Connections not yet authenticated (no #auth line, or no data without a token); the oldest
    #: is dropped for a new one, so idle sockets never lock real clients out.
    max_unauthenticated_connections: int = 64
    #: Seconds a new connection has to authenticate (server with a token) or start its message.
    auth_timeout: float = 5.0
    #: True: the first line of a message is the command, the lines after it are :attr:`body`
    #: (not split, not parsed). False (0.5.x): the whole message is the command line.
    accepts_body: bool = False
    #: Longest reply in bytes; a longer one is replaced by an error naming this limit.
    max_reply_size: int = 16 * 1024 * 1024
    #: Bytes of messages and replies held for all open connections together; a message or reply
    #: beyond it gets an error naming this limit. Never below max_message_size (one always fits).
    max_bytes_in_flight: int = 64 * 1024 * 1024
    #: Most words in a message (2048: all a 4096-byte 0.5.x message can hold). argparse is
    #: quadratic in option-like words: this bounds the time one message can take to parse.
    max_words: int = 2048
    #: Seconds a long message may wait and take to be split and parsed; then an error reply.
    parse_timeout: float = 2.0
    #: Messages up to this many bytes are parsed on the network thread (cheaper than a thread hop).
    inline_parse_bytes: int = 256
    #: Log lines about bad input per minute and kind; the rest are counted, not logged.
    bad_input_log_per_minute: int = 10
    #: Characters of a bad message quoted in a log line or an error reply (the size is named).
    quote_chars: int = 200
    token_file: Optional[str] = None        #: File holding the shared token; None: no authentication.
    #: Commands that stop the daemon, destroy data or silence alarms: refused unless the daemon has
    #: a token or allow_unauthenticated_admin. A subclass adds its own:
    #: ``admin_commands = Server.admin_commands | {"retention"}``.
    admin_commands: frozenset[str] = frozenset({"quit"})
    #: Allow admin_commands without a token (``--allow-unauthenticated-admin``): only on a trusted network.
    allow_unauthenticated_admin: bool = False
    #: Command handlers running at once. 1 (default): one at a time, always on the same thread.
    #: Raise it only when every handler is thread-safe; message/namespace/reply stay per request.
    #: 0: handlers run on the network event loop, on the start_daemon thread: no thread hop per
    #: command (fastest for quick handlers), but no other client, not even status, is answered
    #: while a handler runs (as in 0.5.x).
    handler_threads: int = 1
    logger_name: Optional[str] = None       #: Logger name; None: the application logger.
    env_section: str = "SERVER"             #: Environment variables are LABUTILS_<env_section>_<OPTION>.

    def __init__(self, config_file: Optional[str] = None, pid_file_name: Optional[str] = None,
                 host: Optional[str] = None, port: Optional[int] = None, *,
                 token_file: Optional[str] = None, allow_unauthenticated_admin: Optional[bool] = None) -> None:
        """Read the settings, build the parser and lock the PID file (``PidLockError`` if held)."""
        self.logger = get_logger(self.logger_name)
        self.ready = threading.Event()      #: Set once the socket listens (tests wait on it).
        self.stopped = threading.Event()    #: Set once start_daemon has cleaned up.
        self._token: Optional[str] = None
        self._controller = Controller(self)
        self._unadmitted: dict[Connection, None] = {}  # insertion order: the oldest is dropped first
        self.admitted_connections = 0
        self.bytes_in_flight = 0            #: Message and reply bytes held for open connections.
        self._large_seen = False            # a large message came: trim the heap once it is gone
        self._dispatcher = Dispatcher(self)
        self._bad_input_log: Optional[RateLimit] = None
        self.started_at: Optional[float] = None
        self.requests_served = 0
        self.error_replies = 0
        if config_file is not None and type(self).config is not Server.config:
            # As in 0.5.x the constructor calls config(): a subclass reads its own options there.
            self.config(config_file)
        self._load_settings(config_file, {"host": host, "port": port, "pid_file": pid_file_name,
                                          "token_file": token_file,
                                          "allow_unauthenticated_admin": allow_unauthenticated_admin})
        self.create_parser()
        self.daemonize()
        self.quit_flag = False

    # ------------------------------------------------------------------ per-request state
    def _request_state(self) -> _RequestState:
        # Created on first use: 0.5.x subclasses may set self.reply before calling super().__init__.
        state = self.__dict__.get("_state")
        if state is None:
            state = self.__dict__.setdefault("_state", _RequestState())
        return state

    @property
    def message(self) -> str:
        """The message being handled (on this handler thread)."""
        return self._request_state().message

    @message.setter
    def message(self, value: str) -> None:
        self._request_state().message = value

    @property
    def body(self) -> str:
        """The lines after the command line (a server with :attr:`accepts_body`), untouched; else ``""``."""
        return self._request_state().body

    @body.setter
    def body(self, value: str) -> None:
        self._request_state().body = value

    @property
    def namespace(self) -> Optional[argparse.Namespace]:
        """The parsed message being handled: its arguments are attributes."""
        return self._request_state().namespace

    @namespace.setter
    def namespace(self, value: Optional[argparse.Namespace]) -> None:
        self._request_state().namespace = value

    @property
    def reply(self) -> str:
        """The reply a handler sets; sent back to the client."""
        return self._request_state().reply

    @reply.setter
    def reply(self, value: str) -> None:
        self._request_state().reply = value

    # ------------------------------------------------------------------ configuration
    def _options(self) -> list[Option]:
        return [
            Option("host", str, self.host),
            Option("port", port_number, self.port),
            Option("pid_file", str, self.pid_file_name),
            Option("token_file", str, self.token_file),
            Option("allow_unauthenticated_admin", parse_bool, self.allow_unauthenticated_admin),
            Option("max_message_size", positive_int, self.max_message_size),
            Option("receive_timeout", positive_float, self.receive_timeout),
            Option("message_gap", positive_float, self.message_gap),
            Option("send_timeout", positive_float, self.send_timeout),
            Option("max_backlog", positive_int, self.max_backlog),
            Option("max_connections", positive_int, self.max_connections),
            Option("max_unauthenticated_connections", positive_int, self.max_unauthenticated_connections),
            Option("auth_timeout", positive_float, self.auth_timeout),
            Option("max_reply_size", positive_int, self.max_reply_size),
            Option("max_bytes_in_flight", positive_int, self.max_bytes_in_flight),
            Option("max_words", positive_int, self.max_words),
            Option("parse_timeout", positive_float, self.parse_timeout),
            Option("bad_input_log_per_minute", positive_int, self.bad_input_log_per_minute),
        ]

    def _load_settings(self, config_file: Optional[str], overrides: Optional[dict] = None) -> None:
        values = load_section("Overall", self._options(), config_file, env_section=self.env_section,
                              overrides=overrides)
        self.pid_file_name = values.pop("pid_file")
        for name, value in values.items():
            setattr(self, name, value)
        self._token = read_token_file(self.token_file) if self.token_file else None

    def config(self, filename: str) -> None:
        """Load ``[Overall]`` of ``filename`` (host, port, pid_file, token_file, max_message_size, ...).

        Raises a :class:`configparser.Error` (a ``ConfigError``) naming the file,
        option and value when the file is missing or a value is invalid.
        """
        self.logger.info("Loading configuration file %s", os.path.abspath(os.path.expanduser(filename)))
        self._load_settings(filename)

    def daemonize(self) -> None:
        """Lock the PID file; raise :class:`~.lock.PidLockError` naming the file and the holder's PID."""
        self.logger.info("Locking PID file %s", self.pid_file_name)
        try:
            self.lock = acquire_pid_lock(self.pid_file_name)
        except Exception as exc:
            self.logger.error("%s: %s", type(exc).__name__, exc)
            raise

    # ------------------------------------------------------------------ commands
    def create_parser(self) -> None:
        """Build :attr:`parser` and :attr:`sp` with the built-in ``quit``, ``status`` and ``help``."""
        self.parser = ArgumentParser(
            prog="daemon",
            description="socket_comm daemon example, the user should override this",
            epilog="Send 'help' for this text, 'status' for the daemon's state.",
        )
        self.sp = self.parser.add_subparsers(title="command", description="Daemon actions")
        self.add_command("quit", self.quit, "stops the daemon")
        self.add_command("status", self.status, "daemon state: pid, uptime, requests served")
        self.add_command("help", self.help, "this help")

    def add_command(self, name: str, handler: Callable[[], None], description: str) -> ArgumentParser:
        """Add command ``name`` running ``handler``; add its arguments to the parser returned.

        Short for 0.5.x's ``sp = self.sp.add_parser(name, description=...)`` and
        ``sp.set_defaults(func=handler, which=name)``; call it in :meth:`create_parser`::

            self.add_command("read", self.read, "reads a channel").add_argument("channel")
        """
        command = self.sp.add_parser(name, description=description)
        command.set_defaults(func=handler, which=name)
        return command

    @property
    def admin_allowed(self) -> bool:
        """True when admin commands may run: the daemon has a token, or allow_unauthenticated_admin."""
        return self._token is not None or bool(self.allow_unauthenticated_admin)

    def require_admin(self, what: str) -> None:
        """Raise :class:`MessageError` unless :attr:`admin_allowed`; for a handler whose danger
        depends on its arguments (``self.require_admin("log_level CRITICAL --logger root")``)."""
        if not self.admin_allowed:
            raise MessageError(admin_refusal(what))

    def quit(self) -> None:
        """Command ``quit`` (also run on SIGTERM/SIGINT): override to clean up; replies ``Goodbye!``."""
        self.logger.info("Cleaning up...")
        self.reply = "Goodbye!"

    def status(self) -> None:
        """Command ``status``: ``key: value`` lines (status, pid, uptime_s, requests, ...)."""
        self.reply = "\n".join(f"{key}: {value}" for key, value in self.status_fields().items())

    def status_fields(self) -> dict[str, Any]:
        """The values the ``status`` command reports; extend it in a subclass to add yours.

        It runs on the network thread, also while a command runs (so a healthcheck never
        waits for a busy instrument): report values kept in memory, never talk to hardware here.
        """
        uptime = time.monotonic() - self.started_at if self.started_at is not None else 0.0
        return {
            "status": "stopping" if self.quit_flag else "running",
            "pid": os.getpid(),
            "uptime_s": f"{uptime:.1f}",
            "requests": self.requests_served,
            "error_replies": self.error_replies,
            "connections": len(self._controller.connections),
        }

    def help(self) -> None:
        """Command ``help``: the full help text."""
        self.reply = self.parser.full_help()

    # ------------------------------------------------------------------ lifecycle (controller.py)
    @property
    def server_address(self) -> tuple[str, int]:
        """The bound ``(host, port)``, valid once :attr:`ready` is set (port 0 is resolved)."""
        if self._controller.address is None:
            raise RuntimeError("the server is not listening yet; wait for server.ready")
        return self._controller.address

    def start_daemon(self) -> None:
        """Listen and serve until ``quit``, SIGTERM/SIGINT or :meth:`shutdown`; then :meth:`close`.

        Network I/O runs on a background thread; command handlers run on the
        calling thread (as in 0.5.x), or on a pool when ``handler_threads > 1``.
        Raises :class:`OSError` when the address cannot be bound. Signal
        handlers are installed only when called from the main thread.
        """
        self._controller.run()

    def _run_quit_cleanup(self) -> None:
        self.message, self.body, self.namespace, self.reply = "quit", "", None, ""
        try:
            self.quit()
        except Exception:
            self.logger.exception("quit() failed while stopping")

    def signal_handler(self, signum: int, _frame: Any = None) -> None:
        """SIGTERM/SIGINT: stop accepting, finish open requests, run :meth:`quit`, return from start_daemon."""
        name = signal.Signals(signum).name if signum in signal.Signals._value2member_map_ else signum
        self.logger.info("Received %s, terminating gracefully...", name)
        self.quit_flag = True
        self._controller.stop_from_any_thread(run_quit=True)

    def shutdown(self, wait: bool = True) -> None:
        """Stop the daemon from another thread as SIGTERM would; with ``wait``, block until stopped."""
        self.quit_flag = True
        self._controller.stop_from_any_thread(run_quit=True)
        if wait and self._controller.loop is not None:
            self.stopped.wait()

    def close(self) -> None:
        """Release the TCP socket and the PID lock file (safe to call twice)."""
        if self.sock is not None:
            try:
                self.logger.info("Closing socket")
                self.sock.close()
            except OSError as exc:
                self.logger.error("Closing the socket failed: %s: %s", type(exc).__name__, exc)
        if self.lock is not None:
            try:
                self.logger.info("Releasing PID file %s", self.pid_file_name)
                self.lock.close()
            except (OSError, ValueError) as exc:
                self.logger.error("Releasing the PID file failed: %s: %s", type(exc).__name__, exc)
            self.lock = None

    # ------------------------------------------------------------------ requests (event loop thread)
    def _connection_opened(self, connection: Connection) -> None:
        self._controller.track(connection)
        self._unadmitted[connection] = None
        if len(self._unadmitted) > self.max_unauthenticated_connections:
            oldest = next(iter(self._unadmitted))
            del self._unadmitted[oldest]
            self._warn_bad_input("unauthenticated", "Dropped the connection of %s: more than %d connections "
                                 "not authenticated (max_unauthenticated_connections)", oldest.peer,
                                 self.max_unauthenticated_connections)
            oldest.drop()

    def _connection_admitted(self, connection: Connection) -> None:
        self._unadmitted.pop(connection, None)
        self.admitted_connections += 1
        if self.admitted_connections > self.max_connections:
            connection.over_budget = True

    def _connection_closed(self, connection: Connection) -> None:
        self._unadmitted.pop(connection, None)
        if connection.admitted:
            connection.admitted = False
            self.admitted_connections -= 1
        self._controller.untrack(connection)

    def _reserve(self, size: int) -> bool:
        """Count ``size`` more bytes in flight; False (nothing counted) beyond max_bytes_in_flight."""
        if self.bytes_in_flight + size > max(self.max_bytes_in_flight, self.max_message_size):
            return False
        self.bytes_in_flight += size
        if size >= _TRIM_AFTER:
            self._large_seen = True
        return True

    def _release(self, size: int) -> None:
        self.bytes_in_flight -= size
        if self.bytes_in_flight == 0 and self._large_seen:
            self._large_seen = False
            trim()

    def _is_status(self, data: bytes) -> bool:
        """True for a complete message that is just ``status`` (answered even when busy)."""
        if len(data) > buffer_size:
            return False
        _, text = take_token(data.decode("utf-8", errors="replace"))
        return text.strip() == "status"

    def _count_reply(self, reply: Reply) -> None:
        self.requests_served += 1
        if not reply.ok:
            self.error_replies += 1

    def _warn_bad_input(self, kind: str, fmt: str, *args: Any) -> None:
        """Log a warning about a client's bad input, at most bad_input_log_per_minute per kind."""
        limit = self._bad_input_log
        if limit is None or limit.count != self.bad_input_log_per_minute:
            limit = self._bad_input_log = RateLimit(self.bad_input_log_per_minute, 60.0)
        allowed, suppressed = limit.allow(kind)
        if not allowed:
            return
        if suppressed:
            fmt += " (%d similar line(s) not logged, bad_input_log_per_minute)"
            args += (suppressed,)
        self.logger.warning(fmt, *args)

    def _handle_message(self, connection: Connection, data: bytes) -> None:
        """A complete message arrived (event loop thread): prepare it here if short, else on the lane."""
        if len(data) <= self.inline_parse_bytes:
            self._prepared(connection, self._dispatcher.prepare(data, connection.authenticated))
            return
        # Long: decoded, split and parsed on the parse lane, answered by the deadline whatever happens
        # there. Decoding is linear: a long body gets 1 s more per 20 MB.
        budget = self.parse_timeout + len(data) / 20e6
        timer = self._controller.loop.call_later(budget, self._parse_timed_out, connection, budget)
        self._controller.lane.submit(partial(self._dispatcher.prepare, data, connection.authenticated),
                          partial(self._prepared_late, connection, timer, budget), time.monotonic() + budget)

    def _parse_timed_out(self, connection: Connection, budget: float) -> None:
        self._warn_bad_input("parse timeout", "Client %s: a message was not parsed within %g s (parse_timeout)",
                             connection.peer, budget)
        connection.send_reply(Reply.error(PARSE_TIMEOUT.format(limit=budget)))

    def _prepared_late(self, connection: Connection, timer: asyncio.TimerHandle, budget: float,
                       prepared: Any) -> None:
        timer.cancel()
        if connection.replied:
            return  # _parse_timed_out answered, or the client is gone
        if prepared is EXPIRED:  # skipped by the lane just before the timer fired
            self._parse_timed_out(connection, budget)
            return
        self._prepared(connection, prepared)

    def _prepared(self, connection: Connection, prepared: Union[Request, Reply]) -> None:
        if isinstance(prepared, Reply):
            connection.send_reply(prepared)
            return
        if getattr(prepared.namespace.func, "__func__", None) in _INLINE_HANDLERS:
            # Built-in status/help only read counters: answered even while a long command runs,
            # so a healthcheck does not fail because an instrument is busy.
            self._reply_done(connection, prepared, self._dispatcher.run(prepared))
            return
        self._controller.runner.submit(partial(self._dispatcher.run, prepared),
                                       partial(self._reply_done, connection, prepared))

    def _reply_done(self, connection: Connection, request: Request, reply: Reply) -> None:
        connection.send_reply(reply)
        # As 0.5.x: 'quit' stops the daemon whatever a subclass's quit() does.
        if request.command == "quit":
            self._controller.request_stop()


_TRIM_AFTER = 256 * 1024  # bytes: after a message this large is gone, the heap is trimmed


_INLINE_HANDLERS = {Server.status, Server.help}

"""The console program around a :class:`~.server.Server` subclass: options, logging, exit status.

socket-daemon and db-admin are both this, and a lab's own daemon can be too:
``--config``, ``--host``, ``--port``, ``--pid-file``, ``--logging-config`` plus
the daemon's own options, logging set up through
:func:`~lab_utils_common.custom_logging.configure_logging`, and one exit status
per kind of failure.
"""

from __future__ import annotations

import argparse
import configparser
import signal
import sys
import threading
from typing import Any, Callable, Optional, Sequence

from lab_utils_common.config import Option, load_section, read_config_file
from lab_utils_common.custom_logging import configure_logging, getLogger

from .auth_token import TokenFileError
from .lock import PidLockError
from .server import Server

__all__ = ["DaemonCommand", "run_daemon", "EXIT_OK", "EXIT_START_FAILED", "EXIT_CONFIG"]

EXIT_OK = 0             #: Stopped cleanly: quit, SIGTERM, SIGINT.
EXIT_START_FAILED = 1   #: Could not start: address in use, another instance holds the PID lock.
EXIT_CONFIG = 2         #: Bad configuration: the message names the file, option and value.


def _stop_preparing(signum: int, _frame: Any) -> None:
    raise SystemExit(EXIT_OK)  # SIGTERM while preparing (e.g. waiting for a database): leave cleanly


class DaemonCommand:
    """The command line of a socket_comm daemon; :meth:`main` runs it and returns the exit status.

    Besides ``[Overall]`` (the :class:`Server` settings), the ``--config`` file may
    hold a section named like the class (``[Thermometer]``) with ``logging_config``
    and the daemon's own ``options``; each of those is also a command-line option
    (``values_file`` -> ``--values-file``), an environment variable
    (``LABUTILS_<ENV_SECTION>_VALUES_FILE``) and a keyword argument of the
    class's constructor.

    Example::

        command = DaemonCommand(Thermometer, "thermometer",
                                options=[Option("calibration_file", str, None, help="...")])
        sys.exit(command.main())   # thermometer --port 1600 --calibration-file cal.json

    Exit status: :data:`EXIT_OK`, :data:`EXIT_START_FAILED`, :data:`EXIT_CONFIG`.
    """

    def __init__(self, server_class: type[Server], prog: str, *, description: Optional[str] = None,
                 options: Sequence[Option] = (), section: Optional[str] = None,
                 env_section: Optional[str] = None,
                 config_errors: tuple[type[BaseException], ...] = (),
                 prepare: Optional[Callable[[Any], None]] = None) -> None:
        """``prog`` names the program, its logger and (by default) ``env_section``.

        ``config_errors``: exceptions of the constructor that mean bad configuration
        (exit 2) besides :class:`configparser.Error` and ``TokenFileError``.
        ``prepare(server)`` runs before serving (db-admin waits for its database);
        SIGTERM or Ctrl+C during it stops the daemon cleanly.
        """
        self.server_class = server_class
        self.prog = prog
        self.description = description or (server_class.__doc__ or "").strip().split("\n")[0]
        self.options = list(options)
        self.section = section or server_class.__name__
        self.env_section = env_section or prog.upper().replace("-", "_")
        self.config_errors = tuple(config_errors)
        self.prepare = prepare

    def _section_options(self) -> list[Option]:
        return [Option("logging_config", str, None, help="logging.ini for custom_logging"), *self.options]

    def parser(self) -> argparse.ArgumentParser:
        """The command-line parser."""
        names = ", ".join(option.name for option in self._section_options())
        parser = argparse.ArgumentParser(prog=self.prog, description=self.description)
        parser.add_argument("--config", metavar="FILE",
                            help="server INI: [Overall] host, port, pid_file, token_file, "
                                 f"max_message_size...; [{self.section}] {names}")
        parser.add_argument("--host", help="address to bind (default localhost; 0.0.0.0 in a container)")
        parser.add_argument("--port", type=int, help=f"TCP port (default {self.server_class.port})")
        parser.add_argument("--pid-file", metavar="FILE",
                            help=f"PID lock file (default {self.server_class.pid_file_name})")
        parser.add_argument("--allow-unauthenticated-admin", action="store_true", default=None,
                            help="allow admin commands (quit, ...) without a token: only on a trusted network")
        for option in self._section_options():
            file_like = option.name.endswith(("_file", "_config"))
            parser.add_argument(f"--{option.name.replace('_', '-')}", dest=option.name,
                                metavar="FILE" if file_like else None, help=option.help or None)
        return parser

    def settings(self, config_file: Optional[str], overrides: Optional[dict] = None) -> dict[str, Any]:
        """The daemon's own section: defaults < ``config_file`` (the section may be absent) <
        environment < ``overrides``."""
        parser = read_config_file(config_file) if config_file else None
        if parser is not None and not parser.has_section(self.section):
            parser = None
        return load_section(self.section, self._section_options(),
                            config_file if parser is not None else None, parser=parser,
                            env_section=self.env_section, overrides=overrides)

    def _fail(self, status: int, exc: BaseException) -> int:
        print(f"{self.prog}: {exc}", file=sys.stderr)
        return status

    def main(self, argv: Optional[Sequence[str]] = None) -> int:
        """Parse ``argv``, set up logging, build the daemon, serve until stopped; the exit status."""
        args = self.parser().parse_args(argv)
        try:
            settings = self.settings(args.config, {option.name: getattr(args, option.name)
                                                   for option in self._section_options()})
            configure_logging(settings.pop("logging_config"), logger_name=self.prog)
        except (configparser.Error, OSError) as exc:
            return self._fail(EXIT_CONFIG, exc)
        logger = getLogger(self.prog)
        try:
            server = self.server_class(config_file=args.config, pid_file_name=args.pid_file,
                                       host=args.host, port=args.port, **settings)
        except (configparser.Error, TokenFileError, *self.config_errors) as exc:
            logger.error("%s", exc)
            return self._fail(EXIT_CONFIG, exc)
        except PidLockError as exc:
            return self._fail(EXIT_START_FAILED, exc)
        if args.allow_unauthenticated_admin:
            # Set on the instance, not passed to the constructor: a subclass's own __init__
            # signature need not know it.
            server.allow_unauthenticated_admin = True
            logger.warning("Admin commands (%s) are allowed without a token (--allow-unauthenticated-admin)",
                           ", ".join(sorted(server.admin_commands)))
        if self.prepare is not None:
            on_main_thread = threading.current_thread() is threading.main_thread()
            previous = signal.signal(signal.SIGTERM, _stop_preparing) if on_main_thread else None
            try:
                self.prepare(server)
            except (SystemExit, KeyboardInterrupt):
                logger.info("Stopped before serving, in %s", getattr(self.prepare, "__name__", "prepare"))
                server.close()
                return EXIT_OK
            finally:
                if on_main_thread:
                    signal.signal(signal.SIGTERM, previous)
        try:
            server.start_daemon()
        except OSError as exc:
            return self._fail(EXIT_START_FAILED, exc)
        return EXIT_OK


def run_daemon(server_class: type[Server], prog: str, argv: Optional[Sequence[str]] = None,
               **kwargs: Any) -> int:
    """Run ``server_class`` as a console program; returns the exit status (see :class:`DaemonCommand`).

    Example::

        if __name__ == "__main__":
            sys.exit(run_daemon(Thermometer, "thermometer"))
    """
    return DaemonCommand(server_class, prog, **kwargs).main(argv)

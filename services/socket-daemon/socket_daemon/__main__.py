"""``socket-daemon``: run the lab command daemon until quit, SIGTERM or SIGINT.

Exit status: 0 stopped cleanly, 1 could not start (address in use, another
instance holds the PID lock), 2 bad configuration.
"""

from __future__ import annotations

import argparse
import configparser
import logging
import sys
from typing import Optional, Sequence

from lab_utils_common.config import Option, load_section, read_config_file
from lab_utils_common.socket_comm import PidLockError, TokenFileError

from .daemon import SocketDaemon
from .values import ValueFileError

__all__ = ["main", "daemon_settings"]

EXIT_OK, EXIT_START_FAILED, EXIT_CONFIG = 0, 1, 2

#: Section of the --config file with the daemon's own options; env LABUTILS_SOCKET_DAEMON_<OPTION>.
SECTION = "SocketDaemon"
ENV_SECTION = "SOCKET_DAEMON"


def daemon_settings(config_file: Optional[str], overrides: Optional[dict] = None) -> dict:
    """``[SocketDaemon]`` logging_config and values_file (the section may be absent)."""
    parser = read_config_file(config_file) if config_file else None
    if parser is not None and not parser.has_section(SECTION):
        parser = None
    return load_section(SECTION, [Option("logging_config", str, None), Option("values_file", str, None)],
                        parser=parser, env_section=ENV_SECTION, overrides=overrides)


def _configure_logging(logging_config: Optional[str]) -> list[logging.Handler]:
    try:
        from lab_utils_common.custom_logging import configure_logging
    except ImportError:
        configure_logging = None
    if configure_logging is not None:
        handlers = configure_logging(logging_config, logger_name="socket-daemon")
        if handlers:
            # A record below every handler's threshold is dropped at the logger, before it is
            # built and queued: per-request debug lines then cost nothing unless shown.
            logging.getLogger().setLevel(min(handler.level or logging.DEBUG for handler in handlers))
        return handlers
    if logging_config:  # pragma: no cover - only while custom_logging is being written
        raise configparser.Error(f"cannot use {logging_config!r}: lab_utils_common.custom_logging "
                                 "has no configure_logging")
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(levelname)-8s %(asctime)s %(name)s %(message)s")
    return []


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="socket-daemon",
        description="Lab command daemon (lab_utils_common.socket_comm.Server): named values, echo, "
                    "log level, uptime, status. Talk to it with lab-utils-client.")
    parser.add_argument("--config", metavar="FILE",
                        help="INI file: [Overall] host, port, pid_file, token_file, max_message_size...; "
                             "[SocketDaemon] logging_config, values_file")
    parser.add_argument("--host", help="address to bind (default localhost; 0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, help="TCP port (default 1507)")
    parser.add_argument("--pid-file", metavar="FILE", help="PID lock file (default /tmp/socket-daemon.pid)")
    parser.add_argument("--logging-config", metavar="FILE", help="logging.ini for custom_logging")
    parser.add_argument("--values-file", metavar="FILE", help="JSON file keeping the named values")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the daemon; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        settings = daemon_settings(args.config, {"logging_config": args.logging_config,
                                                 "values_file": args.values_file})
        handlers = _configure_logging(settings["logging_config"])
    except (configparser.Error, OSError) as exc:
        print(f"socket-daemon: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    logger = logging.getLogger("socket-daemon")
    try:
        daemon = SocketDaemon(config_file=args.config, pid_file_name=args.pid_file, host=args.host,
                              port=args.port, values_file=settings["values_file"])
    except (configparser.Error, TokenFileError, ValueFileError) as exc:
        logger.error("%s", exc)
        print(f"socket-daemon: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except PidLockError as exc:
        print(f"socket-daemon: {exc}", file=sys.stderr)
        return EXIT_START_FAILED
    daemon.console_handlers = [handler for handler in handlers if isinstance(handler, logging.StreamHandler)
                               and not isinstance(handler, logging.FileHandler)]
    try:
        daemon.start_daemon()
    except OSError as exc:
        print(f"socket-daemon: {exc}", file=sys.stderr)
        return EXIT_START_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

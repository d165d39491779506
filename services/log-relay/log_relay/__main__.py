"""The ``log-relay`` command: ``log-relay [--config FILE] run`` (the default) or ``status``.

Exit status: 0 fine / healthy, 1 unhealthy (``status``), 2 bad configuration, unreadable
spool, or records that could not be written to the spool before a stop, 3 cannot listen.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from typing import Optional, Sequence

from lab_utils_common.config import ConfigError, log_level as parse_log_level
from lab_utils_common.custom_logging import configure_logging
from log_relay.relay import LogRelay
from log_relay.settings import RelaySettings
from log_relay.spool import SpoolError
from log_relay.status import read_status

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="log-relay",
        description="Receive lab-utils alarm records over TCP, keep them in a durable spool and "
                    "deliver them as e-mail (and Slack) digests.")
    parser.add_argument("--config", metavar="FILE", default=os.environ.get("LABUTILS_RELAY_CONFIG"),
                        help="INI file with [Relay], [MailHandler], [SlackLogger] (default: "
                             "$LABUTILS_RELAY_CONFIG; without it, the environment only)")
    commands = parser.add_subparsers(dest="command")
    run = commands.add_parser("run", help="run the relay (the default)")
    run.add_argument("--log-level", default=os.environ.get("LABUTILS_RELAY_LOG_LEVEL", "INFO"),
                     help="the relay's own log level on stderr (default INFO)")
    status = commands.add_parser("status", help="print queue depth, oldest undelivered record, "
                                                "last delivery and last error; exit 1 if unhealthy")
    status.add_argument("--spool", metavar="PATH", help="spool file (default: from the config)")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument("--quiet", action="store_true", help="print only problems")
    return parser


def _configure_own_logging(config_file: Optional[str], level: int) -> None:
    """The relay's own records: console only, at ``level``, on stderr unless configured otherwise.

    ``[ConsoleLogger]`` of the relay's file and ``LABUTILS_CONSOLELOGGER_*`` choose the format
    (``format = json`` for JSON lines), as for every daemon. Only the console: the file may be the
    apps' logging.ini, whose alarm and mail handlers would send the relay's records to itself.
    """
    environ = {**os.environ, "LABUTILS_CONSOLELOGGER_ACTIVE": "1",
               "LABUTILS_CONSOLELOGGER_LOG_LEVEL": str(level)}
    environ.setdefault("LABUTILS_CONSOLELOGGER_STREAM", "stderr")
    configure_logging(config_file, logger_name="log-relay", environ=environ, only=["console"])


async def _run(settings: RelaySettings) -> None:
    relay = LogRelay(settings)
    await relay.start()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, relay.request_stop)
    await relay.serve_forever()
    if relay.lost_at_stop:
        raise SpoolError(f"spool {settings.spool_path!r}: {relay.lost_at_stop} received record(s) "
                         f"could not be committed before the stop ({relay.writer.last_error})")


def _status(args: argparse.Namespace) -> int:
    if args.spool:
        spool_path = args.spool
    else:
        spool_path = RelaySettings.from_config(args.config, with_sinks=False).spool_path
    report = read_status(spool_path)
    if args.json:
        print(json.dumps({"healthy": report.healthy, "problems": report.problems,
                          **report.details}, indent=2))
    elif args.quiet:
        for problem in report.problems:
            print(f"log-relay unhealthy: {problem}")
    else:
        print(report.as_text())
    return 0 if report.healthy else 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``log-relay`` console script."""
    args = _parser().parse_args(argv)
    command = args.command or "run"
    try:
        if command == "status":
            return _status(args)
        level = getattr(args, "log_level", None) or os.environ.get("LABUTILS_RELAY_LOG_LEVEL", "INFO")
        try:
            _configure_own_logging(args.config, parse_log_level(level))
        except ValueError as exc:
            print(f"log-relay: --log-level (or LABUTILS_RELAY_LOG_LEVEL): {exc}", file=sys.stderr)
            return 2
        settings = RelaySettings.from_config(args.config)
        asyncio.run(_run(settings))
        return 0
    except (ConfigError, SpoolError) as exc:
        print(f"log-relay: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"log-relay: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())

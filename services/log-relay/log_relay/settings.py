"""log-relay's settings: ``[Relay]``, plus ``[MailHandler]`` and ``[SlackLogger]`` for the sinks.

Every option can come from an INI file or the environment
(``LABUTILS_RELAY_<OPTION>``, ``LABUTILS_MAILHANDLER_<OPTION>``,
``LABUTILS_SLACKLOGGER_WEBHOOK_URL_FILE``), so a container needs no file. The file
may be the apps' own 0.5.x ``logging.ini``: without a ``[Relay]`` section the
defaults apply, and the port defaults to its ``[AlarmLogger] port``.

Example::

    settings = RelaySettings.from_config("relay.ini", port=0)
    settings.spool_path, settings.min_level, settings.timing.group_wait
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from logging.handlers import DEFAULT_TCP_LOGGING_PORT
from typing import Any, Mapping, Optional

from lab_utils_common.config import (
    InvalidValueError,
    MissingOptionError,
    Option,
    load_section,
    log_level,
    non_negative_float,
    port_number,
    positive_float,
    positive_int,
    read_config_file,
    read_secret_file,
    string_list,
)
from lab_utils_common.mail import MailSettings
from log_relay.delivery import DeliveryTiming
from log_relay.digest import DEFAULT_SUBJECT_TEMPLATE, check_subject_template
from log_relay.sinks import MailSink, Sink, SlackSink

__all__ = ["RelaySettings", "DEFAULT_SPOOL_PATH", "SINK_NAMES"]

DEFAULT_SPOOL_PATH = "/var/lib/log-relay/spool.sqlite3"
SINK_NAMES = ("mail", "slack")


def _port_or_default(text: str) -> int:
    # 0.5.x's [AlarmLogger] writes "port = default" for 9020.
    return DEFAULT_TCP_LOGGING_PORT if str(text).strip().lower() == "default" else port_number(text)


def _sinks(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(name.lower() for name in string_list(text)))
    unknown = [name for name in names if name not in SINK_NAMES]
    if unknown:
        raise ValueError(f"unknown sink {unknown[0]!r} (use: {', '.join(SINK_NAMES)})")
    if not names:
        raise ValueError("no sink given (use: mail, slack or both)")
    return names


def _record_size(text: str) -> int:
    value = positive_int(text)
    if value < 1024:
        raise ValueError(f"{value} bytes is too small for a record (at least 1024)")
    return value


def _message_size(text: str) -> int:
    value = positive_int(text)
    if value < 16384:
        raise ValueError(f"{value} bytes is too small for a mail (at least 16384)")
    return value


def _relay_options(default_port: int) -> list[Option]:
    timing = DeliveryTiming()
    return [
        Option("host", str, "localhost", help="address to listen on (0.0.0.0 in a container)"),
        Option("port", _port_or_default, default_port),
        Option("spool_path", str, DEFAULT_SPOOL_PATH),
        Option("sinks", _sinks, ("mail",)),
        Option("min_level", log_level, logging.WARNING),
        Option("max_record_size", _record_size, 65536),
        Option("tail_wait", positive_float, 0.25),
        Option("group_wait", non_negative_float, timing.group_wait),
        Option("group_interval", non_negative_float, timing.group_interval),
        Option("retry_initial", positive_float, timing.retry_initial),
        Option("retry_max", positive_float, timing.retry_max),
        Option("digest_max_records", positive_int, timing.max_records),
        Option("digest_max_lines", positive_int, timing.max_lines),
        Option("max_digests", positive_int, timing.max_digests),
        Option("subject_template", check_subject_template, DEFAULT_SUBJECT_TEMPLATE),
        Option("retention", non_negative_float, timing.retention),
        Option("max_backlog", positive_int, 200000),
        Option("max_backlog_bytes", positive_int, 64 << 20),
        Option("max_connections", positive_int, 500),
        Option("max_message_bytes", _message_size, 10 << 20),
        Option("heartbeat_interval", positive_float, 5.0),
        Option("unhealthy_after", positive_float, 1800.0),
        Option("drain_timeout", positive_float, 5.0),
    ]


@dataclass(frozen=True)
class RelaySettings:
    """Everything the relay needs, resolved once at start.

    Example::

        settings = RelaySettings.from_config(None, environ={"LABUTILS_RELAY_SPOOL_PATH": "/tmp/s.db",
                                                           "LABUTILS_MAILHANDLER_MAIL_HOST": ...})
    """

    host: str
    port: int
    spool_path: str
    sinks: tuple[Sink, ...]
    min_level: int
    max_record_size: int = 65536
    tail_wait: float = 0.25
    timing: DeliveryTiming = field(default_factory=DeliveryTiming)
    max_backlog: int = 200000
    max_backlog_bytes: int = 64 << 20
    max_connections: int = 500
    heartbeat_interval: float = 5.0
    unhealthy_after: float = 1800.0
    drain_timeout: float = 5.0

    @property
    def sink_names(self) -> tuple[str, ...]:
        return tuple(sink.name for sink in self.sinks)

    @classmethod
    def from_config(cls, config_file: Optional[str] = None, *,
                    environ: Optional[Mapping[str, str]] = None, with_sinks: bool = True,
                    **overrides: Any) -> RelaySettings:
        """Resolve defaults < ``config_file`` < environment < ``overrides`` (``[Relay]`` names).

        ``with_sinks=False`` skips the mail and Slack settings (``log-relay status``).
        Raises :class:`~lab_utils_common.config.ConfigError` naming the bad option.
        """
        parser = read_config_file(config_file) if config_file is not None else None
        default_port = DEFAULT_TCP_LOGGING_PORT
        if parser is not None and parser.has_option("AlarmLogger", "port"):
            try:
                default_port = _port_or_default(parser.get("AlarmLogger", "port"))
            except ValueError as exc:
                raise InvalidValueError(
                    f"option 'port' of section [AlarmLogger] in {config_file!r}: {exc}",
                    file=config_file, section="AlarmLogger", option="port") from None
        relay_parser = parser if parser is not None and parser.has_section("Relay") else None
        values = load_section("Relay", _relay_options(default_port),
                              config_file if relay_parser is not None else None,
                              parser=relay_parser, environ=environ, overrides=overrides)
        if values["retry_max"] < values["retry_initial"]:
            raise InvalidValueError(
                f"option 'retry_max' of section [Relay] ({values['retry_max']}) is smaller than "
                f"retry_initial ({values['retry_initial']})", file=config_file, section="Relay",
                option="retry_max", value=values["retry_max"])
        sinks: tuple[Sink, ...] = ()
        if with_sinks:
            sinks = tuple(cls._sink(name, config_file, parser, environ, values["subject_template"],
                                    values["max_message_bytes"])
                          for name in values["sinks"])
        timing = DeliveryTiming(
            group_wait=values["group_wait"], group_interval=values["group_interval"],
            retry_initial=values["retry_initial"], retry_max=values["retry_max"],
            max_records=values["digest_max_records"], max_lines=values["digest_max_lines"],
            max_digests=values["max_digests"],
            retention=values["retention"])
        return cls(host=values["host"], port=values["port"],
                   spool_path=os.path.abspath(os.path.expanduser(values["spool_path"])),
                   sinks=sinks, min_level=values["min_level"],
                   max_record_size=values["max_record_size"], tail_wait=values["tail_wait"],
                   timing=timing, max_backlog=values["max_backlog"],
                   max_backlog_bytes=values["max_backlog_bytes"],
                   max_connections=values["max_connections"],
                   heartbeat_interval=values["heartbeat_interval"],
                   unhealthy_after=values["unhealthy_after"],
                   drain_timeout=values["drain_timeout"])

    @staticmethod
    def _sink(name: str, config_file: Optional[str], parser, environ, subject_template: str,
              max_message_bytes: int) -> Sink:
        if name == "mail":
            mail = MailSettings.from_config(
                config_file if parser is not None and parser.has_section("MailHandler") else None,
                environ=environ)
            return MailSink(mail, subject_template, max_message_bytes=max_message_bytes)
        slack_parser = parser if parser is not None and parser.has_section("SlackLogger") else None
        values = load_section("SlackLogger", [
            Option("webhook_url", str, None, secret=True),
            Option("webhook_url_file", str, None),
            Option("subject", str, "lab-utils alarm"),
            Option("timeout", positive_float, 10.0),
        ], config_file if slack_parser is not None else None, parser=slack_parser,
            environ=environ)
        url = values["webhook_url"]
        if values["webhook_url_file"]:
            url = read_secret_file(values["webhook_url_file"], section="SlackLogger",
                                   option="webhook_url_file").strip()
        if not url:
            raise MissingOptionError(
                "sink 'slack' needs option 'webhook_url_file' of section [SlackLogger] (a file "
                "holding the webhook URL), or LABUTILS_SLACKLOGGER_WEBHOOK_URL_FILE",
                file=config_file, section="SlackLogger", option="webhook_url_file")
        try:
            return SlackSink(url, base_subject=values["subject"],
                             subject_template=subject_template, timeout=values["timeout"])
        except ValueError as exc:
            raise InvalidValueError(f"option 'webhook_url' of section [SlackLogger]: {exc}",
                                    file=config_file, section="SlackLogger",
                                    option="webhook_url") from None

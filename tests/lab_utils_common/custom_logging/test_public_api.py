"""The exported names stay what they are, and match lab-utils 0.5.4's where they come from it."""

from __future__ import annotations

import inspect
import logging
import logging.handlers

import lab_utils.custom_logging as legacy  # the 0.5.4 reference, installed by scripts/test

import lab_utils_common.custom_logging as custom_logging
from lab_utils_common.custom_logging import (
    ColoredFormatter,
    CustomTimedRotatingFileHandler,
    NonPickledSocketHandler,
    TlsSMTPHandler,
    configure_logging,
    string_to_bool,
)

LEGACY_NAMES = ["SUCCESS", "CustomLogger", "getLogger", "ColoredFormatter",
                "CustomTimedRotatingFileHandler", "NonPickledSocketHandler", "TlsSMTPHandler",
                "configure_logging", "string_to_bool"]


def test_exported_names_stay_what_they_are():
    assert custom_logging.__all__ == LEGACY_NAMES + [
        "SlackWebhookHandler", "JsonLinesFormatter", "AlarmFormatter", "unconfigure_logging",
        "set_handler_level"]
    for name in custom_logging.__all__:
        assert getattr(custom_logging, name) is not None


def test_every_legacy_name_exists_in_the_reference():
    for name in LEGACY_NAMES:
        assert hasattr(legacy, name), name


def test_legacy_signatures_still_accepted():
    def positional(function):
        return [p.name for p in inspect.signature(function).parameters.values()
                if p.kind is p.POSITIONAL_OR_KEYWORD]

    for ours, theirs in [(CustomTimedRotatingFileHandler.__init__, legacy.CustomTimedRotatingFileHandler.__init__),
                         (NonPickledSocketHandler.__init__, legacy.NonPickledSocketHandler.__init__),
                         (TlsSMTPHandler.__init__, legacy.TlsSMTPHandler.__init__),
                         (configure_logging, legacy.configure_logging)]:
        assert positional(ours)[:len(positional(theirs))] == positional(theirs)
    assert positional(configure_logging) == ["config_file", "fallback", "logger_name", "log_level"]


def test_base_classes_as_in_0_5_4():
    assert issubclass(NonPickledSocketHandler, logging.handlers.SocketHandler)
    assert issubclass(TlsSMTPHandler, logging.handlers.SMTPHandler)
    assert issubclass(CustomTimedRotatingFileHandler, logging.handlers.TimedRotatingFileHandler)
    assert custom_logging.SUCCESS == legacy.SUCCESS == 25


def test_string_to_bool_as_in_0_5_4():
    for text in ["true", "1", "t", "y", "yes", "on", "TRUE", "On", "false", "0", "maybe", ""]:
        assert string_to_bool(text) is legacy.string_to_bool(text), text


def test_coloured_formatter_output_matches_0_5_4():
    record = logging.LogRecord("app", logging.WARNING, "/x/pump.py", 3, "hot %d", (90,), None, "run")
    fmt, datefmt = "%(name)s %(message)s", "%Y"
    assert (ColoredFormatter(fmt, datefmt).format(record)
            == legacy.ColoredFormatter(fmt, datefmt).format(record))
    assert ColoredFormatter.colour_map == legacy.ColoredFormatter.colour_map
    assert ColoredFormatter.colours == legacy.ColoredFormatter.colours
    assert (ColoredFormatter.prefix, ColoredFormatter.suffix) == ("\033[", "\033[0m")


def test_alarm_line_matches_0_5_4_for_plain_messages(tmp_path):
    """Same text as 0.5.4's [AlarmLogger] formatter, plus the newline terminator on the wire."""
    from lab_utils_common.alarm_wire import ALARM_DATEFMT, ALARM_FORMAT
    from lab_utils_common.custom_logging import AlarmFormatter

    record = logging.LogRecord("myapp", logging.ERROR, "/x/pump.py", 3, "pressure too high",
                               None, None, "start")
    assert AlarmFormatter().format(record) == logging.Formatter(ALARM_FORMAT, ALARM_DATEFMT).format(record)


ALARM_SENDER = """
import sys
if sys.argv[1] == "0.5.4":
    from lab_utils.custom_logging import configure_logging, getLogger
else:
    from lab_utils_common.custom_logging import configure_logging, getLogger
configure_logging(sys.argv[2], logger_name="cryostat")

def start():
    getLogger().error("pressure %s above the limit, valve {V3} closed", "3.2e-5 mbar")

start()
"""


def test_alarm_bytes_on_the_wire_match_0_5_4s_own_handler(tmp_path):
    """0.5.4's configure_logging and ours, same record from the same code: same bytes, plus '\\n'."""
    import re
    import socket
    import subprocess
    import sys

    sender = tmp_path / "pump.py"
    sender.write_text(ALARM_SENDER)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        ini = tmp_path / "logging.ini"
        ini.write_text(f"[ConsoleLogger]\nactive = 0\n\n[AlarmLogger]\nactive = 1\n"
                       f"port = {listener.getsockname()[1]}\nlog_level = WARNING\n")
        received = {}
        for version in ("0.5.4", "ours"):
            process = subprocess.Popen([sys.executable, str(sender), version, str(ini)])
            listener.settimeout(30)
            connection, _ = listener.accept()
            with connection:
                connection.settimeout(30)
                chunks = []
                while chunk := connection.recv(65536):
                    chunks.append(chunk)
            assert process.wait(30) == 0
            received[version] = re.sub(rb"--date \{[^}]*\}", b"--date {D}", b"".join(chunks))
    assert received["0.5.4"] == (b"{cryostat} --date {D} --level {ERROR} --app {cryostat} --module {pump} "
                                 b"--function {start} --message {pressure 3.2e-5 mbar above the limit, "
                                 b"valve {V3} closed}")
    # Ours opens with the hello of the acknowledgement protocol (a silent receiver gets no more).
    hello, _, record = received["ours"].partition(b"\n")
    assert hello.startswith(b"#lab-utils-relay hello 1 ")
    assert record == received["0.5.4"] + b"\n"

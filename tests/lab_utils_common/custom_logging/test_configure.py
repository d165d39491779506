"""configure_logging with 0.5.x logging.ini files, against real receivers (TCP, SMTP, HTTP)."""

from __future__ import annotations

import json
import logging
import os
import re

import pytest

from lab_utils_common.config import ConfigFileError, InvalidValueError, MissingOptionError
from lab_utils_common.custom_logging import (
    SUCCESS,
    CustomLogger,
    NonPickledSocketHandler,
    configure_logging,
    getLogger,
    set_handler_level,
    unconfigure_logging,
)
from lab_utils_common.custom_logging.formatters import colour_allowed

# The 0.5.4 file shipped as lab_utils/conf/logging.ini, with paths made local.
LEGACY_INI = """\
[ConsoleLogger]
active = 1
use_coloured_output = 1
log_level = DEBUG

[FileLogger]
active = 1
log_level = INFO
log_path = {log_path}
log_basename = lab_utils_module
log_extension = .log

[AlarmLogger]
active = 1
port = default
log_level = WARNING

[SlackLogger]
active = 0
api_file = ~/.slackapi
log_level = SUCCESS
channel = cw-beam
user = cw_beam

[MailHandler]
active = 0
credentials_file = ~/.smtpcredentials
log_level = SUCCESS
mail_host = mail.phys.ethz.ch
port = 25
sender = epic-em@phys.ethz.ch
subject = Logging from lab_utils module
recipients =
    carlosv@phys.ethz.ch
"""


@pytest.fixture(autouse=True)
def restore_logging():
    root = logging.getLogger()
    level = root.level
    yield
    unconfigure_logging()
    root.setLevel(level)


def write_ini(tmp_path, text=None, **values) -> str:
    path = tmp_path / "logging.ini"
    path.write_text((text or LEGACY_INI).format(log_path=tmp_path / "logs", **values))
    return str(path)


def test_legacy_ini_with_environment_overrides(tmp_path, line_receiver, capsys):
    ini = write_ini(tmp_path)
    environ = {"LABUTILS_ALARMLOGGER_HOST": "127.0.0.1",
               "LABUTILS_ALARMLOGGER_PORT": str(line_receiver.port)}
    handlers = configure_logging(ini, logger_name="pump", environ=environ)
    assert [type(h).__name__ for h in handlers] == [
        "StreamHandler", "CustomTimedRotatingFileHandler", "NonPickledSocketHandler"]
    alarm = handlers[2]
    assert (alarm.host, alarm.port, alarm.level) == ("127.0.0.1", line_receiver.port, logging.WARNING)

    log = getLogger()
    assert log.name == "pump" and isinstance(log, CustomLogger)
    log.debug("debug only on the console")
    log.success("bake-out done")
    log.error("pressure\ntoo high")

    [line] = line_receiver.wait_for(1)
    assert re.fullmatch(r"\{pump\} --date \{[\d: -]+\} --level \{ERROR\} --app \{pump\} "
                        r"--module \{test_configure\} --function \{\w+\} "
                        r"--message \{pressure\\ntoo high\}", line)
    unconfigure_logging()  # flushes the queue and closes the handlers

    out = capsys.readouterr().out
    assert "debug only on the console" in out and "bake-out done" in out
    assert "\033[" not in out  # stdout is not a terminal: no colour
    [log_file] = os.listdir(tmp_path / "logs")
    assert re.fullmatch(r"lab_utils_module_\d{4}-\d\d-\d\d\.log", log_file)
    documents = [json.loads(line) for line in (tmp_path / "logs" / log_file).read_text().splitlines()]
    assert [d["message"] for d in documents] == [
        "Logging system set up and running", "bake-out done", "pressure\ntoo high"]
    assert [d["levelname"] for d in documents] == ["INFO", "SUCCESS", "ERROR"]
    assert documents[1]["module"] == "test_configure"  # the caller of success(), not levels.py
    assert documents[1]["funcName"] == "test_legacy_ini_with_environment_overrides"


def test_mail_and_webhook_sections(tmp_path, smtp_server, webhook_server):
    credentials = tmp_path / "smtpcredentials"
    credentials.write_text(f"{smtp_server.username}\n{smtp_server.password}\n")
    webhook_file = tmp_path / "slack-webhook"
    webhook_file.write_text(webhook_server.url)
    ini = tmp_path / "logging.ini"
    ini.write_text(f"""\
[ConsoleLogger]
active = 0

[SlackLogger]
active = 1
api_file = {webhook_file}
log_level = SUCCESS
channel = cw-beam
user = cw_beam

[MailHandler]
active = 1
credentials_file = {credentials}
log_level = ERROR
mail_host = 127.0.0.1
port = {smtp_server.port}
sender = lab@example.org
subject = Logging from lab_utils module
recipients =
    alice@example.org
    bob@example.org
ca_file = {smtp_server.ca_file}
""")
    configure_logging(str(ini), logger_name="beamline", environ={})
    log = getLogger()
    log.info("nowhere")
    log.success("beam on")
    log.error("beam lost")

    [mail] = smtp_server.wait_for(1)
    assert mail["Subject"] == "Logging from lab_utils module"
    assert mail["To"] == "alice@example.org, bob@example.org"
    assert mail.get_content().rstrip().endswith("beamline test_configure test_mail_and_webhook_sections beam lost")
    texts = [body["text"] for body in webhook_server.wait_for(2)]
    assert [t.rsplit("   ", 1)[1] for t in texts] == ["beam on", "beam lost"]


def test_a_mail_server_that_hangs_does_not_hold_up_alarm_lines(tmp_path, line_receiver):
    import socket
    import threading
    credentials = tmp_path / "smtpcredentials"
    credentials.write_text("user\npassword\n")
    with socket.socket() as black_hole:  # accepts the SMTP connection and never says a word
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen()
        accepted = []
        threading.Thread(target=lambda: accepted.append(black_hole.accept()[0]), daemon=True).start()
        environ = {"LABUTILS_CONSOLELOGGER_ACTIVE": "0",
                   "LABUTILS_ALARMLOGGER_ACTIVE": "1", "LABUTILS_ALARMLOGGER_HOST": "127.0.0.1",
                   "LABUTILS_ALARMLOGGER_PORT": str(line_receiver.port),
                   "LABUTILS_MAILHANDLER_ACTIVE": "1", "LABUTILS_MAILHANDLER_MAIL_HOST": "127.0.0.1",
                   "LABUTILS_MAILHANDLER_PORT": str(black_hole.getsockname()[1]),
                   "LABUTILS_MAILHANDLER_TIMEOUT": "60", "LABUTILS_MAILHANDLER_SENDER": "lab@example.org",
                   "LABUTILS_MAILHANDLER_RECIPIENTS": "alice@example.org",
                   "LABUTILS_MAILHANDLER_CREDENTIALS_FILE": str(credentials)}
        configure_logging(environ=environ, logger_name="pump")
        try:
            for i in range(3):
                getLogger().error("alarm %d", i)
            # with one thread for every handler, the second line would wait for the mail's 60 s timeout
            assert len(line_receiver.wait_for(3)) == 3
            assert accepted, "the mail handler never connected"
        finally:
            for connection in accepted:
                connection.close()  # the mail handler fails at once (reported on stderr)...
            black_hole.close()  # ...and so do its next attempts
            unconfigure_logging()


def test_json_console_selected_by_environment(tmp_path, capsys):
    configure_logging(environ={"LABUTILS_CONSOLELOGGER_FORMAT": "json"}, logger_name="svc")
    getLogger().warning("as json", extra={"run": 7})
    unconfigure_logging()
    lines = capsys.readouterr().out.splitlines()
    documents = [json.loads(line) for line in lines]
    assert documents[-1]["message"] == "as json" and documents[-1]["run"] == 7
    assert documents[-1]["name"] == "svc"


def test_exception_traceback_reaches_json_as_its_own_field(capsys):
    configure_logging(environ={"LABUTILS_CONSOLELOGGER_FORMAT": "json"})
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError:
        getLogger("calc").exception("failed")
    unconfigure_logging()
    document = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert document["message"] == "failed"
    assert document["exc_info"].endswith("ZeroDivisionError: division by zero")


def test_missing_file_raises_naming_it(tmp_path):
    with pytest.raises(ConfigFileError, match=re.escape(str(tmp_path / "nope.ini"))):
        configure_logging(str(tmp_path / "nope.ini"), environ={})


def test_missing_file_with_fallback_logs_to_console(tmp_path, capsys):
    handlers = configure_logging(str(tmp_path / "nope.ini"), fallback=True, environ={})
    assert len(handlers) == 1
    getLogger("x").warning("still logging")
    unconfigure_logging()
    err = capsys.readouterr().err
    assert "does not exist" in err and "Default logger will be used" in err
    assert "still logging" in err


def test_bad_alarm_port_names_file_section_option_value(tmp_path):
    ini = write_ini(tmp_path, LEGACY_INI.replace("port = default", "port = 90x20"))
    with pytest.raises(InvalidValueError) as caught:
        configure_logging(ini, environ={})
    message = str(caught.value)
    assert ini in message and "[AlarmLogger]" in message and "'port'" in message and "'90x20'" in message


def test_unknown_boolean_names_the_value(tmp_path):
    ini = write_ini(tmp_path, LEGACY_INI.replace("use_coloured_output = 1", "use_coloured_output = maybe"))
    with pytest.raises(InvalidValueError, match=r"use_coloured_output.*\[ConsoleLogger\].*'maybe'"):
        configure_logging(ini, environ={})


def test_active_file_logger_without_path_is_an_error(tmp_path):
    ini = tmp_path / "logging.ini"
    ini.write_text("[FileLogger]\nactive = 1\nlog_basename = x\n")
    with pytest.raises(MissingOptionError, match=r"'log_path'.*\[FileLogger\].*LABUTILS_FILELOGGER_LOG_PATH"):
        configure_logging(str(ini), environ={})


def test_active_slack_without_webhook_is_an_error(tmp_path):
    with pytest.raises(MissingOptionError, match=r"\[SlackLogger\].*'api_file'"):
        configure_logging(environ={"LABUTILS_SLACKLOGGER_ACTIVE": "1"})


def test_slack_webhook_file_from_environment(tmp_path, webhook_server):
    url_file = tmp_path / "webhook"
    url_file.write_text(webhook_server.url + "\n")
    configure_logging(environ={"LABUTILS_CONSOLELOGGER_ACTIVE": "0",
                               "LABUTILS_SLACKLOGGER_ACTIVE": "1",
                               "LABUTILS_SLACKLOGGER_WEBHOOK_URL_FILE": str(url_file)})
    getLogger("svc").success("from the environment")
    assert webhook_server.wait_for(1)[0]["text"].endswith("from the environment")


def test_missing_sections_are_inactive(tmp_path):
    ini = tmp_path / "logging.ini"
    ini.write_text("[ConsoleLogger]\nactive = 0\n")
    assert configure_logging(str(ini), environ={}) == []


def test_reconfiguring_replaces_the_previous_setup(tmp_path, line_receiver):
    environ = {"LABUTILS_ALARMLOGGER_ACTIVE": "1", "LABUTILS_ALARMLOGGER_HOST": "127.0.0.1",
               "LABUTILS_ALARMLOGGER_PORT": str(line_receiver.port),
               "LABUTILS_CONSOLELOGGER_ACTIVE": "no"}
    configure_logging(environ=environ)
    [alarm] = configure_logging(environ=environ, log_level="INFO")
    assert isinstance(alarm, NonPickledSocketHandler)
    from lab_utils_common.custom_logging.configure import _QueueHandler
    assert len([h for h in logging.getLogger().handlers if isinstance(h, _QueueHandler)]) == 1
    assert logging.getLogger().level == logging.INFO
    getLogger("x").error("once")
    assert len(line_receiver.wait_for(1)) == 1
    unconfigure_logging()
    assert len(line_receiver.lines) == 1  # not a second copy from the first setup


def test_colour_only_on_a_terminal_and_never_with_no_color():
    leader, follower = os.openpty()
    with os.fdopen(follower, "w") as terminal:
        assert colour_allowed(terminal, environ={}) is True
        assert colour_allowed(terminal, environ={"NO_COLOR": "1"}) is False
    os.close(leader)
    with open(os.devnull, "w") as not_a_terminal:
        assert colour_allowed(not_a_terminal, environ={}) is False


def test_console_through_configure_logging_colours_a_terminal_unless_no_color(monkeypatch):
    leader, follower = os.openpty()
    try:
        with os.fdopen(follower, "w") as terminal:
            monkeypatch.setattr("sys.stdout", terminal)
            for environ, coloured in [({}, True), ({"NO_COLOR": "1"}, False)]:
                configure_logging(environ=environ)
                getLogger("tty-test").warning("on a terminal")
                unconfigure_logging()  # delivers the queue
                terminal.flush()
                output = os.read(leader, 65536).decode()
                assert "on a terminal" in output
                assert ("\033[33mWARNING\033[0m" in output) is coloured, output
    finally:
        os.close(leader)


def test_coloured_formatter_itself_stays_plain_with_no_color_or_off_a_terminal(monkeypatch):
    from lab_utils_common.custom_logging import ColoredFormatter
    record = logging.LogRecord("app", logging.ERROR, "/x/pump.py", 3, "hot", None, None, "run")
    assert ColoredFormatter("%(message)s").format(record) == "\033[31mERROR\033[0m    hot"
    with open(os.devnull, "w") as not_a_terminal:
        assert ColoredFormatter("%(message)s", stream=not_a_terminal).format(record) == "ERROR    hot"
    monkeypatch.setenv("NO_COLOR", "1")
    assert ColoredFormatter("%(message)s").format(record) == "ERROR    hot"


def test_success_level_and_getlogger():
    assert SUCCESS == 25 and logging.getLevelName(SUCCESS) == "SUCCESS"
    plain = logging.getLogger("created-by-the-stdlib-first")
    assert getLogger("created-by-the-stdlib-first") is plain and hasattr(plain, "success")
    assert hasattr(getLogger("root"), "success")


def test_root_level_is_the_lowest_handler_level_unless_given(tmp_path, line_receiver):
    environ = {"LABUTILS_CONSOLELOGGER_LOG_LEVEL": "WARNING", "LABUTILS_ALARMLOGGER_ACTIVE": "1",
               "LABUTILS_ALARMLOGGER_HOST": "127.0.0.1",
               "LABUTILS_ALARMLOGGER_PORT": str(line_receiver.port),
               "LABUTILS_ALARMLOGGER_LOG_LEVEL": "ERROR"}
    configure_logging(environ=environ)
    root = logging.getLogger()
    assert root.level == logging.WARNING  # a debug or info call is dropped before it is queued
    assert not root.isEnabledFor(logging.INFO)
    configure_logging(environ={**environ, "LABUTILS_FILELOGGER_ACTIVE": "1",
                               "LABUTILS_FILELOGGER_LOG_LEVEL": "DEBUG",
                               "LABUTILS_FILELOGGER_LOG_PATH": str(tmp_path),
                               "LABUTILS_FILELOGGER_LOG_BASENAME": "x"})
    assert root.level == logging.DEBUG
    configure_logging(environ=environ, log_level="INFO")
    assert root.level == logging.INFO
    configure_logging(environ={"LABUTILS_CONSOLELOGGER_ACTIVE": "0"})
    assert root.level == logging.WARNING  # no handler: Python's default


def test_set_handler_level_changes_the_console_and_the_root_follows(capsys):
    configure_logging(environ={"LABUTILS_CONSOLELOGGER_LOG_LEVEL": "WARNING"})
    root = logging.getLogger()
    getLogger("svc").info("hidden")
    [console] = set_handler_level(logging.ERROR, "console")
    assert console.level == logging.ERROR and root.level == logging.ERROR
    assert set_handler_level("DEBUG", "mail") == []  # not active: nothing changed
    assert root.level == logging.ERROR
    assert set_handler_level("DEBUG") == [console]
    assert console.level == logging.DEBUG and root.level == logging.DEBUG
    getLogger("svc").debug("shown now")
    unconfigure_logging()  # delivers the queue
    out = capsys.readouterr().out
    assert "shown now" in out and "hidden" not in out
    assert set_handler_level("DEBUG") == []  # not configured any more


def test_set_handler_level_keeps_an_explicit_root_level():
    [console] = configure_logging(environ={}, log_level="WARNING")
    set_handler_level("DEBUG")
    assert console.level == logging.DEBUG and logging.getLogger().level == logging.WARNING


def test_set_handler_level_refuses_unknown_names_and_levels():
    configure_logging(environ={})
    with pytest.raises(ValueError, match="'syslog' is not a handler name"):
        set_handler_level("DEBUG", "syslog")
    with pytest.raises(ValueError, match="'LOUD' is not a logging level"):
        set_handler_level("LOUD")


def test_only_builds_the_named_handlers_and_ignores_the_other_sections(tmp_path, capsys):
    # An apps' logging.ini whose alarm receiver does not exist: with only=console it is never used.
    ini = write_ini(tmp_path)
    [console] = configure_logging(ini, environ={"LABUTILS_ALARMLOGGER_PORT": "not a port"},
                                  only=["console"])
    assert console.name == "console" and console.level == logging.DEBUG
    assert not (tmp_path / "logs").exists()  # [FileLogger] was not read
    with pytest.raises(ValueError, match=r"\['syslog'\] names no handler"):
        configure_logging(ini, only=["console", "syslog"])

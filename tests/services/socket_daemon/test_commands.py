"""socket-daemon's lab commands over real sockets."""

import logging
import sqlite3

import pytest

from lab_utils_common.custom_logging import configure_logging, unconfigure_logging
from socket_daemon.daemon import SocketDaemon


@pytest.fixture
def daemon(socket_server_factory, tmp_path):
    return socket_server_factory(SocketDaemon, values_file=str(tmp_path / "values.json"))


def test_set_get_unset_values(daemon, tmp_path):
    assert daemon.send("set {pump speed} 40") == "pump speed = 40"
    assert daemon.send("set setpoint 3.5 K") == "setpoint = 3.5 K"
    assert daemon.send("get {pump speed}") == "40"
    assert daemon.send("values") == "pump speed = 40\nsetpoint = 3.5 K"
    stored = sqlite3.connect(tmp_path / "values.json").execute("SELECT name, value FROM named_value").fetchall()
    assert sorted(stored) == [("pump speed", "40"), ("setpoint", "3.5 K")]
    assert daemon.send("unset setpoint") == "unset setpoint"
    assert daemon.send("get setpoint") == "Error! no value named 'setpoint' (set: pump speed)"


def test_values_survive_a_restart(socket_server_factory, tmp_path):
    first = socket_server_factory(SocketDaemon, values_file=str(tmp_path / "v.json"))
    first.send("set a 1")
    first.stop()
    second = socket_server_factory(SocketDaemon, values_file=str(tmp_path / "v.json"),
                                   pid_file_name=str(tmp_path / "again.pid"))
    assert second.send("get a") == "1"


def test_corrupt_values_file_is_refused_naming_it(tmp_path):
    bad = tmp_path / "v.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="v.json"):
        SocketDaemon(pid_file_name=str(tmp_path / "p.pid"), values_file=str(bad))


def test_echo_uptime_help(daemon):
    assert daemon.send("echo hello {big world}") == "hello big world"
    assert daemon.send("uptime").startswith("up 0 d 00:00:")
    help_text = daemon.send("help")
    for command in ("echo", "set", "get", "unset", "values", "log_level", "uptime", "status", "quit"):
        assert f"\n    {command} " in help_text


def test_log_level_change(socket_server_factory, tmp_path):
    daemon = socket_server_factory(SocketDaemon, settings={"allow_unauthenticated_admin": True})
    logging.getLogger("pump")
    root = logging.getLogger()
    previous = root.level
    try:
        assert daemon.send("log_level WARNING") == "log level of 'root' set to WARNING"
        assert root.level == logging.WARNING
        assert daemon.send("log_level DEBUG --logger never-created").startswith(
            "Error! no logger named 'never-created'")  # logging would keep a new logger forever
        assert "never-created" not in logging.Logger.manager.loggerDict
        logging.getLogger("pump")
        assert daemon.send("log_level DEBUG --logger pump") == "log level of 'pump' set to DEBUG"
        assert logging.getLogger("pump").level == logging.DEBUG
        assert daemon.send("log_level LOUD").startswith("Error! 'LOUD' is not a logging level")
        daemon.server.allow_unauthenticated_admin = False
        assert daemon.send("log_level ERROR --logger pump").startswith(
            "Error! 'log_level ERROR --logger pump' is an admin command, refused")
        assert logging.getLogger("pump").level == logging.DEBUG
    finally:
        root.setLevel(previous)
        logging.getLogger("pump").setLevel(logging.NOTSET)


def test_log_level_moves_the_console_and_the_root_follows_the_handlers(daemon, tmp_path):
    root = logging.getLogger()
    previous = root.level
    console, log_file = configure_logging(environ={
        "LABUTILS_FILELOGGER_ACTIVE": "1", "LABUTILS_FILELOGGER_LOG_PATH": str(tmp_path),
        "LABUTILS_FILELOGGER_LOG_BASENAME": "daemon", "LABUTILS_FILELOGGER_LOG_LEVEL": "INFO"})
    try:
        assert root.level == logging.INFO
        assert daemon.send("log_level DEBUG") == "log level of 'root' set to DEBUG"
        assert (console.level, log_file.level, root.level) == (logging.DEBUG, logging.INFO, logging.DEBUG)
        daemon.send("log_level WARNING")
        # The file keeps its INFO threshold, so the root logger still lets INFO through.
        assert (console.level, log_file.level, root.level) == (logging.WARNING, logging.INFO, logging.INFO)
    finally:
        unconfigure_logging()
        root.setLevel(previous)

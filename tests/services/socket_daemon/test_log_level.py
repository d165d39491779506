"""socket-daemon's log_level on a real daemon process: no alarm silenced without a token, no logger leak."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.ports import free_port, wait_for_port, wait_until

from lab_utils_common.socket_comm import Client


@pytest.fixture
def start_daemon(tmp_path):
    """start(token=False) -> client; the file handler (at WARNING) stands in for the alarm handlers."""
    processes = []

    def start(token: bool = False) -> Client:
        ini = tmp_path / "server.ini"
        token_file = tmp_path / "token"
        token_file.write_text("s3cret-token\n")
        ini.write_text("[Overall]\nhost = 127.0.0.1\n" + (f"token_file = {token_file}\n" if token else ""))
        logging_ini = tmp_path / "logging.ini"
        logging_ini.write_text(
            "[ConsoleLogger]\nactive = 1\nuse_coloured_output = 0\nlog_level = INFO\n"
            f"[FileLogger]\nactive = 1\nlog_level = WARNING\nlog_path = {tmp_path}\n"
            "log_basename = daemon\nformat = text\n")
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LABUTILS_")}
        process = subprocess.Popen(
            [sys.executable, "-m", "socket_daemon", "--config", str(ini), "--port", str(port),
             "--pid-file", str(tmp_path / f"d{len(processes)}.pid"), "--logging-config", str(logging_ini)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        processes.append(process)
        wait_for_port("127.0.0.1", port, timeout=60)
        return Client(host="127.0.0.1", port=port, timeout=60, token_file=str(token_file) if token else None)

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=20)


def _log_text(tmp_path: Path) -> str:
    return "".join(path.read_text() for path in tmp_path.glob("daemon*.log"))


def test_without_token_no_logger_can_be_raised_above_info(start_daemon, tmp_path):
    client = start_daemon()
    reply = client.send_message("log_level CRITICAL --logger socket-daemon")
    assert reply.startswith("Error! 'log_level CRITICAL --logger socket-daemon' is an admin command")
    assert "token_file" in reply and "--allow-unauthenticated-admin" in reply
    # 'root' is the console only: the handlers keep their thresholds, so warnings still go out.
    assert client.send_message("log_level CRITICAL --logger root") == "log level of 'root' set to CRITICAL"
    assert client.send_message("no_such_command").startswith("Error! ")
    wait_until(lambda: "no_such_command" in _log_text(tmp_path), 30, lambda: _log_text(tmp_path))
    # Lowering a level never drops alarms: allowed.
    assert client.send_message("log_level DEBUG --logger socket-daemon") == \
        "log level of 'socket-daemon' set to DEBUG"


def test_with_token_the_level_may_be_raised(start_daemon):
    client = start_daemon(token=True)
    assert client.send_message("log_level CRITICAL --logger socket-daemon") == \
        "log level of 'socket-daemon' set to CRITICAL"


def test_unknown_logger_names_are_refused_not_created(start_daemon):
    client = start_daemon()
    for index in range(3):
        reply = client.send_message(f"log_level DEBUG --logger made-up-{index}")
        assert reply == f"Error! no logger named 'made-up-{index}' in this daemon"
    # Still unknown: the refused names were not created.
    assert client.send_message("log_level DEBUG --logger made-up-0").startswith("Error! no logger named")

"""run_daemon / DaemonCommand: a Server subclass as a console program (options, logging, exit status)."""

import signal
import socket
import subprocess
import sys
import textwrap
import threading

import pytest

from tests.fixtures.ports import free_port, wait_for_port

from lab_utils_common.config import Option
from lab_utils_common.custom_logging import unconfigure_logging
from lab_utils_common.socket_comm import (
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_START_FAILED,
    Client,
    DaemonCommand,
    Server,
    run_daemon,
)
from lab_utils_common.socket_comm.lock import acquire_pid_lock


class Thermometer(Server):
    """Reads the cryostat thermometers."""

    port = 1600
    pid_file_name = "/tmp/thermometer.pid"

    def __init__(self, *args, calibration_file=None, **kwargs):
        if calibration_file == "broken":
            raise LookupError(f"calibration {calibration_file!r} has no channels")
        self.calibration_file = calibration_file
        super().__init__(*args, **kwargs)

    def create_parser(self):
        super().create_parser()
        self.add_command("calibration", self.calibration, "names the calibration file")

    def calibration(self):
        self.reply = str(self.calibration_file)


OPTIONS = [Option("calibration_file", str, None, help="JSON calibration")]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in ("LABUTILS_SERVER_PORT", "LABUTILS_SERVER_HOST", "LABUTILS_THERMOMETER_CALIBRATION_FILE",
                 "LABUTILS_THERMOMETER_LOGGING_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    yield
    unconfigure_logging()


def quiet_logging(tmp_path) -> str:
    ini = tmp_path / "logging.ini"
    ini.write_text("[ConsoleLogger]\nactive = 1\nuse_coloured_output = 0\nlog_level = WARNING\n")
    return str(ini)


def test_runs_with_its_own_option_until_quit(tmp_path):
    port = free_port()
    argv = ["--host", "127.0.0.1", "--port", str(port), "--pid-file", str(tmp_path / "t.pid"),
            "--logging-config", quiet_logging(tmp_path), "--calibration-file", "cal.json",
            "--allow-unauthenticated-admin"]
    status = []
    thread = threading.Thread(target=lambda: status.append(run_daemon(Thermometer, "thermometer", argv,
                                                                      options=OPTIONS)))
    thread.start()
    try:
        wait_for_port("127.0.0.1", port)
        client = Client(host="127.0.0.1", port=port, timeout=20)
        assert client.send_message("calibration") == "cal.json"
        assert client.send_message("quit") == "Goodbye!"
    finally:
        thread.join(30)
    assert status == [EXIT_OK]


def test_help_lists_the_common_and_own_options():
    help_text = " ".join(DaemonCommand(Thermometer, "thermometer", options=OPTIONS).parser()
                         .format_help().split())
    for option in ("--config FILE", "--host", "--port", "--pid-file FILE", "--logging-config FILE",
                   "--calibration-file FILE", "default 1600", "/tmp/thermometer.pid",
                   "[Thermometer] logging_config, calibration_file", "Reads the cryostat thermometers"):
        assert option in help_text


def test_own_section_then_environment_then_command_line(tmp_path, monkeypatch):
    command = DaemonCommand(Thermometer, "thermometer", options=OPTIONS)
    ini = tmp_path / "server.ini"
    ini.write_text("[Overall]\nport = 1601\n")
    assert command.settings(str(ini)) == {"logging_config": None, "calibration_file": None}
    ini.write_text("[Overall]\nport = 1601\n[Thermometer]\ncalibration_file = from-ini.json\n")
    assert command.settings(str(ini))["calibration_file"] == "from-ini.json"
    monkeypatch.setenv("LABUTILS_THERMOMETER_CALIBRATION_FILE", "from-env.json")
    assert command.settings(str(ini))["calibration_file"] == "from-env.json"
    assert command.settings(str(ini), {"calibration_file": "cli.json"})["calibration_file"] == "cli.json"


def test_bad_configuration_exits_2_naming_file_and_value(tmp_path, capsys):
    ini = tmp_path / "server.ini"
    ini.write_text("[Overall]\nport = 99999\n")
    assert run_daemon(Thermometer, "thermometer", ["--config", str(ini), "--pid-file",
                                                   str(tmp_path / "t.pid")]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert err.startswith("thermometer: ") and "99999" in err and str(ini) in err
    assert run_daemon(Thermometer, "thermometer", ["--logging-config", str(tmp_path / "none.ini")]) \
        == EXIT_CONFIG
    assert "none.ini" in capsys.readouterr().err


def test_declared_constructor_errors_exit_2(tmp_path, capsys):
    argv = ["--pid-file", str(tmp_path / "t.pid"), "--logging-config", quiet_logging(tmp_path),
            "--calibration-file", "broken"]
    assert run_daemon(Thermometer, "thermometer", argv, options=OPTIONS,
                      config_errors=(LookupError,)) == EXIT_CONFIG
    assert "calibration 'broken' has no channels" in capsys.readouterr().err


def test_held_pid_lock_or_busy_port_exit_1(tmp_path, capsys):
    logging_ini = quiet_logging(tmp_path)
    lock = acquire_pid_lock(str(tmp_path / "t.pid"))
    try:
        assert run_daemon(Thermometer, "thermometer", ["--pid-file", str(tmp_path / "t.pid"),
                                                       "--logging-config", logging_ini]) == EXIT_START_FAILED
    finally:
        lock.close()
    assert "t.pid" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert run_daemon(Thermometer, "thermometer", ["--host", "127.0.0.1", "--port", str(port),
                                                       "--pid-file", str(tmp_path / "t.pid"),
                                                       "--logging-config", logging_ini]) == EXIT_START_FAILED
    assert f"cannot bind 127.0.0.1:{port}" in capsys.readouterr().err


WAITING_DAEMON = textwrap.dedent("""
    import sys, threading
    from lab_utils_common.socket_comm import Server, run_daemon

    def wait_for_instrument(server):
        print("INSTRUMENT-WAIT-STARTED", flush=True)
        threading.Event().wait()   # an instrument that never answers

    sys.exit(run_daemon(Server, "waiter", sys.argv[1:], prepare=wait_for_instrument))
""")


def test_sigterm_while_preparing_stops_cleanly(tmp_path):
    pid_file = str(tmp_path / "w.pid")
    process = subprocess.Popen([sys.executable, "-c", WAITING_DAEMON, "--pid-file", pid_file,
                                "--port", str(free_port())],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = iter(process.stdout.readline, "")  # ends when the process does
        # "in", not "==": the console log thread writes to the same stdout, so its line can land
        # between the marker and the newline print writes after it (the test's own path holds
        # "preparing", hence a marker no log line contains).
        assert any("INSTRUMENT-WAIT-STARTED" in line for line in lines)
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == EXIT_OK
    assert "Stopped before serving, in wait_for_instrument" in out and "Releasing PID file" in out
    acquire_pid_lock(pid_file).close()  # released

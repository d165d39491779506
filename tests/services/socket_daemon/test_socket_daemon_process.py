"""The socket-daemon console program as a real process: signals, PID lock, configuration errors."""

import os
import signal
import socket
import subprocess
import sys

import pytest

from tests.fixtures.ports import free_port, wait_for_port
from lab_utils_common.socket_comm import Client
from lab_utils_common.socket_comm.lock import acquire_pid_lock


def daemon_command(tmp_path, port, *extra):
    logging_ini = tmp_path / "logging.ini"
    logging_ini.write_text("[ConsoleLogger]\nactive = 1\nuse_coloured_output = 0\nlog_level = INFO\n")
    return [sys.executable, "-m", "socket_daemon", "--host", "127.0.0.1", "--port", str(port),
            "--pid-file", str(tmp_path / "daemon.pid"), "--logging-config", str(logging_ini), *extra]


@pytest.fixture
def start_daemon(tmp_path):
    processes = []

    def start(*extra):
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LABUTILS_")}
        process = subprocess.Popen(daemon_command(tmp_path, port, *extra), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, env=env)
        processes.append(process)
        wait_for_port("127.0.0.1", port)
        return process, port

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=20)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_and_releases_socket_and_lock(start_daemon, tmp_path, signum):
    process, port = start_daemon()
    assert Client(host="127.0.0.1", port=port, timeout=20).send_message("set x 1") == "x = 1"
    process.send_signal(signum)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert f"Received {signum.name}" in out and "Releasing PID file" in out
    with socket.socket() as sock:  # the port is free again
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
    acquire_pid_lock(str(tmp_path / "daemon.pid")).close()  # and the lock


def test_second_instance_names_lock_file_and_holder(start_daemon, tmp_path):
    process, port = start_daemon("--allow-unauthenticated-admin")
    second = subprocess.run(daemon_command(tmp_path, free_port()), capture_output=True, text=True, timeout=60)
    assert second.returncode == 1
    lock_path = str(tmp_path / "daemon.pid")
    assert f"PID lock file {lock_path!r} is held by process {process.pid}" in second.stderr
    assert Client(host="127.0.0.1", port=port, timeout=20).send_message("quit") == "Goodbye!"
    assert process.wait(30) == 0


def test_bad_configuration_exits_2_naming_the_value(tmp_path):
    ini = tmp_path / "server.ini"
    ini.write_text("[Overall]\nport = 99999\n")
    done = subprocess.run([sys.executable, "-m", "socket_daemon", "--config", str(ini), "--pid-file",
                           str(tmp_path / "p.pid")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "99999" in done.stderr and "server.ini" in done.stderr


def test_port_in_use_exits_1(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(daemon_command(tmp_path, port), capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"cannot bind 127.0.0.1:{port}" in done.stderr

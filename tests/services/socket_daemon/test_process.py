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


def _run_with_config(tmp_path, content: bytes, *extra, env_extra=None):
    ini = tmp_path / "server.ini"
    ini.write_bytes(content)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABUTILS_")}
    env.update(env_extra or {})
    # A value that is not refused makes the daemon serve: the timeout then fails the test.
    return ini, subprocess.run([sys.executable, "-m", "socket_daemon", "--config", str(ini),
                                "--host", "127.0.0.1", "--port", "0", "--pid-file",
                                str(tmp_path / "p.pid"), *extra],
                               capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.parametrize("section,option,value", [
    ("Overall", "max_backlog", "99999999999"),     # was OverflowError in listen()
    ("Overall", "receive_timeout", "inf"),         # was accepted: a client could hold a slot forever
    ("Overall", "send_timeout", "nan"),
    ("Overall", "max_connections", "0"),
    ("SocketDaemon", "max_value_size", "0"),
    ("SocketDaemon", "max_values_size", "-1"),
    ("SocketDaemon", "max_values_reply", "10"),
    ("SocketDaemon", "max_name_size", "lots"),
])
def test_out_of_range_value_exits_2_naming_file_section_option_and_value(tmp_path, section, option, value):
    body = f"[{section}]\n{option} = {value}\n"
    if section != "Overall":
        body = "[Overall]\n" + body
    ini, done = _run_with_config(tmp_path, body.encode())
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert str(ini) in done.stderr and f"[{section}]" in done.stderr
    assert f"{option!r}" in done.stderr and f"{value!r}" in done.stderr


def test_config_file_that_never_ends_exits_2_naming_the_limit(tmp_path):
    done = subprocess.run([sys.executable, "-m", "socket_daemon", "--config", "/dev/zero", "--pid-file",
                           str(tmp_path / "p.pid")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "'/dev/zero'" in done.stderr and "LABUTILS_CONFIG_MAX_SIZE" in done.stderr


def test_config_file_over_the_size_limit_or_binary_exits_2(tmp_path):
    _, done = _run_with_config(tmp_path, b"[Overall]\n" + b"#" * 2000 + b"\n",
                               env_extra={"LABUTILS_CONFIG_MAX_SIZE": "1024"})
    assert done.returncode == 2 and "larger than 1024 bytes (LABUTILS_CONFIG_MAX_SIZE)" in done.stderr
    _, done = _run_with_config(tmp_path, b"[Overall]\nhost = \x00\x01\n")
    assert done.returncode == 2 and "NUL byte" in done.stderr

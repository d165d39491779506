"""socket-daemon's named values against hostile clients, on a real daemon process.

A ``set`` must not rewrite everything stored, stored values are capped in bytes (each and in
total), the ``values`` reply is bounded, and a values file of the JSON era is migrated intact.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.ports import free_port, wait_for_port, wait_until

from lab_utils_common.socket_comm import Client


def _config(tmp_path: Path, **socket_daemon_options) -> Path:
    ini = tmp_path / "server.ini"
    overall = {"allow_unauthenticated_admin": socket_daemon_options.pop("allow_unauthenticated_admin", "0")}
    lines = ["[Overall]", "host = 127.0.0.1", *(f"{name} = {value}" for name, value in overall.items()),
             "[SocketDaemon]"]
    lines += [f"{name} = {value}" for name, value in socket_daemon_options.items()]
    ini.write_text("\n".join(lines) + "\n")
    return ini


@pytest.fixture
def start_daemon(tmp_path):
    """start(**[SocketDaemon] options) -> (process, client); the values file is tmp_path/values.json."""
    processes = []

    def start(**options):
        options.setdefault("values_file", tmp_path / "values.json")
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LABUTILS_")}
        process = subprocess.Popen(
            [sys.executable, "-m", "socket_daemon", "--config", str(_config(tmp_path, **options)),
             "--port", str(port), "--pid-file", str(tmp_path / f"daemon{len(processes)}.pid")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        processes.append(process)
        wait_for_port("127.0.0.1", port, timeout=60)
        return process, Client(host="127.0.0.1", port=port, timeout=60)

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=20)


def _proc_field(pid: int, file: str, name: str) -> int:
    for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return int(value.split()[0])
    raise KeyError(name)


def _seed_json(tmp_path: Path, count: int, value_size: int) -> dict:
    values = {f"v{index:06d}": "x" * value_size for index in range(count)}
    (tmp_path / "values.json").write_text(json.dumps(values))
    return values


def test_values_file_of_json_era_is_migrated_and_kept_as_backup(start_daemon, tmp_path):
    old = {"pump speed": "40", "setpoint": "3.5 K", "ünïcode": "✓"}
    (tmp_path / "values.json").write_text(json.dumps(old, indent=1))
    process, client = start_daemon(allow_unauthenticated_admin="1")  # 'quit' below is an admin command
    assert client.send_message("get {pump speed}") == "40"
    assert client.send_message("values") == "pump speed = 40\nsetpoint = 3.5 K\nünïcode = ✓"
    assert (tmp_path / "values.json").read_bytes().startswith(b"SQLite format 3\x00")
    assert json.loads((tmp_path / "values.json.json-backup").read_text()) == old
    assert client.send_message("set b 2") == "b = 2"
    assert client.send_message("quit") == "Goodbye!"
    assert process.wait(30) == 0
    _, again = start_daemon()  # the migrated store opens as it is, the backup untouched
    assert again.send_message("values") == "b = 2\npump speed = 40\nsetpoint = 3.5 K\nünïcode = ✓"
    assert json.loads((tmp_path / "values.json.json-backup").read_text()) == old


def test_a_set_writes_a_bounded_amount_whatever_is_stored(start_daemon, tmp_path):
    # 20,000 values, 10 MB: the JSON store rewrote (and fsynced) all of it on every set.
    _seed_json(tmp_path, 20_000, 500)
    process, client = start_daemon()
    assert client.send_message("get v000123") == "x" * 500
    written_before = _proc_field(process.pid, "io", "wchar")
    for index in range(20):
        assert client.send_message(f"set new{index} {index}") == f"new{index} = {index}"
    written = _proc_field(process.pid, "io", "wchar") - written_before
    assert written < 2 * 1024 * 1024, f"20 sets wrote {written} bytes"
    assert client.send_message("get v019999") == "x" * 500


def test_a_value_over_max_value_size_is_refused_naming_the_limit(start_daemon):
    _, client = start_daemon(max_value_size=1000)
    reply = client.send_message("set big " + "y" * 1001)
    assert reply.startswith("Error! ") and "max_value_size" in reply and "1000" in reply
    assert client.send_message("get big").startswith("Error! no value named 'big'")
    assert client.send_message("set big " + "y" * 1000) == "big = " + "y" * 1000


def test_a_name_over_max_name_size_is_refused_naming_the_limit(start_daemon):
    _, client = start_daemon(max_name_size=10)
    reply = client.send_message("set " + "n" * 11 + " 1")
    assert reply.startswith("Error! ") and "max_name_size" in reply and "10" in reply


def test_total_size_over_max_values_size_is_refused_and_nothing_is_lost(start_daemon):
    _, client = start_daemon(max_values_size=3000)
    for name in ("v1", "v2", "v3"):
        assert client.send_message(f"set {name} " + "a" * 900).startswith(f"{name} = ")
    reply = client.send_message("set v4 " + "b" * 900)
    assert reply.startswith("Error! ") and "max_values_size" in reply and "3000" in reply
    assert client.send_message("get v1") == "a" * 900
    assert client.send_message("set v1 short") == "v1 = short"  # shrinking always works
    assert client.send_message("unset v2") == "unset v2"
    assert client.send_message("set v4 " + "b" * 900).startswith("v4 = ")
    assert client.send_message("values").splitlines()[0] == "v1 = short"


def test_values_reply_is_bounded_and_pages(start_daemon):
    _, client = start_daemon(max_values_reply=4096)
    for index in range(30):
        assert client.send_message(f"set {{value {index:02d}}} " + "z" * 300).startswith("value")
    reply = client.send_message("values")
    assert reply.startswith("Error! ") and "max_values_reply" in reply and "4096" in reply
    assert "values --after" in reply
    names, command, pages = [], "values --after", 0
    while command:
        page = client.send_message(command)
        assert len(page.encode()) <= 4096 + 100
        lines = page.splitlines()
        command = ""
        if lines[-1].startswith("(more: "):
            command = lines.pop()[len("(more: "):-1]
        names += [line.split(" = ")[0] for line in lines]
        pages += 1
    assert names == [f"value {index:02d}" for index in range(30)]
    assert pages > 1
    # An unknown name names a few of the known ones, not all of them.
    missing = client.send_message("get nothing")
    assert missing.startswith("Error! no value named 'nothing'") and "and 20 more" in missing


def test_clients_asking_values_without_reading_do_not_grow_memory(start_daemon, tmp_path):
    _seed_json(tmp_path, 2000, 4000)  # 8 MB stored
    process, client = start_daemon()
    assert client.send_message("get v000001") == "x" * 4000
    baseline = _proc_field(process.pid, "status", "VmRSS")
    silent = []

    def requests() -> int:
        status = dict(line.split(": ", 1) for line in client.send_message("status").splitlines())
        return int(status["requests"])

    # Each status reply is counted once sent: the k-th call after the first sees k of its own.
    start, calls = requests(), [0]

    def values_answered() -> int:
        calls[0] += 1
        return requests() - start - calls[0]

    try:
        for _ in range(10):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and never read
            sock.settimeout(30)
            sock.connect(("127.0.0.1", client.port))
            sock.sendall(b"values")
            sock.shutdown(socket.SHUT_WR)
            silent.append(sock)
        wait_until(lambda: values_answered() >= 10, 60,
                   lambda: f"{values_answered()} of 10 values replies sent")
        grown_kib = _proc_field(process.pid, "status", "VmRSS") - baseline
        assert grown_kib < 40 * 1024, f"RSS grew by {grown_kib} KiB"
    finally:
        for sock in silent:
            sock.close()


def test_a_second_instance_leaves_the_values_file_alone(start_daemon, tmp_path):
    old = {"a": "1"}
    (tmp_path / "values.json").write_text(json.dumps(old))
    pid_file = tmp_path / "held.pid"
    from lab_utils_common.socket_comm.lock import acquire_pid_lock
    lock = acquire_pid_lock(str(pid_file))
    try:
        done = subprocess.run([sys.executable, "-m", "socket_daemon", "--port", "0", "--pid-file",
                               str(pid_file), "--values-file", str(tmp_path / "values.json")],
                              capture_output=True, text=True, timeout=60)
    finally:
        lock.close()
    assert done.returncode == 1, done.stderr
    assert json.loads((tmp_path / "values.json").read_text()) == old  # not migrated by the loser

"""Memory bounded in bytes: per reply, for all messages and replies in flight; RSS back after a burst."""

import socket
import threading

from tests.fixtures.ports import wait_until
from tests.lab_utils_common.socket_comm.test_server import LabServer

MIB = 1024 * 1024


def test_a_reply_over_max_reply_size_is_refused_naming_the_limit(socket_server_factory):
    running = socket_server_factory(LabServer, settings={"max_reply_size": 1000})
    assert running.send("blob 1000") == "x" * 1000
    assert running.send("blob 1001") == ("Error! the reply is 1001 characters or more, the maximum is 1000 bytes "
                                         "(max_reply_size)")
    assert running.send("hello") == "hello there"


def test_replies_nobody_reads_are_bounded_by_max_bytes_in_flight(socket_server_factory):
    # Replies larger than what the kernel buffers (a few MB on loopback) stay in the daemon.
    running = socket_server_factory(LabServer, settings={"max_bytes_in_flight": 30 * MIB})
    readers_that_never_read = []
    try:
        for _ in range(2):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
            sock.connect(("127.0.0.1", running.port))
            sock.sendall(b"blob 12000000")
            sock.shutdown(socket.SHUT_WR)
            readers_that_never_read.append(sock)
        wait_until(lambda: running.server.bytes_in_flight >= 24_000_000, 20,
                   lambda: f"{running.server.bytes_in_flight} bytes in flight")
        reply = running.send("blob 12000000")
        assert reply.startswith("Error! the daemon is busy: ") and "(max_bytes_in_flight)" in reply
        assert running.send("hello") == "hello there"  # small replies still fit
    finally:
        for sock in readers_that_never_read:
            sock.close()
    wait_until(lambda: running.server.bytes_in_flight == 0, 20,
               lambda: f"{running.server.bytes_in_flight} bytes still in flight")
    assert len(running.send("blob 12000000")) == 12_000_000


def test_messages_in_flight_are_bounded(socket_server_factory):
    running = socket_server_factory(LabServer, settings={"max_bytes_in_flight": 100_000,
                                                         "max_message_size": 60_000, "receive_timeout": 60.0})
    held = []
    try:
        for _ in range(2):  # two long messages still being sent (no end of message yet)
            sock = socket.create_connection(("127.0.0.1", running.port))
            sock.sendall(b"hello " + b"x" * 45_000)
            held.append(sock)
        wait_until(lambda: running.server.bytes_in_flight >= 90_000, 20,
                   lambda: f"{running.server.bytes_in_flight} bytes in flight")
        reply = running.send("hello " + "x" * 20_000)
        assert reply.startswith("Error! the daemon is busy: ")
        assert "the maximum is 100000 (max_bytes_in_flight)" in reply
    finally:
        for sock in held:
            sock.close()


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_rss_returns_near_its_baseline_after_a_burst_of_1_mib_messages(daemon_process):
    daemon = daemon_process()
    daemon.send("status")
    baseline = _rss_mib(daemon.process.pid)
    shapes = ["echo " + "a " * (MIB // 2 - 3), "echo {" + "a " * (MIB // 2 - 4) + "}",
              "bogus " + "x" * (MIB - 6), "echo " + "\u00e9" * (MIB // 2 - 3)]
    errors = []

    def burst():
        for message in shapes * 3:
            try:
                daemon.send(message, timeout=120)
            except OSError as exc:
                errors.append(exc)

    threads = [threading.Thread(target=burst) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not errors
    daemon.send("status")
    after = _rss_mib(daemon.process.pid)
    # Measured: 26 -> 28 MB; before the fixed mmap threshold: 26 -> 56 MB.
    assert after - baseline < 12, f"RSS {baseline:.0f} MB before the burst, {after:.0f} MB after"

"""Hostile or broken clients: each gets an error reply or a timeout; the daemon keeps serving, no fd leaks."""

import os
import socket
import time

import pytest

from lab_utils_common.socket_comm import Server

RECEIVE_TIMEOUT = 0.3  # small, so silent clients are answered quickly


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def raw_exchange(port: int, data: bytes, half_close: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        if data:
            sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def wait_for_fds(limit: int, timeout: float = 10.0) -> int:
    """Wait until the process has at most ``limit`` fds open (server-side closes are asynchronous)."""
    deadline = time.monotonic() + timeout
    while (count := open_fds()) > limit and time.monotonic() < deadline:
        time.sleep(0.01)
    return count


@pytest.fixture
def server(socket_server_factory):
    return socket_server_factory(Server, settings={"receive_timeout": RECEIVE_TIMEOUT})


@pytest.mark.parametrize("data, expected", [
    (b"\x13\x37 garbage {{{ }}}", b"Error! message contains the control character '\\x13' at position 0"),
    (b"\x00\x01\x02\xff" * 64, b"Error! message is not valid UTF-8 text (byte 0xff at position 3)"),
    (b"quit\xc3", b"Error! message is not valid UTF-8 text (byte 0xc3 at position 4)"),
    (b"", b"Error! empty message; send 'help' for the list of commands"),
    (b"   \n", b"Error! empty message; send 'help' for the list of commands"),
    (b"asdf qwer zxcv", b"Error! argument {quit,status,help}: invalid choice: 'asdf'"),
    (b"{unclosed brace", b"Error! argument {quit,status,help}: invalid choice: 'unclosed'"),
])
def test_bad_messages_get_a_clear_error_reply(server, data, expected):
    assert raw_exchange(server.port, data).startswith(expected)
    assert "status: running" in server.send("status")


def test_silent_client_gets_a_timeout_reply(server):
    # connects, sends nothing, does not half-close: answered after receive_timeout
    assert raw_exchange(server.port, b"", half_close=False) == \
        f"Error! no message received within {RECEIVE_TIMEOUT:g} s".encode()


def test_byte_a_second_client_gets_an_error_after_its_first_byte(server):
    # A 0.5.x client sends a whole message at once: a pause after data ends the message,
    # so a trickling client is answered about its first byte and does not hold anything.
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(b"q")
        reply = sock.recv(65536)
    assert reply.startswith(b"Error! argument {quit,status,help}: invalid choice: 'q'")


def test_long_message_that_stalls_times_out(server):
    # past 4096 bytes only end-of-file ends a message: a stall then hits receive_timeout
    reply = raw_exchange(server.port, b"x" * 5000, half_close=False)
    assert reply == f"Error! message incomplete after {RECEIVE_TIMEOUT:g} s (5000 bytes received " \
                    f"without an end of message)".encode()


def test_client_that_never_reads_its_reply_is_dropped(socket_server_factory):
    running = socket_server_factory(Server, settings={"send_timeout": 0.2})
    before = open_fds()
    sock = socket.create_connection(("127.0.0.1", running.port), timeout=20)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(b"help " * 10)  # an error reply with the full help, never read
    sock.shutdown(socket.SHUT_WR)
    sock.close()
    assert wait_for_fds(before) <= before
    assert "status: running" in running.send("status")


def test_no_file_descriptor_leaks_after_bad_clients(server):
    server.send("status")  # warm up: lazily opened fds (e.g. the event loop's) are not leaks
    before = open_fds()
    silent = [socket.create_connection(("127.0.0.1", server.port), timeout=20) for _ in range(20)]
    for _ in range(20):
        raw_exchange(server.port, b"\xff\xfe")
        raw_exchange(server.port, b"")
        with socket.create_connection(("127.0.0.1", server.port)):
            pass  # connect and leave at once
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"x" * 6000)  # leave in the middle of a long message
    for sock in silent:  # answered by the receive timeout, all at about the same time
        assert sock.recv(65536).startswith(b"Error! no message received")
        sock.close()
    assert wait_for_fds(before) <= before
    status = dict(line.split(": ", 1) for line in server.send("status").splitlines())
    assert status["connections"] == "1"  # only the status request itself

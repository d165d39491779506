"""Many clients at once: every one answered correctly, silent clients hold up nobody."""

import socket
import threading

from tests.fixtures.ports import wait_until
from tests.fixtures.tcp_peers import EchoServer

CLIENTS = 64
REQUESTS_EACH = 10


def test_64_concurrent_clients_all_answered(socket_server_factory):
    running = socket_server_factory(EchoServer)
    start = threading.Barrier(CLIENTS, timeout=30)
    failures = []

    def client(index):
        start.wait()
        for request in range(REQUESTS_EACH):
            text = f"c{index}r{request}"
            try:
                reply = running.send(f"echo {text}")
            except OSError as exc:
                failures.append(f"{text}: {exc}")
                continue
            if reply != text:
                failures.append(f"{text}: got {reply!r}")

    threads = [threading.Thread(target=client, args=(index,)) for index in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    status = dict(line.split(": ", 1) for line in running.send("status").splitlines())
    assert int(status["requests"]) >= CLIENTS * REQUESTS_EACH
    assert status["error_replies"] == "0"


def test_silent_clients_do_not_hold_up_others(socket_server_factory):
    running = socket_server_factory(EchoServer, settings={"receive_timeout": 60.0, "auth_timeout": 60.0})
    silent = [socket.create_connection(("127.0.0.1", running.port)) for _ in range(20)]
    try:
        for index in range(10):
            assert running.send(f"echo {index}") == str(index)
        status = dict(line.split(": ", 1) for line in running.send("status").splitlines())
        assert int(status["connections"]) == 21  # the silent ones are still open
    finally:
        for sock in silent:
            sock.close()


def test_connections_beyond_the_maximum_get_an_error_but_status_is_answered(socket_server_factory):
    running = socket_server_factory(EchoServer, settings={"max_connections": 3, "receive_timeout": 60.0})
    # Clients in the middle of long messages (more than 4096 bytes, no end of message yet).
    slow = [socket.create_connection(("127.0.0.1", running.port)) for _ in range(3)]
    try:
        for sock in slow:
            sock.sendall(b"echo " + b"x" * 5000)
        wait_until(lambda: running.server.admitted_connections == 3, 20,
                   lambda: f"{running.server.admitted_connections} admitted")
        reply = running.send("echo x")
        assert reply == "Error! the daemon is busy: 3 connections open, the maximum is 3 (max_connections)"
        assert running.send("status").startswith("status: running")  # a healthcheck always gets through
    finally:
        for sock in slow:
            sock.close()

"""What the relay holds and serves is bounded, and its own pauses never cut a record."""

from __future__ import annotations

import socket
import time

from tests.fixtures.ports import wait_until
from tests.services.log_relay.test_delivery import alarm_line
from tests.services.log_relay.test_disk_full import set_spool_limit
from tests.services.log_relay.test_process import spool_messages

from log_relay.status import read_status


def test_a_pause_the_relay_caused_does_not_cut_a_0_5_x_record(relay_factory):
    relay = relay_factory(heartbeat_interval="60", max_backlog="1", tail_wait="0.1")
    writer = relay.relay.writer
    with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as sock:
        sock.sendall(alarm_line("old", "ERROR", "first", end=b""))
        relay.wait_spooled(1)
        set_spool_limit(relay, 0)
        # 0.5.x: no terminator. Two whole records and half of a third arrive; the relay pauses
        # (backlog, failing disk) with that half in hand, for much longer than tail_wait.
        second = alarm_line("old", "ERROR", "second " + "x" * 8000, end=b"")  # needs new pages
        third = alarm_line("old", "ERROR", "third, in two pieces", end=b"")
        sock.sendall(second + second + third[:40])
        wait_until(lambda: writer.failing_since is not None and relay.relay.receiver.paused, 15,
                   lambda: "the relay did not pause")
        wait_until(lambda: time.monotonic() - writer.failing_since > 1.0, 15, lambda: "")
        sock.sendall(third[40:])
        set_spool_limit(relay, None)
        relay.wait_spooled(4, timeout=30)
    assert spool_messages(relay.spool_path) == ["first", "second " + "x" * 8000,
                                                   "second " + "x" * 8000, "third, in two pieces"]
    assert relay.spool_count("records", "note IS NOT NULL") == 0


def test_connections_beyond_max_connections_are_refused_counted_and_logged_once(relay_factory, caplog):
    relay = relay_factory(max_connections="3", heartbeat_interval="0.2")
    socks = [socket.create_connection(("127.0.0.1", relay.port), timeout=10) for _ in range(6)]
    try:
        wait_until(lambda: relay.relay.receiver.refused == 3, 15,
                   lambda: f"{relay.relay.receiver.refused} refused")
        closed = []
        for sock in socks:
            sock.settimeout(0.05)
            try:
                closed.append(sock.recv(1) == b"")
            except TimeoutError:
                closed.append(False)
            except ConnectionResetError:
                closed.append(True)
        assert closed.count(True) == 3 and closed[:3] == [False] * 3
        wait_until(lambda: read_status(relay.spool_path).details.get("connections_refused") == "3",
                   15, lambda: str(read_status(relay.spool_path).details))
    finally:
        for sock in socks:
            sock.close()
    refusals = [r for r in caplog.records if "max_connections" in r.getMessage()]
    assert len(refusals) == 1 and "refused 1 connection(s)" in refusals[0].getMessage()

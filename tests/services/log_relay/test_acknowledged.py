"""Acknowledged delivery: NonPickledSocketHandler -> log-relay survives SIGKILLs of the relay."""

from __future__ import annotations

import collections
import signal
import socket
import threading

from tests.fixtures.ports import free_port, wait_until
from tests.fixtures.relay import relay_config_file
from tests.services.log_relay.test_process import spool_count, spool_messages

from lab_utils_common.alarm_wire import ack_line, hello_line, parse_ready, sequenced_line
from lab_utils_common.custom_logging import NonPickledSocketHandler


def test_three_sigkills_during_a_flood_lose_nothing_and_duplicate_nothing(
        tmp_path, smtp_server, relay_process_factory, isolated_logger):
    port = free_port()
    spool = tmp_path / "spool.sqlite3"
    config = relay_config_file(tmp_path / "relay.ini", smtp_server, spool=spool, port=port,
                               relay={"group_wait": "600"})
    relay = relay_process_factory(config, port).start()
    total = 20_000
    handler = NonPickledSocketHandler("127.0.0.1", port, queue_size=total, retry_start=0.05,
                                      retry_max=0.2, flush_timeout=120)
    logger = isolated_logger("flood")
    logger.addHandler(handler)
    padding = "x" * 500  # a realistic record size; keeps the flood going long enough to kill into
    producer = threading.Thread(
        target=lambda: [logger.error("flood %d %s", i, padding) for i in range(total)])
    producer.start()
    try:
        for _kill in range(3):
            # Kill while records are arriving: a few thousand more committed since the restart.
            target = spool_count(spool) + 1000 if spool.exists() else 1000
            wait_until(lambda: spool.exists() and spool_count(spool) >= target, 60,
                       lambda: f"{spool_count(spool) if spool.exists() else 0} spooled, waiting for {target}")
            relay.signal(signal.SIGKILL)
            assert relay.wait() == -signal.SIGKILL
            assert spool_count(spool) < total, "the flood was over before the kill"
            relay = relay_process_factory(config, port).start()
    finally:
        producer.join()
    assert handler.flush(timeout=120) is True  # committed by the relay
    assert handler.dropped == 0
    messages = spool_messages(spool)
    duplicates = [m for m, n in collections.Counter(messages).items() if n > 1]
    assert duplicates == []
    assert sorted(messages) == sorted(f"flood {i} {padding}" for i in range(total))


def test_a_sequence_number_the_spool_holds_is_dropped_and_acknowledged(relay_factory):
    """The protocol on the wire: ready says what the spool holds; a record sent again after a
    lost acknowledgement is acknowledged without being stored twice."""
    relay = relay_factory()
    line = "{pump} --date {2024-05-01 10:00:00} --level {ERROR} --app {pump} --module {m} " \
           "--function {f} --message {hot %d}"
    with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as sock:
        sock.sendall(hello_line("lab/1/abc"))
        replies = sock.makefile("rb")
        assert parse_ready(replies.readline()) == 0
        sock.sendall(b"".join(sequenced_line(seq, line % seq) for seq in (1, 2, 3)))
        assert _read_ack_until(replies, 3)
    with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as sock:
        sock.sendall(hello_line("lab/1/abc"))
        replies = sock.makefile("rb")
        assert parse_ready(replies.readline()) == 3
        sock.sendall(b"".join(sequenced_line(seq, line % seq) for seq in (2, 3, 4)))
        assert _read_ack_until(replies, 4)
    assert spool_messages(relay.spool_path) == ["hot 1", "hot 2", "hot 3", "hot 4"]
    assert relay.relay.writer.duplicates == 2


def _read_ack_until(replies, seq: int) -> bool:
    while True:
        line = replies.readline()
        if not line:
            return False
        if line == ack_line(seq):
            return True


def test_flush_returns_once_the_relay_committed(relay_factory, isolated_logger):
    relay = relay_factory()
    handler = NonPickledSocketHandler("127.0.0.1", relay.port, retry_start=0.05, flush_timeout=30)
    logger = isolated_logger("flushing")
    logger.addHandler(handler)
    for i in range(500):
        logger.error("committed %d", i)
    assert handler.flush() is True
    assert handler.acknowledged
    # No waiting here: flush() returned, so the spool holds all of them now.
    assert relay.spool_count() == 500

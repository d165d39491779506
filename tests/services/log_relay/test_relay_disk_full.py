"""The spool's disk full: nothing accepted is dropped, the status says why, a stop does not hang.

A full disk is made with SQLite's own limit on the writer's connection (``PRAGMA
max_page_count`` at the current size): the commit fails with SQLITE_FULL, "database or disk is
full", exactly as on a full file system, without mounting anything.
"""

from __future__ import annotations

from tests.fixtures.ports import wait_until
from tests.fixtures.tcp_peers import send_to_relay
from log_relay.status import read_status
from tests.services.log_relay.test_relay_delivery import alarm_line


def set_spool_limit(relay, pages: int | None) -> None:
    """Stop the spool from growing beyond its current size (``None``: lift the limit)."""
    db = relay.relay.writer._spool._db
    if pages is None:
        pages = 1 << 30
    else:
        pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")


def flood(count: int, start: int = 0) -> bytes:
    return b"".join(alarm_line("pumpctl", "ERROR", f"disk full {i} " + "x" * 100)
                    for i in range(start, start + count))


def test_records_wait_in_memory_while_the_disk_is_full_and_are_all_delivered_after(relay_factory,
                                                                                   smtp_server):
    # No heartbeat during the test: only the records use the writer's connection.
    relay = relay_factory(heartbeat_interval="60", group_wait="0.2")
    send_to_relay(relay.port, flood(1))
    relay.wait_delivered(1)
    set_spool_limit(relay, 0)
    send_to_relay(relay.port, flood(2000, start=1))
    writer = relay.relay.writer
    wait_until(lambda: writer.failing_since is not None, 15, lambda: "no commit failed")
    assert "database or disk is full" in writer.last_error
    # The first failed commit can come while the flood is still arriving: wait for all of it.
    wait_until(lambda: writer.uncommitted == 2000, 15,
               lambda: f"{writer.uncommitted} records wait in memory, expected 2000")
    assert relay.spool_count() == 1

    # The status command, reading the same spool, names the full disk (here: below a limit).
    report = read_status(relay.spool_path, min_free_bytes=1 << 62)
    assert not report.healthy
    assert any("is full:" in problem and "bytes free" in problem for problem in report.problems), \
        report.problems

    set_spool_limit(relay, None)
    send_to_relay(relay.port, flood(1, start=2001))  # new records wake the writer at once
    relay.wait_delivered(2002, timeout=30)
    assert relay.relay.writer.committed == 2002


def test_a_stop_while_the_disk_stays_full_ends_and_counts_what_was_not_written(relay_factory,
                                                                              smtp_server):
    relay = relay_factory(heartbeat_interval="60", drain_timeout="0.5")
    send_to_relay(relay.port, flood(1))
    relay.wait_spooled(1)
    set_spool_limit(relay, 0)
    send_to_relay(relay.port, flood(300, start=1))
    wait_until(lambda: relay.relay.writer.failing_since is not None, 15, lambda: "no commit failed")
    relay.stop(timeout=15)  # before: waited for the disk for ever (until the supervisor's SIGKILL)
    assert relay.relay.lost_at_stop == 300
    assert relay.spool_count() == 1

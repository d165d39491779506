"""The spool's disk full: nothing accepted is dropped, the status says why, a stop does not hang.

A full disk is made with SQLite's own limit on the writer's connection (``PRAGMA
max_page_count`` at the current size): the commit fails with SQLITE_FULL, "database or disk is
full", exactly as on a full file system, without mounting anything.
"""

from __future__ import annotations

import threading

from tests.fixtures.ports import wait_until
from tests.fixtures.tcp_peers import send_to_relay
from tests.services.log_relay.test_delivery import alarm_line

from log_relay.status import read_status


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


def test_reading_stops_at_the_first_failed_commit_and_everything_is_delivered_after(relay_factory,
                                                                                  smtp_server):
    # No heartbeat during the test: only the records use the writer's connection.
    relay = relay_factory(heartbeat_interval="60", group_wait="0.2")
    send_to_relay(relay.port, flood(1))
    relay.wait_delivered(1)
    set_spool_limit(relay, 0)
    total = 20_000  # 2.4 MB: more than the relay reads before its first commit fails
    sender = threading.Thread(target=send_to_relay, args=(relay.port, flood(total, start=1)))
    sender.start()
    writer = relay.relay.writer
    wait_until(lambda: writer.failing_since is not None, 15, lambda: "no commit failed")
    assert "database or disk is full" in writer.last_error
    wait_until(lambda: relay.relay.receiver.paused, 15, lambda: "the receiver still reads")
    # Before: the relay read on and held up to max_backlog (200,000) records in memory.
    assert writer.uncommitted < total
    assert relay.spool_count() == 1

    # The status command, reading the same spool, names the full disk (here: below a limit).
    report = read_status(relay.spool_path, min_free_bytes=1 << 62)
    assert not report.healthy
    assert any("is full:" in problem and "bytes free" in problem for problem in report.problems), \
        report.problems

    set_spool_limit(relay, None)  # the next retry succeeds, and reading resumes
    sender.join(60)
    relay.wait_delivered(total + 1, timeout=60)
    assert relay.relay.writer.committed == total + 1


def test_a_stop_while_the_disk_stays_full_ends_and_counts_what_was_not_written(relay_factory,
                                                                              smtp_server):
    relay = relay_factory(heartbeat_interval="60", drain_timeout="0.5")
    send_to_relay(relay.port, flood(1))
    relay.wait_spooled(1)
    set_spool_limit(relay, 0)
    send_to_relay(relay.port, flood(300, start=1))
    wait_until(lambda: relay.relay.writer.failing_since is not None, 15, lambda: "no commit failed")
    relay.stop(timeout=15)  # before: waited for the disk for ever (until the supervisor's SIGKILL)
    # What was read and not written is counted (a 0.5.x sender's; this project's sends it again).
    assert 0 < relay.relay.lost_at_stop == relay.relay.receiver.received - 1
    assert relay.spool_count() == 1

"""A PostgreSQL restart during inserts: reconnected, and no insert is ever lost silently."""

from __future__ import annotations

import threading
import time

import psycopg2
import pytest

from lab_utils_common.database import ConnectionLostError, DatabaseUnavailableError, DataType


@pytest.fixture
def counter_table(db):
    db.create_timescale_db("counts")
    db.new_column("counts", "n", DataType.int)
    return db


def stored(postgres_server, pg_database) -> list[int]:
    out = postgres_server.psql("SELECT n FROM counts ORDER BY n", pg_database)
    return [int(line) for line in out.split()] if out else []


def test_restart_between_inserts_is_invisible(counter_table, postgres_server, pg_database):
    counter_table.new_entry("counts", ["n"], [1])
    postgres_server.restart()
    counter_table.new_entry("counts", ["n"], [2])  # the dead connection is noticed and replaced
    assert counter_table.new_entries("counts", ["n"], [(3,), (4,)]) == 2
    postgres_server.restart()
    assert counter_table.fetch_latest("counts") is not None
    assert stored(postgres_server, pg_database) == [1, 2, 3, 4]


def test_restart_during_a_stream_of_inserts_loses_nothing_that_returned(
        counter_table, postgres_server, pg_database):
    counter_table.reconnect_timeout = 30
    succeeded: list[int] = []
    failed: list[tuple[int, Exception]] = []
    enough = threading.Event()
    stop = threading.Event()

    def insert_forever() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                counter_table.new_entry("counts", ["n"], [n])
                succeeded.append(n)
            except psycopg2.Error as exc:  # allowed: an insert may fail, but then it says so
                failed.append((n, exc))
            if len(succeeded) >= 50:
                enough.set()

    worker = threading.Thread(target=insert_forever)
    worker.start()
    try:
        assert enough.wait(30)
        postgres_server.restart()
        enough.clear()
        succeeded_before = len(succeeded)
        # wait (with a deadline) until inserts are flowing again after the restart
        deadline = time.monotonic() + 60
        while len(succeeded) < succeeded_before + 50 and time.monotonic() < deadline:
            enough.wait(0.05)
    finally:
        stop.set()
        worker.join(60)
    rows = stored(postgres_server, pg_database)
    assert set(succeeded) <= set(rows), "an insert returned but its row is missing"
    assert len(succeeded) >= succeeded_before + 50
    # anything stored is either a success or one whose failure was reported as uncertain
    assert set(rows) <= set(succeeded) | {n for n, _ in failed}


def test_server_down_raises_after_the_reconnect_timeout_then_recovers(
        counter_table, postgres_server, pg_database):
    counter_table.reconnect_timeout = 0.5
    postgres_server.stop()
    try:
        with pytest.raises(DatabaseUnavailableError, match="still failing after 0.5 s"):
            counter_table.new_entry("counts", ["n"], [1])
        assert counter_table.status()["connected"] is False
    finally:
        postgres_server.start()
    counter_table.new_entry("counts", ["n"], [2])
    assert stored(postgres_server, pg_database) == [2]


def test_restart_in_the_middle_of_new_entries_stores_none_of_them_and_says_so(
        counter_table, postgres_server, pg_database):
    def rows_with_a_restart():
        for n in range(1, 20_001):
            if n == 10_000:  # some chunks of the COPY are already on the server
                postgres_server.restart()
            yield (n,)

    with pytest.raises(ConnectionLostError, match="lost during COPY into 'counts'.*may or may not"):
        counter_table.new_entries("counts", ["n"], rows_with_a_restart())
    assert stored(postgres_server, pg_database) == []  # COPY is one statement: all or nothing
    assert counter_table.new_entries("counts", ["n"], [(1,), (2,)]) == 2  # reconnected
    assert stored(postgres_server, pg_database) == [1, 2]

"""TimescaleDB 2.x, both editions: hypertables and buckets everywhere (the Apache-edition container in
CI); continuous aggregates and policies on the TSL edition (marked ``timescaledb_tsl``)."""

from __future__ import annotations

import datetime

import psycopg2
import pytest

from lab_utils_common.database import Database, DataType, InvalidIdentifierError

pytestmark = pytest.mark.timescaledb

UTC = datetime.UTC
T0 = datetime.datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)


def query(db: Database, statement: str, params=()) -> list:
    db.cursor.execute(statement, params)
    return db.cursor.fetchall()


def make_beam(db: Database) -> Database:
    db.create_timescale_db("beam")
    db.new_column("beam", "current", DataType.double)
    db.new_column("beam", "count", DataType.int)
    db.new_column("beam", "note", DataType.string)
    db.new_entries("beam", ["time", "current", "count", "note"],
                   [(T0 + datetime.timedelta(seconds=20 * i), float(i), i, f"n{i}")
                    for i in range(6)])
    return db


@pytest.fixture
def beam(ts_db: Database) -> Database:
    return make_beam(ts_db)


@pytest.fixture
def tsl_beam(tsl_db: Database) -> Database:
    return make_beam(tsl_db)


def test_time_table_is_a_hypertable(beam):
    assert beam.timescaledb_version is not None
    assert query(beam, "SELECT hypertable_name FROM timescaledb_information.hypertables") == [("beam",)]


def test_injected_table_name_runs_nothing(ts_db):
    ts_db.create_timescale_db("x")
    with pytest.raises(InvalidIdentifierError):
        ts_db.create_timescale_db("t; DROP TABLE x")
    assert ts_db.check_table("x")


@pytest.mark.timescaledb_tsl
def test_continuous_aggregate_averages_numeric_columns(tsl_beam):
    beam = tsl_beam
    assert beam.create_aggregate_view("beam") == "beam_1min"
    rows = query(beam, "SELECT time, current_avg, count_avg FROM beam_1min ORDER BY 1")
    assert rows[0][:2] == (T0, 1.0) and float(rows[1][2]) == 4.0
    assert [r[:2] for r in rows] == beam.fetch("beam", ["current"], bucket="1 minute")
    assert query(beam, "SELECT view_name, materialized_only FROM "
                       "timescaledb_information.continuous_aggregates") == [("beam_1min", False)]
    assert set(beam.list_columns("beam_1min")) == {"time", "current_avg", "count_avg"}  # no note
    refresh = beam.policies("beam")["policy_refresh_continuous_aggregate"]
    assert (refresh["start_offset"], refresh["end_offset"]) == (None, "00:01:00")
    assert query(beam, "SELECT schedule_interval FROM timescaledb_information.jobs WHERE "
                       "hypertable_name = 'beam_1min'") == [(datetime.timedelta(minutes=1),)]
    beam.new_column("beam", "voltage", DataType.double)
    beam.create_aggregate_view("beam")  # recreate: drops the old one, adds the new column
    assert set(beam.list_columns("beam_1min")) == {"time", "current_avg", "count_avg", "voltage_avg"}
    assert list(beam.policies("beam")) == ["policy_refresh_continuous_aggregate"]  # one, not two
    with pytest.raises(psycopg2.errors.DuplicateTable):
        beam.create_aggregate_view("beam", recreate=False)


@pytest.mark.timescaledb_tsl
def test_retention_and_compression_policies(tsl_beam):
    beam = tsl_beam
    beam.set_retention_policy("beam", "30 days")
    beam.set_retention_policy("beam", datetime.timedelta(days=60))  # replaces, no duplicate
    beam.set_compression_policy("beam", "7 days", segment_by=["note"])
    jobs = beam.policies("beam")
    assert jobs["policy_retention"]["drop_after"] == "60 days"
    assert jobs["policy_compression"]["compress_after"] == "7 days"
    assert query(beam, "SELECT attname FROM timescaledb_information.compression_settings "
                       "WHERE hypertable_name = 'beam' AND segmentby_column_index IS NOT NULL"
                 ) == [("note",)]
    beam.remove_retention_policy("beam")
    beam.remove_compression_policy("beam")
    beam.remove_compression_policy("beam")  # already gone: no error
    assert beam.policies("beam").keys() == set()
    with pytest.raises(TypeError, match="drop_after"):
        beam.set_retention_policy("beam", 30)
    with pytest.raises(psycopg2.errors.InvalidDatetimeFormat):
        beam.set_retention_policy("beam", "thirty days")
    with pytest.raises(psycopg2.DataError):  # a value, never SQL
        beam.set_retention_policy("beam", "1 day'::interval); DROP TABLE beam; --")
    with pytest.raises(psycopg2.DataError):
        beam.set_compression_policy("beam", "1 day'::interval); DROP TABLE beam; --")
    with pytest.raises(InvalidIdentifierError):
        beam.set_compression_policy("beam", "7 days", segment_by=['note"; DROP TABLE beam; --'])
    assert beam.check_table("beam") and len(beam.fetch("beam")) == 6


def test_fetch_buckets_with_time_bucket(beam):
    assert beam.fetch("beam", ["current"], bucket="1 minute") == [
        (T0, 1.0), (T0 + datetime.timedelta(minutes=1), 4.0)]


def test_create_database_installs_the_extension(ts_db, timescaledb_server, timescale_database):
    name = f"{timescale_database}_new"
    try:
        assert ts_db.create_database(name, owner=timescaledb_server.user) is True
        assert timescaledb_server.execute(
            "SELECT extname FROM pg_extension WHERE extname = 'timescaledb'", dbname=name) == [
            ("timescaledb",)]
    finally:
        timescaledb_server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_extension_is_installed_on_first_use(timescaledb_server, timescale_database):
    name = f"{timescale_database}_bare"  # a database without the extension (template1 may have it)
    timescaledb_server.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    db = Database(host=timescaledb_server.host, port=timescaledb_server.port, database=name,
                  user=timescaledb_server.user, password=timescaledb_server.password,
                  timescaledb=True)
    db.connect()
    try:
        assert db.timescaledb_version is None
        db.create_timescale_db("t")
        assert db.timescaledb_version is not None
        assert query(db, "SELECT count(*) FROM timescaledb_information.hypertables") == [(1,)]
    finally:
        db.close()
        timescaledb_server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_bucketed_fetch_gives_the_same_rows_with_and_without_timescaledb(ts_db, db):
    """time_bucket (TimescaleDB) and date_bin (timescaledb = off) put rows in the same buckets."""
    assert db.timescaledb_version is None and ts_db.timescaledb_version is not None
    rows = [(T0 + datetime.timedelta(seconds=(i * 7919) % (9 * 86400)), float(i % 97))
            for i in range(2000)]
    for mode in (ts_db, db):
        mode.create_timescale_db("irregular")
        mode.new_column("irregular", "x", DataType.double)
        mode.new_entries("irregular", ["time", "x"], rows)
    for bucket in ("45 seconds", "7 minutes", "90 minutes", "1 day", "3 days", "1 week",
                   datetime.timedelta(hours=5)):
        with_timescaledb = ts_db.fetch("irregular", ["x"], bucket=bucket)
        plain = db.fetch("irregular", ["x"], bucket=bucket)
        assert [r[0] for r in plain] == [r[0] for r in with_timescaledb], bucket
        assert [r[1] for r in plain] == pytest.approx([r[1] for r in with_timescaledb], rel=1e-12)


def test_plain_mode_works_on_postgresql_17_too(pg17_db):
    """The library on the container's PostgreSQL 17 with timescaledb = off (PG 15 is the host's)."""
    db = pg17_db
    assert "PostgreSQL 17" in db.db_version and db.timescaledb_edition == "off"
    make_beam(db)
    assert db.fetch("beam", ["current"], bucket="1 minute") == [
        (T0, 1.0), (T0 + datetime.timedelta(minutes=1), 4.0)]
    assert db.create_aggregate_view("beam") == "beam_1min"
    assert query(db, "SELECT time, current_avg FROM beam_1min ORDER BY 1") == [
        (T0, 1.0), (T0 + datetime.timedelta(minutes=1), 4.0)]
    assert db.new_entries_csv("beam", "time,current\n2024-03-01T13:00:00Z,7\n") == 1


def test_apache_edition_is_detected_and_its_aggregate_is_a_time_bucket_view(beam):
    if beam.timescaledb_license != "apache":  # a TSL server from LABUTILS_TEST_TIMESCALEDB_DSN
        pytest.skip(f"the server runs the {beam.timescaledb_license!r} edition, not the Apache one")
    assert (beam.timescaledb_license, beam.timescaledb_edition) == ("apache", "apache")
    assert beam.status()["timescaledb_edition"] == "apache"
    assert beam.create_aggregate_view("beam") == "beam_1min"
    assert query(beam, "SELECT count(*) FROM timescaledb_information.continuous_aggregates") == [(0,)]
    assert "time_bucket" in query(beam, "SELECT pg_get_viewdef('beam_1min')")[0][0]
    rows = query(beam, "SELECT time, current_avg, count_avg FROM beam_1min ORDER BY 1")
    assert [r[:2] for r in rows] == beam.fetch("beam", ["current"], bucket="1 minute")
    assert set(beam.list_columns("beam_1min")) == {"time", "current_avg", "count_avg"}
    with pytest.raises(psycopg2.NotSupportedError, match="needs the TSL .* apache edition"):
        beam.set_compression_policy("beam", "7 days")

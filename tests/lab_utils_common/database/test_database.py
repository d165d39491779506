"""Database against a real PostgreSQL 15 in plain mode (timescaledb = off): every method."""

from __future__ import annotations

import configparser
import datetime
from pathlib import Path

import psycopg2
import psycopg2.errors
import pytest

from lab_utils_common.database import (
    ColumnCountError,
    Constraint,
    Database,
    DatabaseUnavailableError,
    DataType,
    InvalidIdentifierError,
    MissingColumnError,
    MissingTableError,
    NotConnectedError,
    TimescaleDBUnavailableError,
)

UTC = datetime.UTC
T0 = datetime.datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)


def minutes(n: float) -> datetime.datetime:
    return T0 + datetime.timedelta(minutes=n)


@pytest.fixture
def beam(db: Database) -> Database:
    """A time table ``beam`` with a double ``current`` and a text ``note`` column."""
    db.create_timescale_db("beam")
    db.new_column("beam", "current", DataType.double)
    db.new_column("beam", "note", DataType.string)
    return db


# ---------------------------------------------------------------- configuration


def test_defaults_are_those_of_0_5_4(monkeypatch):
    for name in ("HOST", "PORT", "DATABASE", "USER", "PASSFILE", "TIMESCALEDB"):
        monkeypatch.delenv(f"LABUTILS_DATABASE_{name}", raising=False)
    db = Database()
    assert (db.host, db.port, db.database, db.user) == ("localhost", 5432, "beam", "cw-beam")
    assert db.passfile.endswith("/.pgpass") and db.timescaledb is True


def test_file_then_environment_then_arguments(tmp_path, monkeypatch):
    ini = tmp_path / "database.ini"
    ini.write_text("[Overall]\nhost = dbhost\nport = 5433\ndatabase = lab\nuser = me\n"
                   "passfile = ~/pg.pass\ntimescaledb = off\n")
    monkeypatch.setenv("LABUTILS_DATABASE_DATABASE", "from_env")
    monkeypatch.setenv("LABUTILS_DATABASE_USER", "env_user")
    db = Database(config_file=str(ini), user="arg_user")
    assert (db.host, db.port, db.database, db.user) == ("dbhost", 5433, "from_env", "arg_user")
    assert db.passfile.endswith("/pg.pass") and not db.passfile.startswith("~")
    assert db.timescaledb is False


def test_password_comes_from_a_secret_file_and_stays_out_of_messages(tmp_path, monkeypatch,
                                                                        postgres_server, pg_database):
    secret = tmp_path / "db_password"
    secret.write_text(postgres_server.password + "\n")
    monkeypatch.setenv("LABUTILS_DATABASE_PASSWORD_FILE", str(secret))
    db = Database(host=postgres_server.host, port=postgres_server.port, database=pg_database,
                  user=postgres_server.user, passfile=str(tmp_path / "no-such-pgpass"),
                  timescaledb=False)
    db.connect()
    try:
        status = db.status()
        assert status["connected"] is True
        assert postgres_server.password not in repr(status) + repr(vars(db)) + repr(db)
    finally:
        db.close()


def test_missing_file_and_bad_values_raise_configparser_errors(tmp_path):
    with pytest.raises(configparser.Error, match="does not exist"):
        Database(config_file=str(tmp_path / "missing.ini"))
    bad = tmp_path / "bad.ini"
    bad.write_text("[Overall]\nport = five\n")
    with pytest.raises(configparser.Error, match="'five'"):
        Database(config_file=str(bad))


# ---------------------------------------------------------------- connection


def test_operations_before_connect_and_after_close_raise_not_connected(db):
    assert db.check_table("nothing") is False
    db.close()
    with pytest.raises(NotConnectedError, match="call connect"):
        db.check_table("nothing")
    fresh = Database(host=db.host, port=db.port)
    with pytest.raises(NotConnectedError):
        fresh.new_entry("t", ["a"], [1])


def test_unreachable_server_error_names_it_and_retries_are_reported(unused_port):
    db = Database(host="127.0.0.1", port=unused_port, database="lab", user="someone",
                  passfile="/nonexistent/pgpass", timescaledb=False, connect_timeout=2)
    retries = []
    with pytest.raises(DatabaseUnavailableError) as info:
        db.connect(wait=0.3, on_retry=lambda exc, delay: retries.append(delay))
    assert f"127.0.0.1:{unused_port}/lab" in str(info.value)
    assert isinstance(info.value, psycopg2.OperationalError)
    assert retries, "connect(wait=...) retried before giving up"


def test_connect_reports_version_and_context_manager_closes(connect_db):
    db = connect_db()
    assert "PostgreSQL 15" in db.db_version
    with db:
        assert db.check_table("x") is False
    assert db.connection is None


# ---------------------------------------------------------------- tables and columns


def test_create_time_table_and_columns(db, postgres_server, pg_database):
    assert db.create_timescale_db("Beam") is True  # folded like an unquoted name: "beam"
    assert db.check_table("beam") and db.check_table("BEAM")
    assert db.list_columns("beam") == {"time": "timestamp with time zone"}
    assert db.create_timescale_db("beam", if_not_exists=True) is False
    with pytest.raises(psycopg2.errors.DuplicateTable):
        db.create_timescale_db("beam")
    assert db.new_column("beam", "current", DataType.double, [Constraint.positive]) is True
    assert db.new_column("beam", "count", "long") is True
    assert db.new_column("beam", "current", DataType.double) is False  # exists: no error, as 0.5.4
    assert db.check_column("beam", "current") and not db.check_column("beam", "voltage")
    assert db.list_columns("beam") == {"time": "timestamp with time zone",
                                       "current": "double precision", "count": "bigint"}
    indexes = postgres_server.psql("SELECT indexdef FROM pg_indexes WHERE tablename = 'beam'",
                                   pg_database)
    assert "(\"time\" DESC)" in indexes


def test_time_defaults_to_now_unless_told_otherwise(db):
    db.create_timescale_db("with_now")
    db.new_column("with_now", "x", DataType.int)
    db.new_entry("with_now", ["x"], [1])
    assert db.fetch_latest("with_now")[0] is not None
    db.create_timescale_db("without_now", default_now=False)
    db.new_column("without_now", "x", DataType.int)
    with pytest.raises(psycopg2.errors.NotNullViolation):
        db.new_entry("without_now", ["x"], [1])


def test_constraints_are_enforced_by_the_server(beam):
    beam.new_column("beam", "rate", DataType.float, [Constraint.positive_strict])
    with pytest.raises(psycopg2.errors.CheckViolation):
        beam.new_entry("beam", ["rate"], [0.0])
    beam.new_entry("beam", ["rate"], [0.5])


def test_new_column_on_missing_table(db):
    with pytest.raises(MissingTableError, match="'nowhere' does not exist"):
        db.new_column("nowhere", "x", DataType.int)


@pytest.mark.parametrize("data_type, constraints, error", [
    ("VARCHAR(10)", None, ValueError), ("TEXT; DROP TABLE beam", None, ValueError),
    (42, None, TypeError), (DataType.int, [" CHECK(true) "], ValueError),
    (DataType.int, "positive", TypeError), (DataType.int, [3], TypeError),
])
def test_bad_data_type_or_constraint_is_refused_before_any_sql(beam, data_type, constraints, error):
    with pytest.raises(error):
        beam.new_column("beam", "x", data_type, constraints)
    assert not beam.check_column("beam", "x")


# ---------------------------------------------------------------- injection


@pytest.mark.parametrize("call", [
    lambda db: db.create_timescale_db("t; DROP TABLE victim"),
    lambda db: db.create_timescale_db('t"; DROP TABLE victim; --'),
    lambda db: db.new_column("victim", "x int; DROP TABLE victim; --", DataType.int),
    lambda db: db.new_column("victim; DROP TABLE victim", "x", DataType.int),
    lambda db: db.new_entry("victim", ['a") VALUES (1); DROP TABLE victim; --'], [1]),
    lambda db: db.new_entries("victim; DROP TABLE victim", ["a"], [(1,)]),
    lambda db: db.create_database("x; DROP TABLE victim", owner="labadmin"),
    lambda db: db.create_database("x", owner="labadmin; DROP TABLE victim"),
    lambda db: db.fetch("victim", ["a; DROP TABLE victim"]),
    lambda db: db.create_aggregate_view("victim", index_name="time; DROP TABLE victim"),
    lambda db: db.check_table("victim' OR '1'='1"),
    lambda db: db.check_column("victim", "a' OR '1'='1"),
    lambda db: db.list_columns("victim; DROP TABLE victim"),
    lambda db: db.new_entries("victim", ["a; DROP TABLE victim"], [(1,)]),
    lambda db: db.new_entries_csv("victim", '"a) FROM STDIN; DROP TABLE victim; --"\n1\n'),
    lambda db: db.fetch_latest("victim", ['a" FROM victim; DROP TABLE victim; --']),
    lambda db: db.fetch("victim", ["a"], index_name="time; DROP TABLE victim"),
    lambda db: db.create_aggregate_view("victim; DROP TABLE victim"),
    lambda db: db.set_retention_policy("victim; DROP TABLE victim", "1 day"),
    lambda db: db.set_compression_policy("victim", "1 day", segment_by=['a"; DROP TABLE victim; --']),
])
def test_injection_attempts_are_refused_and_run_nothing(db, postgres_server, pg_database, call):
    postgres_server.psql("CREATE TABLE victim (time timestamptz, a int); "
                         "INSERT INTO victim VALUES (now(), 1)", pg_database)
    with pytest.raises(InvalidIdentifierError):
        call(db)
    assert postgres_server.psql("SELECT count(*) FROM victim", pg_database) == "1"


@pytest.mark.parametrize("call", [
    lambda db: db.new_entry("victim", ["a"], ["1); DROP TABLE victim; --"]),
    lambda db: db.fetch("victim", ["a"], since="2024-01-01'; DROP TABLE victim; --"),
    lambda db: db.fetch("victim", ["a"], until="2024-01-01'::timestamptz; DROP TABLE victim; --"),
    lambda db: db.fetch("victim", ["a"], bucket="1 minute'::interval, time); DROP TABLE victim; --"),
])
def test_values_that_try_injection_are_refused_by_the_server_as_bad_values(
        db, postgres_server, pg_database, call):
    postgres_server.psql("CREATE TABLE victim (time timestamptz, a int); "
                         "INSERT INTO victim VALUES (now(), 1)", pg_database)
    with pytest.raises(psycopg2.DataError):  # the text reached the server as one value
        call(db)
    assert postgres_server.psql("SELECT count(*) FROM victim", pg_database) == "1"


def test_values_are_parameters_not_sql(beam):
    evil = "'); DROP TABLE beam; --"
    beam.new_entry("beam", ["time", "note"], [T0, evil])
    beam.new_entries("beam", ["time", "note"], [(minutes(1), evil)])
    assert [row[2] for row in beam.fetch("beam")] == [evil, evil]


# ---------------------------------------------------------------- inserts


def test_new_entry_stores_one_row(beam):
    beam.new_entry("beam", ["time", "current", "note"], [T0, 1.5, "ok"])
    assert beam.fetch_latest("beam") == (T0, 1.5, "ok")


def test_new_entry_bad_inputs(beam):
    with pytest.raises(ColumnCountError, match=r"1 values \[1.0\] for 2 columns"):
        beam.new_entry("beam", ["time", "current"], [1.0])
    with pytest.raises(ValueError, match="list of column names is empty"):
        beam.new_entry("beam", [], [])
    with pytest.raises(TypeError, match="data must be a list"):
        beam.new_entry("beam", ["note"], "text")
    with pytest.raises(MissingColumnError, match="voltage"):
        beam.new_entry("beam", ["voltage"], [1.0], check_columns=True)
    with pytest.raises(MissingTableError):
        beam.new_entry("nowhere", ["x"], [1.0], check_columns=True)
    with pytest.raises(psycopg2.errors.UndefinedColumn):
        beam.new_entry("beam", ["voltage"], [1.0])
    with pytest.raises(psycopg2.errors.UndefinedTable):
        beam.new_entry("nowhere", ["x"], [1.0])
    with pytest.raises(psycopg2.errors.InvalidTextRepresentation):
        beam.new_entry("beam", ["current"], ["not a number"])
    assert beam.fetch("beam") == []


def test_inserts_can_create_missing_columns_from_value_types(beam):
    beam.new_entry("beam", ["time", "voltage", "count", "on", "label"], [T0, 3.3, 7, True, "a"],
                   create_columns=True)
    columns = beam.list_columns("beam")
    assert (columns["voltage"], columns["count"], columns["on"], columns["label"]) == (
        "double precision", "bigint", "boolean", "text")
    beam.new_entries("beam", ["time", "pressure"], [(minutes(1), None), (minutes(2), 1e-7)],
                     create_columns=True)
    assert beam.list_columns("beam")["pressure"] == "double precision"
    assert beam.fetch("beam", ["pressure"]) == [(T0, None), (minutes(1), None), (minutes(2), 1e-7)]
    with pytest.raises(TypeError, match="only None values"):
        beam.new_entries("beam", ["time", "empty"], [(minutes(3), None)], create_columns=True)


def test_create_columns_default_comes_from_the_configuration(connect_db):
    db = connect_db(create_columns=True)
    db.create_timescale_db("t")
    db.new_entry("t", ["time", "x"], [T0, 1.0])
    assert db.fetch("t") == [(T0, 1.0)]


def test_new_entries_copies_every_value_exactly(beam):
    notes = ["tab\there", "new\nline", "back\\slash", "\\N", None, "ünïcødé ✓", "", "cr\rx"]
    rows = [(minutes(i), float(i) if i % 3 else None, note) for i, note in enumerate(notes)]
    assert beam.new_entries("beam", ["time", "current", "note"], iter(rows)) == len(rows)
    assert beam.fetch("beam", ["current", "note"]) == rows


def test_new_entries_is_all_or_nothing(beam):
    rows = [(minutes(i), float(i)) for i in range(10_000)] + [(minutes(10_000),)]
    with pytest.raises(ColumnCountError, match="row 10001 has 1 values"):
        beam.new_entries("beam", ["time", "current"], rows)
    with pytest.raises(psycopg2.errors.InvalidTextRepresentation):
        beam.new_entries("beam", ["time", "current"], [(T0, 1.0), (minutes(1), "x")])
    assert beam.fetch("beam") == []
    assert beam.new_entries("beam", ["time", "current"], rows[:-1]) == 10_000  # still usable
    assert beam.new_entries("beam", ["time", "current"], []) == 0


def test_new_entries_bad_inputs(beam):
    with pytest.raises(MissingColumnError):
        beam.new_entries("beam", ["time", "voltage"], [(T0, 1.0)], check_columns=True)
    with pytest.raises(ValueError, match="appears twice"):
        beam.new_entries("beam", ["time", "TIME"], [(T0, T0)])


# ---------------------------------------------------------------- read back


@pytest.fixture
def filled(beam) -> Database:
    """beam with 6 rows at 20 s steps from T0: currents 0..5 and notes."""
    beam.new_entries("beam", ["time", "current", "note"],
                     [(minutes(i / 3), float(i), f"n{i}") for i in range(6)])
    return beam


def test_fetch_latest(filled, db):
    assert filled.fetch_latest("beam") == (minutes(5 / 3), 5.0, "n5")
    assert filled.fetch_latest("beam", ["note"]) == (minutes(5 / 3), "n5")
    db.create_timescale_db("empty")
    assert filled.fetch_latest("empty") is None
    with pytest.raises(MissingTableError):
        filled.fetch_latest("nowhere")
    with pytest.raises(MissingColumnError, match="voltage"):
        filled.fetch_latest("beam", ["voltage"])


def test_fetch_range_and_limit(filled):
    assert [r[1] for r in filled.fetch("beam", ["current"], since=minutes(1 / 3), until=minutes(1))] \
        == [1.0, 2.0]
    assert [r[1] for r in filled.fetch("beam", ["current"], since="2024-03-01 12:01:00+00")] == [
        3.0, 4.0, 5.0]
    assert len(filled.fetch("beam", limit=2)) == 2
    with pytest.raises(ValueError, match="limit"):
        filled.fetch("beam", limit=0)
    with pytest.raises(TypeError, match="since"):
        filled.fetch("beam", since=12)


def test_fetch_buckets_average(filled):
    assert filled.fetch("beam", ["current"], bucket="1 minute") == [(minutes(0), 1.0),
                                                                   (minutes(1), 4.0)]
    assert filled.fetch("beam", ["current"], bucket=datetime.timedelta(seconds=40),
                        until=minutes(1)) == [(minutes(0), 0.5), (minutes(2 / 3), 2.0)]
    with pytest.raises(ValueError, match=r"non-numeric column\(s\) \['note'\]"):
        filled.fetch("beam", ["current", "note"], bucket="1 minute")
    with pytest.raises(TypeError, match="bucket"):
        filled.fetch("beam", ["current"], bucket=60)


# ---------------------------------------------------------------- aggregate view, plain mode


def test_plain_aggregate_view_matches_bucketed_fetch(filled):
    filled.new_column("beam", "count", DataType.int)
    assert filled.create_aggregate_view("beam") == "beam_1min"
    filled.cursor.execute('SELECT time, current_avg FROM beam_1min ORDER BY 1')
    assert filled.cursor.fetchall() == filled.fetch("beam", ["current"], bucket="1 minute")
    assert set(filled.list_columns("beam_1min")) == {"time", "current_avg", "count_avg"}
    filled.new_column("beam", "voltage", DataType.double)
    filled.create_aggregate_view("beam")  # recreate picks up the new column
    assert "voltage_avg" in filled.list_columns("beam_1min")
    with pytest.raises(psycopg2.errors.DuplicateTable):
        filled.create_aggregate_view("beam", recreate=False)


def test_aggregate_view_errors(db):
    with pytest.raises(MissingTableError):
        db.create_aggregate_view("nowhere")
    db.create_timescale_db("texts")
    db.new_column("texts", "note", DataType.string)
    with pytest.raises(psycopg2.IntegrityError, match="no numeric column"):
        db.create_aggregate_view("texts")
    with pytest.raises(MissingColumnError, match="'stamp'"):
        db.create_aggregate_view("texts", index_name="stamp")


def test_policies_need_timescaledb(beam):
    with pytest.raises(TimescaleDBUnavailableError, match="timescaledb = off"):
        beam.set_retention_policy("beam", "30 days")
    with pytest.raises(TimescaleDBUnavailableError):
        beam.set_compression_policy("beam", "7 days")


# ---------------------------------------------------------------- databases


def test_create_database(db, postgres_server):
    name = f"created_{postgres_server.port}"
    try:
        assert db.create_database(name, owner=postgres_server.user, timescaledb_extension=False)
        assert postgres_server.psql(f"SELECT datname FROM pg_database WHERE datname = '{name}'") == name
        assert db.create_database(name, owner=postgres_server.user, timescaledb_extension=False,
                                  exist_ok=True) is False
        with pytest.raises(psycopg2.errors.DuplicateDatabase, match=name):
            db.create_database(name, owner=postgres_server.user, timescaledb_extension=False)
    finally:
        postgres_server.psql(f'DROP DATABASE IF EXISTS "{name}"')
    with pytest.raises(psycopg2.errors.UndefinedObject, match="nobody_here"):
        db.create_database(name, owner="nobody_here", timescaledb_extension=False)


def test_status(db):
    status = db.status()
    assert status["connected"] and status["server_version"].startswith("15")
    assert status["server"] == db.server and status["timescaledb_mode"] is False


# ---------------------------------------------------------------- CSV


def test_csv_is_copied_as_text_and_typed_by_the_server(beam):
    text = ("time,current,note\r\n2024-03-01 12:00:00+00,1.5,\"a, quoted \"\"note\"\"\"\r\n"
            "2024-03-01T12:00:20Z,,plain\r\n")
    assert beam.new_entries_csv("beam", text) == 2
    assert beam.fetch("beam") == [(T0, 1.5, 'a, quoted "note"'),
                                  (T0 + datetime.timedelta(seconds=20), None, "plain")]


def test_csv_errors_store_nothing(beam):
    with pytest.raises(psycopg2.errors.InvalidTextRepresentation, match="line 3"):
        beam.new_entries_csv("beam", "time,current\n2024-03-01 12:00:00+00,1\n2024-03-01,x\n")
    with pytest.raises(psycopg2.errors.BadCopyFileFormat):
        beam.new_entries_csv("beam", "time,current\n2024-03-01 12:00:00+00,1,2\n")
    with pytest.raises(InvalidIdentifierError, match="CSV header"):
        beam.new_entries_csv("beam", "time,current) FROM STDIN; DROP TABLE beam; --\n")
    assert beam.fetch("beam") == []


def test_csv_can_create_typed_columns(beam):
    text = "time,n,x,ok,seen,label\n2024-03-01 12:00:00+00,1,2,true,2024-01-01T00:00:00Z,a\n" \
           "2024-03-01 12:00:01+00,2,2.5,false,,b\n"
    assert beam.new_entries_csv("beam", text, create_columns=True) == 2
    columns = beam.list_columns("beam")
    assert [columns[c] for c in ("n", "x", "ok", "seen", "label")] == [
        "bigint", "double precision", "boolean", "timestamp with time zone", "text"]


def test_csv_empty_lines_are_skipped_but_not_inside_quoted_fields(beam):
    text = ("\ntime,current,note\n\n2024-03-01 12:00:00+00,1,\"two\n\nparagraphs\"\n\n"
            "2024-03-01 12:00:20+00,2,x\n\n\n")
    assert beam.new_entries_csv("beam", text) == 2
    assert beam.new_entries_csv("beam", "time,current\r\n\r\n2024-03-01 12:00:40+00,3\r\n\r\n") == 1
    assert beam.fetch("beam", ["current", "note"]) == [
        (T0, 1.0, "two\n\nparagraphs"), (T0 + datetime.timedelta(seconds=20), 2.0, "x"),
        (T0 + datetime.timedelta(seconds=40), 3.0, None)]


# ---------------------------------------------------------------- TimescaleDB mode, no extension


@pytest.fixture
def database_without_timescaledb(postgres_server, pg_database) -> str:
    """pg_database as a stock server shows it: timescaledb not among the available extensions.

    A machine with TimescaleDB installed lists it in pg_available_extensions; a view of the
    same name, first on the database's search_path, hides it, so this error path runs on
    every machine (on a stock server the view changes nothing).
    """
    postgres_server.psql(
        "CREATE SCHEMA stock; CREATE VIEW stock.pg_available_extensions AS SELECT * FROM "
        "pg_catalog.pg_available_extensions WHERE name <> 'timescaledb'; "
        f'ALTER DATABASE "{pg_database}" SET search_path = stock, pg_catalog, public', pg_database)
    return pg_database


def test_timescaledb_mode_on_a_server_without_it_names_the_server_and_the_setting(
        connect_db, postgres_server, database_without_timescaledb):
    db = connect_db(timescaledb=True)
    server = f"{postgres_server.host}:{postgres_server.port}"
    for call in (lambda: db.create_timescale_db("beam"), lambda: db.create_aggregate_view("beam"),
                 lambda: db.set_retention_policy("beam", "30 days")):
        with pytest.raises(TimescaleDBUnavailableError, match=rf"{server} does not have the "
                                                               rf"timescaledb extension.*timescaledb = off"):
            call()
    assert not db.check_table("beam") and db.timescaledb_version is None
    name = f"not_created_{postgres_server.port}"
    with pytest.raises(TimescaleDBUnavailableError, match=rf"{name}'.*{server}"):
        db.create_database(name, owner=postgres_server.user)
    assert postgres_server.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{name}'") == "0"


def test_the_timescaledb_skip_reason_points_to_instructions_that_exist():
    root = Path(__file__).parents[3]
    assert (root / "tests" / "fixtures" / "postgres.py").read_text().count("see DEVELOPERS.md") == 2
    instructions = (root / "DEVELOPERS.md").read_text()
    assert "LABUTILS_TEST_TIMESCALEDB_DSN" in instructions and "timescaledb.control" in instructions


@pytest.mark.parametrize("method", ["__init__", "connect", "close", "config", "check_table",
                                    "check_column", "create_database", "create_timescale_db",
                                    "new_column", "new_entry", "create_aggregate_view"])
def test_signatures_and_defaults_are_those_of_0_5_4(method):
    import inspect

    import lab_utils.database as reference  # lab-utils 0.5.4, installed as the reference peer

    def positional(function) -> list:
        return [(p.name, p.default) for p in inspect.signature(function).parameters.values()
                if p.kind is not p.KEYWORD_ONLY]  # additions are keyword-only

    assert positional(getattr(Database, method)) == positional(getattr(reference.Database, method))

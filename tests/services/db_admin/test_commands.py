"""db-admin commands end to end over TCP, against a real PostgreSQL."""

from __future__ import annotations

import datetime
import json
import logging
import socket
import threading
import time

import psycopg2
import pytest

UTC = datetime.UTC
T0 = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def beam(db_admin):
    """db-admin with table beam (time, current double, note text)."""
    assert db_admin.send("create_table beam") == "table beam created"
    assert db_admin.send("add_column beam current double --constraint positive") == \
        "column current added to beam"
    assert db_admin.send("add_column beam note string") == "column note added to beam"
    return db_admin


def test_table_and_column_commands(beam):
    assert beam.send("create_table beam --if-not-exists") == "table beam already exists"
    assert beam.send("add_column beam current double") == "column current already in beam"
    assert beam.send("columns beam") == ("time timestamp with time zone\ncurrent double precision\n"
                                         "note text")
    assert beam.db.list_columns("beam")["current"] == "double precision"


def test_insert_latest_and_query(beam):
    assert beam.send("insert beam time=2024-05-01T12:00:00Z current=1.5 {note=first one}") == \
        "1 row inserted into beam"
    assert beam.send("insert beam time=2024-05-01T12:00:30Z current= note=second") == \
        "1 row inserted into beam"
    assert beam.db.fetch("beam") == [(T0, 1.5, "first one"),
                                     (T0 + datetime.timedelta(seconds=30), None, "second")]
    assert beam.send("latest beam") == "time,current,note\n2024-05-01T12:00:30+00:00,,second"
    assert beam.send("latest beam note") == "time,note\n2024-05-01T12:00:30+00:00,second"
    assert beam.send("query beam --columns current --since 2024-05-01T12:00:00Z "
                     "--until 2024-05-01T12:00:10Z") == "time,current\n2024-05-01T12:00:00+00:00,1.5"
    assert beam.send("query beam --columns current --bucket {1 minute}") == \
        "time,current\n2024-05-01T12:00:00+00:00,1.5"


def test_insert_many_csv_and_json_lines(beam):
    csv_body = "time,current,note\n" + "\n".join(
        f"2024-05-01T12:{i // 60:02d}:{i % 60:02d}Z,{i + 1}.5,{{csv {i}}}" for i in range(100))
    assert beam.send("insert_many beam\n" + csv_body) == "100 rows inserted into beam"
    lines = [json.dumps({"time": f"2024-05-01T13:00:{i:02d}Z", "current": i + 0.5,
                         "note": f"{{json}} {i}"}) for i in range(10)]
    lines.insert(3, json.dumps({"time": "2024-05-01T13:00:59Z"}))  # missing keys are NULL
    lines.insert(4, "")  # empty lines are skipped
    lines.append(json.dumps({"time": "2024-05-01T13:01:00Z", "note": {"a": [1, "x"]}}))
    assert beam.send("insert_many beam --format jsonl\n" + "\n".join(lines)) == \
        "12 rows inserted into beam"
    rows = beam.db.fetch("beam")
    assert len(rows) == 112
    assert rows[0] == (T0, 1.5, "{csv 0}")
    assert rows[100] == (T0 + datetime.timedelta(hours=1), 0.5, "{json} 0")
    assert rows[-2] == (T0 + datetime.timedelta(hours=1, seconds=59), None, None)
    assert rows[-1] == (T0 + datetime.timedelta(hours=1, minutes=1), None, '{"a": [1, "x"]}')


def test_insert_many_of_megabytes(beam):
    count = 200_000
    body = "time,current\n" + "\n".join(
        f"2024-05-01T12:00:00Z,{i}.25" for i in range(1, count + 1))
    assert len(body) > 4 * 1024 * 1024
    assert beam.send("insert_many beam\n" + body) == f"{count} rows inserted into beam"
    assert beam.db.fetch("beam", ["current"], bucket="1 day") == [(T0.replace(hour=0),
                                                                   (count + 1) / 2 + 0.25)]


def test_insert_many_is_all_or_nothing_and_says_why(beam):
    reply = beam.send("insert_many beam\ntime,current\n2024-05-01T12:00:00Z,1\n2024-05-01T12:00:01Z,-1\n")
    assert reply.startswith("Error! CheckViolation:") and "current" in reply
    reply = beam.send("insert_many beam\n{\"time\": \"2024-05-01T12:00:00Z\"}\nnot json\n")
    assert reply.startswith("Error! ValueError: line 2 of the body is not valid JSON")
    assert beam.send("insert_many beam").startswith("Error! ValueError: insert_many needs rows")
    assert beam.db.fetch("beam") == []


def test_create_columns_from_the_values(beam):
    assert beam.send("insert beam time=2024-05-01T12:00:00Z count=3 ok=true --create-columns") == \
        "1 row inserted into beam"
    body = "\n".join(json.dumps({"time": f"2024-05-01T12:00:0{i}Z", "voltage": i * 1.5,
                                 "stamp": "2024-01-01T00:00:00Z"}) for i in range(1, 3))
    assert beam.send("insert_many beam --create-columns\n" + body) == "2 rows inserted into beam"
    types = beam.db.list_columns("beam")
    assert (types["count"], types["ok"], types["voltage"], types["stamp"]) == (
        "bigint", "boolean", "double precision", "timestamp with time zone")


@pytest.mark.parametrize("message, expected", [
    ("create_table {t; DROP TABLE beam}", "Error! InvalidIdentifierError: invalid table name"),
    ("add_column beam x {TEXT; DROP TABLE beam}", "Error! ValueError: 'TEXT; DROP TABLE beam' is not"),
    ("add_column beam x double --constraint {CHECK(true)}", "Error! ValueError: 'CHECK(true)' is not"),
    ("insert beam {current) VALUES (1); DROP TABLE beam; --=1}", "Error! InvalidIdentifierError"),
    ("insert beam current", "Error! ValueError: 'current' is not COLUMN=VALUE"),
    ("insert beam current=abc", "Error! InvalidTextRepresentation: invalid input syntax"),
    ("insert nowhere x=1", 'Error! UndefinedTable: relation "nowhere" does not exist'),
    ("columns nowhere", "Error! MissingTableError: table 'nowhere' does not exist"),
    ("query beam --limit 0", "Error! ValueError: --limit must be positive"),
    ("query beam --columns note --bucket {1 minute}", "Error! ValueError: cannot average"),
    ("retention beam {30 days}", "Error! TimescaleDBUnavailableError"),
    ("drop_table beam", "Error! argument {quit,status,help,create_database,"),
])
def test_bad_commands_get_an_error_reply_and_change_nothing(beam, message, expected):
    assert beam.send(message).startswith(expected)
    assert beam.db.check_table("beam") and beam.db.fetch("beam") == []


def test_aggregate_view_plain(beam):
    beam.send("insert_many beam\ntime,current\n2024-05-01T12:00:00Z,1\n2024-05-01T12:00:30Z,2\n")
    assert beam.send("aggregate_view beam") == "view beam_1min created"
    assert "current_avg double precision" in beam.send("columns beam_1min")
    assert beam.send("query beam_1min") == "time,current_avg\n2024-05-01T12:00:00+00:00,1.5"


def test_status_reports_the_database(db_admin):
    reply = dict(line.split(": ", 1) for line in db_admin.send("status").splitlines())
    assert reply["database_connected"] == "True"
    assert reply["database"] == db_admin.db.server and reply["database_version"].startswith("PostgreSQL 15")


def test_create_database(db_admin, postgres_server):
    name = f"made_by_admin_{postgres_server.port}"
    try:
        assert db_admin.send(f"create_database {name} --no-timescaledb") == f"database {name} created"
        assert db_admin.send(f"create_database {name} --no-timescaledb --exist-ok") == \
            f"database {name} already exists"
        owner = postgres_server.psql(f"SELECT pg_get_userbyid(datdba) FROM pg_database "
                                     f"WHERE datname = '{name}'")
        assert owner == postgres_server.user
    finally:
        postgres_server.psql(f'DROP DATABASE IF EXISTS "{name}"')


@pytest.mark.timescaledb_tsl
def test_timescale_commands(tsl_admin):
    ts_admin = tsl_admin
    assert ts_admin.send("create_table beam") == "table beam created"
    ts_admin.send("add_column beam current double")
    ts_admin.send("insert_many beam\ntime,current\n2024-05-01T12:00:00Z,1\n2024-05-01T12:00:30Z,2\n")
    assert ts_admin.send("aggregate_view beam") == "view beam_1min created"
    assert ts_admin.send("query beam_1min") == "time,current_avg\n2024-05-01T12:00:00+00:00,1.5"
    assert ts_admin.send("retention beam {90 days}") == "data of beam older than 90 days will be dropped"
    assert ts_admin.send("compression beam {7 days}") == \
        "data of beam older than 7 days will be compressed"
    assert {"policy_retention", "policy_compression"} <= ts_admin.db.policies("beam").keys()
    assert ts_admin.send("retention beam off") == "retention policy of beam removed"
    assert "policy_retention" not in ts_admin.db.policies("beam")
    reply = ts_admin.send("status")
    assert "timescaledb: 2." in reply


def test_csv_body_edge_cases(beam):
    body = ('time,current,note\n\n2024-05-01T12:00:00Z,1,"a, b"\n\n'
            '2024-05-01T12:00:01Z,,"said ""hi""\n\nthen left"\n\n')
    assert beam.send("insert_many beam\n" + body) == "2 rows inserted into beam"
    reply = beam.send("insert_many beam\ntime,current,note\n2024-05-01T12:00:02Z,1\n")
    assert reply.startswith('Error! BadCopyFileFormat: missing data for column "note"')
    reply = beam.send("insert_many beam\ntime,current\n2024-05-01T12:00:02Z,1\n2024-05-01T12:00:03Z,one\n")
    assert reply.startswith("Error! InvalidTextRepresentation") and 'line 3, column current: "one"' in reply
    assert beam.db.fetch("beam") == [(T0, 1.0, "a, b"),
                                     (T0 + datetime.timedelta(seconds=1), None, 'said "hi"\n\nthen left')]


def test_invalid_utf8_in_a_body_is_refused_and_nothing_is_stored(beam):
    host, port = beam.admin.server_address
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(b"insert_many beam\ntime,current,note\n2024-05-01T12:00:00Z,1,caf\xe9\n")
        sock.shutdown(socket.SHUT_WR)
        reply = b"".join(iter(lambda: sock.recv(65536), b""))
    assert reply.startswith(b"Error! message is not valid UTF-8 text (byte 0xe9 at position 61)")
    assert beam.db.fetch("beam") == []


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_refused_insert_many_logs_its_command_not_its_many_megabytes_of_body(beam):
    body = "time,current\n" + "2024-05-01T12:00:00Z,1.5\n" * 100_000 + "2024-05-01T12:00:01Z,x\n"
    logger = logging.getLogger("db-admin")
    handler, level = _Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        reply = beam.send("insert_many beam\n" + body)
        unknown_option = beam.send("insert_many beam --no-such-option\n" + body)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert reply.startswith("Error! InvalidTextRepresentation") and "line 100002" in reply
    assert unknown_option.startswith("Error! unrecognized arguments: --no-such-option")
    lines = [record.getMessage() for record in handler.records]
    assert any("refused" in line and "insert_many beam" in line for line in lines)
    assert max(len(line) for line in lines) < 2000, "a log line holds the body"


def test_database_restart_during_insert_many_gets_an_error_reply_not_a_false_success(
        beam, postgres_server, pg_database):
    # The COPY waits for this lock, so the restart surely comes while it is in flight.
    locker = psycopg2.connect(postgres_server.dsn(pg_database))
    locker.cursor().execute("LOCK TABLE beam IN ACCESS EXCLUSIVE MODE")
    replies: list[str] = []
    sender = threading.Thread(target=lambda: replies.append(
        beam.send("insert_many beam\ntime,current\n2024-05-01T12:00:00Z,1\n")))
    sender.start()
    watcher = psycopg2.connect(postgres_server.dsn(pg_database))
    watcher.autocommit = True
    try:
        deadline = time.monotonic() + 30
        with watcher.cursor() as cur:
            while True:
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                            "AND query LIKE 'COPY%%'")
                if cur.fetchone()[0] == 1:
                    break
                assert time.monotonic() < deadline, "the COPY never waited for the lock"
    finally:
        watcher.close()
    postgres_server.restart()
    sender.join(60)
    locker.close()
    assert len(replies) == 1 and replies[0].startswith("Error! ConnectionLostError: connection to ")
    assert "may or may not have been committed" in replies[0]
    assert beam.db.fetch("beam") == []
    assert beam.send("insert_many beam\ntime,current\n2024-05-01T12:00:00Z,1\n") == \
        "1 rows inserted into beam"  # the daemon reconnected


@pytest.mark.parametrize("db_admin", [{"allow_unauthenticated_admin": False}], indirect=True)
@pytest.mark.parametrize("command", ["retention beam {30 days}", "create_database other_lab",
                                     "aggregate_view beam", "quit"])
def test_admin_commands_are_refused_without_a_token_and_change_nothing(db_admin, command):
    db_admin.send("create_table beam")
    reply = db_admin.send(command)
    assert reply.startswith("Error! ") and "admin command" in reply and "token" in reply, reply
    assert not db_admin.send("status").startswith("Error!")  # the daemon still runs
    assert db_admin.db.list_columns("beam")  # the table is still there

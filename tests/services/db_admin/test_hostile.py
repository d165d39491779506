"""db-admin under hostile or careless clients (issue 11): all or none, bounded replies, views of
others left alone, destructive commands declared."""

from __future__ import annotations

import json

import pytest


@pytest.fixture
def beam(db_admin):
    assert db_admin.send("create_table beam") == "table beam created"
    assert db_admin.send("add_column beam current double") == "column current added to beam"
    return db_admin


def test_a_csv_line_backslash_dot_is_data_not_the_end_of_the_load(beam):
    rows = [f"2024-05-01T12:00:{i:02d}Z,{i}" for i in range(10)]
    body = "time,current\n" + "\n".join(rows[:5] + ["\\."] + rows[5:]) + "\n"
    reply = beam.send("insert_many beam\n" + body)
    assert reply.startswith("Error! ") and 'line 7, column time: "\\."' in reply, reply  # a row
    assert beam.db.fetch("beam") == []  # none stored, not 5 of 10
    assert beam.send("create_table notes") == "table notes created"
    assert beam.send("add_column notes note string") == "column note added to notes"
    body = "note\na\n\\.\nb\nc\n"  # a one-column value "\." is stored as such
    assert beam.send("insert_many notes\n" + body) == "4 rows inserted into notes"
    assert sorted(row[1] for row in beam.db.fetch("notes")) == ["\\.", "a", "b", "c"]


def test_a_column_bomb_adds_no_column_at_all(beam):
    keys = {f"k{i}": i for i in range(1700)}
    body = json.dumps({"time": "2024-05-01T12:00:00Z", **keys})
    reply = beam.send("insert_many beam --create-columns\n" + body)
    assert reply.startswith("Error! ValueError: cannot add 1700 columns to table 'beam'"), reply
    assert "1600" in reply
    assert list(beam.db.list_columns("beam")) == ["time", "current"]
    header = "time," + ",".join(keys)
    reply = beam.send(f"insert_many beam --create-columns\n{header}\n2024-05-01T12:00:00Z,"
                      + ",".join("1" for _ in keys))
    assert reply.startswith("Error! ValueError: cannot add 1700 columns"), reply
    assert list(beam.db.list_columns("beam")) == ["time", "current"]
    # the table can still get columns
    assert beam.send("insert beam time=2024-05-01T12:00:00Z volts=3 --create-columns") == \
        "1 row inserted into beam"
    assert beam.db.list_columns("beam")["volts"] == "bigint"


def test_new_columns_and_rows_are_one_transaction(beam):
    # the second row does not fit the new column's type: no row, and no new column either
    body = "time,current,label\n" + "\n".join(
        f"2024-05-01T12:{i // 60:02d}:{i % 60:02d}Z,1,{i}" for i in range(1200)) + "\n2024-05-01T13:00:00Z,1,x\n"
    reply = beam.send("insert_many beam --create-columns\n" + body)
    assert reply.startswith("Error! InvalidTextRepresentation"), reply
    assert list(beam.db.list_columns("beam")) == ["time", "current"]
    assert beam.db.fetch("beam") == []


def test_query_has_a_default_row_limit_and_says_when_it_cut(beam):
    beam.admin.query_row_limit = 5
    body = "time,current\n" + "\n".join(f"2024-05-01T12:00:{i:02d}Z,{i}" for i in range(8))
    assert beam.send("insert_many beam\n" + body) == "8 rows inserted into beam"
    reply = beam.send("query beam").splitlines()
    assert reply[0] == "time,current" and len(reply) == 1 + 5 + 1
    assert reply[-1].startswith("# cut at 5 rows (query_row_limit): more rows follow; ask again "
                                "with --since 2024-05-01T12:00:04+00:00")
    assert len(beam.send("query beam --limit 3").splitlines()) == 1 + 3  # asked for: no note
    assert beam.send("query beam --limit 6").startswith("Error! ValueError: --limit 6 is above")
    beam.admin.query_row_limit = 8
    assert "# cut" not in beam.send("query beam")


def test_aggregate_view_never_drops_a_view_it_did_not_create(beam):
    beam.db.cursor.execute("CREATE VIEW beam_1min AS SELECT 42 AS answer")  # the lab's own
    reply = beam.send("aggregate_view beam")
    assert reply.startswith("Error! DuplicateTable: 'beam_1min' exists and was not created by lab-utils")
    beam.db.cursor.execute("SELECT answer FROM beam_1min")
    assert beam.db.cursor.fetchall() == [(42,)]
    beam.db.cursor.execute("DROP VIEW beam_1min")


def test_aggregate_view_refuses_to_replace_a_view_others_depend_on(beam):
    assert beam.send("aggregate_view beam") == "view beam_1min created"
    beam.db.cursor.execute("CREATE VIEW lab_report AS SELECT * FROM beam_1min")
    reply = beam.send("aggregate_view beam")
    assert reply.startswith("Error! DependentObjectsStillExist: aggregate view 'beam_1min' is not "
                            "replaced: other views depend on it: public.lab_report")
    assert beam.db.check_table("lab_report") and beam.db.check_table("beam_1min")
    assert beam.send("aggregate_view beam --no-recreate").startswith("Error! DuplicateTable")
    beam.db.cursor.execute("DROP VIEW lab_report")
    beam.send("add_column beam volts double")
    assert beam.send("aggregate_view beam") == "view beam_1min created"  # ours, alone: replaced
    assert set(beam.db.list_columns("beam_1min")) == {"time", "current_avg", "volts_avg"}


def test_destructive_commands_are_declared_admin_commands():
    from db_admin import DbAdmin
    from lab_utils_common.socket_comm import Server
    assert {"retention", "create_database", "aggregate_view"} <= DbAdmin.admin_commands
    assert getattr(Server, "admin_commands", frozenset()) <= DbAdmin.admin_commands

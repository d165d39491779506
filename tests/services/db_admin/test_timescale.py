"""db-admin on the Apache edition of TimescaleDB (the offline image): aggregate view, its own
retention, compression refused, edition and failed jobs in status."""

from __future__ import annotations

import datetime
import logging

import pytest

from tests.fixtures.ports import wait_until

pytestmark = pytest.mark.timescaledb

UTC = datetime.UTC


def _beam(admin) -> None:
    assert admin.send("create_table beam") == "table beam created"
    assert admin.send("add_column beam current double") == "column current added to beam"


def test_aggregate_view_query_and_compression_refused(ts_admin):
    _beam(ts_admin)
    ts_admin.send("insert_many beam\ntime,current\n2024-05-01T12:00:00Z,1\n2024-05-01T12:00:30Z,2\n")
    assert ts_admin.send("aggregate_view beam") == "view beam_1min created"
    assert ts_admin.send("query beam_1min") == "time,current_avg\n2024-05-01T12:00:00+00:00,1.5"
    assert ts_admin.send("aggregate_view beam") == "view beam_1min created"  # ours: replaced
    reply = ts_admin.send("compression beam {7 days}")
    assert reply.startswith("Error! TimescaleDBUnavailableError: compression of 'beam' needs the TSL")
    assert "apache edition" in reply
    status = ts_admin.send("status")
    assert "timescaledb_edition: apache" in status and "timescaledb: 2.19" in status


def _chunks(db) -> int:
    db.cursor.execute("SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'beam'")
    return db.cursor.fetchone()[0]


def _old_and_new_rows(admin) -> None:
    now = datetime.datetime.now(UTC).replace(microsecond=0)
    body = (f"time,current\n2020-01-01T00:00:00Z,1\n2020-01-01T00:00:01Z,2\n{now.isoformat()},3\n")
    assert admin.send("insert_many beam\n" + body) == "3 rows inserted into beam"
    assert _chunks(admin.db) == 2


def test_retention_is_run_by_db_admin_and_shown_in_status(ts_admin):
    _beam(ts_admin)
    _old_and_new_rows(ts_admin)
    reply = ts_admin.send("retention beam {30 days}")
    assert reply.startswith("data of beam older than 30 days will be dropped (by db-admin every")
    assert ts_admin.db.policies("beam")["policy_retention"] == {"drop_after": "30 days",
                                                                "run_by": "lab-utils"}
    assert ts_admin.send("retention beam now") == "retention of beam: 1 chunk(s) dropped"
    assert [row[1] for row in ts_admin.db.fetch("beam")] == [3.0]
    assert _chunks(ts_admin.db) == 1
    assert "retention_beam: 1 chunk(s) dropped" in ts_admin.send("status")
    assert ts_admin.db.retention_schedule()[0]["last_dropped"] == 1
    assert ts_admin.send("retention beam off") == "retention policy of beam removed"
    assert ts_admin.send("retention beam now") == "no retention scheduled by db-admin for beam"
    assert "policy_retention" not in ts_admin.db.policies("beam")


def test_retention_runs_on_db_admins_own_schedule(start_ts_admin, caplog):
    caplog.set_level(logging.INFO)
    admin = start_ts_admin(retention_interval=0.2)
    _beam(admin)
    _old_and_new_rows(admin)
    admin.send("retention beam {30 days}")
    wait_until(lambda: _chunks(admin.db) == 1, 30, lambda: f"chunks: {_chunks(admin.db)}")
    assert [row[1] for row in admin.db.fetch("beam")] == [3.0]
    wait_until(lambda: "Retention: dropped 1 chunk(s) of <beam> older than 30 days" in caplog.text, 30,
               lambda: caplog.text[-2000:])


def test_status_reports_failed_timescaledb_jobs(timescaledb_server, tmp_path):
    # The Apache edition's own job-history retention job fails ("not supported under the current
    # apache license"): a real failed job, reported instead of a healthy status. Jobs run per
    # database, on a schedule started when the server starts: the image's first database has one.
    from tests.fixtures.postgres import _running_admin, _timescale_db
    with _running_admin(tmp_path, lambda: _timescale_db(timescaledb_server, timescaledb_server.user)) as admin:
        wait_until(lambda: admin.db.failed_jobs(), 120, lambda: "no failed job yet")
        admin.admin.run_maintenance()
        status = admin.send("status")
        assert "failed_jobs: 0" not in status
        assert "failed_job_3: policy_job_stat_history_retention failed at " in status
        assert admin.db.status()["failed_jobs"][0]["proc_name"] == "policy_job_stat_history_retention"

"""Log records as lab-utils 0.5.4 writes them: the application's logger, INFO lines, ERROR before raising."""

from __future__ import annotations

import logging

import psycopg2
import pytest

from tests.fixtures.pg_cluster import free_port


@pytest.fixture
def app_name():
    """Both libraries' application logger named ``beamline`` (as configure_logging does)."""
    import lab_utils.custom_logging as reference

    from lab_utils_common.custom_logging import levels
    saved = (reference.APP_NAME, levels._APP_NAME)
    reference.APP_NAME = "beamline"
    levels.set_app_name("beamline")
    try:
        yield "beamline"
    finally:
        reference.APP_NAME = saved[0]
        levels.set_app_name(saved[1])


def _records(caplog) -> list[tuple[str, str, str]]:
    found = [(r.name, r.levelname, r.getMessage()) for r in caplog.records if r.levelno >= logging.INFO]
    caplog.clear()
    return found


def _session(module, postgres_server, pg_database) -> None:
    db = module.Database(host=postgres_server.host, port=postgres_server.port, database=pg_database,
                         user=postgres_server.user, passfile=str(postgres_server.passfile))
    db.connect()
    db.new_column("beam", "current", module.DataType.double)
    db.new_column("beam", "current", module.DataType.double)
    db.close()


def test_info_lines_and_logger_are_those_of_0_5_4(postgres_server, pg_database, app_name, caplog):
    import lab_utils.database as reference

    import lab_utils_common.database as ours
    caplog.set_level(logging.INFO)
    postgres_server.psql("CREATE TABLE beam (time timestamptz NOT NULL)", dbname=pg_database)
    _session(reference, postgres_server, pg_database)
    expected = _records(caplog)
    postgres_server.psql("ALTER TABLE beam DROP COLUMN current", dbname=pg_database)
    _session(ours, postgres_server, pg_database)
    assert _records(caplog) == expected
    assert {name for name, _, _ in expected} == {"beamline"}


def test_errors_are_logged_at_error_on_the_same_logger_before_raising(app_name, caplog):
    import lab_utils.database as reference

    import lab_utils_common.database as ours
    port = free_port()  # nobody listens
    for module in (reference, ours):
        db = module.Database(host="127.0.0.1", port=port, database="x", user="u", passfile="/nonexistent")
        with pytest.raises(psycopg2.OperationalError):
            db.connect()
    errors = [(r.name, r.levelname, r.getMessage().split(":")[0]) for r in caplog.records
              if r.levelno >= logging.ERROR]
    assert errors == [("beamline", "ERROR", "OperationalError"),
                      ("beamline", "ERROR", "DatabaseUnavailableError")]


def test_a_bad_argument_is_logged_once_before_raising(connect_db, app_name, caplog):
    db = connect_db()
    with pytest.raises(ValueError):
        db.new_entry("bad name", ["x"], [1])
    errors = [(r.name, r.getMessage()) for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [("beamline", "InvalidIdentifierError: invalid table name 'bad name': use a letter "
                                   "or underscore followed by letters, digits or underscores")]

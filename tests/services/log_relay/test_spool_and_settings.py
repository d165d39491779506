"""Spool (SQLite WAL), digest timing and the relay's settings, without the network."""

from __future__ import annotations

import time

import pytest

from lab_utils_common.config import ConfigFileError, InvalidValueError, MissingOptionError
from log_relay.digest import build_digest, due_at
from log_relay.settings import RelaySettings
from log_relay.spool import Spool, SpoolError

MAIL_ENV = {"LABUTILS_MAILHANDLER_MAIL_HOST": "smtp.lab.test", "LABUTILS_MAILHANDLER_SENDER": "r@lab.test",
            "LABUTILS_MAILHANDLER_RECIPIENTS": "a@lab.test, b@lab.test"}


def row(level: str, levelno, app="pump", message="m"):
    return (time.time(), "127.0.0.1", "2024-05-01 10:00:00", level, levelno, app, "mod", "fn", message,
            None, None, None)


def test_spool_is_wal_with_full_sync_and_queues_only_what_is_to_deliver(tmp_path):
    spool = Spool.open(str(tmp_path / "deep" / "dir" / "s.sqlite3"))
    assert spool._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert spool._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    spool.append([row("INFO", 20), row("ERROR", 40), row("UNPARSED", None, app=None),
                  row("STRANGE", None)], first_id=spool.next_record_id(), sinks=("mail", "slack"),
                 min_level=30)
    assert spool.count() == 4
    groups = sorted((g.sink, g.app, g.level, g.count) for g in spool.pending_groups())
    assert groups == [("mail", "", "UNPARSED", 1), ("mail", "pump", "ERROR", 1), ("mail", "pump", "STRANGE", 1),
                      ("slack", "", "UNPARSED", 1), ("slack", "pump", "ERROR", 1), ("slack", "pump", "STRANGE", 1)]
    [record] = spool.take_batch("mail", "pump", "ERROR", 10)
    spool.mark_delivered("mail", "pump", "ERROR", [record.id], time.time(), "1 to mail")
    assert spool.pending_count("mail", "pump", "ERROR") == 0
    assert spool.pending_count("slack", "pump", "ERROR") == 1
    # A concurrent reader (the status command) sees the committed state.
    reader = Spool.open(spool.path, readonly=True)
    assert reader.status().queue_depth == {"mail": 2, "slack": 3}
    assert reader.status().meta["last_delivery"] == "1 to mail"
    # Only the INFO record is delivered to no one; old enough, it is purged.
    assert spool.purge(time.time() + 1) == 1
    reader.close()
    spool.close()


def test_spool_errors_name_the_path(tmp_path):
    with pytest.raises(SpoolError, match="spool '.*/missing.sqlite3' does not exist"):
        Spool.open(str(tmp_path / "missing.sqlite3"), readonly=True)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(SpoolError, match="a-file/s.sqlite3' cannot be created"):
        Spool.open(str(blocker / "s.sqlite3"))
    not_sqlite = tmp_path / "text.sqlite3"
    not_sqlite.write_text("this is not a database" * 100)
    with pytest.raises(SpoolError, match="text.sqlite3' cannot be opened"):
        Spool.open(str(not_sqlite))


def test_due_times_follow_alertmanager():
    assert due_at(100.0, None, group_wait=30, group_interval=300) == 130.0
    assert due_at(100.0, 90.0, group_wait=30, group_interval=300) == 390.0
    assert due_at(1000.0, 90.0, group_wait=30, group_interval=300) == 1030.0
    assert due_at(100.0, 90.0, group_wait=30, group_interval=300, backlog=True) == 130.0


def test_digest_requires_records():
    with pytest.raises(ValueError, match="no records to digest for group app='pump' level='ERROR'"):
        build_digest([], app="pump", level="ERROR")


def test_settings_from_environment_only():
    settings = RelaySettings.from_config(None, environ={
        **MAIL_ENV, "LABUTILS_RELAY_HOST": "0.0.0.0", "LABUTILS_RELAY_SPOOL_PATH": "/var/lib/log-relay/x.db",
        "LABUTILS_RELAY_MIN_LEVEL": "SUCCESS", "LABUTILS_RELAY_GROUP_WAIT": "0"})
    assert (settings.host, settings.port, settings.spool_path) == ("0.0.0.0", 9020, "/var/lib/log-relay/x.db")
    assert settings.min_level == 25 and settings.timing.group_wait == 0
    assert settings.sink_names == ("mail",)
    assert settings.sinks[0].settings.recipients == ("a@lab.test", "b@lab.test")


def test_port_comes_from_alarm_logger_of_a_054_logging_ini(tmp_path):
    ini = tmp_path / "logging.ini"
    ini.write_text("[AlarmLogger]\nactive = 1\nport = default\nlog_level = WARNING\n")
    assert RelaySettings.from_config(str(ini), environ=MAIL_ENV).port == 9020
    ini.write_text("[AlarmLogger]\nport = 9123\n\n[Relay]\nspool_path = /tmp/x.db\n")
    assert RelaySettings.from_config(str(ini), environ=MAIL_ENV).port == 9123
    ini.write_text("[AlarmLogger]\nport = 9123\n\n[Relay]\nport = 9200\n")
    assert RelaySettings.from_config(str(ini), environ=MAIL_ENV).port == 9200


@pytest.mark.parametrize("option, value, message", [
    ("SINKS", "mail, pager", "unknown sink 'pager'"),
    ("SUBJECT_TEMPLATE", "{subject} {severity}", "unknown placeholder {severity}"),
    ("MIN_LEVEL", "LOUD", "'LOUD' is not a logging level"),
    ("MAX_RECORD_SIZE", "100", "100 bytes is too small"),
    ("PORT", "99999", "outside the port range"),
])
def test_bad_values_are_named(option, value, message):
    with pytest.raises(InvalidValueError, match=message) as info:
        RelaySettings.from_config(None, environ={**MAIL_ENV, f"LABUTILS_RELAY_{option}": value})
    assert f"LABUTILS_RELAY_{option}" in str(info.value)


def test_retry_max_below_retry_initial_is_refused():
    with pytest.raises(InvalidValueError, match=r"'retry_max' of section \[Relay\] \(1.0\) is smaller"):
        RelaySettings.from_config(None, environ={**MAIL_ENV, "LABUTILS_RELAY_RETRY_INITIAL": "5",
                                                 "LABUTILS_RELAY_RETRY_MAX": "1"})


def test_slack_sink_needs_a_webhook_url_file():
    with pytest.raises(MissingOptionError, match="LABUTILS_SLACKLOGGER_WEBHOOK_URL_FILE"):
        RelaySettings.from_config(None, environ={**MAIL_ENV, "LABUTILS_RELAY_SINKS": "mail,slack"})


def test_slack_webhook_url_from_a_file_named_in_the_environment(tmp_path):
    secret = tmp_path / "url"
    secret.write_text("https://hooks.slack.test/services/T/B/secret\n")
    settings = RelaySettings.from_config(None, environ={
        "LABUTILS_RELAY_SINKS": "slack", "LABUTILS_SLACKLOGGER_WEBHOOK_URL_FILE": str(secret)})
    assert settings.sink_names == ("slack",)
    assert "secret" not in repr(settings)


def test_unreadable_webhook_url_file_is_named(tmp_path):
    ini = tmp_path / "relay.ini"
    ini.write_text("[Relay]\nsinks = slack\n\n[SlackLogger]\n"
                   f"webhook_url_file = {tmp_path / 'missing-url'}\n")
    with pytest.raises(ConfigFileError, match=r"'webhook_url_file' of section \[SlackLogger\].*missing-url"):
        RelaySettings.from_config(str(ini), environ={})


def test_the_running_relay_purges_delivered_records_and_keeps_undelivered_ones(tmp_path, smtp_server):
    import dataclasses

    from tests.fixtures.ports import wait_until
    from tests.fixtures.relay import RelayRunner, relay_config_file
    from tests.fixtures.tcp_peers import send_to_relay
    from tests.services.log_relay.test_delivery import alarm_line

    config = relay_config_file(tmp_path / "relay.ini", smtp_server, spool=tmp_path / "s.sqlite3", port=0,
                               relay={"retention": "0", "min_level": "ERROR"})
    settings = RelaySettings.from_config(str(config), environ={})
    settings = dataclasses.replace(settings, timing=dataclasses.replace(settings.timing, purge_every=0.2))
    relay = RelayRunner(settings)
    try:
        send_to_relay(relay.port, alarm_line("pumpctl", "ERROR", "mailed") + alarm_line("pumpctl", "INFO", "quiet"))
        smtp_server.wait_for(1)
        wait_until(lambda: relay.spool_count() == 0, 15, lambda: f"{relay.spool_count()} records left")
        smtp_server.stop()
        send_to_relay(relay.port, alarm_line("pumpctl", "ERROR", "undeliverable"))
        wait_until(lambda: relay.relay.scheduler.failed_attempts >= 5, 15, lambda: "not 5 failed attempts")
        relay.wait_spooled(1)  # several purge passes later, the undelivered record is still there
        assert relay.spool_count("outbox") == 1
    finally:
        relay.stop()

"""The relay end to end with a real SMTP server (aiosmtpd, STARTTLS, AUTH): digests, floods,
an SMTP outage, the Slack webhook sink."""

from __future__ import annotations

from tests.fixtures.ports import wait_until
from tests.fixtures.tcp_peers import send_to_relay


def alarm_line(app: str, level: str, message: str, *, module: str = "pump",
               function: str = "start", date: str = "2024-05-01 10:00:00", end: bytes = b"\n") -> bytes:
    return (f"{{{app}}} --date {{{date}}} --level {{{level}}} --app {{{app}}} --module {{{module}}} "
            f"--function {{{function}}} --message {{{message}}}").encode() + end


def test_one_record_arrives_as_one_mail_with_its_fields(relay_factory, smtp_server):
    relay = relay_factory()
    send_to_relay(relay.port, alarm_line("pumpctl", "ERROR", "pressure too high: 3.5e-3 mbar"))
    [mail] = smtp_server.wait_for(1)
    assert mail["Subject"] == "lab alarm [ERROR] pumpctl: pressure too high: 3.5e-3 mbar"
    assert mail["From"] == "relay@lab.test"
    assert mail["To"] == "oncall@lab.test, boss@lab.test"
    body = mail.get_body().get_content()
    assert "1 record(s) of level ERROR from pumpctl" in body
    assert "2024-05-01 10:00:00  pump.start  pressure too high: 3.5e-3 mbar" in body
    relay.wait_delivered(1)


def mail_body(mail) -> str:
    return mail.get_body(preferencelist=("plain",)).get_content()


def test_a_burst_of_one_group_is_one_mail_and_groups_are_separate(relay_factory, smtp_server):
    relay = relay_factory(group_wait="0.5")
    burst = b"".join(alarm_line("pumpctl", "ERROR", f"pressure {i}") for i in range(5))
    burst += alarm_line("pumpctl", "CRITICAL", "pump stopped") + alarm_line("gauge", "ERROR", "no reading")
    send_to_relay(relay.port, burst)
    relay.wait_delivered(7)
    mails = {mail["Subject"]: mail for mail in smtp_server.messages}
    assert sorted(mails) == ["lab alarm [CRITICAL] pumpctl: pump stopped",
                             "lab alarm [ERROR] gauge: no reading",
                             "lab alarm [ERROR] pumpctl: pressure 0 (+4 more)"]
    body = mail_body(mails["lab alarm [ERROR] pumpctl: pressure 0 (+4 more)"])
    assert "5 record(s) of level ERROR from pumpctl" in body
    assert [f"pump.start  pressure {i}" in body for i in range(5)] == [True] * 5


def test_records_below_the_threshold_are_spooled_not_mailed(relay_factory, smtp_server):
    relay = relay_factory(min_level="ERROR")
    send_to_relay(relay.port, alarm_line("pumpctl", "WARNING", "a bit warm")
                  + alarm_line("pumpctl", "INFO", "started") + alarm_line("pumpctl", "ERROR", "too hot"))
    relay.wait_delivered(3)
    [mail] = smtp_server.wait_for(1)
    assert mail["Subject"] == "lab alarm [ERROR] pumpctl: too hot"
    assert relay.spool_count("records", "level = 'WARNING'") == 1
    assert len(smtp_server.messages) == 1


def test_a_flood_of_10000_records_becomes_a_handful_of_mails(relay_factory, smtp_server):
    relay = relay_factory(group_wait="0.3", group_interval="1.0")
    flood = b"".join(alarm_line("cryo", "ERROR", f"temperature reading {i} out of range")
                     for i in range(10_000))
    send_to_relay(relay.port, flood)
    relay.wait_delivered(10_000, timeout=30)
    mails = smtp_server.messages
    assert 1 <= len(mails) <= 5
    total = 0
    lines = []
    for mail in mails:
        body = mail_body(mail)
        total += int(body.split(" record(s) of level ERROR from cryo")[0])
        [attachment] = [part for part in mail.iter_attachments()]
        assert attachment.get_filename() == "records.txt"
        lines += attachment.get_content().splitlines()
        assert "Distinct messages, most frequent first" in body
    assert total == 10_000
    assert sorted(lines) == sorted(f"2024-05-01 10:00:00  pump.start  temperature reading {i} out of range"
                                   for i in range(10_000))


def test_identical_messages_are_counted_in_the_digest(relay_factory, smtp_server):
    relay = relay_factory(group_wait="0.3", digest_max_lines="3")
    send_to_relay(relay.port, alarm_line("pumpctl", "ERROR", "valve stuck") * 60
                  + alarm_line("pumpctl", "ERROR", "pressure high") * 5)
    relay.wait_delivered(65)
    [mail] = smtp_server.messages
    body = mail_body(mail)
    assert "     60x  2024-05-01 10:00:00 .. 2024-05-01 10:00:00  pump.start  valve stuck" in body
    assert "      5x  2024-05-01 10:00:00 .. 2024-05-01 10:00:00  pump.start  pressure high" in body
    assert mail["Subject"] == "lab alarm [ERROR] pumpctl: valve stuck (+64 more)"


def test_smtp_down_then_up_loses_nothing(relay_factory, smtp_server):
    smtp_server.stop()
    relay = relay_factory()
    send_to_relay(relay.port, b"".join(alarm_line("pumpctl", "ERROR", f"outage {i}") for i in range(20)))
    relay.wait_spooled(20)
    # The relay keeps trying and says why it fails.
    wait_until(lambda: relay.relay.scheduler.failed_attempts >= 3, 15,
               lambda: f"{relay.relay.scheduler.failed_attempts} failed attempts")
    from log_relay.status import read_status
    report = read_status(relay.spool_path)
    assert report.details["queue_depth"] == {"mail": 20}
    assert "Connection refused" in report.details["last_error"]
    # Records keep being accepted meanwhile.
    send_to_relay(relay.port, b"".join(alarm_line("pumpctl", "ERROR", f"outage {i}") for i in range(20, 30)))
    relay.wait_spooled(30)
    smtp_server.start()
    relay.wait_delivered(30, timeout=20)
    bodies = "".join(mail_body(mail) for mail in smtp_server.messages)
    assert [f"pump.start  outage {i}\n" in bodies for i in range(30)] == [True] * 30


def test_malformed_binary_and_oversized_input_is_delivered_with_notes(relay_factory, smtp_server):
    relay = relay_factory(max_record_size="1024", group_wait="0.3")
    send_to_relay(relay.port, b"this is not a record\n\x00\xff binary \x1b[31m\n"
                  + alarm_line("pumpctl", "ERROR", "Z" * 5000) + alarm_line("pumpctl", "ERROR", "after"))
    relay.wait_delivered(3)  # the two raw lines of one connection are one record
    mails = {mail["Subject"].split(":")[0]: mail for mail in smtp_server.messages}
    raw = mail_body(mails["lab alarm [UNPARSED] unparsed input"])
    assert "this is not a record\n    \\x00\\xff binary" in raw
    assert "[from 127.0.0.1; note: 2 lines that are not lab-utils records: kept as raw text; " \
           "invalid UTF-8 shown as \\x escapes]" in raw
    assert "\\x00\\xff binary \\x1b[31m" in raw  # control characters shown, not sent raw
    body = mail_body(mails["lab alarm [ERROR] pumpctl"])
    assert "cut at max_record_size = 1024 bytes" in body
    assert "pump.start  after" in body


def test_slack_webhook_is_a_second_sink_with_its_own_retries(relay_factory, smtp_server, webhook_server,
                                                             tmp_path):
    url_file = tmp_path / "webhook-url"
    url_file.write_text(webhook_server.url + "\n")
    webhook_server.status = 500
    relay = relay_factory(sinks="mail, slack",
                          extra_ini=f"[SlackLogger]\nwebhook_url_file = {url_file}\n")
    send_to_relay(relay.port, alarm_line("pumpctl", "CRITICAL", "pump on fire"))
    [mail] = smtp_server.wait_for(1)
    wait_until(lambda: relay.relay.scheduler.failed_attempts >= 2, 15, lambda: "no failed webhook post")
    assert relay.spool_count("outbox") == 1  # mail done, Slack still to do
    webhook_server.status = 200
    [body] = webhook_server.wait_for(1)
    relay.wait_delivered(1)
    assert body["text"].startswith("*lab-utils alarm [CRITICAL] pumpctl: pump on fire*\n```1 record(s)")
    assert mail["Subject"] == "lab alarm [CRITICAL] pumpctl: pump on fire"


def test_implicit_tls_mail_server(relay_factory, smtp_server_factory):
    smtp = smtp_server_factory("tls", auth=True)
    relay = relay_factory(smtp=smtp)
    send_to_relay(relay.port, alarm_line("pumpctl", "ERROR", "over TLS"))
    [mail] = smtp.wait_for(1)
    assert mail["Subject"].endswith("over TLS")


def test_status_reports_queue_and_last_delivery(relay_factory, smtp_server):
    from log_relay.status import read_status

    relay = relay_factory()
    send_to_relay(relay.port, alarm_line("pumpctl", "ERROR", "status check"))
    relay.wait_delivered(1)
    wait_until(lambda: "heartbeat_epoch" in read_status(relay.spool_path).details
               or read_status(relay.spool_path).healthy, 10, lambda: "no heartbeat")
    report = read_status(relay.spool_path)
    assert report.healthy, report.problems
    assert report.details["queue_depth"] == {}
    assert report.details["last_delivery"] == "1 ERROR record(s) from pumpctl to mail"
    assert report.details["oldest_undelivered_at"] is None


def test_status_is_unhealthy_when_records_wait_too_long(relay_factory, smtp_server):
    from log_relay.status import read_status

    smtp_server.stop()
    relay = relay_factory()
    send_to_relay(relay.port, alarm_line("pumpctl", "ERROR", "nobody hears me"))
    relay.wait_spooled(1)
    wait_until(lambda: relay.relay.scheduler.failed_attempts >= 1, 10, lambda: "no failed attempt")
    report = read_status(relay.spool_path, unhealthy_after=0.001)
    assert not report.healthy
    assert "the oldest undelivered record has waited" in report.problems[0]
    assert "Connection refused" in report.problems[0]
    relay.stop()
    report = read_status(relay.spool_path)
    assert any("the relay stopped at" in problem for problem in report.problems)


def test_many_idle_long_lived_connections_and_active_senders_lose_nothing(relay_factory, smtp_server):
    import socket
    import threading

    relay = relay_factory(group_wait="0.3")
    idle = [socket.create_connection(("127.0.0.1", relay.port), timeout=10) for _ in range(200)]
    try:
        wait_until(lambda: relay.relay.receiver.connection_count == 200, 15,
                   lambda: f"{relay.relay.receiver.connection_count} connections")

        def sender(n: int) -> None:
            send_to_relay(relay.port, b"".join(alarm_line(f"app{n}", "ERROR", f"busy {n}.{i}")
                                               for i in range(500)))

        threads = [threading.Thread(target=sender, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        # An idle sender speaks up after months: its record arrives like any other.
        idle[123].sendall(alarm_line("sleeper", "CRITICAL", "woke up"))
        for thread in threads:
            thread.join(30)
        relay.wait_delivered(8 * 500 + 1, timeout=30)
        assert relay.relay.receiver.connection_count == 200
        subjects = sorted(mail["Subject"] for mail in smtp_server.messages)
        assert "lab alarm [CRITICAL] sleeper: woke up" in subjects
        apps = {subject.split("] ")[1].split(":")[0] for subject in subjects}
        assert apps == {"sleeper", *(f"app{n}" for n in range(8))}
    finally:
        for sock in idle:
            sock.close()


def test_retries_back_off_exponentially_up_to_retry_max_then_start_over(relay_factory, smtp_server, caplog):
    import logging

    smtp_server.stop()
    relay = relay_factory(retry_initial="0.05", retry_max="0.4")

    def retries() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "log_relay.delivery" and "failed (attempt" in r.msg]

    with caplog.at_level(logging.ERROR, logger="log_relay.delivery"):
        send_to_relay(relay.port, alarm_line("pumpctl", "ERROR", "nobody listens"))
        wait_until(lambda: len(retries()) >= 6, 20, lambda: f"{len(retries())} failed attempts")
        failed = retries()[:6]
        # args: app, level, sink, attempt number, delay, error
        assert [(r.args[3], r.args[4]) for r in failed] == [(1, 0.05), (2, 0.1), (3, 0.2), (4, 0.4),
                                                            (5, 0.4), (6, 0.4)]
        for before, after in zip(failed, failed[1:]):  # never tried again before the delay ran out
            assert after.created - before.created >= before.args[4] * 0.9
        smtp_server.start()
        relay.wait_delivered(1)
        caplog.clear()
        smtp_server.stop()  # a new outage starts the back-off from retry_initial again
        send_to_relay(relay.port, alarm_line("pumpctl", "ERROR", "again"))
        wait_until(lambda: len(retries()) >= 1, 20, lambda: "no failed attempt")
        assert retries()[0].args[3:5] == (1, 0.05)


def test_records_after_the_first_digest_wait_for_group_interval_and_go_out_together(relay_factory,
                                                                                      smtp_server):
    import sqlite3

    relay = relay_factory(group_wait="0.2", group_interval="1.5")

    def last_sent() -> float:
        db = sqlite3.connect(f"file:{relay.spool_path}?mode=ro", uri=True)
        try:
            return db.execute("SELECT last_sent_at FROM groups WHERE sink = 'mail' AND app = 'pumpctl'"
                              ).fetchone()[0]
        finally:
            db.close()

    send_to_relay(relay.port, alarm_line("pumpctl", "ERROR", "first"))
    [first] = smtp_server.wait_for(1)
    relay.wait_delivered(1)
    first_sent = last_sent()
    assert first["Subject"] == "lab alarm [ERROR] pumpctl: first"
    send_to_relay(relay.port, b"".join(alarm_line("pumpctl", "ERROR", f"later {i}") for i in range(3)))
    relay.wait_delivered(4)
    [_, second] = smtp_server.messages
    assert second["Subject"] == "lab alarm [ERROR] pumpctl: later 0 (+2 more)"
    assert "3 record(s) of level ERROR from pumpctl" in mail_body(second)
    assert last_sent() - first_sent >= 1.5  # not before group_interval after the first digest

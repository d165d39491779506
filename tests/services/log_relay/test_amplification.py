"""Mail amplification is bounded: distinct apps and garbage do not become hundreds of mails."""

from __future__ import annotations

from tests.fixtures.tcp_peers import send_to_relay
from tests.services.log_relay.test_delivery import alarm_line
from tests.services.log_relay.test_process import spool_messages


def test_two_hundred_apps_in_a_burst_make_at_most_max_digests_plus_one_summary(relay_factory,
                                                                            smtp_server):
    relay = relay_factory(group_wait="0.2", group_interval="600", max_digests="5")
    send_to_relay(relay.port, b"".join(alarm_line(f"app{i}", "ERROR", f"from app {i}")
                                       for i in range(200)))
    relay.wait_delivered(200, timeout=60)
    mails = smtp_server.messages
    assert len(mails) == 6  # before: 200
    [summary] = [mail for mail in mails if "[SUMMARY]" in mail["Subject"]]
    [attachment] = list(summary.iter_attachments())
    folded = attachment.get_content()
    assert sum(f"from app {i}\n" in folded for i in range(200)) == 195


def test_garbage_is_kept_per_connection_in_few_records_and_few_mails(relay_factory, smtp_server):
    relay = relay_factory(group_wait="0.2", digest_max_records="500")
    garbage = b"".join(b"junk %05d\n" % i for i in range(20_000))  # 220 KB, no record in it
    send_to_relay(relay.port, garbage)
    relay.wait_spooled(1)
    relay.wait_delivered(relay.spool_count(), timeout=60)
    assert relay.spool_count() < 20  # before: 20,000 records, 40 mails at once
    assert len(smtp_server.messages) <= 2
    kept = "\n".join(spool_messages(relay.spool_path)).split("\n")
    assert kept == [f"junk {i:05d}" for i in range(20_000)]

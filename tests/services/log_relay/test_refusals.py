"""Nothing blocks delivery: refused digests are split, cut, parked; slow servers end in time."""

from __future__ import annotations

import signal

from tests.fixtures.ports import free_port, wait_until
from tests.fixtures.relay import relay_config_file
from tests.fixtures.tcp_peers import send_to_relay
from tests.services.log_relay.test_delivery import alarm_line

from log_relay.status import read_status


def _all_text(mails) -> str:
    text = ""
    for mail in mails:
        text += mail.get_body().get_content()
        for part in mail.iter_attachments():
            text += part.get_content()
    return text


def test_a_refused_digest_is_split_and_no_group_waits_behind_it(relay_factory, smtp_server):
    smtp_server.refuse_over = 40_000  # 552, without announcing SIZE
    relay = relay_factory(group_wait="0", group_interval="0")
    send_to_relay(relay.port, b"".join(alarm_line("flood", "ERROR", f"record {i} " + "y" * 100)
                                       for i in range(1000)))
    relay.wait_spooled(1000)
    send_to_relay(relay.port, alarm_line("other", "ERROR", "must not wait"))
    relay.wait_delivered(1001, timeout=60)
    assert smtp_server.refused, "the server never refused: the test proves nothing"
    text = _all_text(smtp_server.messages)
    assert "must not wait" in text
    assert [i for i in range(1000) if f"record {i} " not in text] == []


def test_a_single_oversized_record_is_cut_with_a_note(relay_factory, smtp_server):
    smtp_server.refuse_over = 30_000
    relay = relay_factory(group_wait="0", max_message_bytes="65536")
    send_to_relay(relay.port, alarm_line("big", "ERROR", "huge " + "z" * 60_000))
    relay.wait_delivered(1, timeout=30)
    [mail] = smtp_server.messages
    body = mail.get_body().get_content()
    assert "message cut from 60005 to 4096 characters" in body and "stays in the spool" in body


def test_a_record_refused_whatever_its_size_is_parked_and_reported(relay_factory, smtp_server):
    smtp_server.refuse_containing = b"FORBIDDEN"
    relay = relay_factory(group_wait="0", group_interval="0", heartbeat_interval="0.2")
    send_to_relay(relay.port, alarm_line("app", "ERROR", "x" * 400 + " FORBIDDEN word"))
    send_to_relay(relay.port, alarm_line("app", "ERROR", "fine"))
    wait_until(lambda: relay.spool_count("dead_letters") == 1, 30,
               lambda: f"{relay.spool_count('dead_letters')} dead letters")
    relay.wait_delivered(2, timeout=30)
    texts = [mail.get_body().get_content() for mail in smtp_server.wait_for(2)]
    assert any("fine" in text for text in texts)
    notice = [mail for mail in smtp_server.messages if "DEAD_LETTER" in mail["Subject"]]
    assert len(notice) == 1 and "refused for good" in notice[0].get_body().get_content()
    assert read_status(relay.spool_path).details["dead_letters"] == "1"


def test_sigterm_ends_within_drain_timeout_while_the_mail_server_drips(
        tmp_path, smtp_server, slow_greeter, relay_process_factory):
    port = free_port()
    smtp_server.port = slow_greeter.port  # the relay's [MailHandler] points at the slow server
    config = relay_config_file(tmp_path / "relay.ini", smtp_server, spool=tmp_path / "s.sqlite3",
                               port=port, relay={"group_wait": "0", "drain_timeout": "1"})
    relay = relay_process_factory(config, port).start()
    send_to_relay(port, alarm_line("app", "ERROR", "stuck behind a slow server"))
    wait_until(lambda: slow_greeter.connections >= 1, 20, lambda: "the relay never connected")
    relay.signal(signal.SIGTERM)
    assert relay.wait(timeout=20) == 0  # before: still running after 30 s
    report = read_status(str(tmp_path / "s.sqlite3"))
    assert report.details["queue_depth"] == {"mail": 1}  # kept for the next start


def test_digests_are_sized_to_max_message_bytes_before_sending(relay_factory, smtp_server, caplog):
    relay = relay_factory(group_wait="0.3", group_interval="0", max_message_bytes="65536")
    send_to_relay(relay.port, b"".join(alarm_line("big", "ERROR", f"part {i} " + "q" * 10_000)
                                       for i in range(20)))
    relay.wait_delivered(20, timeout=30)
    assert len(smtp_server.messages) >= 4  # about 32 KB of messages each, not one of 200 KB
    assert not [r for r in caplog.records if "refused a digest" in r.getMessage()]

"""The relay as a real process: SIGKILL and restart lose nothing, SIGTERM drains; real senders
(lab-utils 0.5.4's own configure_logging, this project's NonPickledSocketHandler)."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import textwrap

import pytest

from tests.fixtures.ports import free_port, wait_until
from tests.fixtures.relay import relay_config_file
from tests.fixtures.tcp_peers import send_to_relay

from lab_utils_common.custom_logging import NonPickledSocketHandler
from log_relay.spool import Spool
from log_relay.status import read_status


def spool_messages(path) -> list[str]:
    spool = Spool.open(str(path), readonly=True)
    try:
        return [row[0] for row in spool._db.execute("SELECT message FROM records ORDER BY id")]
    finally:
        spool.close()


def spool_count(path, table: str = "records") -> int:
    spool = Spool.open(str(path), readonly=True)
    try:
        return spool.count(table=table)
    finally:
        spool.close()


def line(i: int, app: str = "pumpctl") -> bytes:
    return (f"{{{app}}} --date {{2024-05-01 10:00:00}} --level {{ERROR}} --app {{{app}}} "
            f"--module {{pump}} --function {{start}} --message {{record {i}}}\n").encode()


@pytest.mark.parametrize("smtp_up", [False, True], ids=["smtp-down", "while-mailing"])
def test_sigkill_then_restart_delivers_everything_accepted(tmp_path, smtp_server, relay_process_factory,
                                                           smtp_up):
    if not smtp_up:
        smtp_server.stop()  # nothing can be delivered before the kill
    port = free_port()
    spool = tmp_path / "spool.sqlite3"
    # Small digests, no interval: with the server up, mails are going out when the kill comes.
    config = relay_config_file(tmp_path / "relay.ini", smtp_server, spool=spool, port=port,
                               relay={"digest_max_records": "20", "group_wait": "0",
                                      "group_interval": "0"})
    relay = relay_process_factory(config, port).start()
    for chunk in range(5):
        send_to_relay(port, b"".join(line(i) for i in range(chunk * 100, chunk * 100 + 100)))
    wait_until(lambda: spool_count(spool) >= 500, 20, lambda: f"{spool_count(spool)} spooled")
    relay.signal(signal.SIGKILL)
    assert relay.wait() == -signal.SIGKILL
    assert spool_count(spool) == 500

    smtp_server.start()
    relay_process_factory(config, port).start()
    wait_until(lambda: spool_count(spool, "outbox") == 0, 30,
               lambda: f"{spool_count(spool, 'outbox')} still undelivered")
    bodies = "".join(mail.get_body().get_content() for mail in smtp_server.messages)
    for mail in smtp_server.messages:
        for part in mail.iter_attachments():
            bodies += part.get_content()
    missing = [i for i in range(500) if f"pump.start  record {i}\n" not in bodies]
    assert missing == []


def test_sigterm_drains_delivers_pending_and_exits_cleanly(tmp_path, smtp_server, relay_process_factory):
    port = free_port()
    spool = tmp_path / "spool.sqlite3"
    # A long group_wait: only the drain on SIGTERM can send this before the process ends.
    config = relay_config_file(tmp_path / "relay.ini", smtp_server, spool=spool, port=port,
                               relay={"group_wait": "600"})
    relay = relay_process_factory(config, port).start()
    send_to_relay(port, b"".join(line(i) for i in range(10)))
    wait_until(lambda: spool_count(spool) >= 10, 20, lambda: f"{spool_count(spool)} spooled")
    assert smtp_server.messages == []
    relay.signal(signal.SIGTERM)
    assert relay.wait() == 0
    [mail] = smtp_server.wait_for(1)
    assert "10 record(s) of level ERROR from pumpctl" in mail.get_body().get_content()
    assert spool_count(spool, "outbox") == 0
    report = read_status(str(spool))
    assert not report.healthy and "the relay stopped at" in report.problems[0]
    assert "log-relay stopped: 10 record(s) received, 10 committed, 10 delivered" in relay.log.read_text()


def test_status_command_exit_codes(tmp_path, smtp_server, relay_process_factory):
    port = free_port()
    spool = tmp_path / "spool.sqlite3"
    config = relay_config_file(tmp_path / "relay.ini", smtp_server, spool=spool, port=port)
    relay = relay_process_factory(config, port).start()
    status = [sys.executable, "-m", "log_relay", "--config", str(config), "status"]
    wait_until(lambda: subprocess.run(status, capture_output=True).returncode == 0, 15,
               lambda: subprocess.run(status, capture_output=True, text=True).stdout)
    done = subprocess.run(status + ["--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout
    assert '"healthy": true' in done.stdout and '"queue_depth": {}' in done.stdout
    relay.signal(signal.SIGTERM)
    relay.wait()
    done = subprocess.run(status + ["--quiet"], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stdout.startswith("log-relay unhealthy: the relay stopped at")
    missing = subprocess.run(status + ["--spool", str(tmp_path / "nope.sqlite3")],
                             capture_output=True, text=True)
    assert missing.returncode == 2
    assert "nope.sqlite3' does not exist" in missing.stderr


OLD_SENDER = textwrap.dedent('''
    import sys
    from lab_utils.custom_logging import configure_logging, getLogger

    configure_logging(sys.argv[1], logger_name="cryostat")
    log = getLogger("cryostat")
    for i in range(int(sys.argv[2])):
        log.error("reading %d: {T} = 4.2 K\\nsecond line", i)
    log.info("below the AlarmLogger level")
    try:
        1 / 0
    except ZeroDivisionError:
        log.exception("division failed")
''')


def test_lab_utils_054_configure_logging_as_the_sender(tmp_path, smtp_server, relay_factory):
    """0.5.4's AlarmLogger sends to localhost at [AlarmLogger] port, records back to back."""
    port = free_port()
    ini = relay_config_file(
        tmp_path / "logging.ini", smtp_server, spool=tmp_path / "spool.sqlite3", port=None,
        extra=f"[ConsoleLogger]\nactive = 0\n\n[AlarmLogger]\nactive = 1\nport = {port}\n"
              "log_level = WARNING\n")
    from tests.fixtures.relay import RelayRunner

    from log_relay.settings import RelaySettings

    relay = RelayRunner(RelaySettings.from_config(str(ini), environ={}))
    try:
        assert relay.port == port  # taken from [AlarmLogger]
        script = tmp_path / "old_app.py"
        script.write_text(OLD_SENDER)
        done = subprocess.run([sys.executable, str(script), str(ini), "300"], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        relay.wait_delivered(301)
        messages = spool_messages(relay.spool_path)
        assert messages[:300] == [f"reading {i}: {{T}} = 4.2 K\nsecond line" for i in range(300)]
        assert messages[300].startswith("division failed\nTraceback (most recent call last):")
        assert messages[300].endswith("ZeroDivisionError: division by zero")
        assert len(messages) == 301
        assert relay.spool_count("records", "note IS NOT NULL") == 0
    finally:
        relay.stop()


def test_non_pickled_socket_handler_across_a_relay_restart(tmp_path, smtp_server, relay_factory):
    port = free_port()
    spool = tmp_path / "restart.sqlite3"
    relay = relay_factory(port=str(port), spool=spool)
    handler = NonPickledSocketHandler("127.0.0.1", port, retry_start=0.05, retry_max=0.2)
    logger = logging.getLogger("test.relay.restart")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        for i in range(100):
            logger.error("before restart %d\nwith a second line", i)
        relay.wait_spooled(100)
        relay.stop()
        for i in range(100):
            logger.error("during restart %d", i)
        relay = relay_factory(port=str(port), spool=spool)
        for i in range(100):
            logger.error("after restart %d", i)
        wait_until(lambda: len(set(spool_messages(spool))) >= 300, 20,
                   lambda: f"{len(set(spool_messages(spool)))} distinct messages spooled")
        expected = ({f"before restart {i}\nwith a second line" for i in range(100)}
                    | {f"during restart {i}" for i in range(100)} | {f"after restart {i}" for i in range(100)})
        assert set(spool_messages(spool)) == expected
        assert handler.dropped == 0
    finally:
        logger.removeHandler(handler)
        handler.close()


def test_a_taken_port_and_a_bad_value_are_named_in_the_exit_message(tmp_path, smtp_server):
    import socket

    port = free_port()
    config = relay_config_file(tmp_path / "relay.ini", smtp_server, spool=tmp_path / "s.sqlite3", port=port)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        done = subprocess.run([sys.executable, "-m", "log_relay", "--config", str(config)],
                              capture_output=True, text=True, timeout=30)
    assert done.returncode == 3
    assert f"log-relay: [Errno 98] cannot listen on 127.0.0.1:{port}: Address already in use" in done.stderr
    bad = subprocess.run([sys.executable, "-m", "log_relay", "--config", str(config)],
                         capture_output=True, text=True, timeout=30,
                         env={**__import__("os").environ, "LABUTILS_RELAY_GROUP_WAIT": "soon"})
    assert bad.returncode == 2
    assert "LABUTILS_RELAY_GROUP_WAIT has invalid value 'soon'" in bad.stderr


def test_own_logs_go_through_configure_logging_json_on_stderr(tmp_path, smtp_server):
    import json
    import os
    import socket

    port = free_port()
    config = relay_config_file(tmp_path / "relay.ini", smtp_server, spool=tmp_path / "s.sqlite3", port=port,
                               extra="[AlarmLogger]\nactive = 1\nport = 1\n")  # never used by the relay
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABUTILS_")}
    command = [sys.executable, "-m", "log_relay", "--config", str(config), "run"]
    with socket.socket() as taken:  # the relay sets up logging, then exits 3: cannot listen
        taken.bind(("127.0.0.1", port))
        taken.listen()
        done = subprocess.run(command, capture_output=True, text=True, timeout=30,
                              env={**env, "LABUTILS_CONSOLELOGGER_FORMAT": "json"})
        quiet = subprocess.run(command, capture_output=True, text=True, timeout=30,
                               env={**env, "LABUTILS_RELAY_LOG_LEVEL": "ERROR"})
    assert done.returncode == 3 and done.stdout == ""
    documents = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert {"name": "log-relay", "message": "Logging system set up and running"}.items() \
        <= documents[0].items()
    assert quiet.returncode == 3 and "Logging system set up" not in quiet.stderr
    bad = subprocess.run(command + ["--log-level", "LOUD"], capture_output=True, text=True, timeout=30,
                         env=env)
    assert bad.returncode == 2
    assert "log-relay: --log-level (or LABUTILS_RELAY_LOG_LEVEL): 'LOUD' is not a logging level" in bad.stderr


OLD_EXCEPTIONS = textwrap.dedent('''
    import sys
    from lab_utils.custom_logging import configure_logging, getLogger

    configure_logging(sys.argv[1], logger_name="cryostat")
    log = getLogger("cryostat")
    for i in range(int(sys.argv[2])):
        try:
            {}["k"]
        except KeyError:
            log.exception("failed with {ctx %d}", i)
''')


def test_lab_utils_054_exception_records_with_braces_arrive_unchanged(tmp_path, smtp_server):
    """0.5.4 puts the traceback inside --message {...}: a '}' in the message stays where it is."""
    port = free_port()
    ini = relay_config_file(
        tmp_path / "logging.ini", smtp_server, spool=tmp_path / "spool.sqlite3", port=None,
        extra=f"[ConsoleLogger]\nactive = 0\n\n[AlarmLogger]\nactive = 1\nport = {port}\n"
              "log_level = WARNING\n")
    from tests.fixtures.relay import RelayRunner

    from log_relay.settings import RelaySettings

    relay = RelayRunner(RelaySettings.from_config(str(ini), environ={}))
    try:
        script = tmp_path / "old_app.py"
        script.write_text(OLD_EXCEPTIONS)
        done = subprocess.run([sys.executable, str(script), str(ini), "300"], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        relay.wait_spooled(300)
        messages = spool_messages(relay.spool_path)
        changed = [m for i, m in enumerate(messages)
                   if not (m.startswith(f"failed with {{ctx {i}}}\nTraceback (most recent call last):\n")
                           and m.endswith("KeyError: 'k'"))]
        assert changed == [] and len(messages) == 300
    finally:
        relay.stop()

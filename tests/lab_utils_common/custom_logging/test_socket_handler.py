"""NonPickledSocketHandler against a real TCP line receiver on 127.0.0.1, including restarts."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time

import pytest

from tests.fixtures.ports import free_port, wait_for_port

from lab_utils_common.alarm_wire import unescape_message
from lab_utils_common.custom_logging import NonPickledSocketHandler

ALARM_LINE = re.compile(
    r"^\{(?P<name>[^}]*)\} --date \{(?P<date>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\} --level \{(?P<level>\w+)\} "
    r"--app \{(?P<app>[^}]*)\} --module \{(?P<module>\w+)\} --function \{(?P<function>\w+)\} "
    r"--message \{(?P<message>.*)\}$")


@pytest.fixture
def make_handler():
    handlers = []

    def make(receiver, **options) -> NonPickledSocketHandler:
        options.setdefault("retry_start", 0.02)
        options.setdefault("retry_max", 0.1)
        # A receiver stopped right after a connection's first line looks like a 0.5.x one
        # (closes after one message); the next connection then waits this long for a close.
        options.setdefault("one_shot_wait", 1.0)
        handler = NonPickledSocketHandler(receiver.host, receiver.port, **options)
        handlers.append(handler)
        return handler

    yield make
    for handler in handlers:
        handler.close()


@pytest.fixture
def logger(isolated_logger):
    return isolated_logger("pump-test")


def wait_disconnected(handler, timeout=10.0):
    """Wait until the handler noticed the receiver is gone (it probes an idle connection each second).

    A record written in the instant between the receiver's close and that moment can be
    acknowledged by the receiver's kernel and still never be read: the one loss no sender
    can see. The tests that count every record start the outage after it.
    """
    deadline = time.monotonic() + timeout
    while handler.connected:
        if time.monotonic() > deadline:
            raise AssertionError(f"{handler!r} still connected {timeout} s after the receiver stopped")
        time.sleep(0.01)


def messages(lines):
    return [unescape_message(ALARM_LINE.match(line)["message"]) for line in lines]


def test_one_line_per_record_in_the_legacy_format(line_receiver, make_handler, logger):
    logger.addHandler(make_handler(line_receiver))
    logger.error("pressure %s", "too high")
    logger.warning("two\nlines and a \\ backslash")
    first, second = line_receiver.wait_for(2)
    fields = ALARM_LINE.match(first).groupdict()
    assert fields["name"] == fields["app"] == "pump-test"
    assert (fields["level"], fields["module"], fields["function"], fields["message"]) == (
        "ERROR", "test_socket_handler", "test_one_line_per_record_in_the_legacy_format",
        "pressure too high")
    assert ALARM_LINE.match(second)["message"] == "two\\nlines and a \\\\ backslash"
    assert messages([second]) == ["two\nlines and a \\ backslash"]


def test_traceback_stays_inside_the_message_field(line_receiver, make_handler, logger):
    logger.addHandler(make_handler(line_receiver))
    try:
        raise RuntimeError("valve stuck")
    except RuntimeError:
        logger.exception("cannot close valve")
    [line] = line_receiver.wait_for(1)
    [text] = messages([line])
    assert text.startswith("cannot close valve\nTraceback (most recent call last):")
    assert text.rstrip().endswith("RuntimeError: valve stuck")


def test_records_wait_while_receiver_is_down_and_arrive_in_order(line_receiver, make_handler, logger):
    handler = make_handler(line_receiver)
    logger.addHandler(handler)
    for i in range(100):
        logger.warning("before %d", i)
    line_receiver.wait_for(100)

    line_receiver.stop()
    wait_disconnected(handler)
    for i in range(200):
        logger.warning("during %d", i)
    line_receiver.start()
    for i in range(100):
        logger.warning("after %d", i)

    expected = ([f"before {i}" for i in range(100)] + [f"during {i}" for i in range(200)]
                + [f"after {i}" for i in range(100)])
    received = line_receiver.wait_until(lambda lines: len(set(lines)) >= 400, what="400 distinct")
    assert _first_appearances(messages(received)) == expected
    assert handler.dropped == 0
    assert line_receiver.connections >= 2
    assert line_receiver.partial == []


def test_receiver_restart_mid_stream_loses_nothing(line_receiver, make_handler, logger):
    handler = make_handler(line_receiver)
    logger.addHandler(handler)
    produced = []
    stop = threading.Event()

    def produce() -> None:
        i = 0
        while not stop.is_set():
            logger.error("record %d", i)
            produced.append(i)
            i += 1
            time.sleep(0.0005)  # pacing the producer, not synchronisation

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        line_receiver.wait_for(200)
        line_receiver.stop(drain=True)  # sender sees EOF while records keep coming
        at_restart = len(line_receiver.lines)
        line_receiver.start()
        line_receiver.wait_for(at_restart + 200)  # records flow again after the restart
    finally:
        stop.set()
        producer.join()
    count = len(produced)
    received = line_receiver.wait_until(lambda lines: len(set(lines)) >= count,
                                        what=f"{count} distinct records")
    assert _first_appearances(messages(received)) == [f"record {i}" for i in range(count)]
    assert handler.dropped == 0
    assert line_receiver.connections >= 2


def test_drops_beyond_the_queue_bound_are_counted_and_reported(line_receiver, make_handler, logger):
    handler = make_handler(line_receiver, queue_size=50)
    logger.addHandler(handler)
    logger.warning("first")
    line_receiver.wait_for(1)

    line_receiver.stop()
    wait_disconnected(handler)
    for i in range(80):
        logger.warning("outage %d", i)
    assert handler.dropped == 30
    line_receiver.start()

    received = line_receiver.wait_for(1 + 50 + 1)
    texts = messages(received)
    assert texts[:51] == ["first"] + [f"outage {i}" for i in range(50)]
    report = ALARM_LINE.match(received[51]).groupdict()
    assert report["level"] == "WARNING" and report["app"] == "pump-test"
    assert report["message"].startswith(
        f"30 record(s) dropped: the receiver at 127.0.0.1:{line_receiver.port} was unreachable")

    logger.warning("back")
    assert messages(line_receiver.wait_for(53))[52] == "back"


def test_emit_does_not_wait_for_an_unreachable_receiver(line_receiver, make_handler, logger):
    line_receiver.stop()
    handler = make_handler(line_receiver, queue_size=5, flush_timeout=0.2)
    logger.addHandler(handler)
    for i in range(1000):  # would block or raise if emit touched the network
        logger.error("nobody listens %d", i)
    assert handler.queued == 5
    assert handler.dropped == 995
    assert handler.flush(timeout=0.05) is False


def test_close_drains_the_queue(line_receiver, make_handler, logger):
    handler = make_handler(line_receiver)
    logger.addHandler(handler)
    for i in range(500):
        logger.error("closing %d", i)
    handler.close()
    assert handler.queued == 0
    assert messages(line_receiver.wait_for(500)) == [f"closing {i}" for i in range(500)]


def test_close_with_receiver_down_reports_undelivered(line_receiver, make_handler, logger, capsys):
    line_receiver.stop()
    handler = make_handler(line_receiver, flush_timeout=0.2)
    logger.addHandler(handler)
    logger.error("never delivered")
    handler.close()
    assert "1 alarm record(s) not delivered" in capsys.readouterr().err
    assert handler.dropped == 1


def _first_appearances(items):
    seen, ordered = set(), []
    for item in items:
        if item not in seen:
            seen.add(item)
            ordered.append(item)
    return ordered


def test_shutdown_with_receiver_down_waits_once(line_receiver, make_handler, logger, capsys):
    line_receiver.stop()
    handler = make_handler(line_receiver, flush_timeout=0.3)
    logger.addHandler(handler)
    logger.error("undeliverable")
    assert handler.flush() is False  # what logging.shutdown() does first...
    handler.close()                   # ...then this returns without a second wait
    assert not handler._thread.is_alive()
    assert "1 alarm record(s) not delivered" in capsys.readouterr().err


# A lab-utils 0.5.x alarm receiver: the 0.5.4 socket_comm Server (one recv per connection, a
# reply, close) whose command is the app name and whose options are the alarm line's fields.
OLD_ALARM_RECEIVER = """
import json, sys
from lab_utils.socket_comm import Server
class AlarmReceiver(Server):
    def create_parser(self):
        super().create_parser()
        sp = self.sp.add_parser("pump-test", description="alarm records")
        for option in ("--date", "--level", "--app", "--module", "--function", "--message"):
            sp.add_argument(option)
        sp.set_defaults(func=self.record, which="record")
    def record(self):
        with open(sys.argv[3], "a") as out:
            out.write(json.dumps(self.namespace.message) + "\\n")
        self.reply = sys.argv[4]
AlarmReceiver(pid_file_name=sys.argv[2], host="127.0.0.1", port=int(sys.argv[1])).start_daemon()
"""


@pytest.mark.parametrize("reply", ["recorded", ""])
def test_a_0_5_4_server_as_receiver_gets_every_record_of_a_burst(tmp_path, make_handler, logger, reply):
    """0.5.x's receiver reads one message per connection: each record must get a connection."""
    port = free_port()
    received = tmp_path / "received.jsonl"
    process = subprocess.Popen([sys.executable, "-c", OLD_ALARM_RECEIVER, str(port), str(tmp_path / "old.pid"),
                                str(received), reply], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port("127.0.0.1", port)
        receiver = type("Receiver", (), {"host": "127.0.0.1", "port": port})
        handler = make_handler(receiver)
        logger.addHandler(handler)
        for i in range(60):  # a burst: all queued before the first one is sent
            logger.error("record %d of the burst", i)
        deadline = time.monotonic() + 30
        while len(lines := received.read_text().splitlines() if received.exists() else []) < 60:
            assert time.monotonic() < deadline, f"{len(lines)} of 60 records arrived: {lines[-3:]}"
            time.sleep(0.02)
        assert [json.loads(line) for line in lines] == [f"record {i} of the burst" for i in range(60)]
        assert handler.one_message_per_connection and handler.dropped == 0
    finally:
        process.kill()
        process.wait(10)


def test_a_streaming_receiver_gets_the_lines_after_the_first_on_the_same_connection(line_receiver,
                                                                                    make_handler, logger):
    handler = make_handler(line_receiver, first_line_wait=0.05)
    logger.addHandler(handler)
    for i in range(300):
        logger.error("streamed %d", i)
    assert messages(line_receiver.wait_for(300)) == [f"streamed {i}" for i in range(300)]
    assert line_receiver.connections == 1 and not handler.one_message_per_connection


def test_dropped_counts_each_record_once_at_close(line_receiver, make_handler, logger, capsys):
    line_receiver.stop()
    handler = make_handler(line_receiver, queue_size=100, flush_timeout=0.2)
    logger.addHandler(handler)
    for i in range(1000):
        logger.error("nobody listens %d", i)
    assert handler.dropped == 900
    handler.close()
    assert handler.dropped == 1000  # before: 1,900 (the 900 counted again at close)
    assert "100 alarm record(s) not delivered" in capsys.readouterr().err


def test_a_relay_that_answers_the_hello_late_gets_sequenced_records_from_then_on(make_handler, logger):
    """A busy relay answers after first_line_wait: the handler streamed meanwhile, then switches
    to acknowledgements without sending the streamed lines twice."""
    import socket as socket_module

    from lab_utils_common.alarm_wire import ack_line, ready_line

    listener = socket_module.create_server(("127.0.0.1", 0))
    receiver = type("Receiver", (), {"host": "127.0.0.1", "port": listener.getsockname()[1]})
    handler = make_handler(receiver, first_line_wait=0.05)
    logger.addHandler(handler)
    logger.error("streamed before the answer")
    connection, _ = listener.accept()
    with listener, connection:
        lines = connection.makefile("rb")
        assert lines.readline().startswith(b"#lab-utils-relay hello 1 ")
        assert b"--message {streamed before the answer}" in lines.readline()
        connection.sendall(ready_line(0))
        logger.error("after the answer")
        line = lines.readline()
        assert line.startswith(b"2 {pump-test}") and b"{after the answer}" in line
        connection.sendall(ack_line(2))
        assert handler.flush(timeout=10) is True
        assert handler.acknowledged

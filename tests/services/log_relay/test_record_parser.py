"""RecordParser: this project's lines, lab-utils 0.5.x records back to back, junk, oversize."""

from __future__ import annotations

import logging

import pytest

from lab_utils_common.alarm_wire import ALARM_DATEFMT, ALARM_FORMAT
from lab_utils_common.custom_logging import AlarmFormatter
from log_relay.record_parser import UNPARSED_LEVEL, ParsedRecord, RecordParser, level_number


def make_record(message: str, *, name: str = "pumpctl", level: int = logging.ERROR,
                exc_info=None) -> logging.LogRecord:
    return logging.LogRecord(name, level, "/lab/pump.py", 12, message, None, exc_info, func="start")


def old_format(record: logging.LogRecord) -> bytes:
    """What lab-utils 0.5.x sends: the alarm format, no terminator."""
    return logging.Formatter(ALARM_FORMAT, ALARM_DATEFMT).format(record).encode()


def new_format(record: logging.LogRecord) -> bytes:
    """What this project's NonPickledSocketHandler sends: one escaped line."""
    return AlarmFormatter().format(record).encode() + b"\n"


def feed_in_pieces(parser: RecordParser, data: bytes, size: int) -> list[ParsedRecord]:
    out: list[ParsedRecord] = []
    for start in range(0, len(data), size):
        out += parser.feed(data[start:start + size])
    return out


def test_a_line_of_this_project_is_complete_at_once_and_unescaped():
    record = make_record("line 1\nline 2 with C:\\path and } brace")
    parser = RecordParser()
    # The first record of a connection may be a 0.5.x one cut by a read after a "}\n" of its
    # message: it is complete once the next record starts or the sender is quiet (flush).
    assert parser.feed(new_format(make_record("first"))) == []
    assert [p.message for p in parser.flush()] == ["first"]
    # From then on the connection is known to send lines: each is complete at once.
    [parsed] = parser.feed(new_format(record))
    assert (parsed.level, parsed.app, parsed.module, parsed.function) == ("ERROR", "pumpctl", "pump", "start")
    assert parsed.message == "line 1\nline 2 with C:\\path and } brace"
    assert parsed.note is None
    assert [p.message for p in parser.feed(new_format(make_record("third")))] == ["third"]


def test_lines_back_to_back_teach_the_parser_at_once():
    parser = RecordParser()
    parsed = parser.feed(new_format(make_record("one")) + new_format(make_record("two")))
    assert [p.message for p in parsed] == ["one", "two"]


OLD_MESSAGES_WITH_BRACE_NEWLINE = ["a}\nb", '{\n  "a": {\n    "b": 1\n  }\n}', "ends}\n", "}\n}\n", "last"]


@pytest.mark.parametrize("piece", [1, 2, 3, 5, 8, 13, 100000])
def test_old_messages_holding_brace_newline_survive_any_read_boundary(piece):
    """A read that ends right after a "}\n" inside a 0.5.x message does not end the record."""
    stream = b"".join(old_format(make_record(m)) for m in OLD_MESSAGES_WITH_BRACE_NEWLINE)
    parser = RecordParser()
    parsed = feed_in_pieces(parser, stream, piece) + parser.flush()
    assert [(p.level, p.message, p.note) for p in parsed] == [
        ("ERROR", m, None) for m in OLD_MESSAGES_WITH_BRACE_NEWLINE]


def test_an_old_traceback_cut_by_a_read_stays_in_its_record():
    try:
        raise ValueError("valve {3} stuck")
    except ValueError:
        import sys
        record = make_record("cannot open valve", exc_info=sys.exc_info())
    data = old_format(record)
    cut = data.index(b"}\nTraceback") + 2  # the read ends right after "{cannot open valve}\n"
    parser = RecordParser()
    parsed = parser.feed(data[:cut]) + parser.feed(data[cut:]) + parser.flush()
    assert [p.level for p in parsed] == ["ERROR"]
    assert parsed[0].message.startswith("cannot open valve\nTraceback (most recent call last):")
    assert parsed[0].message.endswith("ValueError: valve {3} stuck")


MESSAGES = ["plain", "with } brace and {braces}", "two\nlines", "ends with brace}", "x" * 3000,
            "ünïcødé ✓"]


@pytest.mark.parametrize("piece", [1, 7, 100, 100000])
def test_old_records_back_to_back_are_split_whatever_the_chunking(piece):
    stream = b"".join(old_format(make_record(m)) for m in MESSAGES)
    parser = RecordParser()
    parsed = feed_in_pieces(parser, stream, piece)
    # The last one has nothing after it: it is held until the connection is quiet.
    assert parser.pending
    parsed += parser.flush()
    assert [p.message for p in parsed] == MESSAGES
    assert all(p.note is None and p.level == "ERROR" for p in parsed)


@pytest.mark.parametrize("piece", [1, 13, 100000])
def test_mixed_senders_on_one_stream(piece):
    records = [make_record(f"msg {i}\nsecond line") for i in range(6)]
    stream = b"".join(new_format(r) if i % 2 else old_format(r) for i, r in enumerate(records))
    parser = RecordParser()
    parsed = feed_in_pieces(parser, stream, piece) + parser.flush()
    assert [p.message for p in parsed] == [f"msg {i}\nsecond line" for i in range(6)]


def test_old_record_with_a_traceback_keeps_it_in_the_message():
    try:
        raise ValueError("valve {3} stuck")
    except ValueError:
        import sys
        record = make_record("cannot open valve", exc_info=sys.exc_info())
    parser = RecordParser()
    assert parser.feed(old_format(record)) == []
    [parsed] = parser.flush()
    assert parsed.message.startswith("cannot open valve\nTraceback (most recent call last):")
    assert parsed.message.endswith("ValueError: valve {3} stuck")
    assert parsed.note is None


def test_new_record_with_a_traceback_is_one_line():
    try:
        raise KeyError("sensor")
    except KeyError:
        import sys
        record = make_record("lost sensor", exc_info=sys.exc_info())
    parser = RecordParser()
    [parsed] = parser.feed(new_format(record)) + parser.flush()
    assert parsed.message.startswith("lost sensor\nTraceback")
    assert parsed.message.endswith("KeyError: 'sensor'")


def test_junk_lines_are_kept_as_raw_text_with_a_note():
    parser = RecordParser()
    parsed = parser.feed(b"hello relay\n\n" + new_format(make_record("real"))) + parser.flush()
    parsed += parser.feed(b"GET / HTTP/1.0\r\n") + parser.flush()
    assert [(p.level, p.message) for p in parsed] == [
        (UNPARSED_LEVEL, "hello relay"), ("ERROR", "real"), (UNPARSED_LEVEL, "GET / HTTP/1.0")]
    assert parsed[0].note == "not a lab-utils record: kept as raw text"


def test_junk_before_a_record_is_split_from_it():
    parser = RecordParser()
    parsed = parser.feed(b"garbage without newline" + new_format(make_record("real"))) + parser.flush()
    assert [(p.level, p.message) for p in parsed] == [(UNPARSED_LEVEL, "garbage without newline"),
                                                     ("ERROR", "real")]


def test_binary_input_is_kept_with_escapes():
    parser = RecordParser()
    parsed = parser.feed(b"\x00\xff\xfe\x01binary\n") + parser.feed(b"\x89PNG\r\n\x1a") + parser.flush()
    assert [p.message for p in parsed] == ["\x00\\xff\\xfe\x01binary", "\\x89PNG", "\x1a"]
    assert all(p.level == UNPARSED_LEVEL for p in parsed)
    assert "invalid UTF-8" in parsed[0].note


def test_an_oversized_record_is_cut_marked_and_the_next_one_is_intact():
    parser = RecordParser(max_record_size=1024)
    big = new_format(make_record("A" * 5000))
    parsed = feed_in_pieces(parser, big + new_format(make_record("after")), 700) + parser.flush()
    assert [p.message[:5] for p in parsed] == ["AAAAA", "after"]
    cut = parsed[0]
    assert cut.level == "ERROR" and cut.app == "pumpctl"
    assert len(cut.message) < 1024
    assert "cut at max_record_size = 1024 bytes" in cut.note
    assert parsed[1].note is None


def test_an_oversized_record_in_one_chunk_says_its_size():
    parser = RecordParser(max_record_size=1024)
    stream = old_format(make_record("B" * 3000)) + old_format(make_record("next"))
    parsed = parser.feed(stream) + parser.flush()
    assert [p.message[:4] for p in parsed] == ["BBBB", "next"]
    assert f"record of {len(old_format(make_record('B' * 3000)))} bytes cut" in parsed[0].note


def test_oversized_binary_without_newline_is_cut_and_the_rest_skipped():
    parser = RecordParser(max_record_size=1024)
    parsed = parser.feed(b"\xff" * 5000) + parser.feed(b"\xff" * 5000 + b"\n")
    parsed += parser.feed(new_format(make_record("ok"))) + parser.flush()
    assert [p.level for p in parsed] == [UNPARSED_LEVEL, "ERROR"]
    assert "cut at max_record_size" in parsed[0].note
    assert parsed[1].message == "ok"


def test_an_unterminated_old_record_is_flagged_not_lost():
    parser = RecordParser()
    parser.feed(b"{a} --date {d} --level {WARNING} --app {a} --module {m} --function {f} "
                b"--message {half a mess")
    [parsed] = parser.flush()
    assert parsed.message == "half a mess"
    assert parsed.note == "message not closed by '}'"


@pytest.mark.parametrize("name, number", [("ERROR", 40), ("warning", 30), ("SUCCESS", 25),
                                          ("Level 45", 45), ("WHATEVER", None), (None, None)])
def test_level_numbers(name, number):
    assert level_number(name) == number


def test_too_small_a_limit_is_refused():
    with pytest.raises(ValueError, match="max_record_size 10 is too small"):
        RecordParser(max_record_size=10)

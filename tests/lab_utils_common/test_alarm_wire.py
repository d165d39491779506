"""The alarm record's one home: line format, parser, acknowledgement protocol, round trips."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings, strategies as st

from lab_utils_common.alarm_wire import (
    AlarmRecord,
    ProtocolError,
    ack_line,
    format_line,
    hello_line,
    parse_ack,
    parse_hello,
    parse_line,
    parse_ready,
    ready_line,
    sequenced_line,
)
from lab_utils_common.custom_logging.formatters import AlarmFormatter

FIELD = st.text(st.characters(blacklist_characters="{}\r\n", blacklist_categories=("Cs",)),
                max_size=30)
MESSAGE = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)
RECORDS = st.builds(AlarmRecord, FIELD, FIELD, FIELD, FIELD, FIELD, MESSAGE)


@given(RECORDS, st.one_of(st.none(), st.integers(1, 2**62)))
def test_any_record_survives_the_line_format(record, seq):
    line = format_line(record)
    assert "\n" not in line and "\r" not in line
    text = line if seq is None else sequenced_line(seq, line).decode("utf-8")
    assert parse_line(text) == (seq, record)


@given(MESSAGE)
@settings(max_examples=200)
def test_the_handlers_formatter_and_the_relays_parser_agree(message):
    """What NonPickledSocketHandler writes for a record, log-relay's hot path reads back."""
    from log_relay.record_parser import parse_sequenced

    record = logging.LogRecord("pump", logging.ERROR, "/x/vacuum.py", 1, "%s", (message,), None,
                               func="check")
    line = AlarmFormatter().format(record)
    [row] = parse_sequenced(sequenced_line(7, line), 1 << 20, 0.0, "peer", "lab/1/x")
    assert row[2:9] == (parse_line(line)[1].date, "ERROR", 40, "pump", "vacuum",
                        "check", message)
    assert row[10:] == ("lab/1/x", 7)


@given(st.integers(0, 2**62))
def test_protocol_lines_round_trip(seq):
    assert parse_ready(ready_line(seq)) == seq
    assert parse_ack(ack_line(seq)) == seq
    assert parse_hello(hello_line("host/12/abc")) == (1, "host/12/abc")


@pytest.mark.parametrize("bad", [b"ack x\n", b"hello\n", b"#lab-utils-relay ready 1\n"])
def test_bad_protocol_lines_are_named(bad):
    with pytest.raises(ProtocolError, match="not a"):
        for parse in (parse_ack, parse_ready):
            parse(bad)


def test_a_field_with_a_brace_is_refused_by_name():
    with pytest.raises(ValueError, match="alarm field module = 'a{b' holds a brace"):
        format_line(AlarmRecord("pump", "d", "ERROR", "a{b", "f", "m"))

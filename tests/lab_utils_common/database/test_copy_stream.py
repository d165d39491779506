"""The COPY text encoder: every value arrives exactly as given."""

from __future__ import annotations

import datetime

import pytest

from lab_utils_common.database import ColumnCountError
from lab_utils_common.database.copy_stream import CopyStream, format_value


@pytest.mark.parametrize("value, text", [
    (None, "\\N"), (True, "t"), (False, "f"), (3, "3"), (-2.5, "-2.5"), (1e-300, "1e-300"),
    ("plain", "plain"), ("a\tb\nc\rd\\e", "a\\tb\\nc\\rd\\\\e"), ("\\N", "\\\\N"),
    (datetime.datetime(2024, 5, 1, 12, 0, 1, 500, tzinfo=datetime.UTC),
     "2024-05-01T12:00:01.000500+00:00"),
])
def test_values_are_formatted_and_escaped_for_copy(value, text):
    assert format_value(value) == text


def test_stream_yields_whole_rows_in_chunks_then_empty():
    stream = CopyStream(((i, f"r{i}") for i in range(5)), width=2, chunk_rows=2)
    chunks = []
    while chunk := stream.read(8192):
        chunks.append(chunk)
    assert chunks == ["0\tr0\n1\tr1\n", "2\tr2\n3\tr3\n", "4\tr4\n"]
    assert stream.rows_read == 5


def test_a_row_of_the_wrong_length_is_named():
    stream = CopyStream([(1, 2), (3, 4), (5,)], width=2)
    with pytest.raises(ColumnCountError, match=r"row 3 has 1 values for 2 columns: \[5\]"):
        stream.read()


def _all(stream) -> str:
    chunks = []
    while chunk := stream.read():
        chunks.append(chunk)
    return "".join(chunks)


@pytest.mark.parametrize("chunk_chars", [1, 3, 7, 64, 1 << 20])
def test_csv_stream_drops_empty_lines_and_quotes_end_markers_outside_quotes_only(chunk_chars):
    from lab_utils_common.database.copy_stream import CsvTextStream
    text = 'h\n\na\n\\.\n"x\n\n\\.\ny"\n\\.\r\n\r\nb'
    assert _all(CsvTextStream(text, 0, chunk_chars)) == 'h\na\n"\\."\n"x\n\n\\.\ny"\n"\\."\r\nb'


def test_csv_stream_sends_the_text_in_bounded_chunks_of_whole_lines():
    from lab_utils_common.database.copy_stream import CsvTextStream
    text = "".join(f"{i},{i * 2}\n" for i in range(10_000))
    stream = CsvTextStream(text, 0, 1000)
    chunks = []
    while chunk := stream.read():
        chunks.append(chunk)
    assert "".join(chunks) == text
    assert all(len(chunk) <= 1000 and chunk.endswith("\n") for chunk in chunks)


def test_csv_insert_memory_is_about_two_chunks_whatever_the_body(connect_db):
    """insert of a 16 MB CSV body: Python memory at most ~2 chunks (0.5.x-era code: 8.6x the body)."""
    import tracemalloc

    from lab_utils_common.database import DataType
    chunk = 1 << 20
    db = connect_db(copy_chunk_bytes=chunk)
    db.create_timescale_db("t")
    db.new_column("t", "x", DataType.double)
    body = "time,x\n" + "".join(f"2024-05-01T12:00:00Z,{i}.5\n" for i in range(600_000))
    assert len(body) > 16 * chunk
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        assert db.new_entries_csv("t", body) == 600_000
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    # one chunk of text and its UTF-8 bytes in psycopg2, plus small change
    assert peak < 2 * chunk + 64 * 1024, f"peak {peak / chunk:.2f} chunks"

"""The COPY text encoder: every value arrives exactly as given."""

from __future__ import annotations

import datetime

import pytest

from lab_utils_common.database import ColumnCountError
from lab_utils_common.database.copy_stream import CopyStream, format_value


@pytest.mark.parametrize("value, text", [
    (None, "\\N"), (True, "t"), (False, "f"), (3, "3"), (-2.5, "-2.5"), (1e-300, "1e-300"),
    ("plain", "plain"), ("a\tb\nc\rd\\e", "a\\tb\\nc\\rd\\\\e"), ("\\N", "\\\\N"),
    (datetime.datetime(2024, 5, 1, 12, 0, 1, 500, tzinfo=datetime.timezone.utc),
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

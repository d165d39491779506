"""Identifier checks: every name is validated before it reaches SQL."""

from __future__ import annotations

import pytest

from lab_utils_common.database import InvalidIdentifierError
from lab_utils_common.database.identifiers import check_identifier, check_identifiers


@pytest.mark.parametrize("name, expected", [
    ("beam", "beam"), ("Beam", "beam"), ("_t1", "_t1"), ("time", "time"), ("select", "select"),
    ("a" * 63, "a" * 63),
])
def test_plain_identifiers_are_accepted_and_folded_like_postgresql(name, expected):
    assert check_identifier(name, "table name") == expected


@pytest.mark.parametrize("name", [
    "t; DROP TABLE x", 't"; DROP TABLE x; --', "", " beam", "beam ", "1abc", "a-b", "a.b",
    "temp (K)", "ünits", "a\x00b", "a" * 64, "x'y",
])
def test_anything_else_is_refused_with_the_value_in_the_message(name):
    with pytest.raises(InvalidIdentifierError) as info:
        check_identifier(name, "table name")
    assert isinstance(info.value, ValueError)
    assert "table name" in str(info.value) and repr(name) in str(info.value)


@pytest.mark.parametrize("name", [None, 3, b"beam", ["beam"]])
def test_non_strings_are_a_type_error(name):
    with pytest.raises(TypeError, match="column name must be a string"):
        check_identifier(name, "column name")


def test_lists_of_names_must_be_non_empty_distinct_lists():
    assert check_identifiers(["A", "b"]) == ["a", "b"]
    with pytest.raises(ValueError, match="empty"):
        check_identifiers([])
    with pytest.raises(ValueError, match="'B' appears twice"):
        check_identifiers(["b", "B"])
    with pytest.raises(TypeError, match="must be a list"):
        check_identifiers("abc")

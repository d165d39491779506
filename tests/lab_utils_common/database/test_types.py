"""DataType and Constraint: 0.5.4's members and values, and the checks on them."""

from __future__ import annotations

import datetime
import decimal

import lab_utils.database as reference  # lab-utils 0.5.4, the reference peer
import pytest

from lab_utils_common.database import Constraint, DataType
from lab_utils_common.database.types import constraints, data_type, data_type_of_value


def test_data_type_members_and_values_are_those_of_0_5_4():
    assert {m.name: m.value for m in DataType} == {m.name: m.value for m in reference.DataType}
    assert str(DataType.double) == "FLOAT(53)"


def test_constraint_members_and_values_are_those_of_0_5_4():
    assert {m.name: m.value for m in Constraint} == {m.name: m.value for m in reference.Constraint}


@pytest.mark.parametrize("given, expected", [
    (DataType.int, DataType.int), ("double", DataType.double), ("FLOAT(53)", DataType.double),
    ("timestamptz", DataType.time), (" string ", DataType.string),
])
def test_data_type_accepts_members_names_and_sql_values(given, expected):
    assert data_type(given) is expected


@pytest.mark.parametrize("bad", ["TEXT; DROP TABLE x", "varchar", "", "Double"])
def test_data_type_rejects_unknown_text_with_value_error_naming_it(bad):
    with pytest.raises(ValueError, match="is not a data type") as info:
        data_type(bad)
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize("bad", [42, None, float, Constraint.positive])
def test_data_type_rejects_other_types_with_type_error(bad):
    with pytest.raises(TypeError, match="data type must be a DataType"):
        data_type(bad)


def test_constraints_accept_members_and_names_and_refuse_free_sql():
    assert constraints(None) == []
    assert constraints([Constraint.positive, "positive_strict"]) == [Constraint.positive,
                                                                     Constraint.positive_strict]
    with pytest.raises(ValueError, match="CHECK"):
        constraints([" CHECK(1 = 1) "])
    with pytest.raises(TypeError, match="list of Constraint"):
        constraints(Constraint.positive)  # a bare member, not a list
    with pytest.raises(TypeError, match="list of Constraint"):
        constraints("positive")


@pytest.mark.parametrize("value, expected", [
    (True, DataType.bool), (3, DataType.long), (2.5, DataType.double),
    (decimal.Decimal("1.5"), DataType.double), ("x", DataType.string),
    (datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC), DataType.time),
])
def test_column_type_is_chosen_from_the_python_value(value, expected):
    assert data_type_of_value(value) is expected


@pytest.mark.parametrize("value", [None, [1, 2], b"raw"])
def test_column_type_cannot_be_guessed_from_none_or_containers(value):
    with pytest.raises(TypeError, match="cannot choose a column type"):
        data_type_of_value(value)

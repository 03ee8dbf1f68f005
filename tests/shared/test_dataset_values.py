"""How dataset rows meet a deployment's inputs and convert to their dtypes, without Redis."""

from __future__ import annotations

import numpy as np
import pytest

from shared.dataset_values import DatasetLayout, plan_inputs, to_model_inputs
from shared.errors import DatasetMismatch, ScoringInputInvalid
from shared.scoring import _as_input_dtype


def test_conversion_names_the_global_row_and_the_column() -> None:
    spec = {"name": "ids", "shape": [None, 2], "dtype": "int32"}
    layout = DatasetLayout([None], ["a", "b"])
    plans = plan_inputs(layout.names, [[2]], [spec])
    ok = to_model_inputs([np.array([[1.0, 2.0], [3.0, 4.0]])], layout, plans, 100)
    assert ok[0].dtype == np.int32
    with pytest.raises(ScoringInputInvalid) as bad:
        to_model_inputs([np.array([[1.0, 2.0], [3.0, 4.5]])], layout, plans, 100)
    assert bad.value.message.startswith("Row 101, column 'b': the value 4.5 does not fit")
    with pytest.raises(ScoringInputInvalid):
        to_model_inputs([np.array([[1, 2**40]])], layout, plans, 0)


def test_plans_reshape_when_the_numbers_per_row_agree() -> None:
    spec = {"name": "img", "shape": [None, 2, 2, 1], "dtype": "float32"}
    plan = plan_inputs([None], [[4]], [spec])[0]
    assert plan.reshape == (2, 2, 1)
    with pytest.raises(DatasetMismatch):
        plan_inputs([None], [[5]], [spec])
    with pytest.raises(DatasetMismatch):
        plan_inputs(["a"], [[4]], [spec, {**spec, "name": "b"}])


def test_a_boolean_input_takes_the_rows_as_the_json_path_does() -> None:
    spec = {"name": "flags", "shape": [None, 2], "dtype": "bool"}
    layout = DatasetLayout([None], ["a", "b"])
    plans = plan_inputs(layout.names, [[2]], [spec])
    rows = np.array([[0.0, 1.0], [2.0, 0.0]])
    (converted,) = to_model_inputs([rows], layout, plans, 0)
    expected = _as_input_dtype(rows, spec)  # the rule JSON rows follow
    assert converted.dtype == expected.dtype == np.bool_
    np.testing.assert_array_equal(converted, expected)

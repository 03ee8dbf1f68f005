"""The chunk encoding of datasets and the conversion rules, without Redis."""

from __future__ import annotations

import numpy as np
import pytest

from shared.dataset_values import DatasetLayout, encode_chunk_view, plan_inputs, to_model_inputs
from shared.errors import DatasetMismatch, ScoringInputInvalid
from shared.scoring import decode_chunk, encode_chunk


def test_the_view_encoding_decodes_as_encode_chunk_does() -> None:
    arrays = [np.arange(12.0).reshape(4, 3), np.arange(4, dtype=np.int32)]
    for data in (encode_chunk_view(arrays).tobytes(), encode_chunk(arrays)):
        decoded = decode_chunk(data, [])
        assert [a.dtype for a in decoded] == [np.float64, np.int32]
        for got, want in zip(decoded, arrays, strict=True):
            np.testing.assert_array_equal(got, want)


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

"""The benchmark's seeded rows: any slice rebuilt alone equals the same rows of the whole, so
sampled predictions of a large dataset can be checked without holding it."""

from __future__ import annotations

import numpy as np

from bench.direct import CNN, dense_spec, rows_at, sample_indices


def test_a_slice_equals_the_same_rows_of_the_whole() -> None:
    spec = dense_spec(4)
    whole = spec.make_rows(10_000)
    assert whole.dtype == np.float32 and whole.shape == (10_000, 4)
    np.testing.assert_array_equal(spec.make_rows(20, 4090), whole[4090:4110])
    indices = sample_indices(10_000, size=50)
    np.testing.assert_array_equal(rows_at(spec.row_shape, indices), whole[indices])


def test_rows_are_three_decimals_in_the_unit_interval() -> None:
    rows = CNN.make_rows(3).astype(np.float64)
    assert rows.shape == (3, 28, 28, 1) and rows.min() >= 0 and rows.max() <= 1
    np.testing.assert_allclose(rows, np.round(rows, 3), atol=1e-6)


def test_sampled_rows_cover_both_ends() -> None:
    indices = sample_indices(100_000, size=100)
    assert indices[0] == 0 and indices[-1] == 99_999
    assert np.all(np.diff(indices) > 0)

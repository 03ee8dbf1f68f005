"""The fast readers of online and JSON rows: what they read equals what the full path reads,
and whatever they are not sure of is left to it (None)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from api.contract import parse_json_object
from shared.errors import MalformedRequest
from shared.json_rows import PYARROW_MIN_BYTES, numeric_rows


def big(values: list[object], **extra: object) -> bytes:
    return json.dumps({**extra, "values": values}).encode()


@pytest.mark.parametrize("rows", [500, 1], ids=["pyarrow", "orjson"])
def test_a_regular_numeric_body_reads_as_the_stdlib_reads_it(rows: int) -> None:
    x = np.round(np.random.default_rng(0).normal(size=(rows, 6, 6, 1)), 4)
    body = big(x.tolist())
    assert (len(body) > PYARROW_MIN_BYTES) == (rows > 1)
    fast = numeric_rows(body)
    assert fast is not None
    np.testing.assert_array_equal(fast["values"], np.asarray(json.loads(body)["values"]))
    with_fields = numeric_rows(json.dumps({"fields": ["a"], "values": x.tolist()}).encode())
    assert with_fields is not None and with_fields["fields"] == ["a"]


@pytest.mark.parametrize(
    "last_row",
    ["[1, 2]]", "[1, NaN]]", "[1, null]]", '[1, "2"]]', "[1, 1e999]]", "[1 2, 3]]", "[1, ]]",
     "[1, 2, 3]]", "[[1], 2]]", "[1, 2], []]", "[1, 2-3]]", "[1, 2e]]", "[true, 2]]", "[, 2]]",
     "[ , 2]]", "[1,, 2]]"],
)  # fmt: skip
@pytest.mark.parametrize("rows", [20_000, 1], ids=["pyarrow", "orjson"])
def test_anything_but_a_regular_array_of_numbers_is_left_to_the_full_parser(
    last_row: str, rows: int
) -> None:
    head = json.dumps({"values": [[0.5, 0.25]] * rows})[: -len("]]}")]
    body = (head + "], " + last_row + "}").encode()
    assert (len(body) > PYARROW_MIN_BYTES) == (rows > 1)
    result = numeric_rows(body)
    if last_row == "[1, 2]]":
        assert result is not None and result["values"].shape == (rows + 1, 2)
    else:
        assert result is None


def test_duplicate_keys_are_still_refused() -> None:
    with pytest.raises(MalformedRequest):
        parse_json_object(b'{"values": [[1]], "values": [[2]]}')
    with pytest.raises(MalformedRequest):
        parse_json_object(b'{"inputs": {"a": [1], "a": [2]}}')
    assert parse_json_object(b'{"values": [["a:b"]]}') == {"values": [["a:b"]]}


@pytest.mark.parametrize("rows", [5_000, 1], ids=["pyarrow", "orjson"])
def test_integers_past_float64s_exact_range_are_left_to_the_full_parser(rows: int) -> None:
    # An int64 id such as 2**60 + 1 has no exact float64: the full parser keeps its digits.
    body = json.dumps({"values": [[2**60 + 1, 1]] * rows}).encode()
    assert numeric_rows(body) is None
    assert parse_json_object(body)["values"][0][0] == 2**60 + 1

"""Input validation against a signature, the chunk codec, and WML's output rows."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest

from shared.errors import PayloadTooLarge, ScoringInputInvalid
from shared.scoring import (
    FIELDS,
    ArrayPayload,
    decode_chunk,
    encode_chunk,
    format_rows,
    predicted_classes,
    rows_fragment,
    split_rows,
    validate_arrays,
    validate_payload,
)

DENSE = [{"name": "x", "shape": [None, 4], "dtype": "float32"}]
IMAGE = [{"name": "img", "shape": [None, 2, 2, 1], "dtype": "float32"}]
TEXT = [{"name": "text", "shape": [None, 1], "dtype": "string"}]
MULTI = [
    {"name": "a", "shape": [None, 3], "dtype": "float32"},
    {"name": "b", "shape": [None, 2], "dtype": "float32"},
]


def invalid(payload: dict[str, Any], specs: list[dict[str, Any]]) -> ScoringInputInvalid:
    with pytest.raises(ScoringInputInvalid) as info:
        validate_payload(payload, specs, max_rows=100)
    assert info.value.status == 422
    return info.value


def test_numeric_rows_become_one_float32_array() -> None:
    result = validate_payload({"values": [[1, 2, 3, 4], [0.5, 0, 0, 1]]}, DENSE, 100)
    assert result.rows == 2
    assert result.arrays[0].dtype == np.float32
    np.testing.assert_array_equal(result.arrays[0], [[1, 2, 3, 4], [0.5, 0, 0, 1]])


def test_wrong_row_shape_names_row_and_shapes() -> None:
    error = invalid({"values": [[1, 2, 3, 4], [1, 2, 3]]}, DENSE)
    assert error.details["row"] == 1
    assert error.details["expected_shape"] == [4]
    assert error.details["received_shape"] == [3]
    assert "Row 1" in error.message and "[4]" in error.message and "[3]" in error.message


def test_uniformly_wrong_shape_reports_row_zero() -> None:
    error = invalid({"values": [[1, 2], [3, 4]]}, DENSE)
    assert error.details == {"row": 0, "expected_shape": [4], "received_shape": [2]}


def test_nested_image_rows_are_checked_deeply() -> None:
    good = [[[[0.0], [1.0]], [[2.0], [3.0]]]]
    assert validate_payload({"values": good * 3}, IMAGE, 100).arrays[0].shape == (3, 2, 2, 1)
    error = invalid({"values": [good[0], [[[0.0], [1.0]], [[2.0]]]]}, IMAGE)
    assert error.details["row"] == 1


@pytest.mark.parametrize("bad", ["1.5", None, {"a": 1}, True and "x"])
def test_non_numeric_value_names_the_row(bad: Any) -> None:
    error = invalid({"values": [[1, 2, 3, 4], [1, 2, bad, 4]]}, DENSE)
    assert error.details["row"] == 1
    assert "non-numeric" in error.message


def test_empty_values_and_missing_values() -> None:
    assert "empty" in invalid({"values": []}, DENSE).message
    assert '"values"' in invalid({}, DENSE).message


def test_too_many_rows_is_413() -> None:
    with pytest.raises(PayloadTooLarge) as info:
        validate_payload({"values": [[0, 0, 0, 0]] * 11}, DENSE, max_rows=10)
    assert info.value.status == 413
    assert info.value.details == {"rows": 11, "limit": 10}


def test_string_rows_for_text_models() -> None:
    result = validate_payload(
        {"values": [["this is a simple text input data"], "bare text"]}, TEXT, 100
    )
    assert result.arrays[0].tolist() == [["this is a simple text input data"], ["bare text"]]
    assert "text" in invalid({"values": [[1]]}, TEXT).message


def test_multi_input_rows_in_model_order_or_by_name() -> None:
    by_row = validate_payload({"values": [[[1, 2, 3], [4, 5]], [[0, 0, 0], [1, 1]]]}, MULTI, 100)
    by_name = validate_payload(
        {"inputs": {"a": [[1, 2, 3], [0, 0, 0]], "b": [[4, 5], [1, 1]]}}, MULTI, 100
    )
    for x, y in zip(by_row.arrays, by_name.arrays, strict=True):
        np.testing.assert_array_equal(x, y)
    assert by_row.rows == 2
    assert "one entry per model input" in invalid({"values": [[1, 2, 3]]}, MULTI).message
    assert "missing ['b']" in invalid({"inputs": {"a": [[1, 2, 3]]}}, MULTI).message
    error = invalid({"values": [[[1, 2, 3], [4, 5, 6]]]}, MULTI)
    assert "input 'b'" in error.message


CHUNK_ARRAYS = [
    np.random.default_rng(1).normal(size=(3, 4, 4, 1)).astype(np.float32),
    np.arange(6, dtype=np.int64).reshape(3, 2),
    np.array([True, False, True]),
    np.arange(3, dtype=">u2"),  # another byte order is kept, not reinterpreted
    np.zeros((0, 5), dtype=np.float64),
    np.arange(12.0).reshape(4, 3)[::2],  # not contiguous
]


def test_the_chunk_codec_reads_numbers_in_place_and_aligned() -> None:
    data = encode_chunk(CHUNK_ARRAYS)
    assert data[:1] == b"A"
    decoded = decode_chunk(data, [])
    assert len(decoded) == len(CHUNK_ARRAYS)
    for sent, got in zip(CHUNK_ARRAYS, decoded, strict=True):
        assert got.dtype == sent.dtype and got.shape == sent.shape
        np.testing.assert_array_equal(got, sent)
        if got.size:  # a view of the stored bytes, starting on a 16-byte boundary
            assert got.base is not None and not got.flags.writeable and got.flags.aligned
            start = got.__array_interface__["data"][0]
            assert (start - np.frombuffer(data, np.uint8).ctypes.data) % 16 == 0


def test_the_chunk_codec_still_reads_npz_chunks_and_keeps_text_as_json() -> None:
    numbers = [np.arange(12, dtype=np.float32).reshape(3, 4)]
    buffer = io.BytesIO()
    np.savez(buffer, *numbers)  # a chunk as stored before the raw layout
    np.testing.assert_array_equal(decode_chunk(b"N" + buffer.getvalue(), DENSE)[0], numbers[0])
    text = [np.asarray([["a b"], ["c"]], dtype=object)]
    assert encode_chunk(text)[:1] == b"J"
    assert decode_chunk(encode_chunk(text), TEXT)[0].tolist() == [["a b"], ["c"]]
    unicode = [np.array(["x", "yz"])]  # neither numbers nor objects: npz, as before
    assert encode_chunk(unicode)[:1] == b"N"
    assert decode_chunk(encode_chunk(unicode), [])[0].tolist() == ["x", "yz"]


def test_the_chunk_codec_refuses_bytes_it_did_not_write() -> None:
    with pytest.raises(ValueError, match="not written by encode_chunk"):
        decode_chunk(b"P\x80\x04", [])
    header = b'{"d": "|O", "s": [1]}'
    with pytest.raises(ValueError, match="not numbers"):  # never an object array from Redis
        decode_chunk(b"A" + len(header).to_bytes(2, "little") + header + bytes(8), [])


def test_split_rows_keeps_order() -> None:
    inputs = validate_payload({"values": [[i, i, i, i] for i in range(7)]}, DENSE, 100)
    chunks = [decode_chunk(c, DENSE)[0] for c in split_rows(inputs, 3)]
    assert [len(c) for c in chunks] == [3, 3, 1]
    np.testing.assert_array_equal(np.concatenate(chunks)[:, 0], np.arange(7))


def test_predicted_classes_follow_keras2() -> None:
    np.testing.assert_array_equal(
        predicted_classes(np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]])), [1, 0]
    )
    np.testing.assert_array_equal(predicted_classes(np.array([[0.7], [0.2], [0.5]])), [1, 0, 0])
    np.testing.assert_array_equal(predicted_classes(np.array([0.9, 0.1])), [1, 0])


def test_rows_are_prediction_class_probability() -> None:
    out = np.array([[0.1, 0.9], [0.8, 0.2]], dtype=np.float32)
    rows = format_rows([out], ["dense"])
    assert rows[0][1] == 1 and rows[1][1] == 0
    assert rows[0][0] == rows[0][2] == pytest.approx([0.1, 0.9])
    assert FIELDS == ["prediction", "prediction_classes", "probability"]


def test_multi_output_fields_are_keyed_by_output_name() -> None:
    score = np.array([[0.7], [0.1]])
    kind = np.array([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    rows = format_rows([score, kind], ["score", "kind"])
    assert rows[0][1] == {"score": 1, "kind": 2}
    assert rows[1][0]["kind"] == pytest.approx([0.6, 0.3, 0.1])


def test_non_finite_predictions_become_null() -> None:
    rows = format_rows([np.array([[np.nan, 1.0]])], ["y"])
    assert rows[0][0] == [None, 1.0]
    assert b"NaN" not in rows_fragment(rows)


def test_array_bodies_are_validated_like_json_rows() -> None:
    import io

    from shared.scoring import parse_array_body, validate_input

    buffer = io.BytesIO()
    np.save(buffer, np.arange(8, dtype=np.float64).reshape(2, 4))
    numbers = validate_input(parse_array_body(buffer.getvalue(), 1 << 20), DENSE, 100)
    assert numbers.rows == 2 and numbers.arrays[0].dtype == np.float32
    buffer = io.BytesIO()
    np.save(buffer, np.array([["a text"], ["another"]]))
    texts = validate_input(parse_array_body(buffer.getvalue(), 1 << 20), TEXT, 100)
    assert texts.arrays[0].dtype == object and texts.arrays[0].tolist() == [["a text"], ["another"]]
    buffer = io.BytesIO()
    np.savez(buffer, b=np.zeros((2, 2)), a=np.ones((2, 3)))
    multi = validate_input(parse_array_body(buffer.getvalue(), 1 << 20), MULTI, 100)
    assert [a.shape for a in multi.arrays] == [(2, 3), (2, 2)]  # model order, not file order
    with pytest.raises(PayloadTooLarge):
        validate_input(parse_array_body(buffer.getvalue(), 1 << 20), MULTI, 1)


def test_result_fragments_are_compressed_once_worth_it() -> None:
    from shared.scoring import COMPRESS_MIN_BYTES, pack_fragment, unpack_fragment

    small = rows_fragment(format_rows([np.array([[0.25, 0.75]])], ["y"]))
    assert pack_fragment(small)[:1] == b"J" and unpack_fragment(pack_fragment(small)) == small
    big = rows_fragment(format_rows([np.random.default_rng(0).random((500, 10))], ["y"]))
    assert len(big) > COMPRESS_MIN_BYTES
    packed = pack_fragment(big)
    assert packed[:1] == b"Z" and len(packed) < len(big) / 2
    assert unpack_fragment(packed) == big
    with pytest.raises(ValueError, match="unknown result fragment encoding"):
        unpack_fragment(b"?garbage")


IDS = [{"name": "ids", "shape": [None, 1], "dtype": "int64"}]
SMALL_IDS = [{"name": "ids", "shape": [None, 1], "dtype": "int32"}]


@pytest.mark.parametrize(
    ("value", "specs"),
    [
        (float("nan"), DENSE),  # JSON's NaN token, which Python's parser accepts
        (float("inf"), DENSE),  # Infinity, and 1e999 (it parses to inf)
        (-float("inf"), DENSE),
        (1e39, DENSE),  # past float32's range: it would become inf
        (3.7, IDS),
        (2**70, IDS),
        (2.0**70, IDS),
        (2**31, SMALL_IDS),
        (float("nan"), IDS),
    ],
)
def test_a_value_the_inputs_dtype_cannot_hold_names_row_and_input(
    value: Any, specs: list[dict[str, Any]]
) -> None:
    width = specs[0]["shape"][1]
    rows = [[0] * width, [0] * (width - 1) + [value]]
    error = invalid({"values": rows}, specs)
    assert error.details["row"] == 1 and error.details["input"] == specs[0]["name"]
    assert "Row 1" in error.message and repr(specs[0]["name"]) in error.message
    with pytest.raises(ScoringInputInvalid) as info:
        validate_arrays(ArrayPayload({"": np.array(rows, dtype=float)}), specs, 100)
    if not isinstance(value, int):  # past 64 bits has no float64 twin to send as an array
        assert info.value.details["row"] == 1


def test_integer_inputs_keep_every_digit() -> None:
    big = 2**53 + 1
    result = validate_payload({"values": [[big], [16777217]]}, IDS, 100)
    assert result.arrays[0].dtype == np.int64
    assert result.arrays[0][:, 0].tolist() == [big, 16777217]
    chunk = decode_chunk(encode_chunk(result.arrays), IDS)
    assert chunk[0][:, 0].tolist() == [big, 16777217]
    mixed = [{"name": "t", "shape": [None, 1], "dtype": "string"}, *IDS]
    text_and_ids = validate_payload({"values": [["a", [big]]]}, mixed, 100)
    decoded = decode_chunk(encode_chunk(text_and_ids.arrays), mixed)  # the JSON chunk path
    assert decoded[1].dtype == np.int64 and decoded[1][0, 0] == big

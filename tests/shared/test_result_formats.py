"""The stored result chunks and the renderers, on arrays built here (no Redis, no model)."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from shared.errors import ResultFormatNotAcceptable
from shared.result_formats import FORMATS, ResultSource, check_format, stream
from shared.results import (
    chunk_outputs,
    decode_outputs,
    encode_outputs,
    json_fragment,
)
from shared.results import (
    render as store,
)
from shared.scoring import ResultShape, format_rows, pack_fragment, rows_fragment, tensor_rows


def source(
    outputs: list[np.ndarray],
    names: list[str],
    shape: ResultShape,
    chunk_rows: int,
    kind: str = "batch",
) -> ResultSource:
    rows = len(outputs[0])
    chunks = [
        store([o[i : i + chunk_rows] for o in outputs], kind, shape, names)
        for i in range(0, rows, chunk_rows)
    ]

    def again() -> Iterator[bytes]:
        return iter(chunks)

    return ResultSource(rows, shape, names, again)


def body(fmt: str, src: ResultSource) -> bytes:
    def json_body() -> Iterator[bytes]:
        raise AssertionError("json is JobStore.iter_result's")

    return b"".join(stream(fmt, src, json_body))


def test_arrays_round_trip_in_their_own_dtypes_and_compress_only_when_it_pays() -> None:
    rng = np.random.default_rng(0)
    noise = rng.random((300, 10), dtype=np.float32)
    ints = np.zeros((300, 10), dtype=np.int32)
    texts = np.array([b"caf\xc3\xa9", b"x"], dtype=object)
    for arrays in ([noise], [ints, noise[:, :3].astype(np.float16)], [texts]):
        stored = encode_outputs(arrays)
        back = decode_outputs(stored)
        assert [b.shape for b in back] == [a.shape for a in arrays]
        for a, b in zip(arrays, back, strict=True):
            if a.dtype == object:
                assert b.tolist() == ["café", "x"]
            else:
                assert b.dtype == a.dtype
                np.testing.assert_array_equal(a, b)
    assert b'"zlib": false' in encode_outputs([noise])[:200]  # random floats: not worth it
    assert b'"zlib": true' in encode_outputs([ints])[:200]
    assert len(encode_outputs([ints])) < 200


def test_online_chunks_stay_json_and_batch_text_outputs_of_wml_jobs_fail() -> None:
    out = np.array([[0.25, 0.75]], dtype=np.float32)
    online = store([out], "online", ResultShape.WML_V3, ["d"])
    assert online == pack_fragment(rows_fragment(format_rows([out], ["d"])))
    batch = store([out], "batch", ResultShape.WML_V3, ["d"])
    assert json_fragment(batch, ResultShape.WML_V3, ["d"]) == json_fragment(
        online, ResultShape.WML_V3, ["d"]
    )
    with pytest.raises(TypeError, match="raw outputs"):
        store([np.array([b"a"], dtype=object)], "batch", ResultShape.WML_V3, ["t"])
    tensors = store([np.array([b"a"], dtype=object)], "batch", ResultShape.TENSORS, ["t"])
    assert json_fragment(tensors, ResultShape.TENSORS, ["t"]) == rows_fragment(
        tensor_rows([np.array([b"a"], dtype=object)])
    )


def test_json_chunks_are_parsed_back_for_the_typed_formats() -> None:
    out = np.array([[0.5, np.nan], [1.0, 2.0]], dtype=np.float32)
    stored = store([out], "online", ResultShape.WML_V3, ["d"])
    (back,) = chunk_outputs(stored, ResultShape.WML_V3, ["d"])
    np.testing.assert_array_equal(back, out.astype(np.float64))
    a, b = np.array([[1], [2]], dtype=np.int64), np.array([[0.5], [0.25]], dtype=np.float32)
    multi = store([a, b], "online", ResultShape.WML_V3, ["a", "b"])
    assert [x.tolist() for x in chunk_outputs(multi, ResultShape.WML_V3, ["a", "b"])] == [
        [[1], [2]],
        [[0.5], [0.25]],
    ]
    tensors = store([a, b], "online", ResultShape.TENSORS, ["a", "b"])
    assert [x.dtype.kind for x in chunk_outputs(tensors, ResultShape.TENSORS, ["a", "b"])] == [
        "i",
        "f",
    ]


def test_json_chunks_read_back_in_the_models_float_dtype_exactly() -> None:
    rng = np.random.default_rng(7)
    out = rng.random((50, 10), dtype=np.float32) / 3  # no short decimal spelling
    stored = store([out], "online", ResultShape.WML_V3, ["d"])
    (back,) = chunk_outputs(stored, ResultShape.WML_V3, ["d"], {"d": "float32"})
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, out)
    a, b = np.array([[1], [2]], dtype=np.int64), np.array([[0.5], [0.25]], dtype=np.float16)
    tensors = store([a, b], "online", ResultShape.TENSORS, ["a", "b"])
    dtypes = {"a": "int64", "b": "float16"}
    got = chunk_outputs(tensors, ResultShape.TENSORS, ["a", "b"], dtypes)
    assert [x.dtype for x in got] == [np.dtype(np.int64), np.dtype(np.float16)]
    # A dtype numpy has no name for (bfloat16) leaves the parsed float64.
    (kept,) = chunk_outputs(stored, ResultShape.WML_V3, ["d"], {"d": "bfloat16"})
    assert kept.dtype == np.float64


def test_multi_dimensional_outputs_in_every_typed_format() -> None:
    rng = np.random.default_rng(1)
    seq = rng.random((7, 2, 3), dtype=np.float32)  # a class per time step
    src = source([seq], ["seq"], ResultShape.WML_V3, 3)
    np.testing.assert_array_equal(np.load(io.BytesIO(body("npy", src))), seq)
    with np.load(io.BytesIO(body("npz", src))) as npz:
        np.testing.assert_array_equal(npz["seq"], seq)
        np.testing.assert_array_equal(npz["prediction_classes"], seq.argmax(-1))
    table = pq.read_table(io.BytesIO(body("parquet", src)))
    assert str(table.schema.field("probability").type) == (
        "fixed_size_list<element: fixed_size_list<element: float>[3]>[2]"
    )
    assert pq.ParquetFile(io.BytesIO(body("parquet", src))).num_row_groups == 3
    frame = pd.read_csv(io.BytesIO(body("csv", src)))
    assert list(frame.columns) == [
        "prediction_classes_0",
        "prediction_classes_1",
        *(f"probability_{i}_{j}" for i in range(2) for j in range(3)),
    ]
    np.testing.assert_array_equal(frame.iloc[:, 2:].to_numpy(np.float32), seq.reshape(7, 6))


def test_raw_tensor_jobs_name_columns_by_output_and_nan_is_null_in_jsonl() -> None:
    a = np.array([[np.nan, 1.0], [2.0, np.inf]], dtype=np.float32)
    b = np.array([3, 4], dtype=np.int64)
    src = source([a, b], ["a", "b"], ResultShape.TENSORS, 1)
    assert [json.loads(line) for line in body("jsonl", src).splitlines()] == [
        {"a": [None, 1.0], "b": 3},
        {"a": [2.0, None], "b": 4},
    ]
    frame = pd.read_csv(io.BytesIO(body("csv", src)))
    assert list(frame.columns) == ["a_0", "a_1", "b"]
    assert np.isnan(frame["a_0"][0]) and np.isinf(frame["a_1"][1])
    with np.load(io.BytesIO(body("npz", src))) as npz:
        assert npz.files == ["a", "b"]
        assert npz["b"].dtype == np.int64


def test_npz_members_are_stored_with_sizes_known_up_front() -> None:
    out = np.arange(40, dtype=np.float64).reshape(20, 2)
    data = body("npz", source([out], ["d"], ResultShape.WML_V3, 7))
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        assert [i.filename for i in archive.infolist()] == ["prediction_classes.npy", "d.npy"]


def test_check_format_refuses_unknown_formats_and_npy_of_several_outputs() -> None:
    one = source([np.zeros((2, 2), np.float32)], ["d"], ResultShape.WML_V3, 2)
    assert check_format("npy", one).media_type == "application/x-npy"
    assert set(FORMATS) == {"json", "jsonl", "csv", "npy", "npz", "parquet"}
    with pytest.raises(ResultFormatNotAcceptable, match="parquet"):
        check_format("xml", one)
    two = source([np.zeros((2, 1)), np.zeros((2, 1))], ["a", "b"], ResultShape.WML_V3, 2)
    with pytest.raises(ResultFormatNotAcceptable, match="npz"):
        check_format("npy", two)

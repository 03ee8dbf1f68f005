"""A job's stored result chunks: what the worker writes for each chunk, and reading it back.

A batch job's chunk is stored as the model's raw outputs, one typed array per output in its
own dtype (``encode_outputs``), never as JSON: the API renders whichever format the caller
asks for when it reads the result (``shared.result_formats``), and JSON is only one of them.
An online job's chunk stays a JSON fragment of the rows it answers (``pack_fragment``): the
API hands it to its caller as it is, so the answer costs no rendering in the API.

Stored chunk layouts (the first byte says which):

- ``A``: typed arrays. ``A`` + 4-byte little-endian header length + a JSON header
  ``{"arrays": [{"dtype": numpy dtype string, "shape": [rows, ...]}], "zlib": bool}`` + the
  arrays' bytes (C order) one after the other, zlib-compressed as a whole when that saves at
  least a fifth (float predictions rarely compress that well; integer or sparse ones do).
- ``J`` / ``Z``: a JSON fragment of rows (``shared.scoring.pack_fragment``).
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

import numpy as np

from shared.scoring import (
    ResultShape,
    format_rows,
    pack_fragment,
    rows_fragment,
    tensor_rows,
    unpack_fragment,
)

ARRAYS = b"A"
# Compressing a chunk is kept only when it saves at least this share of its bytes.
COMPRESS_MIN_SAVING = 0.2
# Below this many bytes a chunk is stored as it is: compression gains nothing there.
COMPRESS_MIN_BYTES = 4096
_NUMERIC_KINDS = "biuf"


def _texts(value: Any) -> Any:
    if isinstance(value, list):
        return [_texts(v) for v in value]
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def typed(array: np.ndarray) -> np.ndarray:
    """``array`` as a C-ordered array of a fixed-size dtype: a string output (numpy object
    array of bytes or str) becomes fixed-width unicode (``<U``), bytes decoded as UTF-8."""
    if array.dtype.kind == "O":
        array = np.asarray(_texts(array.tolist()), dtype=np.str_).reshape(array.shape)
    return np.ascontiguousarray(array)


def encode_outputs(outputs: list[np.ndarray]) -> bytes:
    """One chunk's outputs (one array per model output, all with the chunk's rows) as stored:
    the ``A`` layout of this module's docstring."""
    arrays = [typed(o) for o in outputs]
    body = b"".join(a.tobytes() for a in arrays)
    compressed = False
    if len(body) >= COMPRESS_MIN_BYTES:
        packed = zlib.compress(body, 1)
        if len(packed) <= len(body) * (1 - COMPRESS_MIN_SAVING):
            body, compressed = packed, True
    header = json.dumps(
        {
            "arrays": [{"dtype": a.dtype.str, "shape": list(a.shape)} for a in arrays],
            "zlib": compressed,
        }
    ).encode()
    return ARRAYS + struct.pack("<I", len(header)) + header + body


def decode_outputs(stored: bytes) -> list[np.ndarray]:
    """The arrays :func:`encode_outputs` stored, in output order (read-only views of the
    stored bytes, or of their decompressed copy). Raises ValueError for another layout."""
    if stored[:1] != ARRAYS:
        raise ValueError(f"not a typed-array result chunk: {stored[:1]!r}")
    (length,) = struct.unpack_from("<I", stored, 1)
    header = json.loads(stored[5 : 5 + length])
    body: bytes | memoryview = memoryview(stored)[5 + length :]
    if header["zlib"]:
        body = zlib.decompress(body)
    arrays = []
    offset = 0
    for spec in header["arrays"]:
        dtype = np.dtype(spec["dtype"])
        shape = tuple(spec["shape"])
        count = int(np.prod(shape))
        arrays.append(np.frombuffer(body, dtype=dtype, count=count, offset=offset).reshape(shape))
        offset += count * dtype.itemsize
    return arrays


def json_rows(
    outputs: list[np.ndarray], result_shape: ResultShape, output_names: list[str]
) -> list[list[Any]]:
    """The rows of a JSON result body: WML's ``[prediction, prediction_classes,
    probability]`` or, for ``ResultShape.TENSORS``, the raw output rows."""
    if result_shape is ResultShape.TENSORS:
        return tensor_rows(outputs)
    return format_rows(outputs, output_names)


def render(
    outputs: list[np.ndarray], kind: str, result_shape: ResultShape, output_names: list[str]
) -> bytes:
    """What a chunk task stores for one chunk's ``outputs``: a JSON fragment for an online
    job (its answer, handed back as it is), typed arrays for a batch job.

    Raises TypeError for text outputs of a job asked for WML's fields (classes of text do not
    exist): the job fails as it did when the worker wrote JSON.
    """
    if kind == "online":
        return pack_fragment(rows_fragment(json_rows(outputs, result_shape, output_names)))
    if result_shape is not ResultShape.TENSORS:
        text = [o.dtype for o in outputs if o.dtype.kind not in _NUMERIC_KINDS]
        if text:
            raise TypeError(
                f"The model outputs {text[0]} values, which have no prediction classes: score "
                "it through /v2 or /v1/models for its raw outputs."
            )
    return encode_outputs(outputs)


def json_fragment(stored: bytes, result_shape: ResultShape, output_names: list[str]) -> bytes:
    """A stored chunk as the JSON rows fragment of the result body (no brackets)."""
    if stored[:1] == ARRAYS:
        return rows_fragment(json_rows(decode_outputs(stored), result_shape, output_names))
    return unpack_fragment(stored)


def _column(values: list[Any]) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype == object:  # JSON null (a non-finite prediction) among numbers
        array = np.asarray(values, dtype=np.float64)
    return array


def chunk_outputs(
    stored: bytes,
    result_shape: ResultShape,
    output_names: list[str],
    output_dtypes: dict[str, str] | None = None,
) -> list[np.ndarray]:
    """A stored chunk's outputs as arrays, one per output.

    A JSON chunk (an online job's) is parsed back: numbers take numpy's dtype for them
    (int64, float64), null becomes NaN, text becomes ``<U``; an output named in
    ``output_dtypes`` (output name -> the model's dtype, e.g. ``"float32"``) with a floating
    dtype is cast back to it, exactly: the JSON numbers are the shortest text of those values.
    """
    if stored[:1] == ARRAYS:
        return decode_outputs(stored)
    rows = json.loads(b"[" + unpack_fragment(stored) + b"]")
    count = max(len(output_names), 1)
    names = output_names if output_names else [""]
    if result_shape is ResultShape.TENSORS:
        columns = [_column([row[k] for row in rows]) for k in range(count)]
    else:
        predictions = [row[0] for row in rows]
        if rows and isinstance(predictions[0], dict):
            columns = [_column([p[name] for p in predictions]) for name in output_names]
        else:
            columns, names = [_column(predictions)], names[:1]
    dtypes = output_dtypes or {}
    return [_as_model_dtype(c, dtypes.get(n)) for c, n in zip(columns, names, strict=True)]


def _as_model_dtype(column: np.ndarray, dtype: str | None) -> np.ndarray:
    if dtype is None or column.dtype.kind not in "fi":
        return column
    try:
        target = np.dtype(dtype)
    except TypeError:  # a dtype numpy does not name (bfloat16): the parsed one stays
        return column
    return column.astype(target) if target.kind == "f" else column

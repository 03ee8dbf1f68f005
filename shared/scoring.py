"""Scoring payloads in and out: input validation against a deployment's signature, the
chunk codec that carries rows through Redis, and the WML Keras output rows."""

from __future__ import annotations

import io
import json
import math
import zlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import orjson

from shared.errors import PayloadTooLarge, ScoringInputInvalid

FIELDS = ["prediction", "prediction_classes", "probability"]


class ResultShape(StrEnum):
    """How a result body is wrapped: as the request that asked for it was."""

    WML_V3 = "wml_v3"
    """``{"fields", "values"}``."""
    WML_V4 = "wml_v4"
    """``{"predictions": [{"fields", "values"}]}``, for a request in v4's ``input_data``."""
    TENSORS = "tensors"
    """``{"fields": output names, "values"}``: each row holds the model's raw output rows, one
    per output (no WML fields), for the inference protocols (/v2, TF Serving's /v1)."""


_NUMERIC_KINDS = "biuf"
_ARRAYS = b"A"
_NPZ = b"N"  # numbers before the raw layout, and arrays of kinds it does not take
_JSON = b"J"
# Each array's bytes start at a multiple of this from the chunk's start, and a bytes
# object's data is 16-aligned: numpy then reads them with its aligned loops (a misaligned
# array goes through buffered copies). More would not hold: the data is only 16-aligned.
_ARRAY_ALIGN = 16


@dataclass(frozen=True)
class ScoringInput:
    """Validated rows: one array per model input, all with the same number of rows."""

    arrays: list[np.ndarray]
    rows: int


def _is_string_spec(spec: dict[str, Any]) -> bool:
    return str(spec.get("dtype") or "float32") in {"string", "str", "object"}


def _shape_ok(expected: list[int | None], got: tuple[int, ...]) -> bool:
    return len(expected) == len(got) and all(
        e is None or e == g for e, g in zip(expected, got, strict=True)
    )


def _fmt_shape(shape: list[int | None] | tuple[int, ...]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _input_error(message: str, **details: Any) -> ScoringInputInvalid:
    return ScoringInputInvalid(message, details=details)


def _row_shape_error(
    index: int, label: str, got: tuple[int, ...], expected: list[int | None]
) -> ScoringInputInvalid:
    return _input_error(
        f"Row {index}{label} has shape {_fmt_shape(got)}, but the model expects "
        f"{_fmt_shape(expected)} per row.",
        row=index,
        expected_shape=expected,
        received_shape=list(got),
    )


def _target_dtype(spec: dict[str, Any]) -> np.dtype[Any]:
    try:
        dtype = np.dtype(str(spec.get("dtype") or "float32"))
    except TypeError:
        return np.dtype(np.float32)
    return dtype if dtype.kind in _NUMERIC_KINDS else np.dtype(np.float32)


def floats_within(arr: np.ndarray, limit: float) -> bool:
    """Whether every value of a float array is finite and within +-``limit``.

    Two passes (``min`` and ``max``, into which a NaN propagates) and no temporary: the
    element-wise mask (``isfinite``, ``abs``, compare, or) allocates several arrays of the
    input's size, ~0.1 s of a 10,000-row CNN job's request. Find the offending row with the
    mask only when this says no.
    """
    if arr.size == 0:
        return True
    low, high = arr.min(), arr.max()
    return bool(np.isfinite(low) and np.isfinite(high) and -limit <= low and high <= limit)


def _as_input_dtype(arr: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """Rows converted to the input's own dtype, exactly: an integer input refuses values that
    are not whole numbers or do not fit, a float input refuses NaN, infinities (JSON's
    ``NaN``/``Infinity`` tokens, ``1e999``) and values past its range (ScoringInputInvalid
    naming the first such row and the input).

    Floats for float inputs are rounded to the input's precision, as Keras itself does.
    """
    target = _target_dtype(spec)
    if arr.size == 0 or target.kind not in "iuf":
        return arr.astype(target, copy=False)
    if target.kind == "f":
        if arr.dtype.kind != "f":
            return arr.astype(target, copy=False)
        limit = np.finfo(target).max
        if floats_within(arr, float(limit)):
            return arr.astype(target, copy=False)
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(arr) | (np.abs(arr) > limit)
        if bad.any():
            row, value = _first_bad(arr, bad)
            raise _input_error(
                f"Row {row} gives input {spec['name']!r} the value {value!r}, but that input "
                f"takes finite numbers up to {float(limit):g} in size ({target}).",
                row=row,
                input=str(spec["name"]),
                expected_dtype=str(target),
            )
        return arr.astype(target, copy=False)
    info = np.iinfo(target)
    if arr.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(arr) | (arr != np.floor(arr)) | (arr < info.min) | (arr > info.max)
    elif arr.dtype.kind in "iu":
        bad = None if np.can_cast(arr.dtype, target) else (arr < info.min) | (arr > info.max)
    else:  # booleans for a number: JSON true/false are not numbers
        bad = np.ones(arr.shape, dtype=bool)
    if bad is not None and bad.any():
        raise _integer_error(*_first_bad(arr, bad), spec=spec)
    return arr.astype(target, copy=False)


def _first_bad(arr: np.ndarray, bad: np.ndarray) -> tuple[int, Any]:
    """The row index and the value of the first ``True`` in ``bad`` (same shape as ``arr``)."""
    index = tuple(int(i) for i in np.argwhere(bad)[0])
    return index[0], arr[index].item()


def _integer_error(row: int, value: Any, spec: dict[str, Any]) -> ScoringInputInvalid:
    target = _target_dtype(spec)
    info = np.iinfo(target)
    return _input_error(
        f"Row {row} gives input {spec['name']!r} the value {value!r}, but that input takes "
        f"whole numbers from {info.min} to {info.max} ({target}).",
        row=row,
        input=str(spec["name"]),
        expected_dtype=str(target),
    )


def _validate_numeric(rows: list[Any], spec: dict[str, Any], label: str) -> np.ndarray:
    expected = list(spec.get("shape") or [None])[1:]
    try:
        arr = np.asarray(rows)
    except (ValueError, TypeError):
        arr = None
    if arr is not None and arr.dtype == object and _is_whole_number_list(arr):
        arr = _ints_for(arr, spec)
    if arr is not None and arr.dtype.kind in _NUMERIC_KINDS and arr.ndim >= 1:
        if _shape_ok(expected, arr.shape[1:]):
            return _as_input_dtype(arr, spec)
        # All rows share one shape here, so row 0 is as wrong as any.
        raise _row_shape_error(0, label, arr.shape[1:], expected)
    # Slow path: find the first row that is ragged, mis-shaped or not numeric.
    for index, row in enumerate(rows):
        try:
            row_arr = np.asarray(row)
        except (ValueError, TypeError):
            raise _input_error(
                f"Row {index}{label} is ragged: its nested lists have different lengths; "
                f"the model expects {_fmt_shape(expected)} per row.",
                row=index,
                expected_shape=expected,
            ) from None
        if row_arr.dtype == object and _is_whole_number_list(row_arr):
            row_arr = _ints_for(row_arr, spec, row=index)
        if row_arr.dtype.kind not in _NUMERIC_KINDS:
            raise _input_error(
                f"Row {index}{label} has a non-numeric value (strings, nulls and objects are "
                "not accepted); the model's input is numeric.",
                row=index,
                expected_dtype=str(spec.get("dtype")),
            )
        if not _shape_ok(expected, row_arr.shape):
            raise _row_shape_error(index, label, row_arr.shape, expected)
    # Every row is fine on its own: they differ in a dimension the model leaves open.
    raise _input_error(
        f"Rows{label} differ in shape along a dimension the model leaves open; rows scored "
        "together must share one shape. Split them into separate requests.",
        expected_shape=expected,
    )


def _is_whole_number_list(array: np.ndarray) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in array.reshape(-1))


def _first_huge(array: np.ndarray) -> int:
    return next(int(v) for v in array.reshape(-1) if abs(int(v)) >= 2**63)


def _ints_for(array: np.ndarray, spec: dict[str, Any], row: int | None = None) -> np.ndarray:
    """Python ints past 64 bits (an object array of rows, or of ``row``) for ``spec``'s input.

    No integer input holds them (ScoringInputInvalid naming the row); a float input may, and
    gets them as float64 for its range check, the ones past float64's range as infinities.
    """
    if _target_dtype(spec).kind != "f":
        if row is None:
            row = int(np.argwhere(_huge_mask(array))[0][0])
        raise _integer_error(row, _first_huge(array), spec)
    return np.array([_as_float(v) for v in array.reshape(-1)], dtype=np.float64).reshape(
        array.shape
    )


def _huge_mask(array: np.ndarray) -> np.ndarray:
    return np.vectorize(lambda v: abs(int(v)) >= 2**63, otypes=[bool])(array)


def _as_float(value: int) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _validate_strings(rows: list[Any], spec: dict[str, Any], label: str) -> np.ndarray:
    expected = list(spec.get("shape") or [None])[1:]
    out: list[Any] = []
    for index, row in enumerate(rows):
        value = row
        # WML's example sends ["text"] per row; a bare "text" is accepted as the same row.
        if expected in ([1], [None]) and isinstance(row, str):
            value = [row]
        if expected == [] and isinstance(row, list) and len(row) == 1:
            value = row[0]
        arr = np.asarray(value, dtype=object)
        if not all(isinstance(v, str) for v in arr.reshape(-1)):
            raise _input_error(
                f"Row {index}{label} must hold text: the model's input is a string tensor.",
                row=index,
                expected_dtype="string",
            )
        if not _shape_ok(expected, arr.shape):
            raise _row_shape_error(index, label, arr.shape, expected)
        out.append(value)
    return np.asarray(out, dtype=object)


def _by_name(given: dict[str, Any], names: list[str], what: str) -> list[Any]:
    """The entries of ``given`` in model input order; it must name exactly the inputs."""
    missing = [n for n in names if n not in given]
    extra = [n for n in given if n not in names]
    if missing or extra:
        raise _input_error(
            f"{what} must name exactly the model's inputs {names}; missing {missing}, "
            f"unknown {extra}.",
            expected_inputs=names,
        )
    return [given[n] for n in names]


def _row_count(counts: list[int], names: list[str], max_rows: int, empty: str) -> int:
    """The one row count every input shares (422 if none or several, 413 over the limit)."""
    if set(counts) == {0}:
        raise _input_error(empty)
    if len(set(counts)) > 1:
        raise _input_error(
            "Every input needs the same number of rows.",
            rows_per_input=dict(zip(names, counts, strict=True)),
        )
    if counts[0] > max_rows:
        raise PayloadTooLarge(
            f"{counts[0]} rows is over this endpoint's limit of {max_rows}; split the rows or "
            "submit a batch job.",
            details={"rows": counts[0], "limit": max_rows},
        )
    return counts[0]


def validate_payload(
    payload: dict[str, Any], inputs: list[dict[str, Any]], max_rows: int
) -> ScoringInput:
    """Check a scoring payload against the model's inputs; ScoringInputInvalid names the row."""
    names = [str(spec["name"]) for spec in inputs]
    if "inputs" in payload and payload["inputs"] is not None:
        named = payload["inputs"]
        if not isinstance(named, dict):
            raise _input_error('"inputs" must be an object mapping each input name to its rows.')
        per_input = _by_name(named, names, '"inputs"')
    else:
        values = payload.get("values")
        if isinstance(values, np.ndarray):  # rows the API's JSON reader read as an array
            if len(inputs) == 1:
                return _single_array(values, inputs[0], max_rows)
            values = values.tolist()
        if not isinstance(values, list):
            raise _input_error('Send the rows as "values": a list with one entry per row.')
        if len(inputs) == 1:
            per_input = [values]
        else:
            for index, row in enumerate(values):
                if not isinstance(row, list) or len(row) != len(inputs):
                    raise _input_error(
                        f"Row {index} must be a list with one entry per model input, in "
                        f'order {names}; or send {{"inputs": {{name: rows}}}}.',
                        row=index,
                        expected_inputs=names,
                    )
            per_input = [[row[i] for row in values] for i in range(len(inputs))]
    for name, rows in zip(names, per_input, strict=True):
        if not isinstance(rows, list):
            raise _input_error(f"The rows of input {name!r} must be a list.", input=name)
    n_rows = _row_count(
        [len(rows) for rows in per_input],
        names,
        max_rows,
        '"values" is empty: send at least one row.',
    )
    arrays = []
    for spec, rows in zip(inputs, per_input, strict=True):
        label = f" of input {spec['name']!r}" if len(inputs) > 1 else ""
        if _is_string_spec(spec):
            arrays.append(_validate_strings(rows, spec, label))
        else:
            arrays.append(_validate_numeric(rows, spec, label))
    return ScoringInput(arrays, n_rows)


def _single_array(rows: np.ndarray, spec: dict[str, Any], max_rows: int) -> ScoringInput:
    """A one-input model's rows already read as a float64 array (``shared.json_rows``)."""
    name = str(spec["name"])
    n_rows = _row_count([len(rows)], [name], max_rows, '"values" is empty: send at least one row.')
    if _is_string_spec(spec):
        raise _input_error(
            "Row 0 must hold text: the model's input is a string tensor.",
            row=0,
            expected_dtype="string",
        )
    return ScoringInput([_validate_numeric(rows, spec, "")], n_rows)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ArrayPayload:
    """Rows sent as a .npy (one input) or .npz (arrays named by input) body instead of JSON."""

    arrays: dict[str, np.ndarray]


NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"


def parse_array_body(data: bytes, max_bytes: int) -> ArrayPayload:
    """Read a .npy or .npz request body without unpickling anything.

    Raises ScoringInputInvalid (422) for a body numpy cannot read safely, or a .npz member that
    is not an array; PayloadTooLarge (413) for a .npz whose arrays inflate past ``max_bytes``.
    """
    if not (data.startswith(NPY_MAGIC) or data.startswith(ZIP_MAGIC)):
        raise _input_error(
            "The body is neither a .npy nor a .npz file: save rows with numpy.save / "
            'numpy.savez, or send JSON {"values": [...]}.'
        )
    try:
        loaded = np.load(io.BytesIO(data), allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return ArrayPayload({"": loaded})
        with loaded as npz:
            # numpy hands back the raw bytes of a member that is not a .npy file.
            others = [
                info.filename for info in npz.zip.infolist() if not info.filename.endswith(".npy")
            ]
            if others:
                raise _input_error(
                    f"The .npz holds {others[0]!r}, which is not a .npy array: save it with "
                    "numpy.savez, one array per input."
                )
            inflated = sum(info.file_size for info in npz.zip.infolist())
            if inflated > max_bytes:
                # A compressed .npz can inflate far past the body's size: check what its
                # members declare before numpy reads them (zipfile reads no more than that).
                raise PayloadTooLarge(
                    f"The .npz's arrays take {inflated} bytes uncompressed, over the limit of "
                    f"{max_bytes}; split the rows into several requests.",
                    details={"limit_bytes": max_bytes},
                )
            return ArrayPayload({name: npz[name] for name in npz.files})
    except ValueError as exc:
        # numpy says "Object arrays cannot be loaded when allow_pickle=False" and the like.
        raise _input_error(
            f"The array body cannot be read: {exc}. Use numeric or fixed-width string arrays."
        ) from None
    except (OSError, EOFError, KeyError) as exc:
        raise _input_error(f"The array body is not a readable .npy/.npz file: {exc}.") from None


def validate_arrays(
    payload: ArrayPayload, inputs: list[dict[str, Any]], max_rows: int
) -> ScoringInput:
    """Check arrays against the model's inputs: one per input (by name in a .npz)."""
    names = [str(spec["name"]) for spec in inputs]
    given = payload.arrays
    if list(given) == [""] or (len(given) == 1 and len(inputs) == 1):
        if len(inputs) != 1:
            raise _input_error(
                f"The model has {len(inputs)} inputs {names}: send a .npz with one array per "
                "input, named by input.",
                expected_inputs=names,
            )
        ordered = list(given.values())
    else:
        ordered = _by_name(given, names, "The .npz")
    n_rows = _row_count(
        [len(a) if a.ndim else 0 for a in ordered],
        names,
        max_rows,
        "The array has no rows: send at least one row.",
    )
    arrays = []
    for spec, array in zip(inputs, ordered, strict=True):
        label = f" of input {spec['name']!r}" if len(inputs) > 1 else ""
        expected = list(spec.get("shape") or [None])[1:]
        if _is_string_spec(spec):
            if array.dtype.kind not in "US":
                raise _input_error(
                    f"The rows{label} must be text: the model's input is a string tensor."
                )
            array = array.astype(object)
        elif array.dtype.kind not in _NUMERIC_KINDS:
            raise _input_error(
                f"The rows{label} are {array.dtype}, not numbers; the model's input is numeric.",
                expected_dtype=str(spec.get("dtype")),
            )
        else:
            array = _as_input_dtype(array, spec)
        if not _shape_ok(expected, array.shape[1:]):
            raise _row_shape_error(0, label, array.shape[1:], expected)
        arrays.append(array)
    return ScoringInput(arrays, n_rows)


def validate_input(
    payload: dict[str, Any] | ArrayPayload, inputs: list[dict[str, Any]], max_rows: int
) -> ScoringInput:
    """Validate JSON rows or an array body against the model's inputs."""
    if isinstance(payload, ArrayPayload):
        return validate_arrays(payload, inputs, max_rows)
    return validate_payload(payload, inputs, max_rows)


def encode_chunk(arrays: list[np.ndarray]) -> bytes:
    """Bytes for one chunk of input rows (a job's chunk, a dataset's, an online request's).

    Numbers (bool, int, uint, float) in the raw layout: ``b"A"``, then per array a 2-byte
    little-endian length, a JSON header ``{"d": dtype string, "s": shape}`` padded with
    spaces so the array's bytes (C order) start at a multiple of 16 bytes, then those bytes.
    :func:`decode_chunk` reads them in place with ``np.frombuffer``, no copy: npz's zip cost a
    fifth of the API's time per online request and, on 6 MB dataset chunks, a copy and a CRC
    per chunk in the worker. Text (object arrays): JSON. Other kinds: npz. Never pickle.
    """
    if all(a.dtype.kind in _NUMERIC_KINDS for a in arrays):
        parts: list[bytes | memoryview] = [_ARRAYS]
        at = len(_ARRAYS)
        for array in arrays:
            header = json.dumps({"d": array.dtype.str, "s": list(array.shape)}).encode()
            pad = -(at + 2 + len(header)) % _ARRAY_ALIGN
            header += b" " * pad
            parts += [len(header).to_bytes(2, "little"), header, np.ascontiguousarray(array).data]
            at += 2 + len(header) + array.nbytes
        return b"".join(parts)
    if all(a.dtype != object for a in arrays):
        buf = io.BytesIO()
        np.savez(buf, *arrays)
        return _NPZ + buf.getvalue()
    return _JSON + json.dumps([a.tolist() for a in arrays]).encode()


def decode_chunk(data: bytes, specs: list[dict[str, Any]]) -> list[np.ndarray]:
    """The arrays :func:`encode_chunk` wrote, in input order (``specs``, the deployment's
    input specs, type the arrays of a JSON chunk). Arrays of the raw layout are read-only
    views of ``data``; npz chunks (written before it) still decode.

    Raises ValueError for bytes it did not write.
    """
    tag = data[:1]
    if tag == _ARRAYS:
        return _raw_arrays(data)
    if tag == _NPZ:
        with np.load(io.BytesIO(data[1:]), allow_pickle=False) as npz:
            return [npz[f"arr_{i}"] for i in range(len(npz.files))]
    if tag != _JSON:
        raise ValueError(f"a chunk that starts with {tag!r} was not written by encode_chunk")
    lists = json.loads(data[1:])
    return [
        np.asarray(rows, dtype=object if _is_string_spec(spec) else _target_dtype(spec))
        for rows, spec in zip(lists, specs, strict=True)
    ]


def _raw_arrays(data: bytes) -> list[np.ndarray]:
    arrays = []
    at = len(_ARRAYS)
    while at < len(data):
        size = int.from_bytes(data[at : at + 2], "little")
        header = json.loads(data[at + 2 : at + 2 + size])
        at += 2 + size
        dtype = np.dtype(header["d"])
        if dtype.kind not in _NUMERIC_KINDS:  # never an object array from stored bytes
            raise ValueError(f"a raw chunk array of dtype {dtype} is not numbers")
        shape = tuple(int(d) for d in header["s"])
        count = math.prod(shape)
        arrays.append(np.frombuffer(data, dtype, count, at).reshape(shape))
        at += count * dtype.itemsize
    return arrays


def split_rows(inputs: ScoringInput, chunk_rows: int) -> list[bytes]:
    """Encoded chunks of at most ``chunk_rows`` rows each, in row order."""
    return [
        encode_chunk([a[start : start + chunk_rows] for a in inputs.arrays])
        for start in range(0, inputs.rows, chunk_rows)
    ]


def predicted_classes(output: np.ndarray) -> np.ndarray:
    """Keras 2 ``predict_classes``: argmax over the last axis, or p > 0.5 for one unit."""
    if output.ndim >= 2 and output.shape[-1] > 1:
        return output.argmax(axis=-1)
    if output.ndim >= 2:
        output = output[..., 0]
    return (output > 0.5).astype(np.int64)


def _plain(array: np.ndarray) -> list[Any]:
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        # JSON has no NaN or Infinity: a non-finite prediction becomes null.
        return [_finite_or_none(v) for v in array.tolist()]
    return array.tolist()


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value if not isinstance(value, float) or math.isfinite(value) else None


def format_rows(outputs: list[np.ndarray], output_names: list[str]) -> list[list[Any]]:
    """WML rows ``[prediction, prediction_classes, probability]``, one per input row.

    With several outputs each field is an object keyed by output name.
    """
    preds = [_plain(o) for o in outputs]
    classes = [predicted_classes(o).tolist() for o in outputs]
    if len(outputs) == 1:
        return [[p, c, p] for p, c in zip(preds[0], classes[0], strict=True)]
    rows = []
    for i in range(len(preds[0])):
        pred = {name: preds[k][i] for k, name in enumerate(output_names)}
        cls = {name: classes[k][i] for k, name in enumerate(output_names)}
        rows.append([pred, cls, pred])
    return rows


def tensor_rows(outputs: list[np.ndarray]) -> list[list[Any]]:
    """Per input row, the model's output rows as they are: ``[output_0[i], output_1[i], ...]``.

    Non-finite numbers become null as in :func:`format_rows`; bytes (string outputs) are
    decoded as UTF-8.
    """
    columns = [_plain(o) if o.dtype.kind != "O" else _texts(o.tolist()) for o in outputs]
    return [list(row) for row in zip(*columns, strict=True)]


def _texts(value: Any) -> Any:
    if isinstance(value, list):
        return [_texts(v) for v in value]
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def rows_fragment(rows: list[list[Any]]) -> bytes:
    """The rows as a JSON list body without its brackets, so chunks concatenate.

    orjson, not the standard library: one online answer of 10 probabilities took 8.6 us to
    encode and 0.4 us here (the worker encodes every answer in its serial batch loop); floats
    come out as the shortest text that reads back to the same value, as with ``repr``.
    """
    return orjson.dumps(rows)[1:-1]


_RAW = b"J"
_ZLIB = b"Z"
# Below this a fragment is stored as it is: compressing an online answer gains nothing.
COMPRESS_MIN_BYTES = 4096


def pack_fragment(fragment: bytes) -> bytes:
    """A result fragment as stored in Redis: zlib (level 1) once it is worth it.

    Predictions printed as JSON compress about 3.7x for ~5% of a chunk's scoring time, and
    results are kept for the whole retention period.
    """
    if len(fragment) < COMPRESS_MIN_BYTES:
        return _RAW + fragment
    return _ZLIB + zlib.compress(fragment, 1)


def unpack_fragment(stored: bytes) -> bytes:
    """The JSON fragment :func:`pack_fragment` stored."""
    kind, body = stored[:1], stored[1:]
    if kind == _ZLIB:
        return zlib.decompress(body)
    if kind == _RAW:
        return body
    raise ValueError(f"unknown result fragment encoding {kind!r}")

"""A completed job's result rendered in the format its caller asks for, streamed chunk by chunk.

Every renderer reads the stored chunks one at a time (``ResultSource.chunks`` makes a fresh
pass over Redis; ``npz`` makes one pass per member) and yields bytes as it goes, so a result
is never whole in the API's memory. Rows come out in input order.

The formats (``FORMATS``; names of the arrays/columns below, "output" is the model output's
name as the deployment records it, ``output_<k>`` when none is recorded):

- ``json``: the body online scoring answers, byte for byte: WML's ``{"fields", "values"}``
  (inside ``{"predictions": [...]}`` for a job sent in WML v4's shape; ``fields`` are the
  output names for a raw-tensor job).
- ``jsonl``: one JSON object per row keyed by field (``prediction``, ``prediction_classes``,
  ``probability``; for raw tensors the output names). NaN and infinities are ``null``.
- ``csv``: a header row, then a row per input row, every output flattened to columns in C
  order: ``<base>_<i>`` (``<base>_<i>_<j>`` for a 2-d row, ``<base>`` for a scalar row).
  WML jobs, one output: ``prediction_classes``, ``probability_<i>`` (``prediction`` equals
  ``probability`` and is not repeated); several outputs: ``prediction_classes_<output>``
  for each output, then ``<output>_<i>``. Raw tensors: ``<output>_<i>``. Floats are written
  in their shortest round-trip form of their own dtype; NaN as ``nan``.
- ``npy``: the one output's array, shape ``(rows, *output row shape)``, its own dtype. A
  model with several outputs has no single array: ``ResultFormatNotAcceptable`` (406).
- ``npz``: one member per output named by output name; WML jobs add
  ``prediction_classes`` (one output) or ``prediction_classes_<output>`` (several).
- ``parquet``: one row group per stored chunk; the columns of the csv before flattening
  (``prediction_classes``, ``probability`` for one output ...), a row that is an array being
  a fixed-size list (nested for 2-d and more), values in their own dtype.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from shared.errors import ResultFormatNotAcceptable
from shared.results import chunk_outputs
from shared.scoring import FIELDS, ResultShape, predicted_classes

if TYPE_CHECKING:
    import pyarrow as pa

# pyarrow is imported by the csv and parquet renderers only when they run: it costs an API
# process tens of MB that the other formats never need.


@dataclass(frozen=True)
class ResultFormat:
    """A result format: its name (``?format=``), media type and file extension."""

    name: str
    media_type: str
    extension: str


FORMATS: dict[str, ResultFormat] = {
    f.name: f
    for f in (
        ResultFormat("json", "application/json", "json"),
        ResultFormat("jsonl", "application/x-ndjson", "jsonl"),
        ResultFormat("csv", "text/csv", "csv"),
        ResultFormat("npy", "application/x-npy", "npy"),
        ResultFormat("npz", "application/x-npz", "npz"),
        ResultFormat("parquet", "application/vnd.apache.parquet", "parquet"),
    )
}

# Media types an Accept header may name, each to its format (aliases included).
MEDIA_TYPES: dict[str, str] = {
    **{f.media_type: f.name for f in FORMATS.values()},
    "application/jsonl": "jsonl",
    "application/x-jsonlines": "jsonl",
    "application/x-parquet": "parquet",
}


@dataclass(frozen=True)
class ResultSource:
    """What rendering a job's result needs: its rows, its shape and its stored chunks.

    ``chunks`` returns a fresh iterator over the stored chunks (``shared.results`` layouts)
    in row order, each call a new pass over Redis.
    """

    rows_total: int
    result_shape: ResultShape
    output_names: list[str]
    chunks: Callable[[], Iterator[bytes]]
    # Output name -> the model's dtype: an online job's JSON answer is read back in it.
    output_dtypes: dict[str, str] | None = None

    def outputs(self) -> Iterator[list[np.ndarray]]:
        """Each chunk's output arrays, one chunk at a time."""
        for stored in self.chunks():
            yield chunk_outputs(stored, self.result_shape, self.output_names, self.output_dtypes)

    def names(self, count: int) -> list[str]:
        """The names of ``count`` outputs."""
        if len(self.output_names) == count:
            return list(self.output_names)
        return [f"output_{k}" for k in range(count)]

    def columns(self, outputs: list[np.ndarray], *, table: bool) -> list[tuple[str, np.ndarray]]:
        """The named arrays of one chunk (module docstring): for csv/parquet when ``table``,
        else for npz."""
        names = self.names(len(outputs))
        if self.result_shape is ResultShape.TENSORS:
            return list(zip(names, outputs, strict=True))
        if len(outputs) == 1:
            base = "probability" if table else names[0]
            return [("prediction_classes", predicted_classes(outputs[0])), (base, outputs[0])]
        classes = [
            (f"prediction_classes_{name}", predicted_classes(o))
            for name, o in zip(names, outputs, strict=True)
        ]
        return [*classes, *zip(names, outputs, strict=True)]


def check_format(name: str, source: ResultSource) -> ResultFormat:
    """The format ``name`` if this result can be given in it.

    Raises ResultFormatNotAcceptable (406) for an unknown name, and for ``npy`` when the model
    has several outputs (pointing to ``npz``).
    """
    found = FORMATS.get(name)
    if found is None:
        raise ResultFormatNotAcceptable(
            f"No result format {name!r}; the formats are {', '.join(FORMATS)}.",
            details={"formats": list(FORMATS)},
        )
    if name == "npy" and len(source.output_names) > 1:
        raise ResultFormatNotAcceptable(
            f"The model has {len(source.output_names)} outputs {source.output_names}, and a "
            ".npy file holds one array: ask for format=npz (one array per output).",
            details={"formats": [f for f in FORMATS if f != "npy"]},
        )
    return found


def stream(
    name: str, source: ResultSource, json_body: Callable[[], Iterator[bytes]]
) -> Iterator[bytes]:
    """The result in format ``name`` (from :func:`check_format`), as an iterator of bytes.

    ``json_body`` gives the JSON body (``JobStore.iter_result``): json stays exactly what
    online scoring answers. Raises what the chunk reads raise (JobNotFound when the job
    expired meanwhile) while it is iterated.
    """
    renderers: dict[str, Callable[[ResultSource], Iterator[bytes]]] = {
        "jsonl": _jsonl,
        "csv": _csv,
        "npy": _npy,
        "npz": _npz,
        "parquet": _parquet,
    }
    if name == "json":
        return json_body()
    return renderers[name](source)


# --- jsonl -----------------------------------------------------------------------------------

_ORJSON_KINDS = "biuf"


def _cell(array: np.ndarray, row: int) -> Any:
    """One row of ``array`` as orjson writes it: numbers straight from numpy (float32 in its
    own shortest form, NaN as null), anything else as Python values."""
    if array.dtype.kind in _ORJSON_KINDS and array.dtype != np.float16:
        return array[row]
    return array[row].tolist()


def _jsonl(source: ResultSource) -> Iterator[bytes]:
    options = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE
    for outputs in source.outputs():
        names = source.names(len(outputs))
        lines = []
        if source.result_shape is ResultShape.TENSORS:
            for i in range(len(outputs[0])):
                obj = {n: _cell(o, i) for n, o in zip(names, outputs, strict=True)}
                lines.append(orjson.dumps(obj, option=options))
        else:
            classes = [predicted_classes(o) for o in outputs]
            for i in range(len(outputs[0])):
                if len(outputs) == 1:
                    pred, cls = _cell(outputs[0], i), _cell(classes[0], i)
                else:
                    pred = {n: _cell(o, i) for n, o in zip(names, outputs, strict=True)}
                    cls = {n: _cell(c, i) for n, c in zip(names, classes, strict=True)}
                obj = dict(zip(FIELDS, (pred, cls, pred), strict=True))
                lines.append(orjson.dumps(obj, option=options))
        yield b"".join(lines)


# --- arrow: csv and parquet ------------------------------------------------------------------


class _Sink(io.RawIOBase):
    """A write-only, unseekable stream whose bytes the renderer hands on as it goes."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        piece = bytes(data)
        self._parts.append(piece)
        self._position += len(piece)
        return len(piece)

    def tell(self) -> int:
        return self._position

    def take(self) -> bytes:
        """The bytes written since the last call."""
        parts, self._parts = self._parts, []
        return b"".join(parts)


def _flat_names(name: str, array: np.ndarray) -> list[str]:
    """An array's csv column names: one per element of a row, in C order."""
    if array.ndim == 1:
        return [name]
    return [f"{name}_{'_'.join(str(i) for i in index)}" for index in np.ndindex(*array.shape[1:])]


def _arrow_column(array: np.ndarray) -> pa.Array:
    """A column of ``array``'s rows: values in their dtype, a fixed-size list per row axis."""
    import pyarrow as pa

    values = pa.array(np.ascontiguousarray(array).reshape(-1))
    for size in reversed(array.shape[1:]):
        values = pa.FixedSizeListArray.from_arrays(values, size)
    return values


def _batch(columns: list[tuple[str, np.ndarray]]) -> pa.RecordBatch:
    import pyarrow as pa

    return pa.RecordBatch.from_arrays(
        [_arrow_column(a) for _, a in columns], names=[n for n, _ in columns]
    )


def _csv_batch(named: list[tuple[str, np.ndarray]]) -> tuple[pa.RecordBatch, bool]:
    """The csv's record batch (every array flattened to a column per row element), and
    whether it holds text (which then needs quoting).

    Floats go in already printed, an array's columns cast in one call (arrow's cast writes
    the same shortest form its csv writer does, ~10x faster than that writer formats float32
    itself), so that without text nothing needs quoting.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    names: list[str] = []
    columns: list[pa.Array] = []
    text = False
    for name, array in named:
        rows = len(array)
        # Column-major: column j is values[j * rows : (j + 1) * rows].
        values = np.ascontiguousarray(array.reshape(rows, -1).T).reshape(-1)
        column_values = pa.array(values)
        if array.dtype.kind == "f":
            column_values = pc.cast(column_values, pa.string())
        text = text or array.dtype.kind in "USO"
        flat = _flat_names(name, array)
        names.extend(flat)
        columns.extend(column_values.slice(j * rows, rows) for j in range(len(flat)))
    return pa.RecordBatch.from_arrays(columns, names=names), text


def _csv(source: ResultSource) -> Iterator[bytes]:
    import pyarrow.csv as pa_csv

    sink = _Sink()
    writer: pa_csv.CSVWriter | None = None
    for outputs in source.outputs():
        batch, text = _csv_batch(source.columns(outputs, table=True))
        if writer is None:
            # The header as Python's csv writes it (quoted only where a name needs it):
            # arrow quotes every name.
            header = io.StringIO()
            csv.writer(header, lineterminator="\n").writerow(batch.schema.names)
            sink.write(header.getvalue().encode())
            options = pa_csv.WriteOptions(
                include_header=False, quoting_style="needed" if text else "none"
            )
            writer = pa_csv.CSVWriter(sink, batch.schema, write_options=options)
        writer.write_batch(batch)
        yield sink.take()
    if writer is not None:
        writer.close()
    yield sink.take()


def _parquet(source: ResultSource) -> Iterator[bytes]:
    import pyarrow.parquet as pq

    sink = _Sink()
    writer: pq.ParquetWriter | None = None
    for outputs in source.outputs():
        batch = _batch(source.columns(outputs, table=True))
        if writer is None:
            writer = pq.ParquetWriter(sink, batch.schema)
        # One row group per stored chunk: a reader can page through the file the same way.
        writer.write_batch(batch, row_group_size=max(batch.num_rows, 1))
        yield sink.take()
    if writer is not None:
        writer.close()
    yield sink.take()


# --- numpy: npy and npz ----------------------------------------------------------------------


def _npy_header(dtype: np.dtype[Any], shape: tuple[int, ...]) -> bytes:
    buffer = io.BytesIO()
    header = {
        "descr": np.lib.format.dtype_to_descr(dtype),
        "fortran_order": False,
        "shape": shape,
    }
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


def _array_bytes(array: np.ndarray, dtype: np.dtype[Any]) -> bytes:
    return np.ascontiguousarray(array, dtype=dtype).tobytes()


def content_length(name: str, source: ResultSource) -> int | None:
    """The body's size in bytes when it is known before rendering (npy: the header plus rows x
    row bytes, read from the first chunk), else None (the response is then chunked)."""
    if name != "npy":
        return None
    first = next(source.outputs(), None)
    if first is None or len(first) != 1:
        return None
    (array,) = first
    row_bytes = int(np.prod(array.shape[1:])) * array.dtype.itemsize
    header = _npy_header(array.dtype, (source.rows_total, *array.shape[1:]))
    return len(header) + source.rows_total * row_bytes


def _npy(source: ResultSource) -> Iterator[bytes]:
    dtype: np.dtype[Any] | None = None
    for outputs in source.outputs():
        (array,) = outputs
        if dtype is None:
            # The header comes first: the rows are known from the job, the rest from a chunk.
            dtype = array.dtype
            yield _npy_header(dtype, (source.rows_total, *array.shape[1:]))
        yield _array_bytes(array, dtype)


def _npz(source: ResultSource) -> Iterator[bytes]:
    first = next(source.outputs(), None)
    if first is None:
        return
    # Each member is written whole before the next, so each takes its own pass over the
    # chunks; its size is known up front (rows x row size), so zip64 is chosen right.
    plan = [(name, a.dtype, a.shape[1:]) for name, a in source.columns(first, table=False)]
    del first
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for k, (name, dtype, row_shape) in enumerate(plan):
            header = _npy_header(dtype, (source.rows_total, *row_shape))
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.file_size = (
                len(header) + source.rows_total * int(np.prod(row_shape)) * dtype.itemsize
            )
            with archive.open(info, "w") as member:
                member.write(header)
                for outputs in source.outputs():
                    member.write(_array_bytes(source.columns(outputs, table=False)[k][1], dtype))
                    yield sink.take()
            yield sink.take()
    yield sink.take()

"""Readers of uploaded datasets: each turns a byte stream into batches of rows (one array per
input), reading its source in pieces so that no body is ever whole in memory.

- ``.npy``: numpy's header, then rows read straight from the stream.
- ``.npz``: a zip (its directory is at the end, so the body is spooled to a file first); each
  member (one per input, named by input) is read row by row, all in step.
- ``.csv``: pyarrow's streaming CSV reader (C++, block by block: Python's csv module parses
  far slower), every column read as text and cast to numbers per block, so a bad cell is
  found with its row and column. A header is detected when the first line is not all numbers.
- ``.jsonl``: one row per line, parsed with orjson: a list (a row of a one-input model) or an
  object ``{input name: value}``.
- ``.parquet``: pyarrow.parquet (the footer is at the end: spooled first), read in batches;
  scalar numeric columns are the features of one input, list columns one input each.

A reader's ``layout`` is known once its first batch is out. Errors are DatasetInvalid naming
the row (0-based over the data rows) and the column.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from shared.dataset_io import (
    FORMATS,
    MEDIA_TYPES,
    PIECE_BYTES,
    CountingStream,
    Stream,
    dataset_format,
    read_exact,
    spool,
)
from shared.dataset_text import CsvReader, JsonlReader
from shared.dataset_values import NUMERIC_KINDS, DatasetLayout, row_error
from shared.errors import DatasetFormatUnknown, DatasetInvalid, PayloadTooLarge

# -- .npy / .npz ---------------------------------------------------------------------------


class _NpyRows:
    """The rows of one .npy stream, after its header."""

    def __init__(self, stream: Stream, what: str) -> None:
        self.stream = stream
        try:
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                header = np.lib.format.read_array_header_1_0(stream)
            elif version == (2, 0):
                header = np.lib.format.read_array_header_2_0(stream)
            else:
                raise ValueError(f"version {version} of the .npy format is not supported")
        except (ValueError, OSError, EOFError) as exc:
            raise DatasetInvalid(f"{what} is not a readable .npy array: {exc}.") from None
        shape, fortran, dtype = header
        if dtype.hasobject or dtype.kind not in NUMERIC_KINDS or dtype.fields:
            raise DatasetInvalid(
                f"{what} holds {dtype}, not numbers: datasets hold numeric arrays only.",
                details={"dtype": str(dtype)},
            )
        if not shape:
            raise DatasetInvalid(
                f"{what} is a single number: send an array with one row per entry."
            )
        if fortran and len(shape) > 1:
            raise DatasetInvalid(
                f"{what} is stored in Fortran order, whose rows cannot be read one by one: "
                "save numpy.ascontiguousarray(rows)."
            )
        self.shape: tuple[int, ...] = tuple(shape)
        self.dtype = dtype
        self.row_bytes = dtype.itemsize * math.prod(shape[1:])
        self.rows = int(shape[0])
        self.done = 0

    def take(self, rows: int, what: str) -> np.ndarray:
        rows = min(rows, self.rows - self.done)
        data = read_exact(self.stream, rows * self.row_bytes)
        if len(data) < rows * self.row_bytes:
            got = self.done + len(data) // max(1, self.row_bytes)
            raise DatasetInvalid(
                f"{what} ends after {got} of the {self.rows} rows its header declares: "
                "send the whole file.",
                details={"row": got},
            )
        self.done += rows
        return np.frombuffer(data, dtype=self.dtype).reshape((rows, *self.shape[1:]))


class NpyReader:
    """A .npy body: one unnamed array."""

    def __init__(self, stream: Stream, batch_rows: int) -> None:
        self._stream = stream
        self._batch_rows = batch_rows
        self.layout = DatasetLayout([None])

    def batches(self) -> Iterator[list[np.ndarray]]:
        rows = _NpyRows(self._stream, "The body")
        step = max(1, min(self._batch_rows, (8 * PIECE_BYTES) // max(1, rows.row_bytes)))
        while rows.done < rows.rows:
            yield [rows.take(step, "The .npy")]
        if self._stream.read(1):
            raise DatasetInvalid(
                f"The .npy holds bytes after the {rows.rows} rows its header declares."
            )


class NpzReader:
    """A .npz body (spooled): one array per member, named by the member, read in step."""

    def __init__(self, stream: Stream, batch_rows: int, workdir: Path, max_bytes: int) -> None:
        self._stream = stream
        self._batch_rows = batch_rows
        self._workdir = workdir
        self._max_bytes = max_bytes
        self.layout = DatasetLayout([])

    def batches(self) -> Iterator[list[np.ndarray]]:
        with spool(self._stream, self._workdir) as handle:
            try:
                archive = zipfile.ZipFile(handle)
            except (zipfile.BadZipFile, OSError) as exc:
                raise DatasetInvalid(f"The body is not a .npz (zip) file: {exc}.") from None
            with archive:
                infos = archive.infolist()
                others = [i.filename for i in infos if not i.filename.endswith(".npy")]
                if others or not infos:
                    raise DatasetInvalid(
                        "A .npz dataset holds one .npy array per input "
                        f"(numpy.savez(file, **{{name: rows}})); found {others or 'nothing'}."
                    )
                inflated = sum(i.file_size for i in infos)
                if inflated > self._max_bytes:
                    raise PayloadTooLarge(
                        f"The .npz's arrays take {inflated} bytes uncompressed, over the limit "
                        f"of {self._max_bytes} (KSCORE_MAX_DATASET_BYTES).",
                        details={"limit_bytes": self._max_bytes},
                    )
                names = [i.filename[: -len(".npy")] for i in infos]
                self.layout = DatasetLayout(list(names))
                members = [archive.open(i) for i in infos]
                try:
                    yield from self._in_step(names, members)
                finally:
                    for member in members:
                        member.close()

    def _in_step(self, names: list[str], members: list[Any]) -> Iterator[list[np.ndarray]]:
        readers = [_NpyRows(m, f"Member {n!r}") for n, m in zip(names, members, strict=True)]
        counts = {n: r.rows for n, r in zip(names, readers, strict=True)}
        if len(set(counts.values())) > 1:
            raise DatasetInvalid(
                "Every array of a .npz dataset needs the same number of rows.",
                details={"rows_per_input": counts},
            )
        widest = max(r.row_bytes for r in readers)
        step = max(1, min(self._batch_rows, (8 * PIECE_BYTES) // max(1, widest)))
        while readers[0].done < readers[0].rows:
            yield [r.take(step, f"Member {n!r}") for n, r in zip(names, readers, strict=True)]


# -- .parquet ------------------------------------------------------------------------------


def _numeric_type(t: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_integer(t) or pa.types.is_floating(t))


def _list_type(t: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t))


def _leaf_type(t: Any) -> Any:
    while _list_type(t):
        t = t.value_type
    return t


class ParquetReader:
    """A .parquet body (spooled): scalar numeric columns are the features of one input (in
    column order); list columns (lists of numbers, nested for more dimensions) one input
    each, named by column."""

    def __init__(self, stream: Stream, batch_rows: int, workdir: Path) -> None:
        self._stream = stream
        self._batch_rows = batch_rows
        self._workdir = workdir
        self.layout = DatasetLayout([None])

    def batches(self) -> Iterator[list[np.ndarray]]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        with spool(self._stream, self._workdir) as handle:
            try:
                # No pre-buffering (it reads whole row groups ahead, several times the data).
                parquet = pq.ParquetFile(handle, pre_buffer=False, buffer_size=PIECE_BYTES)
            except (pa.ArrowException, OSError) as exc:
                raise DatasetInvalid(f"The body is not a readable parquet file: {exc}.") from None
            schema = parquet.schema_arrow
            names = list(schema.names)
            kinds = []
            for column in schema:
                if _numeric_type(column.type):
                    kinds.append("scalar")
                elif _list_type(column.type) and _numeric_type(_leaf_type(column.type)):
                    kinds.append("list")
                else:
                    raise DatasetInvalid(
                        f"Column {column.name!r} is {column.type}; datasets hold numbers "
                        "(numeric columns, or lists of numbers for tensor inputs).",
                        details={"column": column.name},
                    )
            if not names:
                raise DatasetInvalid("The parquet file has no columns.")
            if len(set(kinds)) > 1:
                raise DatasetInvalid(
                    "The parquet file mixes scalar and list columns: use scalar columns (the "
                    "features of one input) or one list column per input.",
                )
            tabular = kinds[0] == "scalar"
            self.layout = DatasetLayout([None], names) if tabular else DatasetLayout(names)
            done = 0
            try:
                for batch in parquet.iter_batches(batch_size=self._batch_rows, use_threads=False):
                    arrays = [
                        self._column(batch.column(i), names[i], done) for i in range(len(names))
                    ]
                    yield [np.column_stack(arrays)] if tabular else arrays
                    done += batch.num_rows
            except pa.ArrowException as exc:
                raise DatasetInvalid(f"The parquet file cannot be read: {exc}.") from None

    def _column(self, column: Any, name: str, first_row: int) -> np.ndarray:
        import pyarrow.compute as pc

        rows = len(column)
        shape: list[int] = []
        current = column
        per_row = 1
        while _list_type(current.type):
            if current.null_count:
                raise self._null(current, name, first_row, per_row)
            lengths = pc.list_value_length(current).to_numpy(zero_copy_only=False)
            if len(lengths) and (lengths != lengths[0]).any():
                at = int(np.argmax(lengths != lengths[0]))
                raise row_error(
                    first_row + at // per_row,
                    f"column {name!r}",
                    "the row's lists differ in length from the first row's; every row needs "
                    "the same shape.",
                    column=name,
                )
            size = int(lengths[0]) if len(lengths) else 0
            shape.append(size)
            per_row *= size
            current = current.flatten()
        if current.null_count:
            raise self._null(current, name, first_row, per_row)
        values = current.to_numpy(zero_copy_only=False)
        return values.reshape((rows, *shape))

    @staticmethod
    def _null(array: Any, name: str, first_row: int, per_row: int) -> DatasetInvalid:
        at = int(np.argmax(array.is_null().to_numpy(zero_copy_only=False)))
        return row_error(
            first_row + at // max(1, per_row),
            f"column {name!r}",
            "a null is not a number.",
            column=name,
        )


class Reader(Protocol):
    layout: DatasetLayout

    def batches(self) -> Iterator[list[np.ndarray]]: ...


def open_reader(
    fmt: str,
    stream: Stream,
    *,
    batch_rows: int,
    workdir: Path,
    max_bytes: int,
    header: bool | None = None,
) -> Reader:
    """The reader of ``fmt`` over ``stream`` (already limited to ``max_bytes``)."""
    if fmt == "npy":
        return NpyReader(stream, batch_rows)
    if fmt == "npz":
        return NpzReader(stream, batch_rows, workdir, max_bytes)
    if fmt == "csv":
        return CsvReader(stream, header)
    if fmt == "jsonl":
        return JsonlReader(stream, batch_rows)
    if fmt == "parquet":
        return ParquetReader(stream, batch_rows, workdir)
    raise DatasetFormatUnknown(f"Unknown dataset format {fmt!r}; use one of {', '.join(FORMATS)}.")


__all__ = [
    "FORMATS",
    "MEDIA_TYPES",
    "CountingStream",
    "Reader",
    "Stream",
    "dataset_format",
    "open_reader",
]

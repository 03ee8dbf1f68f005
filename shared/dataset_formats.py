"""Readers of uploaded datasets: each turns a byte stream into batches of rows (one array per
input), reading its source in pieces so that no body is ever whole in memory.

- ``.npy``: numpy's header, then rows read straight from the stream.
- ``.npz``: a zip (its directory is at the end, so the body is spooled to a file first); each
  member (one per input, named by input) is read row by row, all in step.
- ``.csv``: pyarrow's streaming CSV reader (C++, block by block: Python's csv module parses
  about 50x slower), every column read as text and cast to numbers per block, so a bad cell is
  found with its row and column. A header is detected when the first line is not all numbers.
- ``.jsonl``: one row per line, parsed with orjson: a list (a row of a one-input model) or an
  object ``{input name: value}``.
- ``.parquet``: pyarrow.parquet (the footer is at the end: spooled first), read in batches;
  scalar numeric columns are the features of one input, list columns one input each.

A reader's ``layout`` is known once its first batch is out. Errors are DatasetInvalid naming
the row (0-based over the data rows) and the column.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import math
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np

from shared.dataset_values import NUMERIC_KINDS, DatasetLayout, row_error
from shared.errors import DatasetFormatUnknown, DatasetInvalid, PayloadTooLarge

FORMATS = ("npy", "npz", "csv", "jsonl", "parquet")
MEDIA_TYPES = {
    "application/x-npy": "npy",
    "application/x-npz": "npz",
    "text/csv": "csv",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/vnd.apache.parquet": "parquet",
}
PIECE_BYTES = 1024 * 1024
# A .jsonl line or a .csv first line longer than this is refused rather than buffered.
MAX_LINE_BYTES = 64 * 1024 * 1024


class Stream(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def dataset_format(name: str | None, media_type: str | None) -> str:
    """The format ``?format=`` names, else the one the Content-Type names.

    Raises DatasetFormatUnknown (400) when neither says.
    """
    if name:
        return name
    found = MEDIA_TYPES.get((media_type or "").lower())
    if found is None:
        raise DatasetFormatUnknown(
            "Say the dataset's format: ?format=npy|npz|csv|jsonl|parquet, or a Content-Type of "
            + ", ".join(MEDIA_TYPES)
            + f" (got {media_type or 'none'}).",
            details={"content_type": media_type},
        )
    return found


class CountingStream:
    """Reads from ``stream``, refusing (PayloadTooLarge, 413) past ``max_bytes`` in total."""

    def __init__(self, stream: Stream, max_bytes: int) -> None:
        self._stream = stream
        self._max = max_bytes
        self.count = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self._stream.read(size if size is not None and size >= 0 else PIECE_BYTES)
        self.count += len(data)
        if self.count > self._max:
            raise PayloadTooLarge(
                f"The dataset is over {self._max} bytes (KSCORE_MAX_DATASET_BYTES); split it.",
                details={"limit_bytes": self._max},
            )
        return data

    def readable(self) -> bool:
        return True


def read_exact(stream: Stream, size: int) -> bytearray:
    """``size`` bytes, or fewer only at the end of the stream (read into one buffer, so a
    chunk's bytes are never held twice)."""
    buffer = bytearray(size)
    view = memoryview(buffer)
    done = 0
    while done < size:
        data = stream.read(min(size - done, PIECE_BYTES))
        if not data:
            del view
            del buffer[done:]
            return buffer
        view[done : done + len(data)] = data
        done += len(data)
    return buffer


def spool(stream: Stream, directory: Path) -> IO[bytes]:
    """The stream copied, in pieces, into an anonymous temporary file, rewound."""
    directory.mkdir(parents=True, exist_ok=True)
    handle = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 (the caller closes it)
    try:
        shutil.copyfileobj(stream, handle, PIECE_BYTES)
        handle.seek(0)
    except BaseException:
        handle.close()
        raise
    return handle


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


# -- .csv ----------------------------------------------------------------------------------


class _Prefixed:
    """A stream that first gives back ``prefix``, then reads on from ``stream``, refusing
    bytes that are not UTF-8 (pyarrow would report them only as a failed row, without where)."""

    def __init__(self, prefix: bytes, stream: Stream) -> None:
        self._prefix = prefix
        self._stream = stream
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._offset = 0
        self.closed = False

    def read(self, size: int = -1, /) -> bytes:
        if self._prefix:
            if size is None or size < 0:
                data, self._prefix = self._prefix + self._stream.read(), b""
            else:
                data, self._prefix = self._prefix[:size], self._prefix[size:]
        else:
            data = self._stream.read(size)
        try:
            self._utf8.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            raise DatasetInvalid(
                f"The CSV body is not UTF-8 text (byte {self._offset + exc.start}): save it "
                "as UTF-8.",
                details={"byte": self._offset + exc.start},
            ) from None
        self._offset += len(data)
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True


def _first_line(stream: Stream) -> bytes:
    """Bytes read up to and including the first newline (or the end)."""
    buffer = b""
    while b"\n" not in buffer:
        piece = stream.read(64 * 1024)
        if not piece:
            break
        buffer += piece
        if len(buffer) > MAX_LINE_BYTES:
            raise DatasetInvalid(f"The first line is longer than {MAX_LINE_BYTES} bytes.")
    return buffer


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class CsvReader:
    """A .csv body: numeric columns, one row per line, read by pyarrow in blocks."""

    def __init__(self, stream: Stream, header: bool | None) -> None:
        self._stream = stream
        self._header = header
        self.layout = DatasetLayout([None])

    def batches(self) -> Iterator[list[np.ndarray]]:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        head = _first_line(self._stream)
        line = head.split(b"\n", 1)[0].rstrip(b"\r")
        try:
            fields = next(csv.reader([line.decode("utf-8-sig")]), [])
        except (UnicodeDecodeError, csv.Error) as exc:
            raise DatasetInvalid(f"The first line is not UTF-8 CSV: {exc}.") from None
        if not fields:
            raise DatasetInvalid("The CSV body is empty: send a header and rows, or rows.")
        header = self._header
        if header is None:
            header = not all(_is_number(f) for f in fields)
        columns = [f.strip() for f in fields] if header else None
        self.layout = DatasetLayout([None], columns)
        internal = [f"c{i}" for i in range(len(fields))]
        offset = 2 if header else 1  # physical line number of data row 0
        failure: list[Any] = []

        def invalid_row(row: Any) -> str:
            failure.append(row)
            return "error"

        try:
            reader = pacsv.open_csv(
                _Prefixed(head, self._stream),
                read_options=pacsv.ReadOptions(
                    column_names=internal,
                    skip_rows=1 if header else 0,
                    use_threads=False,
                    block_size=16 * PIECE_BYTES,  # fewer, larger batches: per-column calls
                    encoding="utf8",
                ),
                parse_options=pacsv.ParseOptions(invalid_row_handler=invalid_row),
                convert_options=pacsv.ConvertOptions(
                    column_types={name: pa.string() for name in internal},
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
            done = 0
            for batch in reader:
                yield [self._numbers(batch, done)]
                done += batch.num_rows
        except pa.ArrowInvalid as exc:
            if isinstance(exc.__context__, DatasetInvalid):
                raise exc.__context__ from None
            if failure and getattr(failure[0], "number", None):
                row = failure[0]
                raise row_error(
                    int(row.number) - offset,
                    "",
                    f"{row.actual_columns} columns where the first line has "
                    f"{row.expected_columns}.",
                    expected_columns=row.expected_columns,
                ) from None
            raise DatasetInvalid(f"The CSV body cannot be read: {exc}.") from None

    def _numbers(self, batch: Any, first_row: int) -> np.ndarray:
        """The batch's columns as one (rows, columns) array: int64 when every cell is a whole
        number, else float64. Raises DatasetInvalid naming the first cell that is neither."""
        import pyarrow as pa
        import pyarrow.compute as pc

        columns = []
        for index in range(batch.num_columns):
            text = batch.column(index)
            try:
                values = pc.cast(text, pa.float64())
            except pa.ArrowInvalid:
                text = pc.utf8_trim_whitespace(text)  # " 2" (after ", ") is a number too
                try:
                    values = pc.cast(text, pa.float64())
                except pa.ArrowInvalid:
                    raise self._bad_cell(text, index, first_row) from None
            array = values.to_numpy(zero_copy_only=False)
            if np.abs(array).max(initial=0) >= 2**53 and (array == np.floor(array)).all():
                # Past 2**53 a double loses digits: read such a column as integers if it is.
                with contextlib.suppress(pa.ArrowInvalid):
                    array = pc.cast(text, pa.int64()).to_numpy(zero_copy_only=False)
            columns.append(array)
        if all(c.dtype.kind == "i" or _whole(c) for c in columns):
            columns = [c.astype(np.int64, copy=False) for c in columns]
        return columns[0].reshape(-1, 1) if len(columns) == 1 else np.column_stack(columns)

    def _bad_cell(self, text: Any, index: int, first_row: int) -> DatasetInvalid:
        import pyarrow as pa
        import pyarrow.compute as pc

        name = self.layout.columns[index] if self.layout.columns else index
        for row, value in enumerate(text.to_pylist()):
            try:
                pc.cast(pa.array([value]), pa.float64())
            except pa.ArrowInvalid:
                shown = "an empty cell" if value == "" else repr(value)
                return row_error(
                    first_row + row,
                    f"column {name!r}",
                    f"{shown} is not a number.",
                    column=name,
                )
        return DatasetInvalid(f"Column {name!r} holds a value that is not a number.")


def _whole(column: np.ndarray) -> bool:
    """Whether every value of a float column is a whole number a float64 holds exactly."""
    with np.errstate(invalid="ignore"):
        return bool(
            np.isfinite(column).all()
            and (column == np.floor(column)).all()
            and (np.abs(column) < 2**53).all()
        )


# -- .jsonl --------------------------------------------------------------------------------


def _lines(stream: Stream) -> Iterator[bytes]:
    buffer = b""
    while True:
        piece = stream.read(PIECE_BYTES)
        if not piece:
            break
        buffer += piece
        if b"\n" not in piece:
            if len(buffer) > MAX_LINE_BYTES:
                raise DatasetInvalid(f"A line is longer than {MAX_LINE_BYTES} bytes.")
            continue
        *lines, buffer = buffer.split(b"\n")
        yield from lines
    if buffer:
        yield buffer


class JsonlReader:
    """A .jsonl body: per line a row (a list, for a one-input model) or an object naming
    each input's value."""

    def __init__(self, stream: Stream, batch_rows: int) -> None:
        self._stream = stream
        self._batch_rows = batch_rows
        self.layout = DatasetLayout([None])
        self._named: list[str] | None = None

    def batches(self) -> Iterator[list[np.ndarray]]:
        import orjson

        rows: list[Any] = []
        done = 0
        for line in _lines(self._stream):
            if not line.strip():
                continue  # blank lines (a trailing newline) are not rows
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise row_error(
                    done + len(rows), "", f"the line is not valid JSON ({exc})."
                ) from None
            if not rows and done == 0:
                self._start(row)
            if b"true" in line or b"false" in line:
                # numpy reads true as 1: a cheap look at the bytes finds the rows to check.
                self._refuse_booleans(row, done + len(rows))
            rows.append(row)
            if len(rows) >= self._batch_rows:
                yield self._arrays(rows, done)
                done += len(rows)
                rows = []
        if rows:
            yield self._arrays(rows, done)

    def _refuse_booleans(self, row: Any, index: int) -> None:
        values = list(row.values()) if isinstance(row, dict) else [row]
        names: list[str | None] = list(self._named) if self._named else [None]
        for name, value in zip(names, values, strict=False):
            position, bad = _first_non_number(value)
            if isinstance(bad, bool):
                label = f"column {position}" if position is not None else ""
                if name:
                    label = f"{label} of input {name!r}" if label else f"input {name!r}"
                raise row_error(index, label, f"{_json_text(bad)} is not a number.")

    def _start(self, row: Any) -> None:
        if isinstance(row, dict):
            if not row:
                raise row_error(0, "", "an empty object names no input.")
            self._named = [str(k) for k in row]
            self.layout = DatasetLayout(list(self._named))

    def _arrays(self, rows: list[Any], first_row: int) -> list[np.ndarray]:
        if self._named is None:
            return [self._numbers(rows, first_row, None)]
        names = self._named
        for offset, row in enumerate(rows):
            if not isinstance(row, dict) or set(row) != set(names):
                got = sorted(row) if isinstance(row, dict) else type(row).__name__
                raise row_error(
                    first_row + offset,
                    "",
                    f"the row names {got}; every row must be an object naming the inputs "
                    f"{names}, as the first row does.",
                )
        return [self._numbers([r[n] for r in rows], first_row, n) for n in names]

    def _numbers(self, rows: list[Any], first_row: int, name: str | None) -> np.ndarray:
        where = f"input {name!r}" if name else ""
        try:
            array = np.asarray(rows)
        except (ValueError, TypeError):
            array = None
        if array is not None and array.dtype.kind in "iuf":
            return array
        # Slow path, to say which row: ragged, booleans, nulls, text, objects.
        first_shape: tuple[int, ...] | None = None
        for offset, row in enumerate(rows):
            try:
                item = np.asarray(row)
            except (ValueError, TypeError):
                item = None
            if item is None or (item.dtype == object and _ragged(row)):
                raise row_error(
                    first_row + offset, where, "the row is ragged: its lists differ in length."
                )
            if item.dtype.kind not in "iuf":
                position, value = _first_non_number(row)
                label = f"column {position}" if position is not None else ""
                if name:
                    label = f"{label} of input {name!r}" if label else where
                raise row_error(first_row + offset, label, f"{_json_text(value)} is not a number.")
            if first_shape is None:
                first_shape = item.shape
            elif item.shape != first_shape:
                raise row_error(
                    first_row + offset,
                    where,
                    f"the row has shape {list(item.shape)}, the rows before it "
                    f"{list(first_shape)}; every row needs the same shape.",
                )
        raise DatasetInvalid("The rows are not numbers of one shape.")


def _first_non_number(row: Any) -> tuple[int | None, Any]:
    """The flat position in ``row`` (None for a bare value) and the value of its first
    element that is not a number."""
    if not isinstance(row, list):
        return None, row
    position = 0
    stack: list[Any] = [iter(row)]
    while stack:
        value = next(stack[-1], _END)
        if value is _END:
            stack.pop()
        elif isinstance(value, list):
            stack.append(iter(value))
        elif not _plain_number(value):
            return position, value
        else:
            position += 1
    return None, row


_END = object()


def _ragged(row: Any) -> bool:
    try:
        np.asarray(row, dtype=float)
    except (ValueError, TypeError):
        return isinstance(row, list) and any(isinstance(v, list) for v in row)
    return False


def _plain_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _json_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


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


__all__ = ["FORMATS", "MEDIA_TYPES", "CountingStream", "Reader", "dataset_format", "open_reader"]

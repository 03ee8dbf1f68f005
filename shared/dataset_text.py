"""Text datasets: ``.csv`` through pyarrow's streaming reader, ``.jsonl`` through orjson
(see ``shared.dataset_formats``)."""

from __future__ import annotations

import codecs
import contextlib
import csv
from collections.abc import Iterator
from typing import Any

import numpy as np

from shared.dataset_io import MAX_LINE_BYTES, PIECE_BYTES, Stream
from shared.dataset_values import DatasetLayout, row_error
from shared.errors import DatasetInvalid

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

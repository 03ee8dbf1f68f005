"""Dataset rows as arrays: the checks every upload format shares, how a dataset's inputs meet a
deployment's, the conversion to its dtypes, and the cutting of rows into stored chunks.

Row numbers in every message are 0-based over the whole dataset (header lines not counted);
a column is named by the file's header where it had one, else by its 0-based position.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shared.errors import DatasetInvalid, DatasetMismatch, ScoringInputInvalid
from shared.scoring import (
    _is_string_spec,
    _target_dtype,
    encode_chunk,
    floats_within,
)

NUMERIC_KINDS = "biuf"


@dataclass
class DatasetLayout:
    """What the arrays of a dataset are: one per input.

    ``names`` holds one entry per array (None for the one unnamed array of a .npy, a .csv, a
    .jsonl of lists or a table of scalar columns); ``columns`` names the last axis of that one
    array when the file named its columns (a .csv header, a table's column names).
    """

    names: list[str | None]
    columns: list[str] | None = None


@dataclass(frozen=True)
class InputPlan:
    """How one model input is fed from a dataset: which array, reshaped to which row shape."""

    source: int
    spec: dict[str, Any]
    reshape: tuple[int, ...] | None = None


def row_error(row: int, where: str, message: str, **details: Any) -> DatasetInvalid:
    """``DatasetInvalid`` saying "Row {row}, {where}: {message}" (``where`` may be empty)."""
    place = f"Row {row}, {where}" if where else f"Row {row}"
    return DatasetInvalid(f"{place}: {message}", details={"row": row, **details})


def column_label(layout: DatasetLayout, array: int, flat: int, row_shape: tuple[int, ...]) -> str:
    """How a message names element ``flat`` (index into a row, flattened) of array ``array``."""
    name = layout.names[array] if array < len(layout.names) else None
    if len(row_shape) <= 1:
        column = layout.columns[flat] if layout.columns and flat < len(layout.columns) else flat
        label = f"column {column!r}"
        return f"{label} of input {name!r}" if name else label
    index = list(np.unravel_index(flat, row_shape)) if row_shape else []
    label = f"element {[int(i) for i in index]}"
    return f"{label} of input {name!r}" if name else label


def column_key(layout: DatasetLayout, flat: int, row_shape: tuple[int, ...]) -> str | int:
    """The column's name (from the file's header) or 0-based position, for ``details``."""
    if len(row_shape) <= 1 and layout.columns and flat < len(layout.columns):
        return layout.columns[flat]
    return flat


def _first(mask: np.ndarray) -> tuple[int, int]:
    """Row and flat in-row index of the first True of ``mask`` (shape ``(rows, ...)``)."""
    flat = int(np.argmax(mask.reshape(-1)))
    per_row = max(1, math.prod(mask.shape[1:]))
    return flat // per_row, flat % per_row


def check_numbers(arrays: list[np.ndarray], layout: DatasetLayout, first_row: int) -> None:
    """Refuse arrays that are not numbers, and non-finite floats (no model input takes NaN or
    an infinity). Raises DatasetInvalid naming the global row and the column."""
    for index, array in enumerate(arrays):
        name = layout.names[index] if index < len(layout.names) else None
        if array.dtype.kind not in NUMERIC_KINDS:
            what = f"input {name!r}" if name else "the rows"
            raise DatasetInvalid(
                f"{what[0].upper()}{what[1:]} hold {array.dtype}, not numbers: datasets hold "
                "numeric columns and arrays only.",
                details={"input": name, "dtype": str(array.dtype)},
            )
        if array.dtype.kind == "f" and array.size:
            bad = ~np.isfinite(array)
            if bad.any():
                row, flat = _first(bad)
                value = array.reshape(len(array), -1)[row, flat].item()
                where = column_label(layout, index, flat, array.shape[1:])
                raise row_error(
                    first_row + row,
                    where,
                    f"{value!r} is not a finite number (empty cells, NaN and infinities are "
                    "refused: no model input takes them).",
                    column=column_key(layout, flat, array.shape[1:]),
                )


def _bad_mask(array: np.ndarray, target: np.dtype[Any]) -> np.ndarray | None:
    """Where ``array`` does not convert exactly to ``target`` (``_as_input_dtype``'s rules);
    None when every value does, or when those rules take any value (a boolean input)."""
    if target.kind not in "iuf":
        return None
    with np.errstate(invalid="ignore"):
        if target.kind == "f":
            if array.dtype.kind != "f" or floats_within(array, float(np.finfo(target).max)):
                return None
            return ~np.isfinite(array) | (np.abs(array) > np.finfo(target).max)
        info = np.iinfo(target)
        if array.dtype.kind == "f":
            return (
                ~np.isfinite(array)
                | (array != np.floor(array))
                | (array < info.min)
                | (array > info.max)
            )
        if array.dtype.kind in "iu":
            if np.can_cast(array.dtype, target):
                return None
            return (array < info.min) | (array > info.max)
        return np.ones(array.shape, dtype=bool)


def to_model_inputs(
    arrays: list[np.ndarray], layout: DatasetLayout, plans: list[InputPlan], first_row: int
) -> list[np.ndarray]:
    """The model's input arrays (in model order) from a chunk's arrays, each reshaped and
    converted to its input's dtype exactly (integers whole and in range, floats finite and in
    range). Raises ScoringInputInvalid naming the global row, the column and the input."""
    out = []
    for plan in plans:
        source = arrays[plan.source]
        array = source.reshape((len(source), *plan.reshape)) if plan.reshape else source
        target = _target_dtype(plan.spec)
        bad = _bad_mask(array, target) if array.size else None
        if bad is not None and bad.any():
            row, flat = _first(bad)
            value = array.reshape(len(array), -1)[row, flat].item()
            where = column_label(layout, plan.source, flat, source.shape[1:])
            name = str(plan.spec["name"])
            takes = (
                f"finite numbers up to {float(np.finfo(target).max):g} in size"
                if target.kind == "f"
                else f"whole numbers from {np.iinfo(target).min} to {np.iinfo(target).max}"
            )
            raise ScoringInputInvalid(
                f"Row {first_row + row}, {where}: the value {value!r} does not fit input "
                f"{name!r}, which takes {takes} ({target}).",
                details={
                    "row": first_row + row,
                    "column": column_key(layout, flat, source.shape[1:]),
                    "input": name,
                    "expected_dtype": str(target),
                },
            )
        # _bad_mask applies _as_input_dtype's rules (None: every value converts), so
        # converting is all that is left.
        out.append(array.astype(target, copy=False))
    return out


def _fmt(shape: Iterable[int | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def plan_inputs(
    names: list[str | None], shapes: list[list[int]], specs: list[dict[str, Any]]
) -> list[InputPlan]:
    """How the deployment's inputs ``specs`` take the dataset's arrays (``names`` and per-row
    ``shapes``): the one array feeds a one-input model whatever its name, several arrays are
    matched by name; a row shape may differ from the input's when the numbers per row agree
    (784 columns feed a (28, 28, 1) input). Raises DatasetMismatch saying what differs."""
    spec_names = [str(s["name"]) for s in specs]
    for spec in specs:
        if _is_string_spec(spec):
            raise DatasetMismatch(
                f"Input {spec['name']!r} takes text; datasets hold numbers. Send its rows "
                "as JSON instead.",
                details={"input": spec["name"]},
            )
    if len(names) == 1 and len(specs) == 1:
        sources = [0]
    else:
        if set(names) != set(spec_names) or len(names) != len(spec_names):
            raise DatasetMismatch(
                f"The dataset holds the arrays {names}, the model takes the inputs "
                f"{spec_names}: upload one array per input, named by input (.npz members, "
                ".jsonl objects or parquet list columns).",
                details={"dataset_inputs": names, "expected_inputs": spec_names},
            )
        sources = [names.index(n) for n in spec_names]
    plans = []
    for spec, source in zip(specs, sources, strict=True):
        expected = list(spec.get("shape") or [None])[1:]
        got = list(shapes[source])
        if len(expected) == len(got) and all(
            e is None or e == g for e, g in zip(expected, got, strict=True)
        ):
            plans.append(InputPlan(source, spec))
        elif None not in expected and math.prod(expected) == math.prod(got):
            plans.append(InputPlan(source, spec, tuple(int(e) for e in expected)))
        else:
            raise DatasetMismatch(
                f"Input {spec['name']!r} takes rows of shape {_fmt(expected)}, the dataset's "
                f"rows are {_fmt(got)}.",
                details={"input": spec["name"], "expected_shape": expected, "dataset_shape": got},
            )
    return plans


@dataclass
class IngestResult:
    """What was stored: rows, chunks and their bytes, and each input's row shape and dtype."""

    rows: int = 0
    chunks: int = 0
    bytes: int = 0
    inputs: list[dict[str, Any]] = field(default_factory=list)
    columns: list[str] | None = None


class Chunker:
    """Cuts batches of any size into chunks of exactly ``chunk_rows`` rows (the last may be
    shorter), checks or converts each, encodes it and hands it to ``write(index, bytes)``.

    Holds at most one chunk plus one batch of rows.
    """

    def __init__(
        self,
        layout: Callable[[], DatasetLayout],
        chunk_rows: int,
        write: Callable[[int, bytes], None],
        plans: Callable[[DatasetLayout, list[list[int]]], list[InputPlan]] | None = None,
    ) -> None:
        self._layout = layout
        self._chunk_rows = chunk_rows
        self._write = write
        self._make_plans = plans
        self._plans: list[InputPlan] | None = None
        self._pending: list[list[np.ndarray]] = []
        self._pending_rows = 0
        self._shapes: list[tuple[int, ...]] | None = None
        self._dtypes: list[np.dtype[Any]] = []
        self.result = IngestResult()
        # Of the rows as stored (dtype, shape and values of each chunk's arrays, in order), not
        # of their encoding, which may change (npz chunks also held the time they were written).
        self.rows_sha256 = hashlib.sha256()

    def add(self, batch: list[np.ndarray]) -> None:
        """Take one batch (one array per input, equal rows); raises DatasetInvalid for rows
        whose shape differs from the first rows', and what :meth:`_emit` raises."""
        if not batch or len(batch[0]) == 0:
            return
        first_row = self.result.rows + self._pending_rows
        shapes = [tuple(a.shape[1:]) for a in batch]
        if self._shapes is None:
            self._shapes = shapes
            if self._make_plans is not None:
                self._plans = self._make_plans(self._layout(), [list(s) for s in shapes])
        elif shapes != self._shapes:
            for index, (got, want) in enumerate(zip(shapes, self._shapes, strict=True)):
                if got != want:
                    name = self._layout().names[index]
                    raise row_error(
                        first_row,
                        f"input {name!r}" if name else "",
                        f"the row has shape {_fmt(got)}, the rows before it {_fmt(want)}; "
                        "every row needs the same shape.",
                    )
        self._pending.append(batch)
        self._pending_rows += len(batch[0])
        while self._pending_rows >= self._chunk_rows:
            self._emit(self._take(self._chunk_rows))

    def finish(self) -> IngestResult:
        """Store the last rows; the result. Raises DatasetInvalid when there were no rows."""
        if self._pending_rows:
            self._emit(self._take(self._pending_rows))
        if self.result.rows == 0:
            raise DatasetInvalid("The dataset has no rows: send at least one.")
        layout = self._layout()
        shapes = self._shapes or []
        if self._plans is not None:
            self.result.inputs = [
                {
                    "name": str(p.spec["name"]),
                    "shape": list(p.reshape or shapes[p.source]),
                    "dtype": str(_target_dtype(p.spec)),
                }
                for p in self._plans
            ]
            reshaped = any(p.reshape for p in self._plans)
            self.result.columns = None if reshaped else layout.columns
        else:
            self.result.inputs = [
                {"name": name, "shape": list(shape), "dtype": str(dtype)}
                for name, shape, dtype in zip(layout.names, shapes, self._dtypes, strict=True)
            ]
            self.result.columns = layout.columns
        return self.result

    def _take(self, rows: int) -> list[np.ndarray]:
        taken: list[list[np.ndarray]] = []
        need = rows
        while need:
            batch = self._pending[0]
            size = len(batch[0])
            if size <= need:
                taken.append(batch)
                self._pending.pop(0)
                need -= size
            else:
                taken.append([a[:need] for a in batch])
                self._pending[0] = [a[need:] for a in batch]
                need = 0
        self._pending_rows -= rows
        if len(taken) == 1:
            return taken[0]
        return [np.concatenate(parts) for parts in zip(*taken, strict=True)]

    def _emit(self, arrays: list[np.ndarray]) -> None:
        first_row = self.result.rows
        layout = self._layout()
        check_numbers(arrays, layout, first_row)
        if self._plans is not None:
            arrays = to_model_inputs(arrays, layout, self._plans, first_row)
        else:
            arrays = [np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("=")) for a in arrays]
            self._dtypes = [
                a.dtype if i >= len(self._dtypes) else np.result_type(self._dtypes[i], a.dtype)
                for i, a in enumerate(arrays)
            ]
        for array in arrays:
            self.rows_sha256.update(f"{array.dtype.str}{array.shape}".encode())
            if array.dtype == object:
                self.rows_sha256.update(json.dumps(array.tolist()).encode())
            else:
                self.rows_sha256.update(np.ascontiguousarray(array).data)
        data = encode_chunk(arrays)
        self._write(self.result.chunks, data)
        self.result.chunks += 1
        self.result.rows += len(arrays[0])
        self.result.bytes += len(data)

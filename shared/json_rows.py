"""A JSON scoring body's rows straight into numpy, without a Python object per number.

A 10,000-row body of 28x28x1 images is 70 MB and 7.8 million numbers: parsed into Python
lists (stdlib json or orjson) and stacked by ``np.asarray``, it took ~5 s of the API's time,
most of a JSON job's. Here the ``values`` array of a body ``{"values": [...]}`` (optionally
after WML's ``"fields": [...]``) is checked to be a regular array of plain numbers by its
skeleton (the text with the numbers and blanks removed must be exactly the brackets and commas
of an array of the shape its first elements give), then read as float64 by pyarrow's CSV
reader, one list item per line (C++, multi-threaded: ~0.15 s for those 7.8 million numbers,
against ~0.55 s for ``numpy.fromstring`` and ~4 s for a Python object per number). A small
body (one online request) is read by orjson with its brackets removed, a flat list: one 28x28x1
row took 34 us to parse by orjson, 58 us for ``np.asarray`` to walk its 785 nested lists and
more to free them; the skeleton check and the flat parse take about 40 us together, and under
64 concurrent clients the nested lists were a fifth of the API's time. Anything else (other
keys, ragged rows, strings, ``null``, ``NaN`` tokens, numbers past float64) returns None and
goes through the full parser, whose checks and messages apply.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import orjson

from shared.scoring import floats_within

_BODY = re.compile(
    rb'\A\s*\{\s*(?:"fields"\s*:\s*(\[[^\[\]{}]*\])\s*,\s*)?"values"\s*:\s*(\[.*\])\s*\}\s*\Z',
    re.DOTALL,
)
_BLANKS = b" \t\n\r"
_NUMBER_BYTES = b"0123456789.eE+-"
# One list item per line: brackets become blanks, commas line breaks.
_TO_LINES = bytes.maketrans(b"[],", b"  \n")


def _read_float_lines(text: bytes) -> np.ndarray | None:
    """The float64 numbers of ``text``, one per non-empty line; None if a line is not one
    number. pyarrow is imported here, not with the module: the API starts without it."""
    import pyarrow as pa
    from pyarrow import csv as pa_csv

    try:
        table = pa_csv.read_csv(
            pa.BufferReader(text),
            # A single column (no delimiter, no quotes): a line is one JSON number or nothing.
            read_options=pa_csv.ReadOptions(column_names=["v"], block_size=16 << 20),
            parse_options=pa_csv.ParseOptions(
                delimiter="\x01", quote_char=False, double_quote=False
            ),
            convert_options=pa_csv.ConvertOptions(column_types={"v": pa.float64()}),
        )
    except pa.ArrowInvalid:
        return None
    return table.column(0).to_numpy()


def _read_float_list(text: bytes) -> np.ndarray | None:
    """The float64 numbers of ``text`` (a JSON array of arrays) read by orjson as one flat
    list; None if orjson refuses it (an empty item, two tokens in one item, a bad number)."""
    try:
        return np.array(orjson.loads(b"[" + text.translate(None, b"[]") + b"]"), np.float64)
    except orjson.JSONDecodeError:
        return None


# From this size pyarrow's reader is the faster (it pays a fixed ~100 us per call).
PYARROW_MIN_BYTES = 64 * 1024


def _skeleton_of(shape: list[int]) -> bytes:
    element = b"[" + b"," * (shape[-1] - 1) + b"]"
    for dim in reversed(shape[:-1]):
        element = b"[" + b",".join([element] * dim) + b"]"
    return element


def _shape(skeleton: bytes) -> list[int] | None:
    """The shape of the regular array whose skeleton (brackets and commas) this is, read
    from its first elements; None if it is not one."""
    depth = len(skeleton) - len(skeleton.lstrip(b"["))
    if depth == 0:
        return None
    # Innermost: "[,,,]" holds commas + 1 numbers (no segment is empty: numeric_rows checks).
    end = skeleton.find(b"]")
    inner = skeleton[depth - 1 : end + 1]
    dims = [inner.count(b",") + 1]
    element = b"[" + b"," * (dims[0] - 1) + b"]"
    for level in range(depth - 2, -1, -1):
        at, count = level + 1, 0
        while True:
            if skeleton[at : at + len(element)] != element:
                return None
            at += len(element)
            count += 1
            if skeleton[at : at + 1] == b",":
                at += 1
                continue
            break
        dims.insert(0, count)
        element = b"[" + b",".join([element] * count) + b"]"
    return dims


def numeric_rows(body: bytes) -> dict[str, Any] | None:
    """``{"values": float64 array}`` (with ``"fields"`` if the body had them) for a body that
    is a regular array of plain JSON numbers under ``values``; None for any other body."""
    match = _BODY.match(body)
    if match is None:
        return None
    text = match.group(2)
    skeleton = text.translate(None, _BLANKS + _NUMBER_BYTES)  # one pass over a 70 MB body
    shape = _shape(skeleton)
    if shape is None or len(shape) < 2 or skeleton != _skeleton_of(shape):
        return None  # ragged, not numbers, or one number per row (the ordinary path is fine)
    # pyarrow: each list item is one line; an item of two tokens ("1 2", "1-2") fails to
    # convert, an empty one ("[1,,2]") is an empty line the reader skips, so the count below is
    # short. orjson refuses both.
    if len(text) >= PYARROW_MIN_BYTES:
        flat = _read_float_lines(text.translate(_TO_LINES))
    else:
        flat = _read_float_list(text)
    if flat is None or flat.size != int(np.prod(shape)):
        return None  # a token read otherwise than JSON would
    if not floats_within(flat, 2.0**53 - 1):
        # Past float64 ("1e999"), or an integer float64 cannot hold exactly (an id for an
        # int64 input).
        return None
    payload: dict[str, Any] = {"values": flat.reshape(shape)}
    if match.group(1) is not None:
        try:
            payload["fields"] = orjson.loads(match.group(1))
        except orjson.JSONDecodeError:
            return None
    return payload

"""A JSON scoring body's rows straight into numpy, without a Python object per number.

A 10,000-row body of 28x28x1 images is 70 MB and 7.8 million numbers: parsed into Python
lists (stdlib json or orjson) and stacked by ``np.asarray``, it took ~5 s of the API's time,
most of a JSON job's. Here the ``values`` array of a body ``{"values": [...]}`` (optionally
after WML's ``"fields": [...]``) is checked to be a regular array of plain numbers by its
skeleton (the text with the numbers and blanks removed must be exactly the brackets and commas
of an array of the shape its first elements give), then read by numpy's C text parser as
float64. Anything else (other keys, ragged rows, strings, ``null``, ``NaN`` tokens, numbers
past float64) returns None and goes through the full parser, whose checks and messages apply.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import numpy as np
import orjson

_BODY = re.compile(
    rb'\A\s*\{\s*(?:"fields"\s*:\s*(\[[^\[\]{}]*\])\s*,\s*)?"values"\s*:\s*(\[.*\])\s*\}\s*\Z',
    re.DOTALL,
)
_BLANKS = b" \t\n\r"
_NUMBER_BYTES = b"0123456789.eE+-"
_EMPTY_ITEMS = (b"[,", b",,", b",]", b"[]")
_TO_BLANKS = bytes.maketrans(b"[],", b"   ")
# Below this the ordinary parser is as fast, and keeps integers exact.
MIN_FAST_BYTES = 64 * 1024


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
    if len(body) < MIN_FAST_BYTES:
        return None
    match = _BODY.match(body)
    if match is None:
        return None
    text = match.group(2)
    # Every list item holds something: then, with the count below, each item is exactly one
    # number (a second token in an item, "1 2" or "1-2", makes one number too many).
    packed = text.translate(None, _BLANKS)
    if any(pair in packed for pair in _EMPTY_ITEMS):
        return None
    skeleton = packed.translate(None, _NUMBER_BYTES)
    shape = _shape(skeleton)
    if shape is None or len(shape) < 2 or skeleton != _skeleton_of(shape):
        return None  # ragged, not numbers, or one number per row (the ordinary path is fine)
    try:
        with warnings.catch_warnings():
            # numpy stops at a token it cannot read, and says so with a warning.
            warnings.simplefilter("error")
            flat = np.fromstring(text.translate(_TO_BLANKS), dtype=np.float64, sep=" ")
    except (ValueError, DeprecationWarning):
        return None
    if flat.size != int(np.prod(shape)) or not np.isfinite(flat).all():
        return None  # a token read otherwise than JSON would; or past float64 ("1e999")
    if flat.size and np.abs(flat).max() >= 2.0**53:
        return None  # an integer float64 cannot hold exactly (an id for an int64 input)
    payload: dict[str, Any] = {"values": flat.reshape(shape)}
    if match.group(1) is not None:
        try:
            payload["fields"] = orjson.loads(match.group(1))
        except orjson.JSONDecodeError:
            return None
    return payload

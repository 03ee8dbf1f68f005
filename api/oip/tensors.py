"""Tensors of the Open Inference Protocol in and out: JSON ``data`` (flat or nested, row-major)
and the binary tensor data extension (Triton's: a JSON header of
``Inference-Header-Content-Length`` bytes, then each binary tensor's bytes in order)."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

from api.inference import NUMPY_DTYPES, Output, json_values
from shared.errors import MalformedRequest

HEADER_LENGTH = "Inference-Header-Content-Length"

# Which numpy kinds JSON data may parse to for each datatype family.
_KINDS = {"BOOL": "b", "INT": "iu", "UINT": "iu", "FP": "iuf"}


def _family(datatype: str) -> str:
    return next(f for f in ("BOOL", "UINT", "INT", "FP") if datatype.startswith(f))


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """The JSON header and the binary rest of a request body (all JSON without the header).

    Raises MalformedRequest (400) for a header length that is not a number within the body.
    """
    if header_length is None:
        return body, b""
    try:
        n = int(header_length)
    except ValueError:
        n = -1
    if not 0 <= n <= len(body):
        raise MalformedRequest(f"{HEADER_LENGTH} must be a byte count within the body.")
    return body[:n], body[n:]


def _elements(shape: list[int]) -> int:
    count = 1
    for d in shape:
        count *= d
    return count


def decode_input(tensor: dict[str, Any], binary: memoryview, offset: int) -> tuple[Any, int]:
    """One input tensor as an array of its shape, and the offset past its binary data.

    Raises MalformedRequest (400) when its data does not match its shape or datatype.
    """
    name, shape, datatype = tensor["name"], list(tensor["shape"]), tensor["datatype"]
    parameters = tensor.get("parameters") or {}
    size = parameters.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise MalformedRequest(
                f"Input {name!r}: binary_data_size {size!r} runs past the request body."
            )
        array = _from_bytes(name, datatype, bytes(binary[offset : offset + size]))
        offset += size
    elif "data" in tensor:
        array = _from_json(name, datatype, tensor["data"])
    else:
        raise MalformedRequest(f"Input {name!r} has neither data nor binary_data_size.")
    if array.size != _elements(shape):
        raise MalformedRequest(
            f"Input {name!r} has {array.size} elements, but its shape {shape} holds "
            f"{_elements(shape)}."
        )
    return array.reshape(shape), offset


def _from_json(name: str, datatype: str, data: Any) -> np.ndarray:
    if datatype == "BYTES":
        array = np.asarray(data, dtype=object).reshape(-1)
        if not all(isinstance(v, str) for v in array):
            raise MalformedRequest(f"Input {name!r} is BYTES: its data must be strings.")
        return np.asarray(array.tolist(), dtype=str)
    try:
        array = np.asarray(data)
    except ValueError:
        raise MalformedRequest(f"Input {name!r}: nested data must not be ragged.") from None
    if array.size and array.dtype.kind not in _KINDS[_family(datatype)]:
        raise MalformedRequest(f"Input {name!r} is {datatype}: its data must be such numbers.")
    # The scoring path casts to the model input's dtype exactly (it refuses what does not fit).
    return array.reshape(-1)


def _from_bytes(name: str, datatype: str, raw: bytes) -> np.ndarray:
    if datatype == "BYTES":
        items, pos = [], 0
        while pos < len(raw):
            if pos + 4 > len(raw):
                raise MalformedRequest(f"Input {name!r}: truncated BYTES element.")
            (length,) = struct.unpack_from("<I", raw, pos)
            pos += 4
            if pos + length > len(raw):
                raise MalformedRequest(f"Input {name!r}: truncated BYTES element.")
            try:
                items.append(raw[pos : pos + length].decode("utf-8"))
            except UnicodeDecodeError:
                raise MalformedRequest(f"Input {name!r}: BYTES must be UTF-8 text.") from None
            pos += length
        return np.asarray(items, dtype=str)
    dtype = np.dtype(NUMPY_DTYPES[datatype]).newbyteorder("<")
    if len(raw) % dtype.itemsize:
        raise MalformedRequest(f"Input {name!r}: {len(raw)} bytes is not a whole {datatype} count.")
    return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))


def _to_bytes(output: Output) -> bytes:
    if output.datatype == "BYTES":
        parts = []
        for value in output.array.reshape(-1):
            encoded = str(value).encode("utf-8")
            parts.append(struct.pack("<I", len(encoded)) + encoded)
        return b"".join(parts)
    dtype = np.dtype(NUMPY_DTYPES[output.datatype]).newbyteorder("<")
    return output.array.astype(dtype).tobytes()


def encode_response(
    header: dict[str, Any], outputs: list[tuple[Output, bool]]
) -> tuple[bytes, int | None]:
    """The response body for ``outputs`` (each with whether it goes binary), and the JSON
    header's length when some output is binary (for ``Inference-Header-Content-Length``)."""
    tensors, blobs = [], []
    for output, binary in outputs:
        tensor: dict[str, Any] = {
            "name": output.name,
            "datatype": output.datatype,
            "shape": list(output.array.shape),
        }
        if binary:
            blob = _to_bytes(output)
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = json_values(output.array.reshape(-1))
        tensors.append(tensor)
    text = json.dumps({**header, "outputs": tensors}, separators=(",", ":")).encode()
    if not blobs:
        return text, None
    return text + b"".join(blobs), len(text)

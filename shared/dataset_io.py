"""Reading an upload's bytes: the format it is in, its size limit, exact reads and spooling."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import IO, Protocol

from shared.errors import DatasetFormatUnknown, PayloadTooLarge

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

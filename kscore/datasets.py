"""Datasets on the client: ``client.datasets``, uploads streamed from a file or from memory.

    dataset = client.datasets.upload("rows.parquet", deployment_id=deployment["id"])
    job = client.jobs.submit_dataset(deployment["id"], dataset["id"])

A path is streamed as it is (its format from the suffix); a numpy array goes as ``.npy``
written piece by piece from the array's memory (no copy of it in bytes); a dict of arrays
as ``.npz`` and a pandas DataFrame as ``.parquet``, each written to a temporary file first
(pandas and pyarrow are needed only for DataFrames).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kscore.errors import KscoreError

if TYPE_CHECKING:
    from kscore.client import Client, Record, Records

__all__ = ["AUTO_DATASET_BYTES", "SUFFIX_FORMATS", "Datasets", "format_of", "is_dataframe"]

SUFFIX_FORMATS = {
    ".npy": "npy",
    ".npz": "npz",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
MEDIA_TYPES = {
    "npy": "application/x-npy",
    "npz": "application/x-npz",
    "csv": "text/csv",
    "jsonl": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
}
# jobs.submit sends an array this large (or any DataFrame) as a dataset rather than a body.
AUTO_DATASET_BYTES = 8 * 1024 * 1024
_PIECE_BYTES = 4 * 1024 * 1024
_ROW_GROUP_BYTES = 32 * 1024 * 1024


def format_of(path: str | os.PathLike[str]) -> str:
    """The dataset format a file's suffix names. Raises KscoreError for any other suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIX_FORMATS:
        raise KscoreError(
            f"Cannot tell the format of {Path(path).name!r} from its suffix: use one of "
            f"{', '.join(SUFFIX_FORMATS)} (or pass format=)."
        )
    return SUFFIX_FORMATS[suffix]


def is_dataframe(data: Any) -> bool:
    """Whether ``data`` is a pandas DataFrame (without importing pandas)."""
    return type(data).__name__ == "DataFrame" and type(data).__module__.startswith("pandas")


def _is_array(data: Any) -> bool:
    return type(data).__module__ == "numpy" and hasattr(data, "dtype")


def _npy_pieces(array: Any) -> tuple[int, Iterator[bytes]]:
    """The .npy file of ``array`` as its length and an iterator of pieces (its header, then
    slices of its memory), so a large array is never copied whole into bytes."""
    import io

    import numpy

    array = numpy.ascontiguousarray(array)
    if array.dtype.kind not in "biuf":
        raise KscoreError(f"A dataset holds numbers; this array holds {array.dtype}.")
    header = io.BytesIO()
    numpy.lib.format.write_array_header_1_0(
        header, numpy.lib.format.header_data_from_array_1_0(array)
    )
    head = header.getvalue()
    data = memoryview(array.reshape(-1).view(numpy.uint8))

    def pieces() -> Iterator[bytes]:
        yield head
        for start in range(0, len(data), _PIECE_BYTES):
            yield bytes(data[start : start + _PIECE_BYTES])

    return len(head) + array.nbytes, pieces()


def _file_pieces(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while piece := handle.read(_PIECE_BYTES):
            yield piece


class Datasets:
    """Uploaded input rows: ``client.datasets`` (a kscore extension to WML)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def upload(
        self,
        source: Any,
        *,
        format: str | None = None,
        name: str | None = None,
        deployment_id: str | None = None,
        retention_days: float | None = None,
        header: bool | None = None,
    ) -> Record:
        """Upload rows as a dataset; its document (``id``, ``rows``, ``inputs``...).

        ``source`` is a path (.npy, .npz, .csv, .jsonl, .parquet; ``format`` overrides the
        suffix), a numpy array (sent as .npy), a dict of arrays named by input (.npz) or a
        pandas DataFrame (.parquet: numeric columns are one input's features; columns of
        1-D arrays one input each). ``deployment_id`` checks every row against that
        deployment's inputs on the server as it streams in; ``header`` says whether a CSV's
        first line names its columns (default: detected). Raises KscoreError for a source of
        no known kind, UnprocessableError (422) naming the row and column of a bad value,
        PayloadTooLargeError (413) past the server's KSCORE_MAX_DATASET_BYTES.
        """
        params = {
            "name": name,
            "deployment_id": deployment_id,
            "retention_days": retention_days,
            "header": None if header is None else str(header).lower(),
        }
        if isinstance(source, str | os.PathLike):
            path = Path(source)
            fmt = format or format_of(path)
            size = path.stat().st_size
            return self._send(fmt, size, _file_pieces(path), params)
        if _is_array(source):
            size, pieces = _npy_pieces(source)
            return self._send("npy", size, pieces, params)
        with tempfile.TemporaryDirectory(prefix="kscore-") as directory:
            if is_dataframe(source):
                path = Path(directory) / "rows.parquet"
                # The server holds a row group at a time: keep them near 32 MiB.
                row_bytes = int(source.memory_usage(index=False, deep=True).sum()) // max(
                    1, len(source)
                )
                source.to_parquet(
                    path, index=False, row_group_size=max(1, _ROW_GROUP_BYTES // max(1, row_bytes))
                )
                fmt = "parquet"
            elif isinstance(source, dict) and all(_is_array(v) for v in source.values()):
                import numpy

                path = Path(directory) / "rows.npz"
                numpy.savez(path, **{str(k): v for k, v in source.items()})
                fmt = "npz"
            else:
                raise KscoreError(
                    "Upload a path, a numpy array, a dict of arrays named by input or a "
                    f"pandas DataFrame, not {type(source).__name__}."
                )
            return self._send(fmt, path.stat().st_size, _file_pieces(path), params)

    def _send(self, fmt: str, size: int, pieces: Iterator[bytes], params: dict[str, Any]) -> Record:
        from kscore.client import _clean, _json

        query = _clean({"format": fmt, **params})
        headers = {"Content-Type": MEDIA_TYPES[fmt], "Content-Length": str(size)}
        response = self._client.request(
            "POST", "/api/v1/datasets", content=pieces, headers=headers, params=query
        )
        return _json(response)

    def get(self, dataset_id: str) -> Record:
        """One dataset's document."""
        from kscore.client import _segment

        return self._client.get_json(f"/api/v1/datasets/{_segment(dataset_id)}")

    def list(self, limit: int | None = None) -> Records:
        """The datasets, newest first (all, or the first ``limit``)."""
        return self._client.paginate("/api/v1/datasets", limit=limit)

    def delete(self, dataset_id: str) -> None:
        """Delete a dataset (ConflictError ``dataset_in_use`` while a job reads it)."""
        from kscore.client import _segment

        self._client.request("DELETE", f"/api/v1/datasets/{_segment(dataset_id)}")

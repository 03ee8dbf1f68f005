"""Job results in the formats the server writes: which format a file name means, and the
bytes of a result as Python objects (numpy, pandas) where those libraries are installed.

numpy, pandas and pyarrow are optional for the client (``pip install 'kscore[data]'``):
without them a result comes back as the bytes the server sent.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

# The server's result formats (?format=), each with its file extension.
RESULT_FORMATS = ("json", "jsonl", "csv", "npy", "npz", "parquet")
_SUFFIXES = {
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".npy": "npy",
    ".npz": "npz",
    ".parquet": "parquet",
    ".pq": "parquet",
}
TEXT_FORMATS = ("json", "jsonl", "csv")


def check_format(fmt: str) -> str:
    """``fmt`` if the server writes it; ValueError naming the formats otherwise."""
    if fmt not in RESULT_FORMATS:
        raise ValueError(f"No result format {fmt!r}; the formats are {', '.join(RESULT_FORMATS)}.")
    return fmt


def format_for_path(path: str | Path | None) -> str | None:
    """The result format a file name's suffix names (``preds.csv`` -> ``csv``), else None."""
    if path is None:
        return None
    return _SUFFIXES.get(Path(path).suffix.lower())


def decode(data: bytes, fmt: str) -> Any:
    """A result body as Python objects.

    json -> the dict; jsonl -> a list of dicts (one per row); npy -> a numpy array; npz -> a
    dict of numpy arrays by name; csv and parquet -> a pandas DataFrame. Where numpy (npy,
    npz) or pandas (csv, parquet; parquet needs pyarrow too) is not installed, the bytes as
    they came.
    """
    if fmt == "json":
        return json.loads(data)
    if fmt == "jsonl":
        return [json.loads(line) for line in data.splitlines() if line.strip()]
    if fmt in ("npy", "npz"):
        try:
            import numpy as np
        except ImportError:
            return data
        if fmt == "npy":
            return np.load(io.BytesIO(data), allow_pickle=False)
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    try:
        import pandas as pd
    except ImportError:
        return data
    if fmt == "csv":
        return pd.read_csv(io.BytesIO(data))
    try:
        return pd.read_parquet(io.BytesIO(data))
    except ImportError:  # pandas without a parquet engine
        return data

"""Each worker process keeps loaded models in a bounded LRU cache keyed by sha256 and file
name (the name decides how the bytes are read: the bytes of a valid .h5 stored under a .keras
name are refused, even after the same bytes loaded as .h5); each machine keeps model files in a
local directory, fetched from Redis once."""

from __future__ import annotations

import gc
import logging
import shutil
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

from shared.blob_store import BlobStore
from shared.keras_file import extract_model_file

if TYPE_CHECKING:
    from workers.model_loader import LoadedModel

log = logging.getLogger(__name__)


class ModelCache:
    """Loaded models of this process, at most ``capacity`` of them."""

    def __init__(
        self, blobs: BlobStore, local_dir: Path, capacity: int, direct_call_max_rows: int
    ) -> None:
        self._blobs = blobs
        self._dir = local_dir
        self._capacity = capacity
        self._direct = direct_call_max_rows
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._models)

    def __contains__(self, sha256: str) -> bool:
        """Whether some file with these bytes is loaded in this process."""
        return any(key.startswith(sha256 + "/") for key in self._models)

    def local_file(self, sha256: str, filename: str) -> tuple[Path, str]:
        """The model file on this machine (fetching the blob first if needed), unpacked."""
        folder = self._dir / sha256
        upload = folder / Path(filename).name
        if not upload.exists():
            started = time.perf_counter()
            self._blobs.write_to(sha256, upload)
            log.info(
                "model file fetched sha256=%s seconds=%.3f", sha256, time.perf_counter() - started
            )
        return extract_model_file(upload, upload.name, folder / "extracted")

    def prune_local_files(self) -> list[str]:
        """Remove local copies of model files Redis no longer stores (their models are gone)."""
        removed: list[str] = []
        if not self._dir.is_dir():
            return removed
        for folder in self._dir.iterdir():
            if folder.is_dir() and self._blobs.info(folder.name) is None:
                shutil.rmtree(folder, ignore_errors=True)  # another process may prune it too
                removed.append(folder.name)
                log.info("model file pruned sha256=%s", folder.name)
        return removed

    def get(self, sha256: str, filename: str) -> LoadedModel:
        """The loaded model, loading it on first use and evicting the least recently used."""
        key = f"{sha256}/{Path(filename).name}"
        with self._lock:
            model = self._models.get(key)
            if model is not None:
                self._models.move_to_end(key)
                return model
            from workers.model_loader import load_model

            path, inner = self.local_file(sha256, filename)
            started = time.perf_counter()
            model = load_model(path, inner, direct_call_max_rows=self._direct)
            log.info(
                "model loaded sha256=%s loader=%s seconds=%.3f",
                sha256,
                model.loader,
                time.perf_counter() - started,
            )
            self._models[key] = model
            while len(self._models) > self._capacity:
                evicted, _ = self._models.popitem(last=False)
                log.info("model evicted sha256=%s", evicted.split("/", 1)[0])
            # TensorFlow's and the model's millions of long-lived objects out of the cyclic
            # collector's reach: otherwise its full collections, triggered by scoring's short
            # lived allocations, took a third of the online batcher's time. Unfrozen first, so
            # the cycles of a model evicted meanwhile are collected, not kept for good.
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            return model

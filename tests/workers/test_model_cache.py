"""The per-process model cache: bounded LRU by sha256, model files fetched once per machine."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import redis

from shared.blob_store import BlobStore
from shared.keys import Keys
from shared.settings import Settings
from tests import keras_files as kf
from workers.model_cache import ModelCache


@pytest.fixture
def blobs(settings: Settings, redis_client: redis.Redis) -> BlobStore:
    return BlobStore(redis_client, Keys(settings.key_prefix + "-cache"), 1024)


def folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def stored(blobs: BlobStore, path: Path) -> str:
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    blobs.put_file(path, sha, path.stat().st_size, ref="test/" + sha)
    return sha


def test_lru_keeps_at_most_capacity_and_evicts_the_least_recent(
    blobs: BlobStore, tmp_path: Path
) -> None:
    files = [
        kf.tf_keras_h5_file(folder(tmp_path / "a")),
        kf.sigmoid_binary_h5_file(folder(tmp_path / "b")),
        kf.keras3_keras_file(folder(tmp_path / "c")),
    ]
    shas = [stored(blobs, f) for f in files]
    cache = ModelCache(blobs, tmp_path / "local", capacity=2, direct_call_max_rows=64)
    first = cache.get(shas[0], files[0].name)
    cache.get(shas[1], files[1].name)
    assert cache.get(shas[0], files[0].name) is first  # a hit, and now the most recent
    cache.get(shas[2], files[2].name)
    assert len(cache) == 2
    assert shas[0] in cache and shas[2] in cache and shas[1] not in cache
    x = np.ones((2, 4), dtype=np.float32)
    np.testing.assert_allclose(first.predict([x])[0], kf.expected_dense_softmax(x), rtol=1e-5)


def test_model_file_is_fetched_once_per_machine(blobs: BlobStore, tmp_path: Path) -> None:
    path = kf.tf_keras_h5_file(tmp_path)
    sha = stored(blobs, path)
    local = tmp_path / "local"
    ModelCache(blobs, local, capacity=1, direct_call_max_rows=64).get(sha, path.name)
    assert (local / sha / path.name).read_bytes() == path.read_bytes()
    # Another process on this machine (a second cache on the same directory) needs no Redis
    # copy any more: take it away and it still loads.
    blobs.release(sha, "test/" + sha)
    assert blobs.info(sha) is None
    other = ModelCache(blobs, local, capacity=1, direct_call_max_rows=64).get(sha, path.name)
    assert other.predict([np.zeros((1, 4), np.float32)])[0].shape == (1, 3)


def test_local_files_of_deleted_models_are_pruned(blobs: BlobStore, tmp_path: Path) -> None:
    kept_file, gone_file = (
        kf.tf_keras_h5_file(folder(tmp_path / "k")),
        kf.sigmoid_binary_h5_file(folder(tmp_path / "g")),
    )
    kept, gone = stored(blobs, kept_file), stored(blobs, gone_file)
    local = tmp_path / "local"
    cache = ModelCache(blobs, local, capacity=2, direct_call_max_rows=64)
    cache.local_file(kept, kept_file.name)
    cache.local_file(gone, gone_file.name)
    blobs.release(gone, "test/" + gone)
    assert cache.prune_local_files() == [gone]
    assert (local / kept / kept_file.name).exists() and not (local / gone).exists()


def test_corrupt_blob_is_never_written_locally(
    blobs: BlobStore, redis_client: redis.Redis, settings: Settings, tmp_path: Path
) -> None:
    path = kf.tf_keras_h5_file(tmp_path)
    sha = stored(blobs, path)
    redis_client.set(Keys(settings.key_prefix + "-cache").blob_chunk(sha, 0), b"rotten")
    cache = ModelCache(blobs, tmp_path / "local", capacity=1, direct_call_max_rows=64)
    with pytest.raises(OSError, match="corrupt"):
        cache.get(sha, path.name)
    assert not (tmp_path / "local" / sha / path.name).exists()
    assert not list((tmp_path / "local" / sha).glob(".partial-*"))

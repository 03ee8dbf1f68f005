"""Content-addressed blobs on a real Redis: chunks, dedupe, references, release, damage."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from shared.blob_store import BlobLost, BlobStore
from shared.keys import Keys
from shared.settings import Settings

CHUNK = 1024


@pytest.fixture
def keys(settings: Settings) -> Keys:
    """A prefix of this test's own: blobs are shared by every instance of a prefix."""
    return Keys(f"{settings.key_prefix}-blobs-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def blobs(redis_client: redis.Redis, keys: Keys) -> BlobStore:
    return BlobStore(redis_client, keys, CHUNK)


def a_file(directory: Path, size: int) -> tuple[Path, str]:
    path = directory / f"blob-{uuid.uuid4().hex}.bin"
    path.write_bytes(os.urandom(size))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def blob_keys(client: redis.Redis, keys: Keys, sha: str) -> set[str]:
    return {k.decode() for k in client.scan_iter(keys.blob_meta(sha) + "*")}


def test_a_file_is_stored_in_chunks_and_read_back(
    blobs: BlobStore, keys: Keys, redis_client: redis.Redis, tmp_path: Path
) -> None:
    path, sha = a_file(tmp_path, 2 * CHUNK + 100)
    info = blobs.put_file(path, sha, path.stat().st_size, ref="i/m1")
    assert (info.sha256, info.size, info.chunks) == (sha, 2 * CHUNK + 100, 3)
    assert blobs.info(sha) == info
    assert [len(c) for c in blobs.iter_chunks(sha)] == [CHUNK, CHUNK, 100]
    assert b"".join(blobs.iter_chunks(sha)) == path.read_bytes()
    assert redis_client.strlen(keys.blob_chunk(sha, 0)) == CHUNK
    copy = blobs.write_to(sha, tmp_path / "out" / "copy.bin")
    assert copy.read_bytes() == path.read_bytes()
    assert blobs.refs(sha) == {"i/m1"}


def test_the_same_bytes_are_stored_once_and_not_read_again(
    blobs: BlobStore, keys: Keys, redis_client: redis.Redis, tmp_path: Path
) -> None:
    path, sha = a_file(tmp_path, CHUNK + 1)
    first = blobs.put_file(path, sha, CHUNK + 1, ref="i/m1")
    stored = blob_keys(redis_client, keys, sha)
    # The second writer never opens its file: the blob is complete already.
    second = blobs.put_file(tmp_path / "does-not-exist", sha, CHUNK + 1, ref="j/m2")
    assert second == first
    assert blob_keys(redis_client, keys, sha) == stored
    assert blobs.refs(sha) == {"i/m1", "j/m2"}


def test_the_last_release_deletes_the_blob(
    blobs: BlobStore, keys: Keys, redis_client: redis.Redis, tmp_path: Path
) -> None:
    path, sha = a_file(tmp_path, 3 * CHUNK)
    for ref in ("i/a", "i/b"):
        blobs.put_file(path, sha, 3 * CHUNK, ref=ref)
    assert blobs.release(sha, "i/a") is False
    assert blobs.info(sha) is not None and blobs.refs(sha) == {"i/b"}
    assert blobs.release(sha, "i/b") is True
    assert blobs.info(sha) is None
    assert blob_keys(redis_client, keys, sha) == set()
    with pytest.raises(FileNotFoundError, match="no longer stored"):
        next(blobs.iter_chunks(sha))


def test_a_blob_without_its_meta_is_incomplete_and_released_whole(
    blobs: BlobStore, keys: Keys, redis_client: redis.Redis
) -> None:
    sha = "0" * 64
    for n in range(3):
        redis_client.set(keys.blob_chunk(sha, n), b"x")
    redis_client.sadd(keys.blob_refs(sha), "i/writer")
    assert blobs.info(sha) is None
    with pytest.raises(FileNotFoundError):
        next(blobs.iter_chunks(sha))
    assert blobs.release(sha, "i/writer") is True
    assert blob_keys(redis_client, keys, sha) == set()


def test_a_missing_chunk_or_corrupt_bytes_are_refused(
    blobs: BlobStore, keys: Keys, redis_client: redis.Redis, tmp_path: Path
) -> None:
    path, sha = a_file(tmp_path, 2 * CHUNK)
    blobs.put_file(path, sha, 2 * CHUNK, ref="i/m")
    dest = tmp_path / "cache" / "model.bin"

    redis_client.set(keys.blob_chunk(sha, 1), b"not the bytes that were stored")
    with pytest.raises(OSError, match="corrupt"):
        blobs.write_to(sha, dest)
    assert not dest.exists() and list(dest.parent.iterdir()) == []

    redis_client.delete(keys.blob_chunk(sha, 1))
    with pytest.raises(FileNotFoundError, match="lost part 1"):
        blobs.write_to(sha, dest)
    assert not dest.exists()


def test_a_failed_write_releases_its_reference_and_leaves_nothing(
    blobs: BlobStore,
    keys: Keys,
    redis_client: redis.Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, sha = a_file(tmp_path, 4 * CHUNK)
    real_set = redis_client.set
    written: list[str] = []

    def failing_set(name: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        if len(written) == 2:
            raise redis.ConnectionError("injected fault: Redis went away mid-upload")
        written.append(name)
        return real_set(name, value, *args, **kwargs)

    monkeypatch.setattr(redis_client, "set", failing_set)
    with pytest.raises(redis.ConnectionError, match="injected"):
        blobs.put_file(path, sha, 4 * CHUNK, ref="i/m")
    assert len(written) == 2
    assert blob_keys(redis_client, keys, sha) == set()


def test_a_blob_is_not_sealed_when_a_chunk_vanished_while_writing(
    blobs: BlobStore,
    keys: Keys,
    redis_client: redis.Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, sha = a_file(tmp_path, 3 * CHUNK)
    real_set = redis_client.set

    def evicting_set(name: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        result = real_set(name, value, *args, **kwargs)
        if name == keys.blob_chunk(sha, 2):
            redis_client.delete(keys.blob_chunk(sha, 1))  # as an eviction would
        return result

    monkeypatch.setattr(redis_client, "set", evicting_set)
    with pytest.raises(BlobLost, match="Part 1"):
        blobs.put_file(path, sha, 3 * CHUNK, ref="i/m")
    assert blobs.info(sha) is None
    assert blob_keys(redis_client, keys, sha) == set()


def test_a_writer_whose_reference_was_dropped_does_not_seal(
    blobs: BlobStore,
    keys: Keys,
    redis_client: redis.Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, sha = a_file(tmp_path, 2 * CHUNK)
    real_set = redis_client.set

    def releasing_set(name: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        result = real_set(name, value, *args, **kwargs)
        if name == keys.blob_chunk(sha, 1):
            redis_client.srem(keys.blob_refs(sha), "i/m")  # e.g. a manual cleanup
        return result

    monkeypatch.setattr(redis_client, "set", releasing_set)
    with pytest.raises(BlobLost, match="was released"):
        blobs.put_file(path, sha, 2 * CHUNK, ref="i/m")
    assert blobs.info(sha) is None
    assert blob_keys(redis_client, keys, sha) == set()

"""Content-addressed file storage in Redis: one blob per sha256, kept in fixed-size chunks.

Large model files never become one huge Redis value, and neither side ever holds a whole
file in memory: writes stream from a local file, reads stream to one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import redis
from redis.client import Pipeline

from shared.keys import Keys
from shared.lua import source
from shared.timeutil import now

log = logging.getLogger(__name__)

_READ_BLOCK = 1024 * 1024


class BlobLost(RuntimeError):
    """A blob's writer lost its reference while writing (a bug or a manual cleanup)."""


@dataclass(frozen=True)
class BlobInfo:
    """A complete blob: its sha256 (hex), size in bytes and number of chunks."""

    sha256: str
    size: int
    chunks: int


class BlobStore:
    """Chunked, deduplicated blobs with a reference set per blob.

    A blob lives while its reference set is not empty. Writers add their reference before they
    look at or write the blob, and the last release deletes it in one Lua script, so a blob
    someone refers to is never deleted under them (``shared/lua/blob_*.lua``).
    """

    def __init__(self, client: redis.Redis, keys: Keys, chunk_bytes: int) -> None:
        self._r = client
        self._keys = keys
        self._chunk_bytes = chunk_bytes
        self._release = client.register_script(source("blob_release.lua"))
        self._seal = client.register_script(source("blob_seal.lua"))

    def info(self, sha256: str) -> BlobInfo | None:
        """The blob's size and chunk count, or None when it is not (fully) stored."""
        return _info(sha256, self._r.hgetall(self._keys.blob_meta(sha256)))  # type: ignore[arg-type]

    def refs(self, sha256: str) -> set[str]:
        """The references (``instance/model_id``) that keep the blob alive."""
        members = self._r.smembers(self._keys.blob_refs(sha256))
        return {m.decode() for m in members}  # type: ignore[union-attr]

    def put_file(self, path: Path, sha256: str, size: int, *, ref: str) -> BlobInfo:
        """Take reference ``ref`` on the blob ``sha256`` and make sure it is stored, reading
        the local file ``path`` (``size`` bytes) only when the blob is not already complete.

        On success the caller owns ``ref`` and gives it back with ``release``; on failure the
        reference is released here. Returns the stored blob. Raises OSError when ``path``
        cannot be read, BlobLost when ``ref`` was released while the file was written,
        redis.RedisError when Redis fails.
        """
        # Reference first, then look: a concurrent release of the last other reference either
        # ran before (the blob is gone and is written again) or sees this one and keeps it.
        with self._r.pipeline(transaction=True) as pipe:
            pipe.sadd(self._keys.blob_refs(sha256), ref)
            pipe.hgetall(self._keys.blob_meta(sha256))
            _, meta = pipe.execute()
        existing = _info(sha256, meta)
        if existing is not None:
            return existing
        try:
            return self._write(path, sha256, size, ref)
        except BaseException:
            self._release_quietly(sha256, ref, -(-size // self._chunk_bytes))
            raise

    def _write(self, path: Path, sha256: str, size: int, ref: str) -> BlobInfo:
        # Several writers of the same bytes may write the same chunks at once: the values are
        # identical, and the first seal wins.
        chunks = 0
        with path.open("rb") as fh:
            while block := fh.read(self._chunk_bytes):
                self._r.set(self._keys.blob_chunk(sha256, chunks), block)
                chunks += 1
        sealed = self._seal(
            keys=[self._keys.blob_meta(sha256), self._keys.blob_refs(sha256)],
            args=[ref, size, chunks, now()],
        )
        if sealed == 0:
            raise BlobLost(
                f"The reference {ref} to blob {sha256} was released while the blob was written."
            )
        if sealed < 0:
            raise BlobLost(
                f"Part {-1 - int(sealed)} of blob {sha256} vanished while the blob was written "
                "(Redis must run with maxmemory-policy noeviction)."
            )
        info = self.info(sha256)
        if info is None:  # released by its last other reference right after sealing
            raise BlobLost(f"Blob {sha256} was deleted right after it was written.")
        return info

    def _release_quietly(self, sha256: str, ref: str, chunks: int) -> None:
        try:
            self.release(sha256, ref, chunks=chunks)
        except redis.RedisError as exc:  # the original error matters more; the ref leaks
            log.warning("blob reference not released sha256=%s ref=%s error=%s", sha256, ref, exc)

    def release(
        self, sha256: str, ref: str, pipe: Pipeline | None = None, *, chunks: int = 0
    ) -> bool:
        """Drop reference ``ref``; the last reference deletes the blob, complete or not.

        ``chunks``: how many chunks a failed writer may have left behind (an incomplete blob
        has no meta hash that counts them).

        Returns True if the blob was deleted. With ``pipe`` (a transaction the caller
        executes), the release is queued there and False is returned; the pipeline's result
        holds the answer. Raises redis.RedisError when Redis fails.
        """
        keys = [self._keys.blob_meta(sha256), self._keys.blob_refs(sha256)]
        if pipe is not None:
            self._release(keys=keys, args=[ref, chunks], client=pipe)
            return False
        return bool(self._release(keys=keys, args=[ref, chunks]))

    def iter_chunks(self, sha256: str) -> Iterator[bytes]:
        """The blob's bytes, chunk by chunk.

        Raises FileNotFoundError when the blob is not (fully) stored or a chunk is missing.
        """
        info = self.info(sha256)
        if info is None:
            raise FileNotFoundError(
                f"The model file (sha256 {sha256}) is no longer stored in Redis; was its model "
                "deleted? Upload the model again."
            )
        for index in range(info.chunks):
            chunk = self._r.get(self._keys.blob_chunk(sha256, index))
            if chunk is None:
                raise FileNotFoundError(
                    f"The model file (sha256 {sha256}) lost part {index} in Redis (evicted? "
                    "Redis must run with maxmemory-policy noeviction). Upload the model again."
                )
            yield bytes(chunk)  # type: ignore[arg-type]

    def write_to(self, sha256: str, dest: Path) -> Path:
        """Copy the blob to ``dest`` atomically, verifying its sha256 on the way; returns ``dest``.

        Raises FileNotFoundError when the blob or a chunk is missing, OSError when the bytes do
        not match their hash (``dest`` is then left untouched).
        """
        dest.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".partial-")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in self.iter_chunks(sha256):
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != sha256:
                raise OSError(
                    f"The model file (sha256 {sha256}) is corrupt in Redis: its bytes no longer "
                    "match their hash. Upload the model again."
                )
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return dest


def copy_stream(src: BinaryIO, dest: Path, limit: int) -> tuple[str, int]:
    """Copy a stream to a file, hashing as it goes.

    Returns the sha256 (hex) and size in bytes. Raises OverflowError past ``limit`` bytes.
    """
    digest = hashlib.sha256()
    size = 0
    with dest.open("wb") as out:
        while block := src.read(_READ_BLOCK):
            size += len(block)
            if size > limit:
                raise OverflowError(size)
            digest.update(block)
            out.write(block)
    return digest.hexdigest(), size


def _info(sha256: str, meta: dict[bytes, bytes]) -> BlobInfo | None:
    if not meta:
        return None
    return BlobInfo(sha256, int(meta[b"size"]), int(meta[b"chunks"]))

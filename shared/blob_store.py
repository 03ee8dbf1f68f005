"""Content-addressed file storage in Redis: one blob per sha256, kept in fixed-size chunks.

Large model files never become one huge Redis value, and neither side ever holds a whole
file in memory: writes stream from a local file, reads stream to one.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import redis

from shared.keys import Keys
from shared.timeutil import now

_READ_BLOCK = 1024 * 1024

# Drop a blob only when nothing refers to it; atomic so a concurrent upload that just added a
# reference never loses its bytes.
_RELEASE = """
redis.call('SREM', KEYS[2], ARGV[1])
if redis.call('SCARD', KEYS[2]) > 0 then return 0 end
local chunks = tonumber(redis.call('HGET', KEYS[1], 'chunks') or '0')
for i = 0, chunks - 1 do redis.call('DEL', KEYS[1] .. ':chunk:' .. i) end
redis.call('DEL', KEYS[1])
return 1
"""


@dataclass(frozen=True)
class BlobInfo:
    sha256: str
    size: int
    chunks: int


class BlobStore:
    """Chunked, deduplicated blobs with a reference set per blob."""

    def __init__(self, client: redis.Redis, keys: Keys, chunk_bytes: int) -> None:
        self._r = client
        self._keys = keys
        self._chunk_bytes = chunk_bytes
        self._release = client.register_script(_RELEASE)

    def info(self, sha256: str) -> BlobInfo | None:
        """The blob's size and chunk count, or None when it is not (fully) stored."""
        raw = self._r.hgetall(self._keys.blob_meta(sha256))
        if not raw:
            return None
        return BlobInfo(sha256, int(raw[b"size"]), int(raw[b"chunks"]))

    def put_file(self, path: Path, sha256: str, size: int) -> BlobInfo:
        """Store a local file under its sha256 unless the same bytes are already there."""
        existing = self.info(sha256)
        if existing is not None:
            return existing
        chunks = 0
        with path.open("rb") as fh:
            while block := fh.read(self._chunk_bytes):
                self._r.set(self._keys.blob_chunk(sha256, chunks), block)
                chunks += 1
        # The meta hash is written last: a blob without it is incomplete and never read.
        self._r.hset(
            self._keys.blob_meta(sha256),
            mapping={"size": size, "chunks": chunks, "created_at": now()},
        )
        return BlobInfo(sha256, size, chunks)

    def add_ref(self, sha256: str, ref: str, pipe: redis.client.Pipeline | None = None) -> None:
        """Record that ``ref`` (a model) uses this blob."""
        (pipe or self._r).sadd(self._keys.blob_refs(sha256), ref)

    def release(self, sha256: str, ref: str) -> bool:
        """Drop a reference; delete the blob when it was the last. True if deleted."""
        keys = [self._keys.blob_meta(sha256), self._keys.blob_refs(sha256)]
        return bool(self._release(keys=keys, args=[ref]))

    def iter_chunks(self, sha256: str) -> Iterator[bytes]:
        """The blob's bytes, chunk by chunk."""
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
        """Copy the blob to ``dest`` atomically, verifying its sha256 on the way."""
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
    """Copy a stream to a file, hashing as it goes; raises OverflowError past ``limit`` bytes."""
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

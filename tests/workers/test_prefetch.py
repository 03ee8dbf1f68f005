"""The read-ahead of a job's next input chunk: the bytes read early are the chunk's, a guess
that misses costs one read, and a failed read-ahead is read again (real Redis)."""

from __future__ import annotations

import threading

import pytest
import redis

from workers.prefetch import ChunkKey, ChunkPrefetch


class CountingReader:
    """Reads chunk values from Redis (``chunk:<n>``) and records which keys it read, on which
    thread; ``fail_first`` raises a ConnectionError on that many reads first (a fault)."""

    def __init__(self, client: redis.Redis, fail_first: int = 0) -> None:
        self.client = client
        self.reads: list[tuple[ChunkKey, str]] = []
        self.fail_first = fail_first
        self._lock = threading.Lock()

    def __call__(self, key: ChunkKey) -> bytes | None:
        with self._lock:
            self.reads.append((key, threading.current_thread().name))
            if self.fail_first > 0:
                self.fail_first -= 1
                raise redis.ConnectionError("injected")
        value = self.client.get(f"chunk:{key[3]}")
        return bytes(value) if value is not None else None  # type: ignore[arg-type]


def key(chunk: int) -> ChunkKey:
    return ("inst", "job", "", chunk)


@pytest.fixture
def chunks(redis_client: redis.Redis) -> dict[int, bytes]:
    values = {n: bytes([n]) * (1 << 20) + str(n).encode() for n in range(3)}
    for n, value in values.items():
        redis_client.set(f"chunk:{n}", value)
    return values


def test_chunks_taken_in_order_are_read_ahead_once_in_the_background(
    redis_client: redis.Redis, chunks: dict[int, bytes]
) -> None:
    reader = CountingReader(redis_client)
    prefetch = ChunkPrefetch(reader)
    assert prefetch.get(key(0)) == chunks[0]
    prefetch.read_ahead(key(1))  # one chunk seen: no order yet, no guess
    assert prefetch.get(key(1)) == chunks[1]
    prefetch.read_ahead(key(2))  # chunk 1 after chunk 0: in order
    assert prefetch.get(key(2)) == chunks[2]
    assert [k for k, _ in reader.reads] == [key(0), key(1), key(2)]
    assert reader.reads[2][1].startswith("kscore-prefetch")
    assert not reader.reads[1][1].startswith("kscore-prefetch")


def read_in_order(redis_client: redis.Redis) -> tuple[CountingReader, ChunkPrefetch]:
    """A prefetch that has read chunks 0 and 1 in order (so it guesses 2 next)."""
    reader = CountingReader(redis_client)
    prefetch = ChunkPrefetch(reader)
    prefetch.get(key(0))
    prefetch.get(key(1))
    return reader, prefetch


def test_a_wrong_guess_is_dropped_and_alternate_chunks_are_never_read_ahead(
    redis_client: redis.Redis, chunks: dict[int, bytes]
) -> None:
    reader, prefetch = read_in_order(redis_client)
    prefetch.read_ahead(key(2))  # another worker took chunk 2
    assert prefetch.get(key(0)) == chunks[0]  # a retried chunk 0 comes instead
    assert sorted(k[3] for k, _ in reader.reads) == [0, 0, 1, 2]
    # Workers sharing a job take every other chunk: no read-ahead, no chunk read twice.
    reader.reads.clear()
    for n in (0, 2):
        assert prefetch.get(key(n)) == chunks[n]
        prefetch.read_ahead(key(n + 1))
    assert [k for k, _ in reader.reads] == [key(0), key(2)]
    assert prefetch.get(key(7)) is None  # a chunk that is gone reads as None, as without


def test_a_read_ahead_that_fails_is_read_again_when_the_chunk_is_asked_for(
    redis_client: redis.Redis, chunks: dict[int, bytes]
) -> None:
    reader, prefetch = read_in_order(redis_client)
    reader.fail_first = 1
    prefetch.read_ahead(key(2))
    assert prefetch.get(key(2)) == chunks[2]
    assert [k for k, _ in reader.reads] == [key(0), key(1), key(2), key(2)]
    reader.fail_first = 1
    with pytest.raises(redis.ConnectionError):  # a failure of the read asked for is raised
        prefetch.get(key(2))

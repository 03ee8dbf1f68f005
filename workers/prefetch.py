"""Reading a job's next input chunk while this one is scored.

A worker process takes a job's chunks one after another; between two model calls it used to
wait for the next chunk's bytes (6 MB for 2,000 CNN rows: ~15 ms through redis-py) while
TensorFlow sat idle. The model call releases the GIL, so a thread reading chunk n + 1 during
chunk n's call hides that wait. At most one chunk is read ahead per process: a process holds
at most two chunks' input, as before plus one.

The read-ahead is a guess: chunk n + 1 may go to another worker. As an operating system's
file read-ahead does, it guesses only once the process has been reading in order (chunk n
came after chunk n - 1 of the same job here): one worker alone on a job reads ahead from its
second chunk on, while workers sharing a job (Celery hands them alternate chunks, one
reserved message each) do not read chunks twice. A wrong guess is dropped unused. Chunks are
immutable once written (a job's input and a dataset's chunks never change), so bytes read
early are the bytes a later read would get.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import redis

log = logging.getLogger(__name__)

# (instance, job id, dataset id or "", chunk): a job's input chunk, or its dataset's.
ChunkKey = tuple[str, str, str, int]


class ChunkPrefetch:
    """One chunk read ahead by a background thread, keyed by what identifies it.

    ``read(key)`` returns a chunk's bytes (None when it is gone); it must be safe to call from
    another thread (redis-py's connection pool is).
    """

    def __init__(self, read: Callable[[ChunkKey], bytes | None]) -> None:
        self._read = read
        self._lock = threading.Lock()
        self._pending: tuple[ChunkKey, Future[bytes | None]] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._last: ChunkKey | None = None
        self._in_order = False

    def get(self, key: ChunkKey) -> bytes | None:
        """The chunk ``key``: the one read ahead when it is that one, else read now.

        Raises what ``read`` raises (redis.RedisError). A failed read-ahead is not this
        chunk's failure: it is read again here.
        """
        with self._lock:
            pending, self._pending = self._pending, None
            self._in_order = self._last == (*key[:3], key[3] - 1)
            self._last = key
        if pending is not None and pending[0] == key:
            try:
                return pending[1].result()
            except redis.RedisError as exc:
                log.info("read-ahead failed, reading again key=%s error=%s", key, exc)
        return self._read(key)

    def read_ahead(self, key: ChunkKey) -> None:
        """Start reading ``key`` in the background when the chunks asked for so far came in
        order (dropping any chunk read ahead before); else nothing."""
        with self._lock:
            if not self._in_order:
                return
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="kscore-prefetch")
            self._pending = (key, self._executor.submit(self._read, key))

"""The online request stream: how an online request reaches a worker without a Celery message.

An online request is a one-chunk job (the record stays the truth) whose rows travel as one
entry of a Redis Stream (``{p}:online:requests``), added by ``job_create.lua`` in the same
step as the job. Every worker pool process reads the stream through one consumer group
(:data:`shared.keys.ONLINE_GROUP`), so each entry goes to one consumer, on any machine; it
stays in the group's pending list until that consumer has recorded the answer and
acknowledged (and deleted) it (``JobStore.settle_online``). An entry whose consumer died is
taken over by another consumer after ``KSCORE_ONLINE_RECLAIM`` (XAUTOCLAIM); the job's claim
counts the starts, so a request whose rows kill workers fails with ``worker_lost``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

import redis

from shared.keys import ONLINE_GROUP, Keys
from shared.scoring import ResultShape

log = logging.getLogger(__name__)

_PAGE = 1000


@lru_cache(maxsize=256)
def _names(raw: bytes) -> tuple[str, ...]:
    return tuple(json.loads(raw))


def stream_entry(
    *,
    instance: str,
    deployment_id: str,
    model_sha256: str,
    model_filename: str,
    output_names: list[str],
    result_shape: ResultShape,
    max_batch_size: int,
    max_wait_ms: float,
    rows: int,
) -> dict[str, str]:
    """The fields of an online request's stream entry, but its job id and rows (which
    ``JobStore.create`` adds): what a worker needs to score it without reading the job."""
    return {
        "i": instance,
        "d": deployment_id,
        "m": model_sha256,
        "f": model_filename,
        "o": json.dumps(output_names),
        "s": result_shape.value,
        "b": str(max_batch_size),
        "w": repr(float(max_wait_ms)),
        "n": str(rows),
    }


@dataclass(frozen=True)
class OnlineRequest:
    """One entry of the online stream, as a worker reads it."""

    entry_id: bytes
    instance: str
    job_id: str
    deployment_id: str
    model_sha256: str
    model_filename: str
    output_names: list[str]
    result_shape: ResultShape
    max_batch_size: int
    max_wait_ms: float
    rows: int
    data: bytes
    """The input rows, as ``shared.scoring.encode_chunk`` wrote them."""

    @property
    def model_key(self) -> tuple[str, str]:
        """Requests with the same key are scored by the same loaded model."""
        return (self.model_sha256, self.model_filename)


def _request(entry_id: bytes, fields: dict[bytes, bytes]) -> OnlineRequest | None:
    try:
        return OnlineRequest(
            entry_id=entry_id,
            instance=fields[b"i"].decode(),
            job_id=fields[b"j"].decode(),
            deployment_id=fields[b"d"].decode(),
            model_sha256=fields[b"m"].decode(),
            model_filename=fields[b"f"].decode(),
            output_names=list(_names(fields[b"o"])),
            result_shape=ResultShape(fields[b"s"].decode()),
            max_batch_size=max(1, int(fields[b"b"])),
            max_wait_ms=max(0.0, float(fields[b"w"])),
            rows=int(fields[b"n"]),
            data=fields[b"x"],
        )
    except (KeyError, ValueError, UnicodeDecodeError):
        return None


class OnlineQueue:
    """A worker's end of the online stream, as consumer ``consumer`` of the workers' group."""

    def __init__(self, client: redis.Redis, keys: Keys, consumer: str) -> None:
        self._r = client
        self._stream = keys.online_stream()
        self.consumer = consumer
        self._group_ready = False

    def ensure_group(self) -> None:
        """Create the stream and the workers' group if missing (from the stream's start, so
        requests added before the first worker came are read)."""
        try:
            self._r.xgroup_create(self._stream, ONLINE_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def read(self, count: int, block_ms: int | None) -> tuple[list[OnlineRequest], list[bytes]]:
        """Up to ``count`` new requests, waiting up to ``block_ms`` (None: not at all) for the
        first; and the ids of unreadable entries (to acknowledge and drop).

        Raises redis.RedisError.
        """
        if not self._group_ready:
            self.ensure_group()
        try:
            reply = self._r.xreadgroup(
                ONLINE_GROUP, self.consumer, {self._stream: ">"}, count=count, block=block_ms
            )
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self.ensure_group()  # the stream was deleted (FLUSHDB, a test's cleanup)
            return [], []
        entries = cast(list[Any], reply)[0][1] if reply else []
        return self._parse(entries)

    def reclaim(
        self, min_idle_ms: int, count: int = 100
    ) -> tuple[list[OnlineRequest], list[bytes]]:
        """Requests other consumers took ``min_idle_ms`` ago or more and never acknowledged
        (their worker died), now this consumer's; and the ids of unreadable ones."""
        if not self._group_ready:
            self.ensure_group()
        requests: list[OnlineRequest] = []
        bad: list[bytes] = []
        start = "0-0"
        for _ in range(10):  # a bounded walk: the rest waits for the next call
            reply = cast(
                list[Any],
                self._r.xautoclaim(
                    self._stream, ONLINE_GROUP, self.consumer, min_idle_ms, start, count=count
                ),
            )
            found, unreadable = self._parse(reply[1])
            requests += found
            bad += unreadable
            if len(reply) > 2 and reply[2]:  # ids deleted while pending: nothing to score
                bad += list(reply[2])
            start = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
            if start == "0-0":
                break
        return requests, bad

    def drop(self, entry_ids: list[bytes]) -> None:
        """Acknowledge and delete entries that hold nothing to score."""
        if entry_ids:
            with self._r.pipeline(transaction=False) as pipe:
                pipe.xack(self._stream, ONLINE_GROUP, *entry_ids)
                pipe.xdel(self._stream, *entry_ids)
                pipe.execute()

    def _parse(self, entries: list[Any]) -> tuple[list[OnlineRequest], list[bytes]]:
        requests: list[OnlineRequest] = []
        bad: list[bytes] = []
        for entry_id, fields in entries:
            request = _request(entry_id, fields) if fields else None
            if request is None:
                log.error("online entry unreadable entry_id=%s", entry_id)
                bad.append(entry_id)
            else:
                requests.append(request)
        return requests, bad


def queued_job_ids(client: redis.Redis, keys: Keys) -> Iterator[str]:
    """The job ids of every entry on the online stream (waiting or being scored), read in
    pages: what the reconciler compares with the online jobs' records."""
    stream = keys.online_stream()
    start = "-"
    while True:
        page = cast(list[Any], client.xrange(stream, start, "+", count=_PAGE))
        for _, fields in page:
            job_id = fields.get(b"j")
            if job_id is not None:
                yield job_id.decode()
        if len(page) < _PAGE:
            return
        last = page[-1][0].decode()
        start = "(" + last

"""Jobs: the Redis record is the source of truth for every scoring job, online or batch.

A job is split into chunks that any worker can take. Transitions are Lua scripts so that
queued -> running, a chunk completing (exactly once, even when a task is redelivered after a
worker died) and the last chunk completing the job are each atomic.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis

from shared.errors import JobNotFound
from shared.keys import Keys
from shared.scoring import unpack_fragment
from shared.timeutil import now

log = logging.getLogger(__name__)

QUEUED = "queued"
RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"
CANCELED = "canceled"
STATUSES = (QUEUED, RUNNING, COMPLETED, FAILED, CANCELED)
FINISHED = (COMPLETED, FAILED, CANCELED)

# KEYS: job, attempts, done, notify, metrics; ARGV: chunk, now, max_attempts
_CLAIM = """
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return {'missing', 0} end
if st ~= 'queued' and st ~= 'running' then return {st, 0} end
if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 1 then return {'duplicate', 0} end
local ttl = redis.call('PTTL', KEYS[1])
local n = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
if n > tonumber(ARGV[3]) then
  local err = cjson.encode({code = 'worker_lost', message = 'Chunk ' .. ARGV[1] ..
    ' was started ' .. (n - 1) .. ' times and never finished (its worker was killed, ran out of memory or lost ' ..
    'Redis). Check the worker logs, then resubmit the job.'})
  redis.call('HSET', KEYS[1], 'status', 'failed', 'error', err, 'finished_at', ARGV[2])
  redis.call('HINCRBY', KEYS[5], 'jobs_failed', 1)
  redis.call('RPUSH', KEYS[4], 'failed')
  if ttl > 0 then redis.call('PEXPIRE', KEYS[4], ttl) end
  return {'failed', n}
end
if st == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[2])
end
return {'running', n}
"""

# KEYS: job, done, output, input, notify, metrics; ARGV: chunk, rows, payload, now
_COMPLETE = """
local st = redis.call('HGET', KEYS[1], 'status')
if st ~= 'running' then return st or 'missing' end
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 'duplicate' end
local ttl = redis.call('PTTL', KEYS[1])
redis.call('SET', KEYS[3], ARGV[3])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[3], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
redis.call('DEL', KEYS[4])
redis.call('HINCRBY', KEYS[1], 'rows_done', ARGV[2])
redis.call('HINCRBY', KEYS[6], 'rows_scored', ARGV[2])
if redis.call('SCARD', KEYS[2]) == tonumber(redis.call('HGET', KEYS[1], 'chunks')) then
  redis.call('HSET', KEYS[1], 'status', 'completed', 'finished_at', ARGV[4])
  redis.call('HINCRBY', KEYS[6], 'jobs_completed', 1)
  redis.call('RPUSH', KEYS[5], 'completed')
  if ttl > 0 then redis.call('PEXPIRE', KEYS[5], ttl) end
  return 'completed'
end
return 'ok'
"""

# KEYS: job, notify, metrics; ARGV: new status, error json, now
_FINISH = """
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return 'missing' end
if st ~= 'queued' and st ~= 'running' then return st end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'error', ARGV[2], 'finished_at', ARGV[3])
redis.call('HINCRBY', KEYS[3], 'jobs_' .. ARGV[1], 1)
redis.call('RPUSH', KEYS[2], ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return 'ok'
"""


@dataclass(frozen=True)
class JobRecord:
    """A job as read from Redis."""

    id: str
    instance: str
    kind: str
    deployment_id: str
    model_id: str
    model_sha256: str
    model_filename: str
    status: str
    rows_total: int
    rows_done: int
    chunks: int
    chunk_rows: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    expires_at: float
    retention: float
    error: dict[str, Any] | None
    fields: list[str]
    output_names: list[str]

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


def _f(raw: dict[bytes, bytes], name: str) -> str | None:
    value = raw.get(name.encode())
    return value.decode() if value is not None else None


def _parse(raw: dict[bytes, bytes]) -> JobRecord:
    started = _f(raw, "started_at")
    finished = _f(raw, "finished_at")
    error = _f(raw, "error")
    return JobRecord(
        id=_f(raw, "id") or "",
        instance=_f(raw, "instance") or "",
        kind=_f(raw, "kind") or "batch",
        deployment_id=_f(raw, "deployment_id") or "",
        model_id=_f(raw, "model_id") or "",
        model_sha256=_f(raw, "model_sha256") or "",
        model_filename=_f(raw, "model_filename") or "",
        status=_f(raw, "status") or QUEUED,
        rows_total=int(_f(raw, "rows_total") or 0),
        rows_done=int(_f(raw, "rows_done") or 0),
        chunks=int(_f(raw, "chunks") or 0),
        chunk_rows=int(_f(raw, "chunk_rows") or 0),
        created_at=float(_f(raw, "created_at") or 0),
        started_at=float(started) if started else None,
        finished_at=float(finished) if finished else None,
        expires_at=float(_f(raw, "expires_at") or 0),
        retention=float(_f(raw, "retention") or 0),
        error=json.loads(error) if error else None,
        fields=json.loads(_f(raw, "fields") or "[]"),
        output_names=json.loads(_f(raw, "output_names") or "[]"),
    )


class JobStore:
    """Create jobs with their input chunks, move them through their life, read results."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._keys = keys
        self._claim = client.register_script(_CLAIM)
        self._complete = client.register_script(_COMPLETE)
        self._finish = client.register_script(_FINISH)

    def create(
        self,
        instance: str,
        *,
        kind: str,
        deployment_id: str,
        model_id: str,
        model_sha256: str,
        model_filename: str,
        rows_total: int,
        chunk_rows: int,
        input_chunks: list[bytes],
        fields: list[str],
        output_names: list[str],
        retention: float,
    ) -> JobRecord:
        """Write a queued job and its input chunks in one transaction, before any enqueue."""
        job_id = str(uuid.uuid4())
        created = now()
        ttl_ms = max(1, int(retention * 1000))
        mapping: dict[str, Any] = {
            "id": job_id,
            "instance": instance,
            "kind": kind,
            "deployment_id": deployment_id,
            "model_id": model_id,
            "model_sha256": model_sha256,
            "model_filename": model_filename,
            "status": QUEUED,
            "rows_total": rows_total,
            "rows_done": 0,
            "chunks": len(input_chunks),
            "chunk_rows": chunk_rows,
            "created_at": created,
            "expires_at": created + retention,
            "retention": retention,
            "fields": json.dumps(fields),
            "output_names": json.dumps(output_names),
        }
        key = self._keys.job(instance, job_id)
        with self._r.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=mapping)  # type: ignore[arg-type]
            pipe.pexpire(key, ttl_ms)
            for index, chunk in enumerate(input_chunks):
                pipe.set(self._keys.job_input(instance, job_id, index), chunk, px=ttl_ms)
            pipe.zadd(self._keys.jobs_index(instance), {job_id: created})
            pipe.zadd(self._keys.deployment_jobs(instance, deployment_id), {job_id: created})
            # When the job's keys expire, the next listing drops it from both indexes.
            pipe.zadd(
                self._keys.jobs_expiry(instance), {f"{deployment_id}/{job_id}": created + retention}
            )
            pipe.hincrby(self._keys.metrics(), "jobs_created", 1)
            pipe.execute()
        log.info(
            "job created job_id=%s kind=%s deployment_id=%s rows=%d chunks=%d",
            job_id,
            kind,
            deployment_id,
            rows_total,
            len(input_chunks),
        )
        return self.get(instance, job_id)

    def get(self, instance: str, job_id: str) -> JobRecord:
        """One job, or JobNotFound (also once it expired)."""
        raw = self._r.hgetall(self._keys.job(instance, job_id))
        if not raw:
            raise JobNotFound(job_id)
        return _parse(raw)  # type: ignore[arg-type]

    def page(
        self,
        instance: str,
        limit: int,
        offset: int,
        *,
        deployment_id: str | None = None,
        status: str | None = None,
    ) -> tuple[list[JobRecord], int]:
        """A page of jobs, newest first, filtered."""
        self._drop_expired(instance)
        index = (
            self._keys.deployment_jobs(instance, deployment_id)
            if deployment_id is not None
            else self._keys.jobs_index(instance)
        )
        if status is None:
            return self._slice(instance, index, limit, offset)
        # Statuses change inside Lua scripts, so they have no index: filter while walking.
        matched: list[JobRecord] = []
        total = 0
        for record in self._iter_newest(instance, index):
            if record.status != status:
                continue
            if offset <= total < offset + limit:
                matched.append(record)
            total += 1
        return matched, total

    def _drop_expired(self, instance: str) -> None:
        """Remove jobs whose retention has passed from the indexes, so totals stay exact."""
        expiry = self._keys.jobs_expiry(instance)
        members = [m.decode() for m in self._r.zrangebyscore(expiry, "-inf", now())]  # type: ignore[union-attr]
        if not members:
            return
        with self._r.pipeline(transaction=False) as pipe:
            for member in members:
                deployment_id, job_id = member.split("/", 1)
                pipe.zrem(self._keys.jobs_index(instance), job_id)
                pipe.zrem(self._keys.deployment_jobs(instance, deployment_id), job_id)
            pipe.zrem(expiry, *members)
            pipe.execute()

    def _load(self, instance: str, index: str, ids: list[str]) -> list[JobRecord]:
        """The records of ``ids``; ids whose job expired are removed from ``index``."""
        with self._r.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(self._keys.job(instance, job_id))
            raws = pipe.execute()
        gone = [job_id for job_id, raw in zip(ids, raws, strict=True) if not raw]
        if gone:
            self._r.zrem(index, *gone)
        return [_parse(raw) for raw in raws if raw]

    def _slice(
        self, instance: str, index: str, limit: int, offset: int
    ) -> tuple[list[JobRecord], int]:
        while True:
            ids = [i.decode() for i in self._r.zrevrange(index, offset, offset + limit - 1)]  # type: ignore[union-attr]
            records = self._load(instance, index, ids)
            if len(records) == len(ids):
                return records, int(self._r.zcard(index))

    def _iter_newest(self, instance: str, index: str, page: int = 500) -> Iterator[JobRecord]:
        start = 0
        while True:
            ids = [i.decode() for i in self._r.zrevrange(index, start, start + page - 1)]  # type: ignore[union-attr]
            if not ids:
                return
            records = self._load(instance, index, ids)
            start += len(records)
            yield from records

    def delete(self, record: JobRecord) -> None:
        """Remove a job and everything it stored (an online answer already delivered)."""
        inst, job_id = record.instance, record.id
        keys = [
            self._keys.job(inst, job_id),
            self._keys.job_done(inst, job_id),
            self._keys.job_attempts(inst, job_id),
            self._keys.job_notify(inst, job_id),
            *(self._keys.job_output(inst, job_id, n) for n in range(record.chunks)),
            *(self._keys.job_input(inst, job_id, n) for n in range(record.chunks)),
        ]
        with self._r.pipeline(transaction=True) as pipe:
            pipe.delete(*keys)
            pipe.zrem(self._keys.jobs_index(inst), job_id)
            pipe.zrem(self._keys.deployment_jobs(inst, record.deployment_id), job_id)
            pipe.zrem(self._keys.jobs_expiry(inst), f"{record.deployment_id}/{job_id}")
            pipe.execute()

    def read_input(self, instance: str, job_id: str, chunk: int) -> bytes | None:
        """A chunk's encoded input rows (None once the chunk is done or the job expired)."""
        value = self._r.get(self._keys.job_input(instance, job_id, chunk))
        return bytes(value) if value is not None else None  # type: ignore[arg-type]

    def claim_chunk(self, instance: str, job_id: str, chunk: int, max_attempts: int) -> str:
        """Mark a chunk started; returns 'running' if the caller should score it."""
        status, attempts = self._claim(
            keys=[
                self._keys.job(instance, job_id),
                self._keys.job_attempts(instance, job_id),
                self._keys.job_done(instance, job_id),
                self._keys.job_notify(instance, job_id),
                self._keys.metrics(),
            ],
            args=[chunk, now(), max_attempts],
        )
        status = status.decode() if isinstance(status, bytes) else str(status)
        if status == FAILED and int(attempts) > 0:
            log.error(
                "job failed job_id=%s chunk=%d attempts=%s reason=worker_lost",
                job_id,
                chunk,
                attempts,
            )
        return status

    def complete_chunk(
        self, instance: str, job_id: str, chunk: int, rows: int, payload: bytes
    ) -> str:
        """Store a chunk's result exactly once; 'completed' when it was the job's last."""
        result = self._complete(
            keys=[
                self._keys.job(instance, job_id),
                self._keys.job_done(instance, job_id),
                self._keys.job_output(instance, job_id, chunk),
                self._keys.job_input(instance, job_id, chunk),
                self._keys.job_notify(instance, job_id),
                self._keys.metrics(),
            ],
            args=[chunk, rows, payload, now()],
        )
        return result.decode() if isinstance(result, bytes) else str(result)

    def finish(
        self, instance: str, job_id: str, status: str, error: dict[str, Any] | None = None
    ) -> bool:
        """Move a queued or running job to failed or canceled; False if it had finished."""
        result = self._finish(
            keys=[
                self._keys.job(instance, job_id),
                self._keys.job_notify(instance, job_id),
                self._keys.metrics(),
            ],
            args=[status, json.dumps(error) if error else "", now()],
        )
        return result == b"ok"

    def wait(self, instance: str, job_id: str, timeout: float) -> bool:
        """Block until the job finishes or ``timeout`` passes; True if it finished."""
        key = self._keys.job_notify(instance, job_id)
        # BLPOP wakes the moment a worker pushes; the token is pushed back for other waiters.
        popped = self._r.blpop([key], timeout=max(timeout, 0.01))
        if popped is None:
            return False
        self._r.rpush(key, popped[1])
        return True

    def iter_result(self, record: JobRecord) -> Iterator[bytes]:
        """The result body ``{"fields": [...], "values": [...]}``, streamed chunk by chunk."""
        yield b'{"fields": ' + json.dumps(record.fields).encode() + b', "values": ['
        first = True
        for index in range(record.chunks):
            stored = self._r.get(self._keys.job_output(record.instance, record.id, index))
            if stored is None:
                raise JobNotFound(record.id)
            part = unpack_fragment(stored)  # type: ignore[arg-type]
            if not part:
                continue
            if not first:
                yield b", "
            yield part
            first = False
        yield b"]}\n"

    def metrics(self) -> dict[str, int]:
        """The counters the Lua scripts keep (rows scored, jobs by final status)."""
        raw = self._r.hgetall(self._keys.metrics())
        return {k.decode(): int(v) for k, v in raw.items()}  # type: ignore[union-attr]

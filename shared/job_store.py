"""Jobs: the Redis record is the source of truth for every scoring job, online or batch.

A job is split into chunks that any worker can take. Transitions are Lua scripts
(``shared/lua/job_*.lua``) so that
queued -> running, a chunk completing (exactly once, even when a task is redelivered after a
worker died) and the last chunk completing the job are each atomic.

Each instance has a backlog: its jobs accepted and not finished, with their rows. The script
that creates a job checks the instance's limits and adds the job to the backlog in the same
step; every script that ends a job (completed, failed, canceled, and the reconciler's
forgetting of a job that expired unfinished) removes it, exactly once.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any, cast

import orjson
import redis

from shared.errors import JobNotFound, QueuedJobsLimit, QueuedRowsLimit
from shared.job_record import JobRecord, parse_job
from shared.keys import ONLINE_GROUP, Keys, is_resource_id
from shared.lua import source
from shared.metrics import latency_bucket
from shared.results import json_fragment
from shared.scoring import ResultShape
from shared.script_pipeline import ScriptPipeline
from shared.status import ClaimOutcome, CompleteOutcome, FinishOutcome, JobStatus
from shared.timeutil import now

log = logging.getLogger(__name__)

# Retry-After (seconds) of a submission refused by a backlog limit.
QUEUE_RETRY_AFTER_S = 5


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class DeploymentChanged(Exception):
    """The deployment record is no longer the one the caller validated a job against
    (``JobStore.create`` wrote nothing): read it again and validate again."""


def _limit_error(
    outcome: str, queued: int, rows: int, max_rows: int, max_jobs: int
) -> QueuedRowsLimit | QueuedJobsLimit:
    # Work in a backlog drains at the workers' pace; a few seconds is a fair first retry.
    retry_after_s = QUEUE_RETRY_AFTER_S
    if outcome == "queued_rows_limit":
        return QueuedRowsLimit(
            f"This instance has {queued} rows queued or running, and these {rows} would pass "
            f"its limit of {max_rows} (KSCORE_MAX_QUEUED_ROWS). Wait for jobs to finish (or "
            f"cancel some), then retry; Retry-After says when to try first.",
            retry_after_s=retry_after_s,
            details={"limit": max_rows, "queued_rows": queued, "rows": rows},
        )
    return QueuedJobsLimit(
        f"This instance has {queued} jobs queued or running, its limit "
        f"(KSCORE_MAX_QUEUED_JOBS). Wait for jobs to finish (or cancel some), then retry; "
        f"Retry-After says when to try first.",
        retry_after_s=retry_after_s,
        details={"limit": max_jobs, "queued_jobs": queued},
    )


def _online_body(record: JobRecord, fragment: bytes) -> bytes:
    """The body :meth:`JobStore.iter_result` gives for a one-chunk job with this fragment."""
    names = record.output_names if record.result_shape is ResultShape.TENSORS else record.fields
    body = b'{"fields": ' + json.dumps(names).encode() + b', "values": [' + fragment + b"]}"
    if record.result_shape is ResultShape.WML_V4:
        return b'{"predictions": [' + body + b"]}\n"
    return body + b"\n"


class JobStore:
    """Create jobs with their input chunks, move them through their life, read results."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._keys = keys
        self._claim = client.register_script(source("job_claim.lua"))
        self._complete = client.register_script(source("job_complete.lua"))
        self._finish = client.register_script(source("job_finish.lua"))
        self._create = client.register_script(source("job_create.lua"))
        self._forget = client.register_script(source("job_forget.lua"))
        self._collect = client.register_script(source("online_collect.lua"))

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
        retention_s: float,
        result_shape: ResultShape = ResultShape.WML_V3,
        max_queued_rows: int = 0,
        max_queued_jobs: int = 0,
        callback_url: str | None = None,
        base_url: str = "",
        job_id: str | None = None,
        dataset_id: str | None = None,
        chunks: int | None = None,
        stream_entry: dict[str, str] | None = None,
        deployment_sha1: str | None = None,
    ) -> JobRecord:
        """Write a queued job and its input chunks in one step, before any enqueue.

        A job over a dataset (``dataset_id``, with its ``chunks`` and no ``input_chunks``)
        reads the dataset's chunks; ``job_id`` is then the id the dataset was held for.
        With ``stream_entry`` (an online request: one chunk) the job is its own enqueue: the
        entry, with the job id (``j``) and the rows (``x``) added, goes to the online stream in
        the same step and the rows are stored nowhere else (``transport`` "stream").
        ``deployment_sha1``: the SHA-1 (hex) of the deployment record the rows were validated
        against (``DeploymentStore.current``); the job is refused, nothing written, when
        the stored record differs (a move, a status change, a deletion since).

        ``retention_s`` is in seconds: every key of the job expires then; ``result_shape``
        wraps the result. The job is refused, nothing written, when the instance's backlog
        would then pass ``max_queued_rows`` rows or ``max_queued_jobs`` jobs (0: no limit).
        Returns the record as stored. Raises QueuedRowsLimit or QueuedJobsLimit (429) for a
        refusal, DeploymentChanged when the deployment record is not the one checked,
        redis.RedisError when Redis fails.
        """
        job_id = job_id or str(uuid.uuid4())
        created = now()
        ttl_ms = max(1, int(retention_s * 1000))
        mapping: dict[str, Any] = {
            "id": job_id,
            "instance": instance,
            "kind": kind,
            "deployment_id": deployment_id,
            "model_id": model_id,
            "model_sha256": model_sha256,
            "model_filename": model_filename,
            "status": JobStatus.QUEUED.value,
            "rows_total": rows_total,
            "rows_done": 0,
            "chunks": len(input_chunks) if chunks is None else chunks,
            "chunk_rows": chunk_rows,
            "created_at": created,
            "expires_at": created + retention_s,
            "retention": retention_s,
            "fields": json.dumps(fields),
            "output_names": json.dumps(output_names),
            "result_shape": result_shape.value,
        }
        if callback_url:
            mapping.update(callback_url=callback_url, base_url=base_url)
        if dataset_id:
            mapping["dataset_id"] = dataset_id
        chunk_keys = [self._keys.job_input(instance, job_id, n) for n in range(len(input_chunks))]
        entry_json = b""
        if stream_entry is not None:
            if len(input_chunks) != 1:
                raise ValueError("A streamed job has exactly one chunk.")
            mapping["transport"] = "stream"
            entry_json = orjson.dumps(stream_entry)
            chunk_keys = []  # the rows travel in the entry only
        # One script, not a MULTI: the limits are checked and the job written atomically,
        # so concurrent submissions through several API processes cannot pass them together.
        outcome, queued = self._create(
            keys=[
                self._keys.job(instance, job_id),
                self._keys.jobs_index(instance),
                self._keys.deployment_jobs(instance, deployment_id),
                self._keys.jobs_expiry(instance),
                self._keys.active_jobs(),
                self._keys.metrics(),
                *self._backlog_keys(instance),
                self._keys.online_stream(),
                self._keys.deployment(instance, deployment_id),
                *chunk_keys,
            ],
            args=[
                job_id,
                rows_total,
                max_queued_rows,
                max_queued_jobs,
                ttl_ms,
                created,
                f"{deployment_id}/{job_id}",
                created + retention_s,
                f"{instance}/{job_id}",
                deployment_sha1 or "",
                orjson.dumps({k: str(v) for k, v in mapping.items()}),
                entry_json,
                *input_chunks,
            ],
        )
        if _text(outcome) == "deployment_changed":
            raise DeploymentChanged(deployment_id)
        if _text(outcome) != "created":
            raise _limit_error(
                _text(outcome), int(queued), rows_total, max_queued_rows, max_queued_jobs
            )
        # An online request is logged by the access log; a line per job costs it ~3%.
        log.log(
            logging.DEBUG if stream_entry is not None else logging.INFO,
            "job created job_id=%s kind=%s deployment_id=%s rows=%d chunks=%d",
            job_id,
            kind,
            deployment_id,
            rows_total,
            mapping["chunks"],
        )
        # As stored: no read back (an online request pays for every round trip).
        return parse_job({k.encode(): str(v).encode() for k, v in mapping.items()})

    def _backlog_keys(self, instance: str) -> list[str]:
        return [self._keys.backlog(instance), self._keys.backlog_rows(instance)]

    def backlog(self, instance: str) -> tuple[int, int]:
        """``(rows, jobs)`` the instance has accepted and not finished (queued or running)."""
        with self._r.pipeline(transaction=True) as pipe:
            pipe.get(self._keys.backlog_rows(instance))
            pipe.hlen(self._keys.backlog(instance))
            rows, jobs = pipe.execute()
        return int(rows or 0), int(jobs)

    def get(self, instance: str, job_id: str) -> JobRecord:
        """The job ``job_id``. Raises JobNotFound for an unknown or expired id."""
        if not is_resource_id(job_id):
            raise JobNotFound(job_id)
        raw = self._r.hgetall(self._keys.job(instance, job_id))
        if not raw:
            raise JobNotFound(job_id)
        return parse_job(raw)  # type: ignore[arg-type]

    def page(
        self,
        instance: str,
        limit: int,
        offset: int,
        *,
        deployment_id: str | None = None,
        status: str | None = None,
    ) -> tuple[list[JobRecord], int]:
        """Up to ``limit`` jobs after skipping ``offset``, newest first, of one deployment
        and/or one status when given; and the number of jobs that match. Expired jobs are
        neither returned nor counted."""
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
        return [parse_job(raw) for raw in raws if raw]

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
        """Remove a job and everything it stored (an online answer already delivered).

        Returns nothing; deleting a job that expired meanwhile is not an error.
        """
        inst, job_id = record.instance, record.id
        if not record.finished:  # as read: if it finished meanwhile, releasing is a no-op
            self._release(inst, job_id)
        keys = [
            self._keys.job(inst, job_id),
            self._keys.job_done(inst, job_id),
            self._keys.job_attempts(inst, job_id),
            self._keys.job_notify(inst, job_id),
            self._keys.job_webhook(inst, job_id),
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
        """Chunk ``chunk``'s encoded input rows; None once it was scored or the job expired."""
        value = self._r.get(self._keys.job_input(instance, job_id, chunk))
        return bytes(value) if value is not None else None  # type: ignore[arg-type]

    def claim_chunk(
        self, instance: str, job_id: str, chunk: int, max_attempts: int
    ) -> ClaimOutcome:
        """Mark chunk ``chunk`` started (queued -> running on the first claim).

        Returns ClaimOutcome.RUN when the caller should score the chunk; otherwise why not
        (ATTEMPTS_EXHAUSTED when this was start number ``max_attempts + 1``: the job is now
        failed with ``worker_lost``). Raises redis.RedisError when Redis fails.
        """
        result, attempts = self._claim(*self._claim_call(instance, job_id, chunk, max_attempts))
        outcome = ClaimOutcome(_text(result))
        if outcome is ClaimOutcome.ATTEMPTS_EXHAUSTED:
            log.error(
                "job failed job_id=%s chunk=%d attempts=%s reason=worker_lost",
                job_id,
                chunk,
                attempts,
            )
        return outcome

    def _claim_call(
        self, instance: str, job_id: str, chunk: int, max_attempts: int
    ) -> tuple[list[Any], list[Any]]:
        return (
            [
                self._keys.job(instance, job_id),
                self._keys.job_attempts(instance, job_id),
                self._keys.job_done(instance, job_id),
                self._keys.job_notify(instance, job_id),
                self._keys.metrics(),
                *self._backlog_keys(instance),
            ],
            [
                chunk,
                now(),
                max_attempts,
                JobStatus.QUEUED,
                JobStatus.RUNNING,
                JobStatus.FAILED,
                job_id,
            ],
        )

    def claim_chunks(
        self, chunks: list[tuple[str, str, int]], max_attempts: int
    ) -> list[ClaimOutcome]:
        """:meth:`claim_chunk` for each ``(instance, job_id, chunk)``, in one round trip."""
        batch = ScriptPipeline(self._r)
        for instance, job_id, chunk in chunks:
            batch.script(self._claim, *self._claim_call(instance, job_id, chunk, max_attempts))
        return [ClaimOutcome(_text(result)) for result, _ in batch.execute()]

    def settle_online(
        self,
        completed: list[tuple[str, str, int, bytes]],
        failed: list[tuple[str, str, dict[str, Any]]],
        entry_ids: list[bytes],
    ) -> None:
        """Record online requests' outcomes and take their entries off the online stream, in
        one round trip: chunk 0 of each ``(instance, job_id, rows, payload)`` completed (as
        :meth:`complete_chunk`), each ``(instance, job_id, error)`` failed (as :meth:`finish`),
        then ``entry_ids`` acknowledged and deleted. Raises redis.RedisError (the entries stay
        pending, and are reclaimed: outcomes count once)."""
        stream = self._keys.online_stream()
        metrics = self._keys.metrics()
        batch = ScriptPipeline(self._r)
        for instance, job_id, rows, payload in completed:
            batch.script(self._complete, *self._complete_call(instance, job_id, 0, rows, payload))
        for instance, job_id, error in failed:
            batch.script(
                self._finish, *self._finish_call(instance, job_id, JobStatus.FAILED, error)
            )
        if entry_ids:
            batch.command(lambda pipe: pipe.xack(stream, ONLINE_GROUP, *entry_ids))
            batch.command(lambda pipe: pipe.xdel(stream, *entry_ids))
        settled = len(completed) + len(failed)
        if settled:
            batch.command(lambda pipe: pipe.hincrby(metrics, "online_batches", 1))
            batch.command(lambda pipe: pipe.hincrby(metrics, "online_batched_requests", settled))
        batch.execute()

    def complete_chunk(
        self, instance: str, job_id: str, chunk: int, rows: int, payload: bytes
    ) -> CompleteOutcome:
        """Store chunk ``chunk``'s result (``rows`` rows, ``shared.results.render``'s bytes) exactly once.

        Returns CompleteOutcome.JOB_COMPLETED when it was the job's last chunk, COUNTED when
        other chunks remain, or why the rows were dropped (DUPLICATE, NOT_RUNNING, MISSING).
        Raises redis.RedisError when Redis fails.
        """
        result = self._complete(*self._complete_call(instance, job_id, chunk, rows, payload))
        return CompleteOutcome(_text(result))

    def _complete_call(
        self, instance: str, job_id: str, chunk: int, rows: int, payload: bytes
    ) -> tuple[list[Any], list[Any]]:
        return (
            [
                self._keys.job(instance, job_id),
                self._keys.job_done(instance, job_id),
                self._keys.job_output(instance, job_id, chunk),
                self._keys.job_input(instance, job_id, chunk),
                self._keys.job_notify(instance, job_id),
                self._keys.metrics(),
                *self._backlog_keys(instance),
            ],
            [chunk, rows, payload, now(), JobStatus.RUNNING, JobStatus.COMPLETED, job_id],
        )

    def _finish_call(
        self, instance: str, job_id: str, status: JobStatus, error: dict[str, Any] | None
    ) -> tuple[list[Any], list[Any]]:
        return (
            [
                self._keys.job(instance, job_id),
                self._keys.job_notify(instance, job_id),
                self._keys.metrics(),
                *self._backlog_keys(instance),
            ],
            [
                JobStatus(status),
                json.dumps(error) if error else "",
                now(),
                JobStatus.QUEUED,
                JobStatus.RUNNING,
                job_id,
            ],
        )

    def finish(
        self, instance: str, job_id: str, status: JobStatus, error: dict[str, Any] | None = None
    ) -> FinishOutcome:
        """Move a queued or running job to ``status`` (failed or canceled), with ``error``.

        Returns FinishOutcome.FINISHED when the job moved (the only truthy outcome),
        ALREADY_FINISHED or MISSING when nothing changed. Raises ValueError for a status that
        is not failed or canceled, redis.RedisError when Redis fails.
        """
        if status not in (JobStatus.FAILED, JobStatus.CANCELED):
            raise ValueError(f"A job can only be ended early as failed or canceled, not {status}.")
        result = self._finish(*self._finish_call(instance, job_id, status, error))
        return FinishOutcome(_text(result))

    def claim_webhook(self, record: JobRecord) -> bool:
        """True exactly once for a finished job with a callback: whoever gets it sends the
        delivery task (the worker that ended the job, else the reconciler)."""
        if not record.callback_url or not record.finished:
            return False
        return bool(self._r.hsetnx(self._keys.job(record.instance, record.id), "webhook", 1))

    def unclaim_webhook(self, record: JobRecord) -> None:
        """Undo :meth:`claim_webhook` when the task could not be sent (the reconciler tries)."""
        self._r.hdel(self._keys.job(record.instance, record.id), "webhook")

    def log_webhook(self, record: JobRecord, attempt: dict[str, Any]) -> None:
        """Append one delivery attempt to the job's log (kept as long as the job)."""
        key = self._keys.job_webhook(record.instance, record.id)
        ttl_ms = self._r.pttl(self._keys.job(record.instance, record.id))
        with self._r.pipeline(transaction=True) as pipe:
            pipe.rpush(key, json.dumps(attempt))
            if isinstance(ttl_ms, int) and ttl_ms > 0:
                pipe.pexpire(key, ttl_ms)
            pipe.execute()

    def webhook_log(self, record: JobRecord) -> list[dict[str, Any]]:
        """The delivery attempts of the job's callback, oldest first."""
        if not record.callback_url:
            return []
        raw = cast(
            list[bytes], self._r.lrange(self._keys.job_webhook(record.instance, record.id), 0, -1)
        )
        return [json.loads(entry) for entry in raw]

    def wait(self, instance: str, job_id: str, timeout_s: float, *, give_back: bool = True) -> bool:
        """Block until the job finishes or ``timeout_s`` seconds pass; True if it finished.

        ``give_back``: push the token back for other waiters (a request that deletes the job
        next has none)."""
        key = self._keys.job_notify(instance, job_id)
        # BLPOP wakes the moment a worker pushes.
        popped = self._r.blpop([key], timeout=max(timeout_s, 0.01))
        if popped is None:
            return False
        if give_back:
            self._r.rpush(key, popped[1])
        return True

    def collect_online(
        self, record: JobRecord, *, keep: bool, latency_s: float
    ) -> tuple[JobStatus | None, dict[str, Any] | None, bytes | None]:
        """An online job's outcome in one step: ``(status, error, result)``.

        ``result`` is the body :meth:`iter_result` gives, once the job completed; the job is
        then deleted (unless ``keep``) and ``latency_s`` counted in the latency histogram.
        ``status`` is None for a job that is gone (expired, deleted). Raises redis.RedisError.
        """
        inst, job_id = record.instance, record.id
        bucket = latency_bucket(latency_s)
        status, error, out = self._collect(
            keys=[
                self._keys.job(inst, job_id),
                self._keys.job_output(inst, job_id, 0),
                self._keys.job_input(inst, job_id, 0),
                self._keys.job_done(inst, job_id),
                self._keys.job_attempts(inst, job_id),
                self._keys.job_notify(inst, job_id),
                self._keys.job_webhook(inst, job_id),
                self._keys.jobs_index(inst),
                self._keys.deployment_jobs(inst, record.deployment_id),
                self._keys.jobs_expiry(inst),
                self._keys.latency_histogram(),
            ],
            args=[
                JobStatus.COMPLETED,
                "1" if keep else "0",
                job_id,
                f"{record.deployment_id}/{job_id}",
                bucket,
                repr(latency_s),
            ],
        )
        text = _text(status)
        if text == "missing":
            return None, None, None
        if text != JobStatus.COMPLETED:
            return JobStatus(text), (json.loads(error) if error else None), None
        fragment = json_fragment(out, record.result_shape, record.output_names)
        return JobStatus.COMPLETED, None, _online_body(record, fragment)

    def iter_result(self, record: JobRecord) -> Iterator[bytes]:
        """The result body ``{"fields": [...], "values": [...]}`` as bytes, chunk by chunk
        (inside ``{"predictions": [...]}`` for a job asked in WML v4's shape; ``fields`` are
        the output names for a job asked for raw tensors).

        Raises JobNotFound when a chunk's result is gone (the job expired meanwhile).
        """
        v4 = record.result_shape is ResultShape.WML_V4
        # Raw tensors (ResultShape.TENSORS) hold one entry per output in each row.
        names = record.output_names if record.result_shape is ResultShape.TENSORS else record.fields
        head = b'{"fields": ' + json.dumps(names).encode() + b', "values": ['
        yield (b'{"predictions": [' + head) if v4 else head
        first = True
        for stored in self.iter_chunks(record):
            part = json_fragment(stored, record.result_shape, record.output_names)
            if not part:
                continue
            if not first:
                yield b", "
            yield part
            first = False
        yield b"]}]}\n" if v4 else b"]}\n"

    def iter_chunks(self, record: JobRecord) -> Iterator[bytes]:
        """The job's stored result chunks (``shared.results`` layouts), in row order, read
        from Redis one at a time. Raises JobNotFound when one is gone (the job expired)."""
        for index in range(record.chunks):
            stored = self._r.get(self._keys.job_output(record.instance, record.id, index))
            if stored is None:
                raise JobNotFound(record.id)
            yield stored  # type: ignore[misc]

    def active(self) -> list[tuple[str, str]]:
        """``(instance, job_id)`` of every job created and not yet seen finished by
        :meth:`forget_active` (any instance): the jobs a reconciler must look at."""
        members = self._r.smembers(self._keys.active_jobs())
        pairs = (m.decode().split("/", 1) for m in cast(set[bytes], members))
        return [(inst, job_id) for inst, job_id in pairs]

    def forget_active(self, instance: str, job_id: str) -> None:
        """Drop a finished (or expired) job from the active set, and from its instance's
        backlog if it expired before it finished."""
        self._release(instance, job_id)
        self._r.srem(self._keys.active_jobs(), f"{instance}/{job_id}")

    def _release(self, instance: str, job_id: str) -> None:
        self._forget(keys=self._backlog_keys(instance), args=[job_id])

    def pending_chunks(self, record: JobRecord) -> list[int]:
        """Indexes of the job's chunks not scored yet, in order."""
        done_key = self._keys.job_done(record.instance, record.id)
        done = {int(n) for n in cast(set[bytes], self._r.smembers(done_key))}
        return [n for n in range(record.chunks) if n not in done]

    def metrics(self) -> dict[str, int]:
        """The counters the Lua scripts keep: rows scored, and jobs by final status
        (``jobs_completed``, ``jobs_failed``, ``jobs_canceled``) and created."""
        raw = self._r.hgetall(self._keys.metrics())
        return {k.decode(): int(v) for k, v in raw.items()}  # type: ignore[union-attr]

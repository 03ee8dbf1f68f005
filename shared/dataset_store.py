"""Datasets: uploaded rows kept in Redis as chunks, for jobs to score without a copy.

A dataset is a JSON record and its chunks of ``chunk_rows`` rows, each encoded as
``shared.scoring.encode_chunk`` encodes a job's input chunk (one array per input), so a
job's chunk n is the dataset's chunk n. Every key expires at the dataset's ``expires_at``.

An upload writes its chunks as it reads the body and the record last: a dataset without its
record is incomplete and is never listed; a refused upload deletes the chunks it wrote (a
crashed API process leaves them to expire).

A job takes a reference on its dataset when it is created (``hold``): the dataset then lives
at least as long as the job, and DELETE is refused (409 ``dataset_in_use``) while a job that
reads it is unfinished. Once the job ended, the reconciler drops the reference
(``release_finished``) and the dataset expires at the end of its own retention again. Should the chunk be gone anyway (evicted by a Redis ``maxmemory``
policy), the job fails with ``input_missing`` rather than waiting.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, cast

import numpy as np
import redis
from redis.client import Pipeline

from shared.dataset_formats import Reader
from shared.dataset_values import (
    Chunker,
    DatasetLayout,
    InputPlan,
    plan_inputs,
    to_model_inputs,
)
from shared.errors import BackendUnavailable, DatasetInUse, DatasetNotFound
from shared.job_record import JobRecord
from shared.json_records import update_json_record
from shared.keys import Keys, is_resource_id
from shared.timeutil import now

log = logging.getLogger(__name__)

# A reference whose job does not exist yet is a job being created: in use for this long.
CREATING_GRACE_S = 60.0


@dataclass(frozen=True)
class DatasetRecord:
    """A dataset as stored: ``inputs`` are ``{"name", "shape" (per row), "dtype"}``."""

    id: str
    instance: str
    name: str | None
    format: str
    rows: int
    size_bytes: int
    chunks: int
    chunk_rows: int
    inputs: list[dict[str, Any]]
    columns: list[str] | None
    created_at: float
    expires_at: float
    validated_for: str | None
    # Its own retention's end: ``expires_at`` is later while jobs hold it.
    retained_until: float | None = None
    # SHA-256 of the stored rows (Chunker.rows_sha256): two uploads of the same rows agree,
    # whatever their file format (None for a dataset stored before it was recorded).
    rows_sha256: str | None = None

    @property
    def layout(self) -> DatasetLayout:
        """The arrays' names and columns, for messages naming a row's column."""
        return DatasetLayout([i.get("name") for i in self.inputs], self.columns)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> DatasetRecord:
        return cls(**json.loads(raw))


class DatasetStore:
    """Store uploads as chunks, list, read and delete datasets, and hold them for jobs."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._keys = keys

    def store(
        self,
        instance: str,
        reader: Reader,
        *,
        fmt: str,
        name: str | None,
        chunk_rows: int,
        retention_s: float,
        plans: Callable[[DatasetLayout, list[list[int]]], list[InputPlan]] | None = None,
        validated_for: str | None = None,
    ) -> DatasetRecord:
        """Read ``reader``'s batches into chunks of ``chunk_rows`` rows, each written as soon
        as it is full, then the record; with ``plans`` the rows are converted to a
        deployment's inputs first (``validated_for`` names it). Every key expires after
        ``retention_s`` seconds.

        Returns the record. Raises what the reader and the chunker raise (DatasetInvalid,
        ScoringInputInvalid, DatasetMismatch, PayloadTooLarge): the chunks written so far
        are deleted first.
        """
        dataset_id = str(uuid.uuid4())
        created = now()
        expires = created + retention_s
        expires_ms = int(expires * 1000)

        def write(index: int, data: bytes) -> None:
            self._r.set(
                self._keys.dataset_chunk(instance, dataset_id, index), data, pxat=expires_ms
            )

        chunker = Chunker(lambda: reader.layout, chunk_rows, write, plans)
        try:
            for batch in reader.batches():
                chunker.add(batch)
            result = chunker.finish()
            record = DatasetRecord(
                id=dataset_id,
                instance=instance,
                name=name,
                format=fmt,
                rows=result.rows,
                size_bytes=result.bytes,
                chunks=result.chunks,
                chunk_rows=chunk_rows,
                inputs=result.inputs,
                columns=result.columns,
                created_at=created,
                expires_at=expires,
                validated_for=validated_for,
                retained_until=expires,
                rows_sha256=chunker.rows_sha256.hexdigest(),
            )
            with self._r.pipeline(transaction=True) as pipe:
                pipe.set(
                    self._keys.dataset(instance, dataset_id), record.to_json(), pxat=expires_ms
                )
                pipe.zadd(self._keys.datasets_index(instance), {dataset_id: created})
                pipe.zadd(self._keys.datasets_expiry(instance), {dataset_id: expires})
                pipe.execute()
        except redis.exceptions.OutOfMemoryError as exc:
            self._discard(instance, dataset_id, chunker.result.chunks)
            raise BackendUnavailable(
                "Redis is full (its maxmemory): the dataset was not kept. Delete datasets or "
                "jobs no longer needed, or give Redis more memory.",
                details={"reason": "redis_maxmemory"},
            ) from exc
        except BaseException:
            self._discard(instance, dataset_id, chunker.result.chunks)
            raise
        log.info(
            "dataset stored dataset_id=%s format=%s rows=%d chunks=%d bytes=%d",
            dataset_id,
            fmt,
            record.rows,
            record.chunks,
            record.size_bytes,
        )
        return record

    def _discard(self, instance: str, dataset_id: str, chunks: int) -> None:
        keys = [self._keys.dataset_chunk(instance, dataset_id, n) for n in range(chunks + 1)]
        for start in range(0, len(keys), 1000):
            self._r.delete(*keys[start : start + 1000])

    def get(self, instance: str, dataset_id: str) -> DatasetRecord:
        """The dataset ``dataset_id``. Raises DatasetNotFound for an unknown or expired id."""
        if not is_resource_id(dataset_id):
            raise DatasetNotFound(dataset_id)
        raw = self._r.get(self._keys.dataset(instance, dataset_id))
        if raw is None:
            raise DatasetNotFound(dataset_id)
        return DatasetRecord.from_json(cast(bytes, raw))

    def page(self, instance: str, limit: int, offset: int) -> tuple[list[DatasetRecord], int]:
        """Up to ``limit`` datasets after ``offset``, newest first, and how many there are
        (expired ones neither listed nor counted)."""
        index = self._keys.datasets_index(instance)
        expiry = self._keys.datasets_expiry(instance)
        gone = [m.decode() for m in cast(list[bytes], self._r.zrangebyscore(expiry, "-inf", now()))]
        if gone:
            with self._r.pipeline(transaction=False) as pipe:
                pipe.zrem(index, *gone)
                pipe.zrem(expiry, *gone)
                pipe.execute()
        while True:
            ids = [
                i.decode()
                for i in cast(list[bytes], self._r.zrevrange(index, offset, offset + limit - 1))
            ]
            raws = (
                cast(
                    list[bytes | None], self._r.mget([self._keys.dataset(instance, i) for i in ids])
                )
                if ids
                else []
            )
            missing = [i for i, raw in zip(ids, raws, strict=True) if raw is None]
            if not missing:
                return [DatasetRecord.from_json(r) for r in raws if r], int(self._r.zcard(index))
            self._r.zrem(index, *missing)

    def read_chunk(self, instance: str, dataset_id: str, chunk: int) -> bytes | None:
        """Chunk ``chunk``'s encoded rows; None once the dataset is gone."""
        value = self._r.get(self._keys.dataset_chunk(instance, dataset_id, chunk))
        return bytes(cast(bytes, value)) if value is not None else None

    def model_inputs(
        self, job: JobRecord, chunk: int, arrays: list[np.ndarray], specs: list[Any]
    ) -> list[np.ndarray]:
        """Chunk ``chunk`` of ``job``'s dataset (``arrays``, decoded) as the model's inputs
        (``specs``: objects with ``to_dict()`` or dicts), reshaped and converted exactly.

        Raises DatasetNotFound when the dataset is gone, DatasetMismatch when it does not fit
        the model, ScoringInputInvalid naming the global row and column of a value that does
        not fit its input's dtype.
        """
        record = self.get(job.instance, job.dataset_id or "")
        spec_dicts = [s if isinstance(s, dict) else s.to_dict() for s in specs]
        plans = plan_inputs(record.layout.names, [i["shape"] for i in record.inputs], spec_dicts)
        return to_model_inputs(arrays, record.layout, plans, chunk * record.chunk_rows)

    def hold(self, instance: str, dataset_id: str, job_id: str, until: float) -> DatasetRecord:
        """Reference the dataset from job ``job_id`` (about to be created) and keep every key
        of it until at least ``until`` (unix seconds: the job's expiry).

        Returns the record. Raises DatasetNotFound when it is gone (the reference is dropped).
        """
        record_key = self._keys.dataset(instance, dataset_id)
        jobs_key = self._keys.dataset_jobs(instance, dataset_id)
        # The reference first: a DELETE racing this one sees it (it watches this key).
        self._r.zadd(jobs_key, {job_id: now()})

        def extend(record: DatasetRecord) -> DatasetRecord:
            return record if record.expires_at >= until else _replace_expiry(record, until)

        try:
            record = update_json_record(
                self._r, record_key, DatasetRecord.from_json, extend, DatasetRecord.to_json
            )
        except redis.RedisError:
            self._r.zrem(jobs_key, job_id)
            raise
        if record is None:
            self._r.zrem(jobs_key, job_id)
            raise DatasetNotFound(dataset_id)
        expires_ms = int(record.expires_at * 1000)
        keys = [
            record_key,
            jobs_key,
            *(self._keys.dataset_chunk(instance, dataset_id, n) for n in range(record.chunks)),
        ]
        with self._r.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.pexpireat(key, expires_ms)
            pipe.zadd(self._keys.datasets_expiry(instance), {dataset_id: record.expires_at})
            pipe.execute()
        return record

    def release(self, instance: str, dataset_id: str, job_id: str) -> None:
        """Drop job ``job_id``'s reference (its creation was refused)."""
        self._r.zrem(self._keys.dataset_jobs(instance, dataset_id), job_id)

    def release_finished(self, instance: str, dataset_id: str, job_id: str) -> None:
        """Drop the reference of job ``job_id``, which finished; when no job holds the dataset
        any more its keys expire at the end of its own retention again (at least a minute from
        now) instead of with the job. Returns nothing; a dataset already gone is no error."""
        record_key = self._keys.dataset(instance, dataset_id)
        jobs_key = self._keys.dataset_jobs(instance, dataset_id)
        self._r.zrem(jobs_key, job_id)

        def shrink(pipe: Pipeline) -> None:
            raw = pipe.get(record_key)
            if raw is None or pipe.zcard(jobs_key):
                return  # gone, or another job holds it: the expiry stays that job's
            record = DatasetRecord.from_json(cast(bytes, raw))
            until = max(record.retained_until or record.expires_at, now() + CREATING_GRACE_S)
            if until >= record.expires_at:
                return
            record = _replace_expiry(record, until)
            until_ms = int(until * 1000)
            pipe.multi()
            pipe.set(record_key, record.to_json(), pxat=until_ms)
            for n in range(record.chunks):
                pipe.pexpireat(self._keys.dataset_chunk(instance, dataset_id, n), until_ms)
            pipe.zadd(self._keys.datasets_expiry(instance), {dataset_id: until})

        self._r.transaction(shrink, record_key, jobs_key)

    def delete(
        self,
        instance: str,
        dataset_id: str,
        finished: Callable[[list[str]], dict[str, bool | None]],
    ) -> None:
        """Delete the dataset and its chunks, unless a job that reads it is unfinished.

        ``finished(job_ids)`` says of each referencing job whether it finished (None: no such
        job, e.g. expired, or being created right now). Raises DatasetNotFound, and
        DatasetInUse (409) naming the jobs that keep it.
        """
        record_key = self._keys.dataset(instance, dataset_id)
        jobs_key = self._keys.dataset_jobs(instance, dataset_id)
        if not is_resource_id(dataset_id):
            raise DatasetNotFound(dataset_id)

        def attempt(pipe: Pipeline) -> None:
            raw = pipe.get(record_key)
            if raw is None:
                raise DatasetNotFound(dataset_id)
            record = DatasetRecord.from_json(cast(bytes, raw))
            refs = cast(list[tuple[bytes, float]], pipe.zrange(jobs_key, 0, -1, withscores=True))
            states = finished([r.decode() for r, _ in refs])
            busy = sorted(
                job_id
                for job_id, at in ((r.decode(), at) for r, at in refs)
                if states.get(job_id) is False
                or (states.get(job_id) is None and now() - at < CREATING_GRACE_S)
            )
            if busy:
                raise DatasetInUse(
                    f"Dataset {dataset_id} is read by unfinished jobs {busy}; wait for them "
                    "(or cancel them), then delete it.",
                    details={"job_ids": busy},
                )
            pipe.multi()
            pipe.delete(record_key, jobs_key)
            for n in range(record.chunks):
                pipe.delete(self._keys.dataset_chunk(instance, dataset_id, n))
            pipe.zrem(self._keys.datasets_index(instance), dataset_id)
            pipe.zrem(self._keys.datasets_expiry(instance), dataset_id)

        self._r.transaction(attempt, record_key, jobs_key)
        log.info("dataset deleted dataset_id=%s", dataset_id)


def _replace_expiry(record: DatasetRecord, until: float) -> DatasetRecord:
    data = asdict(record)
    data["expires_at"] = until
    return DatasetRecord(**data)

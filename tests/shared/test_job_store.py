"""The job record's transitions, against a real Redis: exactly-once chunks, cancel, attempts."""

from __future__ import annotations

import json
import time

import pytest
import redis

from shared.errors import JobNotFound
from shared.job_record import JobRecord
from shared.job_store import JobStore
from shared.keys import Keys
from shared.scoring import pack_fragment
from shared.settings import Settings
from shared.status import ClaimOutcome, CompleteOutcome, FinishOutcome, JobStatus


@pytest.fixture
def store(settings: Settings, redis_client: redis.Redis) -> JobStore:
    return JobStore(redis_client, Keys(settings.key_prefix))


def new_job(
    store: JobStore, instance: str, chunks: int = 3, retention_s: float = 3600
) -> JobRecord:
    return store.create(
        instance,
        kind="batch",
        deployment_id="d",
        model_id="m",
        model_sha256="s" * 64,
        model_filename="m.h5",
        rows_total=chunks * 2,
        chunk_rows=2,
        input_chunks=[b"in%d" % i for i in range(chunks)],
        fields=["prediction"],
        output_names=["y"],
        retention_s=retention_s,
    )


def test_chunks_complete_exactly_once_and_finish_the_job(
    store: JobStore, settings: Settings
) -> None:
    inst = settings.default_instance
    job = new_job(store, inst)
    assert job.status is JobStatus.QUEUED and job.rows_done == 0
    assert store.claim_chunk(inst, job.id, 0, 3) is ClaimOutcome.RUN
    assert store.get(inst, job.id).started_at is not None
    assert store.complete_chunk(inst, job.id, 0, 2, pack_fragment(b"0")) is CompleteOutcome.COUNTED
    # A redelivered task finds the chunk done and neither rescores nor recounts it.
    assert store.claim_chunk(inst, job.id, 0, 3) is ClaimOutcome.DUPLICATE
    assert (
        store.complete_chunk(inst, job.id, 0, 2, pack_fragment(b"0")) is CompleteOutcome.DUPLICATE
    )
    assert store.get(inst, job.id).rows_done == 2
    assert store.read_input(inst, job.id, 0) is None  # inputs are freed once scored
    for chunk in (2, 1):
        store.claim_chunk(inst, job.id, chunk, 3)
    assert store.complete_chunk(inst, job.id, 2, 2, pack_fragment(b"2")) is CompleteOutcome.COUNTED
    assert (
        store.complete_chunk(inst, job.id, 1, 2, pack_fragment(b"1"))
        is CompleteOutcome.JOB_COMPLETED
    )
    done = store.get(inst, job.id)
    assert (done.status, done.rows_done, done.finished) == (JobStatus.COMPLETED, 6, True)
    assert done.finished_at is not None
    body = json.loads(b"".join(store.iter_result(done)))
    assert body == {"fields": ["prediction"], "values": [0, 1, 2]}
    assert store.wait(inst, job.id, 0.1) is True


def test_cancel_stops_further_chunks(store: JobStore, settings: Settings) -> None:
    inst = settings.default_instance
    job = new_job(store, inst)
    store.claim_chunk(inst, job.id, 0, 3)
    assert store.finish(inst, job.id, JobStatus.CANCELED) is FinishOutcome.FINISHED
    assert (
        store.complete_chunk(inst, job.id, 0, 2, pack_fragment(b"0")) is CompleteOutcome.NOT_RUNNING
    )
    assert store.claim_chunk(inst, job.id, 1, 3) is ClaimOutcome.JOB_FINISHED
    again = store.finish(inst, job.id, JobStatus.CANCELED)
    assert again is FinishOutcome.ALREADY_FINISHED
    canceled = store.get(inst, job.id)
    assert (canceled.status, canceled.rows_done) == (JobStatus.CANCELED, 0)
    assert store.metrics()["jobs_canceled"] >= 1


def test_outcomes_for_a_job_that_is_gone(store: JobStore, settings: Settings) -> None:
    inst = settings.default_instance
    assert store.claim_chunk(inst, "nope", 0, 3) is ClaimOutcome.MISSING
    assert store.complete_chunk(inst, "nope", 0, 1, b"") is CompleteOutcome.MISSING
    assert store.finish(inst, "nope", JobStatus.FAILED) is FinishOutcome.MISSING
    with pytest.raises(ValueError):
        store.finish(inst, "nope", JobStatus.COMPLETED)


def test_a_chunk_started_too_often_fails_the_job(store: JobStore, settings: Settings) -> None:
    inst = settings.default_instance
    job = new_job(store, inst)
    for _ in range(2):
        assert store.claim_chunk(inst, job.id, 1, 2) is ClaimOutcome.RUN
    assert store.claim_chunk(inst, job.id, 1, 2) is ClaimOutcome.ATTEMPTS_EXHAUSTED
    failed = store.get(inst, job.id)
    assert failed.status is JobStatus.FAILED
    assert failed.error is not None and failed.error["code"] == "worker_lost"
    assert "Chunk 1" in failed.error["message"]


def test_jobs_expire_after_retention(
    store: JobStore, settings: Settings, redis_client: redis.Redis
) -> None:
    inst = settings.default_instance
    job = new_job(store, inst, retention_s=0.2)
    ttl = redis_client.pttl(Keys(settings.key_prefix).job(inst, job.id))
    assert 0 < ttl <= 200
    assert store.wait(inst, job.id, 0.4) is False
    with pytest.raises(JobNotFound):
        store.get(inst, job.id)
    records, total = store.page(inst, 10, 0)
    assert (records, total) == ([], 0)


def test_list_filters_by_status_and_deployment(store: JobStore, settings: Settings) -> None:
    inst = settings.default_instance
    jobs = [new_job(store, inst) for _ in range(3)]
    store.finish(inst, jobs[1].id, JobStatus.CANCELED)
    records, total = store.page(inst, 10, 0, status=JobStatus.CANCELED)
    assert total == 1 and records[0].id == jobs[1].id
    records, total = store.page(inst, 2, 0, deployment_id="d")
    assert total == 3 and [r.id for r in records] == [jobs[2].id, jobs[1].id]
    assert store.page(inst, 10, 0, deployment_id="other") == ([], 0)


def test_expired_jobs_leave_the_indexes_and_totals_stay_exact(
    store: JobStore, settings: Settings, redis_client: redis.Redis
) -> None:
    inst = settings.default_instance
    keys = Keys(settings.key_prefix)
    short = new_job(store, inst, retention_s=0.2)
    kept = new_job(store, inst)
    time.sleep(0.4)
    records, total = store.page(inst, 10, 0)
    assert (total, [r.id for r in records]) == (1, [kept.id])
    assert store.page(inst, 10, 0, deployment_id="d")[1] == 1
    assert redis_client.zscore(keys.jobs_index(inst), short.id) is None
    assert redis_client.zcard(keys.jobs_expiry(inst)) == 1

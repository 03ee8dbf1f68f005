"""The reconciler: work whose message was lost is sent again, and every accepted job ends.

Faults are injected the way they happen: job and deployment records written while their
messages never reach the queue (what a Redis crash between the two writes leaves), and a real
``kill -9`` of redis-server with jobs queued and running, restarted on its append-only file.
"""

from __future__ import annotations

import io
import json
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from celery import Celery

from api.services import Services
from kscore.localredis import LocalRedis, free_port
from shared.keys import Keys
from shared.online_queue import stream_entry
from shared.queueing import QUEUE_BATCH, SCORE_CHUNK, celery_key_prefix, make_celery
from shared.scoring import FIELDS, ResultShape, encode_chunk, split_rows, validate_input
from shared.settings import Settings
from shared.status import DeploymentStatus, JobStatus
from tests import keras_files as kf
from tests.helpers import wait_for
from tests.workers.processes import Workers
from workers.reconciler import Reconciler, ReconcileReport, task_of


def stored_dense(services: Services, instance: str, tmp_path: Path) -> str:
    """The id of the 4 -> 3 softmax model of tests/keras_files.py, stored for ``instance``."""
    path = kf.tf_keras_h5_file(tmp_path)
    record = services.models.store_upload(
        instance,
        io.BytesIO(path.read_bytes()),
        path.name,
        "dense",
        None,
        max_bytes=services.settings.max_model_bytes,
        workdir=tmp_path,
    )
    return record.id


def deployed(services: Services, instance: str, model_id: str, timeout: float = 120) -> str:
    record = services.create_deployment(instance, model_id, "d", None)
    final = wait_for(
        lambda: (
            (d := services.deployments.get(instance, record.id)).status
            is not DeploymentStatus.DEPLOY_IN_PROGRESS
            and d
        ),
        timeout,
        "deployment to settle",
        0.1,
    )
    assert final.status is DeploymentStatus.DEPLOY_SUCCESS, final.error
    return record.id


def job_written_but_never_sent(
    services: Services, instance: str, deployment_id: str, x: np.ndarray, chunk_rows: int
) -> str:
    """A job record with its input chunks, as the API writes it, whose chunk messages are lost."""
    deployment = services.deployments.get(instance, deployment_id)
    rows = validate_input({"values": x.tolist()}, deployment.inputs, len(x))
    job = services.jobs.create(
        instance,
        kind="batch",
        deployment_id=deployment.id,
        model_id=deployment.model_id,
        model_sha256=deployment.model_sha256,
        model_filename=deployment.model_filename,
        rows_total=rows.rows,
        chunk_rows=chunk_rows,
        input_chunks=split_rows(rows, chunk_rows),
        fields=FIELDS,
        output_names=[str(o["name"]) for o in deployment.outputs],
        retention_s=3600,
    )
    return job.id


def result_rows(services: Services, instance: str, job_id: str) -> list[Any]:
    import json

    record = services.jobs.get(instance, job_id)
    return json.loads(b"".join(services.jobs.iter_result(record)))["values"]  # type: ignore[no-any-return]


def test_task_of_reads_the_messages_celery_stores(settings: Settings) -> None:
    # A prefix no worker consumes: the message stays where Celery put it.
    parked = settings.replace(key_prefix=f"parked-{uuid.uuid4().hex[:8]}")
    client = redis.Redis.from_url(parked.redis_url)
    app = make_celery(parked)
    app.send_task(SCORE_CHUNK, args=["inst", "job", 3], queue=QUEUE_BATCH)
    reconciler = Reconciler(parked, client, app, "test")
    assert (SCORE_CHUNK, ("inst", "job", 3)) in reconciler.in_flight()
    assert task_of(b"not json") is None


def test_a_message_held_over_a_connection_older_than_the_server_is_not_in_flight(
    settings: Settings,
) -> None:
    parked = settings.replace(key_prefix=f"parked-{uuid.uuid4().hex[:8]}")
    client = redis.Redis.from_url(parked.redis_url)
    app = make_celery(parked)
    reconciler = Reconciler(parked, client, app, "test")
    started = time.time() - float(client.info("server")["uptime_in_seconds"])
    epoch = reconciler.server_epoch()  # the first look: the server's start
    assert abs(epoch - started) < 2.0
    assert reconciler.server_epoch() == epoch  # the same server: the same epoch

    prefix = celery_key_prefix(parked)
    for chunk, taken_at in ((1, epoch - 5.0), (2, time.time())):
        app.send_task(SCORE_CHUNK, args=["inst", "job", chunk], queue=QUEUE_BATCH)
        raw = client.rpop(prefix + QUEUE_BATCH)
        # Where Kombu keeps a message a worker took (its Redis transport's QoS.append).
        tag = f"tag-{chunk}"
        client.hset(prefix + "unacked", tag, json.dumps([json.loads(raw), "", QUEUE_BATCH]))
        client.zadd(prefix + "unacked_index", {tag: taken_at})
    flying = reconciler.in_flight()
    assert (SCORE_CHUNK, ("inst", "job", 2)) in flying
    assert (SCORE_CHUNK, ("inst", "job", 1)) not in flying  # its connection died with the server

    record = Keys(parked.key_prefix).reconciler_server()
    # A restart: the last pass saw another run_id before this server started.
    client.hset(record, mapping={"run_id": "old", "epoch": 0, "seen_at": started - 10})
    assert abs(reconciler.server_epoch() - started) < 2.0
    # A promotion: the new master was up (a replica) when the old one was last seen.
    before = time.time()
    client.hset(record, mapping={"run_id": "old", "epoch": 0, "seen_at": before})
    promoted = reconciler.server_epoch()
    assert before <= promoted <= time.time()
    assert reconciler.server_epoch() == promoted
    # Where INFO is refused (some managed Redis services): the visibility timeout alone decides.
    user = f"noinfo-{uuid.uuid4().hex[:6]}"
    client.acl_setuser(user, enabled=True, nopass=True, keys=["*"], commands=["+@all", "-info"])
    limited = redis.Redis.from_url(parked.redis_url, username=user, password="")
    try:
        assert Reconciler(parked, limited, app, "limited").server_epoch() == 0.0
    finally:
        limited.close()
        client.acl_deluser(user)
        client.close()


@pytest.mark.usefixtures("worker")
def test_lost_chunks_and_a_lost_deploy_are_sent_again_on_the_second_pass(
    settings: Settings, redis_client: redis.Redis, worker: Celery, tmp_path: Path
) -> None:
    instance = settings.default_instance
    services = Services.build(settings, redis_client)
    model_id = stored_dense(services, instance, tmp_path)
    deployment_id = deployed(services, instance, model_id)
    x = np.random.default_rng(3).normal(size=(120, 4)).astype(np.float32)
    job_id = job_written_but_never_sent(services, instance, deployment_id, x, chunk_rows=50)
    model = services.models.get(instance, model_id)
    lost_deploy = services.deployments.create(instance, model, "lost", None)  # never sent
    reconciler = Reconciler(settings, redis_client, worker, "test")

    def ours(report: ReconcileReport) -> tuple[list[int], list[str]]:
        # Other tests' work shares the queues: look only at what this test lost.
        chunks = sorted(chunk for job, chunk in report.resent_chunks if job == job_id)
        return chunks, [d for d in report.resent_deploys if d == lost_deploy.id]

    first = reconciler.run_once()
    # One look can miss a message on its way from a queue to a worker: nothing sent yet.
    assert ours(first) == ([], [])
    assert services.jobs.get(instance, job_id).status is JobStatus.QUEUED

    second = reconciler.run_once()
    assert ours(second) == ([0, 1, 2], [lost_deploy.id])
    done = wait_for(
        lambda: (j := services.jobs.get(instance, job_id)).finished and j, 60, "job to end"
    )
    assert done.status is JobStatus.COMPLETED and done.rows_done == 120
    got = [row[0] for row in result_rows(services, instance, job_id)]
    np.testing.assert_allclose(got, kf.expected_dense_softmax(x), rtol=1e-5, atol=1e-6)
    wait_for(
        lambda: (
            services.deployments.get(instance, lost_deploy.id).status
            is DeploymentStatus.DEPLOY_SUCCESS
        ),
        60,
        "lost deploy to succeed",
    )
    # A finished job leaves the active set; nothing is sent for it again.
    third = reconciler.run_once()
    assert ours(third) == ([], []) and (instance, job_id) not in services.jobs.active()


@pytest.mark.slow
def test_every_accepted_job_ends_after_redis_is_killed_and_restarted(tmp_path: Path) -> None:
    server = LocalRedis(tmp_path / "redis", port=free_port(), persist=True).start()
    settings = Settings(
        redis_url=server.url,
        key_prefix="crash",
        data_dir=tmp_path / "data",
        chunk_rows=100,
        reconcile_interval_s=1.0,
        # The workers keep the default visibility timeout (an hour): recovery here cannot
        # come from Kombu redelivering what a dead connection held.
    )
    instance = "crash-test"
    client = redis.Redis.from_url(server.url)
    services = Services.build(settings, client)
    workers = Workers(settings, tmp_path / "logs")
    jobs: list[str] = []
    try:
        # Two workers, as a real installation runs: a worker whose consumer did not come back
        # after the restart (seen, rarely) must not hold the test up; the reconciler's re-sends
        # reach the other one.
        for _ in range(2):
            workers.start(concurrency=1)
        deployment_id = deployed(services, instance, stored_dense(services, instance, tmp_path))
        rng = np.random.default_rng(5)
        inputs = [rng.normal(size=(1_500, 4)).astype(np.float32) for _ in range(30)]
        jobs.extend(
            services.submit_job(instance, deployment_id, {"values": x.tolist()}, kind="batch").id
            for x in inputs
        )
        wait_for(
            lambda: sum(services.jobs.get(instance, j).rows_done > 0 for j in jobs) >= 2,
            60,
            "jobs to start",
            0.02,
        )
        assert server.child is not None
        server.child.process.send_signal(signal.SIGKILL)
        server.child.process.wait(10)
        killed_at = time.monotonic()
        time.sleep(1.0)
        server.child = None
        server.start()  # same port, same append-only file

        def all_ended() -> bool:
            return all(services.jobs.get(instance, j).finished for j in jobs)

        wait_for(all_ended, 180, "every accepted job to end", 0.5)
        print(f"recovered: every job ended {time.monotonic() - killed_at:.1f} s after the kill")
        for job_id, x in zip(jobs, inputs, strict=True):
            record = services.jobs.get(instance, job_id)  # no job record was lost
            assert record.status is JobStatus.COMPLETED, (record.status, record.error)
            assert record.rows_done == record.rows_total == len(x)  # every row counted once
            got = [row[0] for row in result_rows(services, instance, job_id)]
            np.testing.assert_allclose(got, kf.expected_dense_softmax(x), rtol=1e-5, atol=1e-6)
        assert services.deployments.get(instance, deployment_id).status is (
            DeploymentStatus.DEPLOY_SUCCESS
        )
    except BaseException:
        print(workers.logs())
        print(workers.unfinished_report(services, instance, jobs))
        raise
    finally:
        workers.stop()
        client.close()
        server.stop()


def test_online_requests_are_not_resent_and_a_lost_one_fails(settings: Settings) -> None:
    # A prefix no worker consumes: the stream entries stay where the API put them.
    parked = settings.replace(key_prefix=f"parked-{uuid.uuid4().hex[:8]}")
    client = redis.Redis.from_url(parked.redis_url)
    services = Services.build(parked, client)
    rows = encode_chunk([np.zeros((1, 4), dtype=np.float32)])

    def online_job() -> str:
        entry = stream_entry(
            instance="inst", deployment_id="dep", model_sha256="0" * 64,
            model_filename="m.h5", output_names=["out"], result_shape=ResultShape.WML_V3,
            max_batch_size=64, max_wait_ms=2.0, rows=1,
        )  # fmt: skip
        return services.jobs.create(
            "inst", kind="online", deployment_id="dep", model_id="m", model_sha256="0" * 64,
            model_filename="m.h5", rows_total=1, chunk_rows=1, input_chunks=[rows],
            fields=FIELDS, output_names=["out"], retention_s=60, stream_entry=entry,
        ).id  # fmt: skip

    waiting, lost = online_job(), online_job()
    stream = Keys(parked.key_prefix).online_stream()
    entries = {fields[b"j"].decode(): entry_id for entry_id, fields in client.xrange(stream)}
    client.xdel(stream, entries[lost])  # what a Redis restart without its last writes leaves
    reconciler = Reconciler(parked, client, make_celery(parked), "test")
    first = reconciler.run_once()
    assert first.resent_chunks == [] and first.failed_requests == []
    second = reconciler.run_once()
    assert second.resent_chunks == [] and second.failed_requests == [lost]
    failed = services.jobs.get("inst", lost)
    assert failed.status is JobStatus.FAILED and failed.error == {
        "code": "request_lost",
        "message": failed.error["message"] if failed.error else "",
    }
    assert services.jobs.get("inst", waiting).status is JobStatus.QUEUED  # its entry waits

"""The worker's tasks. Each loads its record by id, calls a pure function, writes the result.

Tasks take ids only; inputs and results live in Redis. They are idempotent, so Celery may
deliver one again after its worker died (acks_late).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery, Task, bootsteps
from celery.concurrency.prefork import TaskPool as PreforkPool
from celery.signals import worker_process_init, worker_process_shutdown

from shared.blob_store import BlobStore
from shared.dataset_store import DatasetStore
from shared.deployment_store import DeploymentStore
from shared.errors import DomainError, JobNotFound
from shared.instance_store import InstanceStore
from shared.job_store import JobStore
from shared.keys import Keys
from shared.metrics import beat
from shared.model_store import ModelStore
from shared.queueing import DELIVER_WEBHOOK, DEPLOY_MODEL, QUEUE_ONLINE, SCORE_CHUNK
from shared.redis_client import connect
from shared.results import render
from shared.scoring import decode_chunk
from shared.settings import Settings
from shared.status import ClaimOutcome, CompleteOutcome, DeploymentStatus, FinishOutcome, JobStatus
from workers.callbacks import deliver, send_callback
from workers.model_cache import ModelCache
from workers.online import OnlineBatcher, record_error
from workers.prefetch import ChunkKey, ChunkPrefetch
from workers.reconciler import Reconciler, ReconcilerThread

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 10.0


@dataclass
class Runtime:
    """What one worker process holds: its Redis connection, the stores and its model cache."""

    settings: Settings
    keys: Keys
    deployments: DeploymentStore
    jobs: JobStore
    models: ModelCache
    model_records: ModelStore
    instances: InstanceStore
    datasets: DatasetStore
    inputs: ChunkPrefetch

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        if settings.tf_threads:
            from workers.model_loader import limit_threads

            limit_threads(settings.tf_threads)
        client = connect(settings)
        keys = Keys(settings.key_prefix)
        blobs = BlobStore(client, keys, settings.blob_chunk_bytes)
        jobs = JobStore(client, keys)
        datasets = DatasetStore(client, keys)

        def read_input(key: ChunkKey) -> bytes | None:
            instance, job_id, dataset_id, chunk = key
            if dataset_id:  # chunk n of the job is chunk n of its dataset
                return datasets.read_chunk(instance, dataset_id, chunk)
            return jobs.read_input(instance, job_id, chunk)

        return cls(
            settings=settings,
            keys=keys,
            deployments=DeploymentStore(client, keys),
            jobs=jobs,
            models=ModelCache(
                blobs,
                settings.local_model_dir,
                settings.model_cache_size,
                settings.direct_call_max_rows,
            ),
            model_records=ModelStore(client, keys, blobs),
            instances=InstanceStore(client, keys),
            datasets=datasets,
            inputs=ChunkPrefetch(read_input),
        )


class RuntimeHolder:
    """Builds the Runtime lazily in the process that uses it, so nothing crosses a fork."""

    def __init__(self, settings: Settings, app: Celery) -> None:
        self.settings = settings
        self.app = app  # to send a job's callback task when a task ends the job
        self._pid = -1
        self._runtime: Runtime | None = None
        self._lock = threading.Lock()

    def get(self) -> Runtime:
        with self._lock:
            if self._runtime is None or self._pid != os.getpid():
                self._runtime = Runtime.build(self.settings)
                self._pid = os.getpid()
            return self._runtime


def deploy_model(holder: RuntimeHolder, instance: str, deployment_id: str) -> None:
    """Load the deployment's model in this worker, warm it up, and record the outcome.

    A deployment that is moving loads its pending model instead: on success the record
    switches to it in one write, on failure it records ``pending_error`` and the current
    model keeps serving.
    """
    rt = holder.get()
    try:
        deployment = rt.deployments.get(instance, deployment_id)
    except DomainError:
        log.info("deployment gone before deploy deployment_id=%s", deployment_id)
        return
    pending = deployment.pending_model
    if pending is not None:
        model_id, sha256 = str(pending["model_id"]), str(pending["model_sha256"])
        filename = str(pending["model_filename"])
    else:
        model_id, sha256 = deployment.model_id, deployment.model_sha256
        filename = deployment.model_filename
    started = time.perf_counter()
    try:
        model = rt.models.get(sha256, filename)
        model.warm_up()
        outputs = [spec.to_dict() for spec in model.output_signature()]
    except redis.RedisError:
        raise  # infrastructure, not the model: the task is retried
    except Exception as exc:  # the reason goes to the deployment record and the log
        log.exception("deploy failed deployment_id=%s model_id=%s", deployment_id, model_id)
        error = record_error(exc, "model_load_failed")
        if pending is not None:
            rt.deployments.fail_move(instance, deployment_id, model_id, error)
        else:
            rt.deployments.set_status(
                instance, deployment_id, DeploymentStatus.DEPLOY_FAILED, error
            )
        return
    # Output shapes only Keras knows: recorded before the success that clients wait for.
    rt.model_records.record_outputs(instance, model_id, outputs)
    if pending is not None:
        rt.deployments.switch_model(instance, deployment_id, model_id, outputs)
    else:
        rt.deployments.set_status(
            instance, deployment_id, DeploymentStatus.DEPLOY_SUCCESS, outputs=outputs
        )
    log.info(
        "deployed deployment_id=%s sha256=%s moved=%s seconds=%.3f",
        deployment_id,
        sha256,
        pending is not None,
        time.perf_counter() - started,
    )


def score_chunk(holder: RuntimeHolder, instance: str, job_id: str, chunk: int) -> None:
    """Score one chunk of a job exactly once and record its rows."""
    rt = holder.get()
    claim = rt.jobs.claim_chunk(instance, job_id, chunk, rt.settings.chunk_max_attempts)
    if claim is not ClaimOutcome.RUN:
        log.info("chunk skipped job_id=%s chunk=%d claim=%s", job_id, chunk, claim)
        if claim is ClaimOutcome.ATTEMPTS_EXHAUSTED:
            _ended(holder, instance, job_id)
        return
    job = rt.jobs.get(instance, job_id)
    data = rt.inputs.get((instance, job_id, job.dataset_id or "", chunk))
    if data is not None and chunk + 1 < job.chunks:
        # Most often this process's next task: its bytes arrive while the model runs.
        rt.inputs.read_ahead((instance, job_id, job.dataset_id or "", chunk + 1))
    if data is None:
        ended = rt.jobs.finish(
            instance,
            job_id,
            JobStatus.FAILED,
            {
                "code": "input_missing",
                "message": f"The input rows of chunk {chunk} are gone from Redis (evicted?); resubmit the job.",
            },
        )
        if ended is FinishOutcome.FINISHED:
            _ended(holder, instance, job_id)
        return
    started = time.perf_counter()
    try:
        model = rt.models.get(job.model_sha256, job.model_filename)
        arrays = decode_chunk(data, [s.to_dict() for s in model.input_specs])
        if job.dataset_id:
            arrays = rt.datasets.model_inputs(job, chunk, arrays, model.input_specs)
        outputs = model.predict(arrays)
        # Batch chunks keep the raw arrays (the API renders the format asked for); online
        # ones the JSON answer.
        payload = render(outputs, job.kind, job.result_shape, job.output_names)
    except redis.RedisError:
        raise  # infrastructure, not the model: the task is retried
    except Exception as exc:  # the job says failed and why; the log keeps the traceback
        log.exception("chunk failed job_id=%s chunk=%d", job_id, chunk)
        ended = rt.jobs.finish(
            instance, job_id, JobStatus.FAILED, record_error(exc, "scoring_failed")
        )
        if ended is FinishOutcome.FINISHED:
            _ended(holder, instance, job_id)
        return
    rows = len(outputs[0]) if outputs else 0
    outcome = rt.jobs.complete_chunk(instance, job_id, chunk, rows, payload)
    log.info(
        "chunk scored job_id=%s chunk=%d rows=%d seconds=%.3f outcome=%s",
        job_id,
        chunk,
        rows,
        time.perf_counter() - started,
        outcome,
    )
    if outcome is CompleteOutcome.JOB_COMPLETED:
        _ended(holder, instance, job_id)


def _ended(holder: RuntimeHolder, instance: str, job_id: str) -> None:
    """This task's Lua script ended the job: send its callback, if it has one."""
    rt = holder.get()
    try:
        record = rt.jobs.get(instance, job_id)
    except JobNotFound:  # an online job whose answer was delivered and deleted already
        return
    send_callback(rt.jobs, holder.app, record)


def preload_models(holder: RuntimeHolder) -> None:
    """Drop local files of deleted models, then load the newest deployed models before the
    first request asks for them."""
    rt = holder.get()
    try:
        rt.models.prune_local_files()
        deployments = rt.deployments.newest_ready(rt.settings.model_cache_size)
    except redis.RedisError as exc:
        log.warning("models not preloaded error=%s", exc)
        return
    for deployment in deployments:
        started = time.perf_counter()
        try:
            rt.models.get(deployment.model_sha256, deployment.model_filename).warm_up()
        except Exception as exc:  # a model that cannot load here fails its requests, not startup
            log.warning(
                "model not preloaded deployment_id=%s sha256=%s error=%s",
                deployment.id, deployment.model_sha256, exc,
            )  # fmt: skip
            continue
        log.info(
            "model preloaded deployment_id=%s sha256=%s seconds=%.3f",
            deployment.id, deployment.model_sha256, time.perf_counter() - started,
        )  # fmt: skip


def register_tasks(app: Celery, settings: Settings) -> RuntimeHolder:
    """Register kscore's tasks on ``app`` under the names the API sends."""
    holder = RuntimeHolder(settings, app)

    # Redis blips are retried soon; if even the retry cannot be sent, the unacknowledged
    # message comes back after the visibility timeout (task_acks_on_failure_or_timeout=False).
    retry = {"autoretry_for": (redis.RedisError,), "retry_backoff": 2, "max_retries": 5}

    @app.task(name=DEPLOY_MODEL, **retry)
    def deploy_model_task(instance: str, deployment_id: str) -> None:
        deploy_model(holder, instance, deployment_id)

    @app.task(name=SCORE_CHUNK, **retry)
    def score_chunk_task(instance: str, job_id: str, chunk: int) -> None:
        score_chunk(holder, instance, job_id, chunk)

    @app.task(name=DELIVER_WEBHOOK, bind=True, **retry)
    def deliver_webhook_task(self: Task, instance: str, job_id: str) -> None:
        rt = holder.get()
        deliver(self, settings, rt.jobs, rt.instances, instance, job_id)

    app.steps["consumer"].add(_heartbeat_step(settings, holder))

    batchers: list[OnlineBatcher] = []

    @worker_process_init.connect(weak=False)
    def preload_in_child(**_: Any) -> None:
        # Each pool process (after fork, so TensorFlow never loads in the parent) warms the
        # models already deployed, in the background: a new or restarted worker answers its
        # first online request without a cold start, and takes tasks meanwhile.
        threading.Thread(
            target=preload_models, args=(holder,), name="kscore-preload", daemon=True
        ).start()
        # -Q was applied before the fork: a worker consuming "online" answers online requests
        # from each of its pool processes (the online stream, not Celery messages).
        if QUEUE_ONLINE in app.amqp.queues.consume_from:
            batcher = OnlineBatcher(settings, holder.get)
            batcher.start()
            batchers.append(batcher)

    @worker_process_shutdown.connect(weak=False)
    def stop_batcher_in_child(**_: Any) -> None:
        # A warm shutdown answers the batch in hand; what the stream still holds for this
        # consumer is reclaimed by another after KSCORE_ONLINE_RECLAIM.
        for batcher in batchers:
            batcher.stop()

    return holder


class _Heartbeat:
    """A daemon thread telling Redis every few seconds that this worker consumes its queues."""

    def __init__(self, settings: Settings, worker: str, queues: str) -> None:
        self._client = connect(settings)
        self._keys = Keys(settings.key_prefix)
        self._worker = worker
        self._queues = queues
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kscore-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=HEARTBEAT_SECONDS)
        try:
            self._client.zrem(self._keys.workers_index(), self._worker)
        except redis.RedisError as exc:  # the heartbeat expires by itself
            log.warning("heartbeat not withdrawn worker=%s error=%s", self._worker, exc)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                beat(self._client, self._keys, self._worker, self._queues)
            except Exception as exc:  # a Redis blip must not kill the heartbeat
                log.warning("heartbeat failed worker=%s error=%s", self._worker, exc)
            self._stop.wait(HEARTBEAT_SECONDS)


def _heartbeat_step(settings: Settings, holder: RuntimeHolder) -> type[bootsteps.StartStopStep]:
    class HeartbeatStep(bootsteps.StartStopStep):
        """Consumer bootstep: beat, and take part in reconciling, while this worker consumes.

        It starts after the consumer's Tasks step, i.e. once messages are being taken, and
        stops with the consumer (e.g. when the broker connection is lost), so /readyz never
        counts a worker that is still starting or has lost Redis.
        """

        requires = ("celery.worker.consumer.tasks:Tasks",)

        def __init__(self, parent: Any, **kwargs: Any) -> None:
            super().__init__(parent, **kwargs)
            self.heartbeat: _Heartbeat | None = None
            self.reconciler: ReconcilerThread | None = None
            self.online: OnlineBatcher | None = None

        def start(self, parent: Any) -> None:
            queues = ",".join(q.name for q in parent.task_consumer.queues)  # in precedence order
            self.heartbeat = _Heartbeat(settings, parent.hostname, queues)
            self.heartbeat.start()
            # Every worker runs one; the lease in Redis lets one of them act at a time.
            reconciler = Reconciler(settings, connect(settings), parent.app, parent.hostname)
            self.reconciler = ReconcilerThread(reconciler, settings.reconcile_interval_s)
            self.reconciler.start()
            # A prefork pool answers online requests in its pool processes (worker_process_init);
            # a thread or solo pool scores in this process, so it reads the stream here.
            if QUEUE_ONLINE in queues.split(",") and not isinstance(parent.pool, PreforkPool):
                self.online = OnlineBatcher(settings, holder.get)
                self.online.start()

        def stop(self, parent: Any) -> None:
            if self.online is not None:
                self.online.stop()
                self.online = None
            if self.reconciler is not None:
                self.reconciler.stop()
                self.reconciler = None
            if self.heartbeat is not None:
                self.heartbeat.stop()
                self.heartbeat = None

        shutdown = stop

    return HeartbeatStep

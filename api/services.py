"""What the API does, as plain functions over the stores: views validate, call these,
serialize. Nothing here imports Flask or TensorFlow."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import redis
from celery import Celery
from kombu.exceptions import OperationalError

from shared.blob_store import BlobStore
from shared.dataset_store import DatasetStore
from shared.deployment_store import DeploymentRecord, DeploymentStore
from shared.errors import (
    BackendUnavailable,
    DeploymentNotReady,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    JobAlreadyFinished,
    JobNotFound,
    NoWorker,
    PayloadTooLarge,
    ScoringFailed,
    ScoringInputInvalid,
    StateConflict,
)
from shared.idempotency_store import Claim, IdempotencyStore
from shared.instance_store import InstanceStore
from shared.job_record import JobRecord
from shared.job_store import DeploymentChanged, JobStore
from shared.keys import Keys
from shared.metrics import consumed_queues, observe_latency
from shared.model_store import ModelStore
from shared.online_queue import stream_entry
from shared.queueing import (
    DEPLOY_MODEL,
    QUEUE_BATCH,
    QUEUE_DEPLOY,
    QUEUE_ONLINE,
    SCORE_CHUNK,
    make_celery,
)
from shared.scoring import (
    FIELDS,
    ArrayPayload,
    ResultShape,
    encode_chunk,
    split_rows,
    validate_input,
)
from shared.settings import Settings
from shared.status import DeploymentStatus, FinishOutcome, JobStatus
from shared.webhooks import check_callback_url

log = logging.getLogger(__name__)

# An online request answered 202 keeps its job this long (at most KSCORE_JOB_RETENTION).
ONLINE_JOB_RETENTION_S = 86400.0

# Heartbeats come every 10 s and count for 30 s: a second-old look at them is as good.
CONSUMED_QUEUES_TTL_S = 1.0

# A request repeating an Idempotency-Key waits this long for the first to create its job.
IDEMPOTENCY_WAIT_S = 10.0
# A claimed key frees itself after this, should its request die before creating the job
# (storing a million-row job takes seconds, not minutes).
IDEMPOTENCY_LEASE_S = 300.0
# Reads of a deployment before a job against it gives up (Services.submit_job): the first from
# the process's cache, the others from Redis, each refused only by a change since.
DEPLOYMENT_READS = 3


def deployment_changed(deployment_id: str) -> StateConflict:
    """The 409 for a job whose deployment changed (moved, undeployed, deleted) between the
    read its rows were validated against and the job's creation."""
    return StateConflict(
        f"Deployment {deployment_id} changed while this job was being accepted; send it again.",
        details={"deployment_id": deployment_id},
    )


def check_ready(deployment: DeploymentRecord) -> None:
    """Raises DeploymentNotReady (409) unless the deployment is DEPLOY_SUCCESS."""
    if deployment.status != DeploymentStatus.DEPLOY_SUCCESS:
        raise DeploymentNotReady(
            f"Deployment {deployment.id} is {deployment.status}; it can score once it is "
            f"{DeploymentStatus.DEPLOY_SUCCESS}.",
            details={"status": deployment.status, "error": deployment.error},
        )


@dataclass(frozen=True)
class IdempotentRequest:
    """An ``Idempotency-Key`` and the fingerprint of the request that carried it."""

    key: str
    fingerprint: str


@dataclass
class Services:
    """The stores and the task sender of one installation."""

    settings: Settings
    redis_client: redis.Redis
    keys: Keys
    models: ModelStore
    deployments: DeploymentStore
    jobs: JobStore
    instances: InstanceStore
    celery: Celery
    idempotency: IdempotencyStore
    datasets: DatasetStore
    _token_secret: str | None = field(default=None, repr=False)
    # consumed_queues as last read, and when (monotonic s): every online request asks.
    _consumed: tuple[float, set[str]] = field(default=(-1e9, set()), repr=False)

    @classmethod
    def build(cls, settings: Settings, client: redis.Redis) -> Services:
        """Wire the stores over one Redis client; returns them, connecting to nothing yet."""
        keys = Keys(settings.key_prefix)
        blobs = BlobStore(client, keys, settings.blob_chunk_bytes)
        return cls(
            settings=settings,
            redis_client=client,
            keys=keys,
            models=ModelStore(client, keys, blobs),
            deployments=DeploymentStore(client, keys),
            jobs=JobStore(client, keys),
            instances=InstanceStore(client, keys),
            celery=make_celery(settings),
            idempotency=IdempotencyStore(client, keys),
            datasets=DatasetStore(client, keys),
        )

    def token_secret(self) -> str:
        """The token signing secret: KSCORE_TOKEN_SECRET, or one kept in Redis for every API
        process of the installation (read once per process)."""
        if self._token_secret is None:
            self._token_secret = self.settings.token_secret or self.instances.token_secret()
        return self._token_secret

    def _send(self, name: str, args: list[Any], queue: str) -> None:
        try:
            self.celery.send_task(name, args=args, queue=queue)
        except OperationalError as exc:
            raise BackendUnavailable(
                f"Could not queue the task: the broker is unreachable ({exc})."
            ) from exc

    def idle_queues(self, *queues: str) -> set[str]:
        """Those of ``queues`` that no live worker consumes (per the workers' heartbeats,
        read at most every CONSUMED_QUEUES_TTL_S per process while some worker is live)."""
        read_at, consumed = self._consumed
        if time.monotonic() - read_at > CONSUMED_QUEUES_TTL_S or not set(queues) <= consumed:
            consumed = consumed_queues(self.redis_client, self.keys)
            self._consumed = (time.monotonic(), consumed)
        return set(queues) - consumed

    def create_deployment(
        self,
        instance: str,
        model_id: str,
        name: str,
        description: str | None,
        batching: dict[str, Any] | None = None,
    ) -> DeploymentRecord:
        """Record a deployment, then ask a worker to load and warm up its model.

        ``batching`` (``max_batch_size``, ``max_wait_ms``, either optional) overrides the
        installation's batching of online requests for this deployment.

        Returns the record, DEPLOY_IN_PROGRESS. Raises ModelNotFound, and BackendUnavailable
        when the broker is unreachable (the record is deleted again).
        """
        model = self.models.get(instance, model_id)
        record = self.deployments.create(instance, model, name, description, batching)
        try:
            self._send(DEPLOY_MODEL, [instance, record.id], QUEUE_DEPLOY)
        except BackendUnavailable:
            # No worker will ever hear of it: take the record back rather than leave it
            # DEPLOY_IN_PROGRESS forever.
            self.deployments.delete(instance, record.id)
            raise
        return record

    def move_deployment(
        self, instance: str, deployment_id: str, model_id: str, changes: dict[str, Any]
    ) -> DeploymentRecord:
        """Redeploy behind the same URL: record ``model_id`` as the deployment's pending model
        (applying ``changes``: name, description) and ask a worker to load and warm it up; the
        worker then switches the record to it. The current model serves meanwhile.

        Returns the record (``pending_model`` set; unset when ``model_id`` is already
        current). Raises ModelNotFound, DeploymentNotFound, DeploymentMovePending,
        DeploymentNotReady, ModelInputsMismatch, and BackendUnavailable when the broker is
        unreachable (the move is then recorded as failed: ``pending_error``).
        """
        model = self.models.get(instance, model_id)
        record = self.deployments.start_move(instance, deployment_id, model, changes)
        if record.pending_model is None:
            return record
        try:
            self._send(DEPLOY_MODEL, [instance, record.id], QUEUE_DEPLOY)
        except BackendUnavailable as exc:
            # No worker will hear of it: end the move, or every later PATCH would be a 409.
            error = {"code": "enqueue_failed", "message": exc.message}
            self.deployments.fail_move(instance, record.id, model.id, error)
            raise
        return record

    def submit_job(
        self,
        instance: str,
        deployment_id: str,
        payload: dict[str, Any] | ArrayPayload,
        *,
        kind: str,
        retention_s: float | None = None,
        result_shape: ResultShape = ResultShape.WML_V3,
        callback_url: str | None = None,
        base_url: str = "",
    ) -> JobRecord:
        """Validate rows against the deployment, store them as chunks, and queue the chunks.

        ``callback_url`` receives the job's document (URLs under ``base_url``) when it ends;
        CallbackNotAllowed (422) when KSCORE_WEBHOOK_ALLOW does not allow it.

        Returns the job, queued. Raises DeploymentNotFound, DeploymentNotReady,
        NoWorker for online rows when no worker consumes the online queue (a batch job is
        accepted: it waits for a worker, and says so), ScoringInputInvalid or PayloadTooLarge
        for the rows, QueuedRowsLimit or QueuedJobsLimit when the instance's work accepted
        and not finished would pass KSCORE_MAX_QUEUED_ROWS / _JOBS, and BackendUnavailable
        when the broker is unreachable (the job is then failed with ``enqueue_failed``).

        The deployment comes from the API process's cache (``DeploymentStore.current``); the
        job is written only if that is still the stored record, else it is read again and the
        rows validated again, up to DEPLOYMENT_READS times (a deployment changing under every
        read: StateConflict, 409).
        """
        for attempt in range(DEPLOYMENT_READS):
            deployment, digest = self.deployments.current(
                instance, deployment_id, fresh=attempt > 0
            )
            try:
                return self._submit_against(
                    deployment,
                    digest,
                    payload,
                    kind=kind,
                    retention_s=retention_s,
                    result_shape=result_shape,
                    callback_url=callback_url,
                    base_url=base_url,
                )
            except DeploymentChanged:
                continue
        raise deployment_changed(deployment_id)

    def _submit_against(
        self,
        deployment: DeploymentRecord,
        digest: str,
        payload: dict[str, Any] | ArrayPayload,
        *,
        kind: str,
        retention_s: float | None,
        result_shape: ResultShape,
        callback_url: str | None,
        base_url: str,
    ) -> JobRecord:
        """``submit_job`` for one read of the deployment (``digest``: its record's SHA-1).
        Raises DeploymentChanged when the stored record is no longer that one."""
        check_ready(deployment)
        instance = deployment.instance
        online = kind == "online"
        if online and self.idle_queues(QUEUE_ONLINE):
            # Said now: otherwise the caller learns it only when its timeout passes.
            raise NoWorker(
                "No kscore worker is consuming the online queue, so these rows cannot be "
                "scored now: start one with `kscore worker` (or `--queues online`), then retry.",
                details={"queue": QUEUE_ONLINE},
            )
        settings = self.settings
        if callback_url is not None:
            check_callback_url(callback_url, settings.webhook_allow)
        scoring_input = validate_input(
            payload,
            deployment.inputs,
            settings.max_rows_online if online else settings.max_rows_job,
        )
        if 0 < settings.max_queued_rows < scoring_input.rows:
            # No wait makes room for it: say so, rather than 429 for ever.
            raise PayloadTooLarge(
                f"{scoring_input.rows} rows are more than this instance may have queued at "
                f"once ({settings.max_queued_rows}, KSCORE_MAX_QUEUED_ROWS); split them into "
                "smaller jobs.",
                details={"rows": scoring_input.rows, "limit": settings.max_queued_rows},
            )
        # An online request is one chunk: one model call on one worker is the fastest answer.
        chunk_rows = scoring_input.rows if online else settings.chunk_rows
        output_names = [str(o["name"]) for o in deployment.outputs]
        entry = None
        if online:  # it travels on the online stream, written with the job (no Celery task)
            batching = deployment.batching_with(settings.max_batch_size, settings.max_batch_wait_ms)
            entry = stream_entry(
                instance=instance,
                deployment_id=deployment.id,
                model_sha256=deployment.model_sha256,
                model_filename=deployment.model_filename,
                output_names=output_names,
                result_shape=result_shape,
                max_batch_size=batching["max_batch_size"],
                max_wait_ms=batching["max_wait_ms"],
                rows=scoring_input.rows,
            )
        job = self.jobs.create(
            instance,
            kind=kind,
            deployment_id=deployment.id,
            model_id=deployment.model_id,
            model_sha256=deployment.model_sha256,
            model_filename=deployment.model_filename,
            rows_total=scoring_input.rows,
            chunk_rows=chunk_rows,
            input_chunks=(
                [encode_chunk(scoring_input.arrays)]
                if online
                else split_rows(scoring_input, chunk_rows)
            ),
            fields=FIELDS,
            output_names=output_names,
            retention_s=retention_s if retention_s is not None else settings.job_retention_s,
            result_shape=result_shape,
            max_queued_rows=settings.max_queued_rows,
            max_queued_jobs=settings.max_queued_jobs,
            callback_url=callback_url,
            base_url=base_url,
            stream_entry=entry,
            deployment_sha1=digest,
        )
        if not online:
            self.send_chunks(job)
        return job

    def send_chunks(self, job: JobRecord) -> None:
        """Send one ``score_chunk`` task per chunk of a batch job just created. Raises
        BackendUnavailable (503) when the broker is unreachable; the job is then failed with
        ``enqueue_failed``, so nothing waits for tasks that were never sent."""
        try:
            for index in range(job.chunks):
                self._send(SCORE_CHUNK, [job.instance, job.id, index], QUEUE_BATCH)
        except BackendUnavailable as exc:
            self.jobs.finish(
                job.instance,
                job.id,
                JobStatus.FAILED,
                {"code": "enqueue_failed", "message": exc.message},
            )
            raise

    def submit_once(
        self,
        instance: str,
        request: IdempotentRequest | None,
        submit: Callable[[], JobRecord],
    ) -> tuple[JobRecord, bool]:
        """Run ``submit`` once per Idempotency-Key: the first request with the key creates the
        job, later ones (within KSCORE_IDEMPOTENCY_WINDOW) get that job again.

        Returns the job and whether it was replayed. Requests arriving while the first is still
        creating wait up to IDEMPOTENCY_WAIT_S for it. Raises IdempotencyKeyReused (422) for
        the key with another fingerprint, IdempotencyKeyInUse (409) when the first request
        takes longer, JobNotFound when the key's job was deleted, and whatever ``submit``
        raises (the key is then released, so a corrected request can use it).
        """
        if request is None:
            return submit(), False
        deadline = time.monotonic() + IDEMPOTENCY_WAIT_S
        while True:
            held = self.idempotency.claim(
                instance, request.key, request.fingerprint, IDEMPOTENCY_LEASE_S
            )
            if isinstance(held, Claim):
                break
            if held.fingerprint != request.fingerprint:
                raise IdempotencyKeyReused(
                    "This Idempotency-Key came with another request (a different body, "
                    "deployment or query); send a new key for a new request.",
                )
            if held.job_id is not None:
                return self.jobs.get(instance, held.job_id), True
            if time.monotonic() > deadline:
                raise IdempotencyKeyInUse(
                    "A request with this Idempotency-Key is still being accepted; retry it "
                    "in a few seconds to get its job.",
                )
            time.sleep(0.02)
        try:
            job = submit()
        except BaseException:
            try:
                self.idempotency.release(held)
            except redis.RedisError as exc:  # the lease frees the key by itself
                log.warning("idempotency key not released instance=%s error=%s", instance, exc)
            raise
        ttl_s = min(self.settings.idempotency_window_s, job.expires_at - job.created_at)
        self.idempotency.settle(held, job.id, ttl_s)
        return job, False

    def submit_online(
        self,
        instance: str,
        deployment_id: str,
        payload: dict[str, Any] | ArrayPayload,
        result_shape: ResultShape = ResultShape.WML_V3,
    ) -> JobRecord:
        """Queue rows for online scoring: a one-chunk job on the online queue.

        Returns the job; raises as ``submit_job``.
        """
        return self.submit_job(
            instance,
            deployment_id,
            payload,
            kind="online",
            retention_s=min(self.settings.job_retention_s, ONLINE_JOB_RETENTION_S),
            result_shape=result_shape,
        )

    def await_online(
        self,
        instance: str,
        job: JobRecord,
        timeout_s: float,
        started: float,
        *,
        keep: bool = False,
    ) -> bytes | JobRecord:
        """Wait up to ``timeout_s`` for an online job (from ``submit_online``).

        ``started`` is the request's ``time.perf_counter()``, for the latency histogram.
        Returns the result body ``{"fields", "values"}`` (the job is deleted: its caller never
        saw its id, unless ``keep``: an Idempotency-Key may ask for it again), or the job still
        running. Raises ScoringInputInvalid when the model
        refused the rows, ScoringFailed when the job failed otherwise.
        """
        if not self.jobs.wait(instance, job.id, timeout_s, give_back=keep):
            now = self.jobs.get(instance, job.id)
            if not now.finished:
                return now
        if job.transport == "stream":
            # One script: the outcome, the answer, the deletion and the latency histogram.
            status, error_doc, body = self.jobs.collect_online(
                job, keep=keep, latency_s=time.perf_counter() - started
            )
            if body is not None:
                return body
            if status is None:
                raise JobNotFound(job.id)
            job = replace(job, status=status, error=error_doc)
        else:
            job = self.jobs.get(instance, job.id)
            if job.status == JobStatus.COMPLETED:
                body = b"".join(self.jobs.iter_result(job))
                if not keep:
                    self.jobs.delete(job)
                observe_latency(self.redis_client, self.keys, time.perf_counter() - started)
                return body
        if job.finished:
            error = job.error or {}
            if error.get("code") == ScoringInputInvalid.code:
                # The model itself refused the rows: the caller's to fix, as at submit time.
                raise ScoringInputInvalid(str(error.get("message")), details={"job_id": job.id})
            raise ScoringFailed(
                str(error.get("message") or f"The scoring job ended {job.status}."),
                details={"job_id": job.id, "status": job.status, "reason": error.get("code")},
            )
        return job

    def cancel_job(self, instance: str, job_id: str) -> JobRecord:
        """Cancel a queued or running job: a queued one never runs, a running one stops
        between chunks. Returns the canceled job. Raises JobNotFound (404) for an unknown id,
        JobAlreadyFinished (409) once it ended."""
        self.jobs.get(instance, job_id)  # 404 for an unknown id
        if self.jobs.finish(instance, job_id, JobStatus.CANCELED) is not FinishOutcome.FINISHED:
            record = self.jobs.get(instance, job_id)
            raise JobAlreadyFinished(
                f"Job {job_id} already finished ({record.status}); there is nothing to cancel.",
                details={"status": record.status},
            )
        return self.jobs.get(instance, job_id)

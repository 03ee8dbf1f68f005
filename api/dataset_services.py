"""What the API does with datasets, as plain functions over the stores: store an upload, score
one as a job, delete one. Nothing here imports Flask or TensorFlow."""

from __future__ import annotations

import uuid

from api.services import Services, check_ready, deployment_changed
from shared.dataset_formats import CountingStream, Stream, open_reader
from shared.dataset_store import DatasetRecord
from shared.dataset_values import DatasetLayout, InputPlan, plan_inputs
from shared.errors import (
    JobNotFound,
    PayloadTooLarge,
)
from shared.job_record import JobRecord
from shared.job_store import DeploymentChanged
from shared.scoring import FIELDS
from shared.timeutil import now
from shared.webhooks import check_callback_url


def store_dataset(
    svc: Services,
    instance: str,
    stream: Stream,
    *,
    fmt: str,
    name: str | None,
    retention_s: float | None,
    deployment_id: str | None,
    header: bool | None,
) -> DatasetRecord:
    """Read an upload from ``stream`` in pieces into a dataset of ``fmt``.

    With ``deployment_id`` the rows are checked against that deployment's inputs while they
    stream and stored converted to its dtypes. Returns the record. Raises
    DeploymentNotFound, PayloadTooLarge (413) past KSCORE_MAX_DATASET_BYTES, DatasetInvalid,
    DatasetMismatch or ScoringInputInvalid (422) naming the row and column; nothing is kept.
    """
    settings = svc.settings
    plans = None
    if deployment_id is not None:
        inputs = svc.deployments.get(instance, deployment_id).inputs

        def plans(layout: DatasetLayout, shapes: list[list[int]]) -> list[InputPlan]:
            return plan_inputs(layout.names, shapes, inputs)

    reader = open_reader(
        fmt,
        CountingStream(stream, settings.max_dataset_bytes),
        batch_rows=settings.chunk_rows,
        workdir=settings.data_dir / "tmp",
        max_bytes=settings.max_dataset_bytes,
        header=header,
    )
    return svc.datasets.store(
        instance,
        reader,
        fmt=fmt,
        name=name,
        chunk_rows=settings.chunk_rows,
        retention_s=retention_s if retention_s is not None else settings.dataset_retention_s,
        plans=plans,
        validated_for=deployment_id,
    )


def delete_dataset(svc: Services, instance: str, dataset_id: str) -> None:
    """Delete a dataset. Raises DatasetNotFound, DatasetInUse (409) while a job reads it."""

    def finished(job_ids: list[str]) -> dict[str, bool | None]:
        states: dict[str, bool | None] = {}
        for job_id in job_ids:
            try:
                states[job_id] = svc.jobs.get(instance, job_id).finished
            except JobNotFound:
                states[job_id] = None
        return states

    svc.datasets.delete(instance, dataset_id, finished)


def submit_dataset_job(
    svc: Services,
    instance: str,
    deployment_id: str,
    dataset_id: str,
    *,
    retention_s: float | None = None,
    callback_url: str | None = None,
    base_url: str = "",
) -> JobRecord:
    """Queue a batch job that scores a dataset: its chunk n is the dataset's chunk n.

    The dataset's inputs (names, per-row shapes) are checked against the deployment's here;
    the values are converted to its dtypes chunk by chunk in the worker (a value that does not
    fit fails the job with ``invalid_scoring_input`` naming the row and column). The job holds
    the dataset: it lives at least as long as the job, and DELETE is refused until the job
    ends. Returns the job, queued. Raises DeploymentNotFound, DatasetNotFound,
    DeploymentNotReady or StateConflict (409: the deployment changed meanwhile),
    DatasetMismatch (422), PayloadTooLarge (413) past KSCORE_MAX_ROWS_JOB or
    KSCORE_MAX_QUEUED_ROWS, CallbackNotAllowed (422), QueuedRowsLimit or QueuedJobsLimit (429),
    BackendUnavailable (503; the job is failed ``enqueue_failed``).
    """
    settings = svc.settings
    deployment, digest = svc.deployments.current(instance, deployment_id, fresh=True)
    check_ready(deployment)
    if callback_url is not None:
        check_callback_url(callback_url, settings.webhook_allow)
    dataset = svc.datasets.get(instance, dataset_id)
    plan_inputs(dataset.layout.names, [i["shape"] for i in dataset.inputs], deployment.inputs)
    for limit, setting in (
        (settings.max_rows_job, "KSCORE_MAX_ROWS_JOB"),
        (settings.max_queued_rows, "KSCORE_MAX_QUEUED_ROWS"),
    ):
        if 0 < limit < dataset.rows:
            raise PayloadTooLarge(
                f"The dataset's {dataset.rows} rows are more than one job may score "
                f"({limit}, {setting}); upload it in parts.",
                details={"rows": dataset.rows, "limit": limit},
            )
    retention = retention_s if retention_s is not None else settings.job_retention_s
    job_id = str(uuid.uuid4())
    # The reference before the job: a DELETE from now on sees a job being created.
    svc.datasets.hold(instance, dataset_id, job_id, now() + retention + 60)
    try:
        job = svc.jobs.create(
            instance,
            kind="batch",
            deployment_id=deployment.id,
            model_id=deployment.model_id,
            model_sha256=deployment.model_sha256,
            model_filename=deployment.model_filename,
            rows_total=dataset.rows,
            chunk_rows=dataset.chunk_rows,
            input_chunks=[],
            fields=FIELDS,
            output_names=[str(o["name"]) for o in deployment.outputs],
            retention_s=retention,
            max_queued_rows=settings.max_queued_rows,
            max_queued_jobs=settings.max_queued_jobs,
            callback_url=callback_url,
            base_url=base_url,
            job_id=job_id,
            dataset_id=dataset_id,
            chunks=dataset.chunks,
            deployment_sha1=digest,
        )
    except DeploymentChanged:
        svc.datasets.release(instance, dataset_id, job_id)
        raise deployment_changed(deployment_id) from None
    except BaseException:
        svc.datasets.release(instance, dataset_id, job_id)
        raise
    svc.send_chunks(job)
    return job

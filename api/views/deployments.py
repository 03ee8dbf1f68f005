"""Deployments, and scoring against them: online and as batch jobs."""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from flask import Response, current_app, jsonify

from api.context import (
    base_url,
    gc_paused,
    idempotent_request,
    instance,
    note_dataset_body,
    page,
    services,
    url,
)
from api.contract import LOCATION, REPLAYED, Blueprint, RowsBody
from api.dataset_services import submit_dataset_job
from api.limits import queue_warnings
from api.schemas import (
    DeploymentCreateSchema,
    DeploymentListSchema,
    DeploymentPatchSchema,
    DeploymentQuerySchema,
    DeploymentSchema,
    ErrorSchema,
    IdempotencyHeaderSchema,
    JobCreateSchema,
    JobListSchema,
    JobQuerySchema,
    JobSchema,
    JobSubmitQuerySchema,
    OnlineQuerySchema,
    ScoringPayloadSchema,
    ScoringResultSchema,
    dataset_rows,
    result_shape_of,
)
from api.views.jobs import job_resource, jobs_page
from shared.deployment_store import DeploymentRecord
from shared.queueing import QUEUE_DEPLOY
from shared.status import DeploymentStatus
from shared.timeutil import iso

bp = Blueprint(
    "deployments",
    __name__,
    url_prefix="/api/v1/deployments",
    description="Deployed models and online scoring.",
)

# A deployment's jobs are submitted and listed under the deployment, documented with the jobs.
JOBS_TAG = ["jobs"]

_job_schema = JobSchema()

MODEL_SHA256_HEADER = "X-Kscore-Model-Sha256"
MODEL_SHA256 = {
    MODEL_SHA256_HEADER: {
        "description": "SHA-256 of the model file that scored these rows (a deployment that "
        "moves answers with its previous model until the new one is loaded).",
        "schema": {"type": "string"},
    }
}
# An answer given again for a repeated Idempotency-Key says so.
_REPLAYED_HEADERS = {"Idempotency-Replayed": "true"}


def deployment_resource(record: DeploymentRecord, idle: set[str] | None = None) -> dict[str, Any]:
    """The deployment's fields for DeploymentSchema to dump, with absolute URLs, and a warning
    while it (or its move) waits for a worker on the deploy queue (``idle``: the idle queues, looked up if
    None)."""
    href = url(f"/api/v1/deployments/{record.id}")
    warnings: list[dict[str, Any]] = []
    if record.status == DeploymentStatus.DEPLOY_IN_PROGRESS or record.pending_model is not None:
        if idle is None:
            idle = services().idle_queues(QUEUE_DEPLOY)
        warnings = queue_warnings(QUEUE_DEPLOY, idle)
    pending, previous = record.pending_model, record.previous_model
    settings = services().settings
    return {
        **record.__dict__,
        "pending_model": pending and {**pending, "requested_at": iso(pending["requested_at"])},
        "previous_model": previous and {**previous, "switched_at": iso(previous["switched_at"])},
        "warnings": warnings,
        "batching": record.batching_with(settings.max_batch_size, settings.max_batch_wait_ms),
        "type": "online",
        "created_at": iso(record.created_at),
        "updated_at": iso(record.updated_at),
        "scoring_url": href + "/online",
        "jobs_url": href + "/jobs",
        "href": href,
    }


@bp.post("")
@bp.arguments(DeploymentCreateSchema)
@bp.response(202, DeploymentSchema, description="Deploying.", headers=LOCATION)
@bp.errors(400, 404, 413, 422, 503)
def create_deployment(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Deploy a model

    Answers 202 in DEPLOY_IN_PROGRESS; poll until DEPLOY_SUCCESS or DEPLOY_FAILED.
    ---
    Returns the deployment and its Location. Raises ModelNotFound (404) and
    BackendUnavailable (503, the broker is unreachable; nothing is kept).
    """
    record = services().create_deployment(
        instance(), data["model_id"], data["name"], data["description"], data.get("batching")
    )
    body = deployment_resource(record)
    return body, {"Location": body["href"]}


@bp.get("")
@bp.arguments(DeploymentQuerySchema, location="query")
@bp.response(200, DeploymentListSchema, description="A page of deployments.")
@bp.errors(422)
def list_deployments(args: dict[str, Any]) -> dict[str, Any]:
    """List deployments, newest first

    `model_id` filters.
    ---
    Returns a page for DeploymentListSchema. Raises webargs' 422 for bad arguments.
    """
    records, total = services().deployments.page(
        instance(), args["limit"], args["offset"], model_id=args["model_id"]
    )
    idle = services().idle_queues(QUEUE_DEPLOY)  # one look at the workers for the page
    return page(
        [deployment_resource(r, idle) for r in records],
        total,
        args["limit"],
        args["offset"],
        model_id=args["model_id"],
    )


@bp.get("/<deployment_id>")
@bp.response(200, DeploymentSchema, description="The deployment.")
@bp.errors(404)
def get_deployment(deployment_id: str) -> dict[str, Any]:
    """One deployment

    ---
    Returns the deployment's fields. Raises DeploymentNotFound (404).
    """
    return deployment_resource(services().deployments.get(instance(), deployment_id))


@bp.patch("/<deployment_id>")
@bp.arguments(DeploymentPatchSchema)
@bp.response(202, DeploymentSchema, description="Moving (or renamed, for the current model_id).")
@bp.errors(400, 404, 409, 413, 422, 503)
def move_deployment(data: dict[str, Any], deployment_id: str) -> dict[str, Any]:
    """Move a deployment to another model

    The same scoring URL, a new model: the current model answers until a worker has loaded and
    warmed up the new one (`pending_model`), then every following request uses the new one
    (`previous_model` says what was served before). A model that fails to load leaves the
    current one serving and says why in `pending_error`. The new model must take the same
    inputs (names, shapes, dtypes); its outputs may differ.
    ---
    Returns the deployment. Raises DeploymentNotFound or ModelNotFound (404),
    DeploymentMovePending or DeploymentNotReady (409), ModelInputsMismatch (422) and
    BackendUnavailable (503).
    """
    changes: dict[str, Any] = {k: data[k] for k in ("name", "description", "batching") if k in data}
    svc = services()
    model_id = data.get("model_id") or svc.deployments.get(instance(), deployment_id).model_id
    record = svc.move_deployment(instance(), deployment_id, model_id, changes)
    return deployment_resource(record)


@bp.delete("/<deployment_id>")
@bp.response(204, description="Deleted.")
@bp.errors(404)
def delete_deployment(deployment_id: str) -> Response:
    """Delete a deployment

    Jobs already submitted still finish.
    ---
    Returns an empty 204. Raises DeploymentNotFound (404).
    """
    services().deployments.delete(instance(), deployment_id)
    return current_app.response_class(status=204)


@bp.post("/<deployment_id>/online")
# Instances, not classes: webargs would build a schema per request (the hot path).
@bp.arguments(OnlineQuerySchema(), location="query")
@bp.arguments(IdempotencyHeaderSchema(), location="headers")
@bp.rows_body(ScoringPayloadSchema)
@bp.response(
    200,
    ScoringResultSchema,
    description="Predictions, one row per input row.",
    headers={**MODEL_SHA256, **REPLAYED},
)
@bp.alt_response(
    202,
    schema=JobSchema,
    description="Still running: poll the job in Location.",
    headers={**LOCATION, **REPLAYED},
    success=True,
)
@bp.alt_response(500, schema=ErrorSchema, description="The model failed on these rows.")
@bp.errors(400, 404, 409, 413, 422, 429, 503)
def score_online(
    args: dict[str, Any], headers: dict[str, Any], rows: RowsBody, deployment_id: str
) -> Response | tuple[Response, int, dict[str, str]]:
    """Score rows online

    Rows as {"values": [...]} (WML v3), or as {"input_data": [{"fields", "values"}]} (WML v4,
    answered as {"predictions": [{"fields", "values"}]}). Multi-input models: each row lists
    one entry per input in model order, or send {"inputs": {name: rows}}. Multi-output models:
    each field of a row is an object keyed by output name. Waits up to `timeout` seconds (default
    KSCORE_ONLINE_TIMEOUT), then answers 202 with the job. With an `Idempotency-Key`, the rows
    are scored once: a repeat answers the same predictions (or waits for them).
    ---
    Returns the predictions, or the job (202) past the timeout. Raises DeploymentNotFound
    (404), DeploymentNotReady or IdempotencyKeyInUse (409), PayloadTooLarge (413),
    ScoringInputInvalid or IdempotencyKeyReused (422, also when the model itself refuses the
    rows) and ScoringFailed (500).
    """
    started = time.perf_counter()
    svc = services()
    timeout_s = args["timeout"] if args["timeout"] is not None else svc.settings.online_timeout_s
    timeout_s = min(timeout_s, svc.settings.max_online_timeout_s)
    with gc_paused():  # the parsed rows are dropped before the collector runs again
        body = rows.read()
        # `timeout` only says how long this request waits: a retry may change it.
        once = idempotent_request(headers["idempotency_key"], "timeout")
        job, replayed = svc.submit_once(
            instance(),
            once,
            partial(svc.submit_online, instance(), deployment_id, body, result_shape_of(body)),
        )
        del body
    # With a key the answered job is kept: a retry of this request must find it.
    outcome = svc.await_online(instance(), job, timeout_s, started, keep=once is not None)
    extra = _REPLAYED_HEADERS if replayed else {}
    if isinstance(outcome, bytes):
        return Response(
            outcome,
            mimetype="application/json",
            headers={MODEL_SHA256_HEADER: job.model_sha256, **extra},
        )
    # A Response, not a dict: the 200 above declares the body the decorator would dump.
    document = _job_schema.dump(job_resource(outcome))
    return jsonify(document), 202, {"Location": document["href"], **extra}


@bp.get("/<deployment_id>/jobs", tags=JOBS_TAG)
@bp.arguments(JobQuerySchema(exclude=("deployment_id",)), location="query")
@bp.response(200, JobListSchema, description="A page of jobs.")
@bp.errors(404, 422)
def list_deployment_jobs(args: dict[str, Any], deployment_id: str) -> dict[str, Any]:
    """This deployment's jobs, newest first

    As /api/v1/jobs?deployment_id=, but 404 for an unknown deployment.
    ---
    Returns a page for JobListSchema. Raises DeploymentNotFound (404).
    """
    services().deployments.get(instance(), deployment_id)  # 404 for an unknown deployment
    return jobs_page(args, deployment_id)


@bp.post("/<deployment_id>/jobs", tags=JOBS_TAG)
@bp.arguments(JobSubmitQuerySchema, location="query")
@bp.arguments(IdempotencyHeaderSchema, location="headers")
@bp.rows_body(JobCreateSchema)
@bp.response(
    202,
    JobSchema,
    description="Queued; Location is the job.",
    headers={**LOCATION, **REPLAYED},
)
@bp.errors(400, 404, 409, 413, 422, 429, 503)
def submit_job(
    args: dict[str, Any], headers: dict[str, Any], rows: RowsBody, deployment_id: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """Submit a batch job

    Poll the job (Location), then fetch its `result_url` (in WML v4's shape for rows sent as
    `input_data`). `{"dataset_id"}` scores an uploaded dataset instead of rows in the body. `retention_days` comes in the JSON body, or in the query with a .npy/.npz
    body, as does `callback_url` (the job's document is POSTed there, signed, when it ends).
    With an `Idempotency-Key`, a repeat answers the job the first request created; for
    `{"dataset_id"}` the key covers the dataset's rows, not its id, so a retry that uploaded
    the same rows again as a new dataset is the same request.
    ---
    Returns the queued job and its Location. Raises DeploymentNotFound (404),
    DeploymentNotReady or IdempotencyKeyInUse (409), PayloadTooLarge (413),
    ScoringInputInvalid, IdempotencyKeyReused, CallbackNotAllowed or DatasetMismatch (422) and BackendUnavailable (503; the job is
    failed with enqueue_failed); DatasetNotFound (404) for a `dataset_id`.
    """
    svc = services()
    with gc_paused():  # the parsed rows are dropped before the collector runs again
        body = rows.read()
        options = body if isinstance(body, dict) else {}
        retention_days = options.pop("retention_days", None) or args["retention_days"]
        callback_url = options.pop("callback_url", None) or args["callback_url"]
        retention_s = retention_days * 86400.0 if retention_days else None
        submit = partial(
            svc.submit_job,
            instance(),
            deployment_id,
            body,
            kind="batch",
            retention_s=retention_s,
            result_shape=result_shape_of(body),
            callback_url=callback_url,
            base_url=base_url(),
        )
        dataset_id = options.pop("dataset_id", None)
        if dataset_id is not None:
            dataset_id = dataset_rows(options, dataset_id)
            if headers["idempotency_key"] is not None:
                note_dataset_body(
                    {**options, "retention_days": retention_days, "callback_url": callback_url},
                    svc.datasets.get(instance(), dataset_id),
                )
            submit = partial(
                submit_dataset_job,
                svc,
                instance(),
                deployment_id,
                dataset_id,
                retention_s=retention_s,
                callback_url=callback_url,
                base_url=base_url(),
            )
        job, replayed = svc.submit_once(
            instance(), idempotent_request(headers["idempotency_key"]), submit
        )
        del body
    document = job_resource(job)
    return document, {"Location": document["href"], **(_REPLAYED_HEADERS if replayed else {})}

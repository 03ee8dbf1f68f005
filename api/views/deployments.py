"""Deployments, and scoring against them: online and as batch jobs."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, jsonify

from api.context import (
    gc_paused,
    instance,
    json_body,
    page,
    query,
    scoring_body,
    services,
    url,
)
from api.schemas import (
    DeploymentCreateSchema,
    DeploymentListSchema,
    DeploymentQuerySchema,
    DeploymentSchema,
    JobCreateSchema,
    JobQuerySchema,
    JobSubmitQuerySchema,
    OnlineQuerySchema,
    ScoringPayloadSchema,
)
from api.views.jobs import job_json, jobs_page
from shared.deployment_store import DeploymentRecord
from shared.errors import ScoringFailed, ScoringInputInvalid
from shared.job_store import COMPLETED
from shared.metrics import observe_latency
from shared.timeutil import iso

bp = Blueprint("deployments", __name__, url_prefix="/api/v1/deployments")

# An online request answered 202 keeps its job this long (at most KSCORE_JOB_RETENTION).
ONLINE_JOB_RETENTION = 86400.0

_schema = DeploymentSchema()


def deployment_json(record: DeploymentRecord) -> dict[str, Any]:
    """The deployment as the API shows it."""
    href = url(f"/api/v1/deployments/{record.id}")
    return _schema.dump(
        {
            **record.__dict__,
            "type": "online",
            "created_at": iso(record.created_at),
            "updated_at": iso(record.updated_at),
            "scoring_url": href + "/online",
            "jobs_url": href + "/jobs",
            "href": href,
        }
    )


@bp.post("")
def create_deployment() -> tuple[Response, int, dict[str, str]]:
    """Deploy a stored model; a worker loads and warms it up (202, poll the deployment)."""
    data = json_body(DeploymentCreateSchema())
    record = services().create_deployment(
        instance(), data["model_id"], data["name"], data["description"]
    )
    body = deployment_json(record)
    return jsonify(body), 202, {"Location": body["href"]}


@bp.get("")
def list_deployments() -> Response:
    """Deployments, newest first; ``model_id`` filters."""
    args = query(DeploymentQuerySchema())
    records, total = services().deployments.page(
        instance(), args["limit"], args["offset"], model_id=args["model_id"]
    )
    body = page(
        [deployment_json(r) for r in records],
        total,
        args["limit"],
        args["offset"],
        model_id=args["model_id"],
    )
    return jsonify(DeploymentListSchema().dump(body))


@bp.get("/<deployment_id>")
def get_deployment(deployment_id: str) -> Response:
    """One deployment."""
    return jsonify(deployment_json(services().deployments.get(instance(), deployment_id)))


@bp.delete("/<deployment_id>")
def delete_deployment(deployment_id: str) -> tuple[str, int]:
    """Delete a deployment (jobs already submitted still finish)."""
    services().deployments.delete(instance(), deployment_id)
    return "", 204


@bp.post("/<deployment_id>/online")
def score_online(deployment_id: str) -> Response | tuple[Response, int, dict[str, str]]:
    """Score rows and answer with the predictions; past ``timeout``, 202 with the job."""
    started = time.perf_counter()
    svc = services()
    args = query(OnlineQuerySchema())
    timeout = args["timeout"] if args["timeout"] is not None else svc.settings.online_timeout
    timeout = min(timeout, svc.settings.max_online_timeout)
    with gc_paused():  # the parsed rows are dropped before the collector runs again
        job = svc.submit_job(
            instance(),
            deployment_id,
            scoring_body(ScoringPayloadSchema()),
            kind="online",
            retention=min(svc.settings.job_retention, ONLINE_JOB_RETENTION),
        )
    svc.jobs.wait(instance(), job.id, timeout)
    job = svc.jobs.get(instance(), job.id)
    if job.status == COMPLETED:
        body = b"".join(svc.jobs.iter_result(job))
        # The caller has the answer and never saw the job's id: keep nothing behind.
        svc.jobs.delete(job)
        observe_latency(svc.redis_client, svc.keys, time.perf_counter() - started)
        return Response(body, mimetype="application/json")
    if job.finished:
        error = job.error or {}
        if error.get("code") == ScoringInputInvalid.code:
            # The model itself refused the rows: the caller's to fix, as at submit time.
            raise ScoringInputInvalid(str(error.get("message")), details={"job_id": job.id})
        raise ScoringFailed(
            str(error.get("message") or f"The scoring job ended {job.status}."),
            details={"job_id": job.id, "status": job.status, "reason": error.get("code")},
        )
    return jsonify(job_json(job)), 202, {"Location": url(f"/api/v1/jobs/{job.id}")}


@bp.get("/<deployment_id>/jobs")
def list_deployment_jobs(deployment_id: str) -> Response:
    """This deployment's jobs, newest first (as ``/api/v1/jobs?deployment_id=``)."""
    services().deployments.get(instance(), deployment_id)  # 404 for an unknown deployment
    return jobs_page(query(JobQuerySchema(exclude=("deployment_id",))), deployment_id)


@bp.post("/<deployment_id>/jobs")
def submit_job(deployment_id: str) -> tuple[Response, int, dict[str, str]]:
    """Submit rows as a batch job (202); poll the job, then fetch its result."""
    svc = services()
    with gc_paused():  # the parsed rows are dropped before the collector runs again
        body = scoring_body(JobCreateSchema())
        if isinstance(body, dict):
            retention_days = body.pop("retention_days", None)
        else:
            retention_days = query(JobSubmitQuerySchema())["retention_days"]
        job = svc.submit_job(
            instance(),
            deployment_id,
            body,
            kind="batch",
            retention=retention_days * 86400.0 if retention_days else None,
        )
        del body
    document = job_json(job)
    return jsonify(document), 202, {"Location": document["href"]}

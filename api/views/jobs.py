"""Jobs: status, progress, result and cancellation."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app

from api.context import base_url, instance, page, services
from api.contract import Blueprint
from api.limits import job_queue, queue_warnings
from api.schemas import JobListSchema, JobQuerySchema, JobSchema, ScoringResultSchema
from shared.errors import JobAlreadyFinished, JobNotFinished
from shared.job_document import job_document
from shared.job_store import JobRecord
from shared.queueing import QUEUE_BATCH, QUEUE_ONLINE
from shared.status import FinishOutcome, JobStatus

bp = Blueprint(
    "jobs",
    __name__,
    url_prefix="/api/v1/jobs",
    description="Batch scoring jobs: status, progress, results, cancellation.",
)


def job_resource(record: JobRecord, idle: set[str] | None = None) -> dict[str, Any]:
    """The job's fields for JobSchema to dump, with absolute URLs, and a warning while no
    worker consumes the queue it waits in (``idle``: the idle queues, looked up if None)."""
    warnings: list[dict[str, Any]] = []
    if not record.finished:
        queue = job_queue(record)
        warnings = queue_warnings(queue, services().idle_queues(queue) if idle is None else idle)
    return job_document(record, base_url(), warnings, services().jobs.webhook_log(record))


def jobs_page(
    args: dict[str, Any], deployment_id: str | None, link: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A page of jobs (for JobListSchema) for parsed JobQuerySchema arguments.

    ``link`` are the next link's extra query parameters. Returns the page; raises nothing of
    its own.
    """
    records, total = services().jobs.page(
        instance(),
        args["limit"],
        args["offset"],
        deployment_id=deployment_id,
        status=args["status"],
    )
    # One look at the workers for the whole page.
    idle = services().idle_queues(QUEUE_ONLINE, QUEUE_BATCH)
    return page(
        [job_resource(r, idle) for r in records],
        total,
        args["limit"],
        args["offset"],
        status=args["status"],
        **(link or {}),
    )


@bp.get("")
@bp.arguments(JobQuerySchema, location="query")
@bp.response(200, JobListSchema, description="A page of jobs.")
@bp.errors(422)
def list_jobs(args: dict[str, Any]) -> dict[str, Any]:
    """List jobs, newest first

    Filter by `deployment_id` and `status`.
    ---
    Returns a page for JobListSchema. Raises webargs' 422 for bad arguments.
    """
    return jobs_page(args, args["deployment_id"], {"deployment_id": args["deployment_id"]})


@bp.get("/<job_id>")
@bp.response(200, JobSchema, description="The job.")
@bp.errors(404)
def get_job(job_id: str) -> dict[str, Any]:
    """Job status and progress

    ---
    Returns the job's fields. Raises JobNotFound (404), also for an expired job.
    """
    return job_resource(services().jobs.get(instance(), job_id))


@bp.get("/<job_id>/result")
@bp.response(200, ScoringResultSchema, description="Same body as online scoring.")
@bp.errors(404, 409)
def get_result(job_id: str) -> Response:
    """Result of a completed job

    409 (job_not_finished) until the job is completed.
    ---
    Returns the result, streamed. Raises JobNotFound (404) and JobNotFinished (409).
    """
    record = services().jobs.get(instance(), job_id)
    if record.status != JobStatus.COMPLETED:
        raise JobNotFinished(
            f"Job {record.id} is {record.status}; its result exists once it is completed.",
            details={"status": record.status},
        )
    # Streamed chunk by chunk as stored: a large result is never whole in the API's memory.
    body = services().jobs.iter_result(record)
    return current_app.response_class(body, mimetype="application/json")


@bp.delete("/<job_id>")
@bp.response(200, JobSchema, description="Canceled.")
@bp.errors(404, 409)
def cancel_job(job_id: str) -> dict[str, Any]:
    """Cancel a job

    A queued job never runs; a running job stops between chunks.
    ---
    Returns the canceled job. Raises JobNotFound (404) and JobAlreadyFinished (409).
    """
    svc = services()
    svc.jobs.get(instance(), job_id)  # 404 for an unknown id
    if svc.jobs.finish(instance(), job_id, JobStatus.CANCELED) is not FinishOutcome.FINISHED:
        record = svc.jobs.get(instance(), job_id)
        raise JobAlreadyFinished(
            f"Job {job_id} already finished ({record.status}); there is nothing to cancel.",
            details={"status": record.status},
        )
    return job_resource(svc.jobs.get(instance(), job_id))

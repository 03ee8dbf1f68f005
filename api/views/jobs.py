"""Jobs: status, progress, result and cancellation."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from api.context import instance, page, query, services, url
from api.schemas import JobListSchema, JobQuerySchema, JobSchema
from shared.errors import JobAlreadyFinished, JobNotFinished
from shared.job_store import CANCELED, COMPLETED, JobRecord
from shared.timeutil import iso

bp = Blueprint("jobs", __name__, url_prefix="/api/v1/jobs")

_schema = JobSchema()


def job_json(record: JobRecord) -> dict[str, Any]:
    """The job as the API shows it."""
    href = url(f"/api/v1/jobs/{record.id}")
    return _schema.dump(
        {
            **record.__dict__,
            "progress": {"rows_done": record.rows_done, "rows_total": record.rows_total},
            "created_at": iso(record.created_at),
            "started_at": iso(record.started_at),
            "finished_at": iso(record.finished_at),
            "expires_at": iso(record.expires_at),
            "href": href,
            "result_url": href + "/result",
        }
    )


def result_response(record: JobRecord) -> Response:
    """The job's scoring result, streamed from its chunks."""
    if record.status != COMPLETED:
        raise JobNotFinished(
            f"Job {record.id} is {record.status}; its result exists once it is completed.",
            details={"status": record.status},
        )
    body = services().jobs.iter_result(record)
    return current_app.response_class(body, mimetype="application/json")


@bp.get("")
def list_jobs() -> Response:
    """Jobs, newest first; filter by ``deployment_id`` and ``status``."""
    args = query(JobQuerySchema())
    return jobs_page(args, args["deployment_id"], {"deployment_id": args["deployment_id"]})


def jobs_page(
    args: dict[str, Any], deployment_id: str | None, link: dict[str, Any] | None = None
) -> Response:
    """A page of jobs for parsed query arguments; ``link`` are the next link's extra params."""
    records, total = services().jobs.page(
        instance(),
        args["limit"],
        args["offset"],
        deployment_id=deployment_id,
        status=args["status"],
    )
    body = page(
        [job_json(r) for r in records],
        total,
        args["limit"],
        args["offset"],
        status=args["status"],
        **(link or {}),
    )
    return jsonify(JobListSchema().dump(body))


@bp.get("/<job_id>")
def get_job(job_id: str) -> Response:
    """One job's status and progress."""
    return jsonify(job_json(services().jobs.get(instance(), job_id)))


@bp.get("/<job_id>/result")
def get_result(job_id: str) -> Response:
    """The result of a completed job (409 before)."""
    return result_response(services().jobs.get(instance(), job_id))


@bp.delete("/<job_id>")
def cancel_job(job_id: str) -> Response:
    """Cancel a queued or running job; a running one stops between chunks."""
    svc = services()
    svc.jobs.get(instance(), job_id)  # 404 for an unknown id
    if not svc.jobs.finish(instance(), job_id, CANCELED):
        record = svc.jobs.get(instance(), job_id)
        raise JobAlreadyFinished(
            f"Job {job_id} already finished ({record.status}); there is nothing to cancel.",
            details={"status": record.status},
        )
    return jsonify(job_json(svc.jobs.get(instance(), job_id)))

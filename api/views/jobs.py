"""Jobs: status, progress, result and cancellation."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, request

from api.context import base_url, instance, page, services
from api.contract import Blueprint
from api.limits import job_queue, queue_warnings
from api.schemas import (
    JobListSchema,
    JobQuerySchema,
    JobSchema,
    ResultQuerySchema,
    ScoringResultSchema,
)
from shared.errors import JobNotFinished, ModelNotFound, ResultFormatNotAcceptable
from shared.job_document import job_document
from shared.job_record import JobRecord
from shared.queueing import QUEUE_BATCH, QUEUE_ONLINE
from shared.result_formats import (
    FORMATS,
    MEDIA_TYPES,
    ResultSource,
    check_format,
    content_length,
    stream,
)
from shared.status import JobStatus

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


_BINARY = {"schema": {"type": "string", "format": "binary"}}
_RESULT_CONTENT = {
    f.media_type: _BINARY for f in FORMATS.values() if f.media_type != "application/json"
}
_DISPOSITION = {
    "Content-Disposition": {
        "description": '`attachment; filename="<job id>.<extension>"` (`inline` for json).',
        "schema": {"type": "string"},
    }
}


def result_format(asked: str | None) -> str:
    """The format a result request asks for: ``?format=`` wins, else the Accept header
    (json when there is none, or it accepts anything). Raises ResultFormatNotAcceptable (406)
    when Accept names no format kscore writes."""
    if asked is not None:
        return asked
    if not request.headers.get("Accept"):
        return "json"
    best = request.accept_mimetypes.best_match(list(MEDIA_TYPES))
    if best is None:
        raise ResultFormatNotAcceptable(
            f"Accept names no result format kscore writes; accepted are "
            f"{', '.join(MEDIA_TYPES)} (or ?format= one of {', '.join(FORMATS)}).",
            details={"formats": list(FORMATS), "media_types": list(MEDIA_TYPES)},
        )
    return MEDIA_TYPES[best]


@bp.get("/<job_id>/result")
@bp.arguments(ResultQuerySchema, location="query")
@bp.response(
    200,
    ScoringResultSchema,
    description="The rows in input order, streamed chunk by chunk, in the format asked for "
    "(`?format=` or Accept; json when neither says): json is the body online scoring "
    "answers; jsonl, csv, npy, npz and parquet as the README's Result formats describe.",
    headers=_DISPOSITION,
)
@bp.doc(responses={200: {"content": _RESULT_CONTENT}})
@bp.errors(404, 406, 409, 422)
def get_result(args: dict[str, Any], job_id: str) -> Response:
    """Result of a completed job

    409 (job_not_finished) until the job is completed. `?format=json|jsonl|csv|npy|npz|parquet`
    (or the Accept header: application/json, application/x-ndjson, text/csv,
    application/x-npy, application/x-npz, application/vnd.apache.parquet); 406 for npy of a
    model with several outputs (use npz) or an Accept that names no format.
    ---
    Returns the result, streamed. Raises JobNotFound (404), ResultFormatNotAcceptable (406)
    and JobNotFinished (409).
    """
    record = services().jobs.get(instance(), job_id)
    return result_response(record, result_format(args.get("format")))


@bp.delete("/<job_id>")
@bp.response(200, JobSchema, description="Canceled.")
@bp.errors(404, 409)
def cancel_job(job_id: str) -> dict[str, Any]:
    """Cancel a job

    A queued job never runs; a running job stops between chunks.
    ---
    Returns the canceled job. Raises JobNotFound (404) and JobAlreadyFinished (409).
    """
    return job_resource(services().cancel_job(instance(), job_id))


def result_response(record: JobRecord, format_name: str) -> Response:
    """The result of the completed job ``record`` as a streamed response in ``format_name``
    (json, jsonl, csv, npy, npz or parquet), with its Content-Disposition, Vary and, where
    known ahead, Content-Length. Raises JobNotFinished (409) before the job completed,
    ResultFormatNotAcceptable (406) for npy of a model with several outputs."""
    store = services().jobs
    if record.status != JobStatus.COMPLETED:
        raise JobNotFinished(
            f"Job {record.id} is {record.status}; its result exists once it is completed.",
            details={"status": record.status},
        )
    source = ResultSource(
        rows_total=record.rows_total,
        result_shape=record.result_shape,
        output_names=record.output_names,
        chunks=lambda: store.iter_chunks(record),
        output_dtypes=_online_output_dtypes(record),
    )
    fmt = check_format(format_name, source)
    # Streamed chunk by chunk as stored: a large result is never whole in the API's memory.
    body = stream(fmt.name, source, lambda: store.iter_result(record))
    response = current_app.response_class(body, mimetype=fmt.media_type)
    disposition = "inline" if fmt.name == "json" else "attachment"
    response.headers["Content-Disposition"] = (
        f'{disposition}; filename="{record.id}.{fmt.extension}"'
    )
    response.headers["Vary"] = "Accept"
    size = content_length(fmt.name, source)
    if size is not None:  # a client can show progress and tell a cut-off body
        response.headers["Content-Length"] = str(size)
    return response


def _online_output_dtypes(record: JobRecord) -> dict[str, str] | None:
    """Output name -> dtype of the model that answered an online job, whose stored answer is
    JSON (a batch job stores typed arrays); None when the model is gone meanwhile."""
    if record.kind != "online":
        return None
    try:
        model = services().models.get(record.instance, record.model_id)
    except ModelNotFound:
        return None
    return {str(o["name"]): str(o["dtype"]) for o in model.outputs if o.get("dtype")}

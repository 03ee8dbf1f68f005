"""The console's job pages: the list and one job with live progress (htmx polls a fragment
until the job ends), cancel, and the result downloaded in any of the API's formats."""

from __future__ import annotations

from typing import Any

from flask import (
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.wrappers import Response as BaseResponse

from api.console.views import PAGE_SIZE, bp
from api.context import instance, services
from api.views.jobs import result_response
from shared.errors import (
    DeploymentNotFound,
    ValidationFailed,
)
from shared.result_formats import FORMATS

# --- jobs -------------------------------------------------------------------------------------


def _jobs_context() -> dict[str, Any]:
    svc = services()
    offset = max(request.args.get("offset", 0, type=int) or 0, 0)
    records, total = svc.jobs.page(instance(), PAGE_SIZE, offset, deployment_id=None, status=None)
    names: dict[str, str | None] = {}
    for deployment_id in {j.deployment_id for j in records}:
        try:
            names[deployment_id] = svc.deployments.get(instance(), deployment_id).name
        except DeploymentNotFound:
            names[deployment_id] = None
    return {
        "jobs": records,
        "deployment_names": names,
        "total": total,
        "offset": offset,
        "page_size": PAGE_SIZE,
        "polling": any(not j.finished for j in records),
    }


@bp.get("/jobs")
def jobs() -> str:
    """The instance's jobs, newest first, with live progress."""
    return render_template("console/jobs.html", **_jobs_context())


@bp.get("/jobs/table")
def jobs_table() -> str:
    """The jobs table htmx polls while a job runs."""
    return render_template("console/_jobs_table.html", **_jobs_context())


@bp.get("/jobs/<job_id>")
def job(job_id: str) -> str:
    """A job: status, live progress, cancel and the result."""
    return render_template("console/job.html", job=services().jobs.get(instance(), job_id))


@bp.get("/jobs/<job_id>/progress")
def job_progress(job_id: str) -> str:
    """The progress fragment htmx polls while the job runs."""
    record = services().jobs.get(instance(), job_id)
    return render_template("console/_job_progress.html", job=record)


@bp.post("/jobs/<job_id>/cancel")
def cancel_job(job_id: str) -> BaseResponse:
    """Cancel a job (as ``DELETE /api/v1/jobs/{id}``)."""
    services().cancel_job(instance(), job_id)
    flash(f"Job {job_id} canceled.")
    return redirect(url_for(".job", job_id=job_id))


@bp.get("/jobs/<job_id>/result")
def job_result(job_id: str) -> BaseResponse:
    """The result of a completed job as a file download in ``?format=`` (json by default;
    jsonl, csv, npy, npz, parquet), streamed chunk by chunk as ``GET .../result`` does."""
    name = request.args.get("format", "json")
    if name not in FORMATS:
        raise ValidationFailed(
            f"Unknown result format {name!r}; choose one of {', '.join(FORMATS)}.",
            details={"formats": list(FORMATS)},
        )
    response = result_response(services().jobs.get(instance(), job_id), name)
    response.headers["Content-Disposition"] = response.headers["Content-Disposition"].replace(
        "inline;", "attachment;"
    )
    return response

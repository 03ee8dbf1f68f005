"""A job as its document shows it: GET /api/v1/jobs/{id} (through JobSchema) and the body of
its callback are built here, so the two cannot differ."""

from __future__ import annotations

from typing import Any

from shared.job_record import JobRecord
from shared.timeutil import iso


def job_document(
    record: JobRecord,
    base_url: str,
    warnings: list[dict[str, Any]],
    deliveries: list[dict[str, Any]],
) -> dict[str, Any]:
    """The job's fields, with absolute URLs under ``base_url`` (no trailing slash)."""
    href = f"{base_url}/api/v1/jobs/{record.id}"
    return {
        "id": record.id,
        "kind": record.kind,
        "status": str(record.status),
        "progress": {"rows_done": record.rows_done, "rows_total": record.rows_total},
        "deployment_id": record.deployment_id,
        "dataset_id": record.dataset_id,
        "model_id": record.model_id,
        "model_sha256": record.model_sha256,
        "created_at": iso(record.created_at),
        "started_at": iso(record.started_at),
        "finished_at": iso(record.finished_at),
        "expires_at": iso(record.expires_at),
        "error": record.error,
        "href": href,
        "result_url": href + "/result",
        "warnings": warnings,
        "callback_url": record.callback_url,
        "webhook_deliveries": deliveries,
    }

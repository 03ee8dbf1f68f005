"""A job as read from Redis: the record every part of kscore passes around, and how it is
parsed from the job's hash (``shared.job_store`` writes and moves it)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from shared.scoring import ResultShape
from shared.status import JobStatus


@dataclass(frozen=True)
class JobRecord:
    """A job as read from Redis."""

    id: str
    instance: str
    kind: str
    deployment_id: str
    model_id: str
    model_sha256: str
    model_filename: str
    status: JobStatus
    rows_total: int
    rows_done: int
    chunks: int
    chunk_rows: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    expires_at: float
    retention_s: float
    error: dict[str, Any] | None
    fields: list[str]
    output_names: list[str]
    result_shape: ResultShape = ResultShape.WML_V3
    # Where the job's document is POSTed when it ends, and the base of its URLs there.
    callback_url: str | None = None
    base_url: str = ""
    # The dataset whose chunk n is this job's chunk n (None: the job holds its own rows).
    dataset_id: str | None = None
    # How its chunks reach workers: "celery" (a task per chunk) or "stream" (an online
    # request, an entry of the online stream: shared/online_queue.py).
    transport: str = "celery"

    @property
    def finished(self) -> bool:
        """Whether the job reached a terminal status."""
        return self.status.finished


def _f(raw: dict[bytes, bytes], name: str) -> str | None:
    value = raw.get(name.encode())
    return value.decode() if value is not None else None


def parse_job(raw: dict[bytes, bytes]) -> JobRecord:
    """A job from its Redis hash (field names and values as bytes, as HGETALL gives them)."""
    started = _f(raw, "started_at")
    finished = _f(raw, "finished_at")
    error = _f(raw, "error")
    return JobRecord(
        id=_f(raw, "id") or "",
        instance=_f(raw, "instance") or "",
        kind=_f(raw, "kind") or "batch",
        deployment_id=_f(raw, "deployment_id") or "",
        model_id=_f(raw, "model_id") or "",
        model_sha256=_f(raw, "model_sha256") or "",
        model_filename=_f(raw, "model_filename") or "",
        status=JobStatus(_f(raw, "status") or JobStatus.QUEUED),
        rows_total=int(_f(raw, "rows_total") or 0),
        rows_done=int(_f(raw, "rows_done") or 0),
        chunks=int(_f(raw, "chunks") or 0),
        chunk_rows=int(_f(raw, "chunk_rows") or 0),
        created_at=float(_f(raw, "created_at") or 0),
        started_at=float(started) if started else None,
        finished_at=float(finished) if finished else None,
        expires_at=float(_f(raw, "expires_at") or 0),
        retention_s=float(_f(raw, "retention") or 0),
        error=json.loads(error) if error else None,
        fields=json.loads(_f(raw, "fields") or "[]"),
        output_names=json.loads(_f(raw, "output_names") or "[]"),
        result_shape=ResultShape(_f(raw, "result_shape") or ResultShape.WML_V3),
        callback_url=_f(raw, "callback_url") or None,
        base_url=_f(raw, "base_url") or "",
        dataset_id=_f(raw, "dataset_id") or None,
        transport=_f(raw, "transport") or "celery",
    )

"""Asynchronous scoring jobs: ``client.jobs`` (a kscore extension to WML).

Submit rows, arrays, DataFrames or a dataset; follow a job; read its result in any of the
server's formats. Errors are the client's (:mod:`kscore.errors`), as in :mod:`kscore.client`.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kscore.client import (
    ProgressCallback,
    Record,
    Records,
    _json,
    _segment,
    _sleep_or_give_up,
    backoff,
)
from kscore.errors import ApiError, JobFailedError, KscoreError
from kscore.payloads import job_payload, npy_bytes, npy_bytes_kind
from kscore.result_files import check_format, format_for_path
from kscore.result_files import decode as decode_result
from shared.status import FINISHED_JOB_STATUSES, JobStatus

if TYPE_CHECKING:
    from kscore.client import Client


class Jobs:
    """Asynchronous scoring jobs: ``client.jobs`` (a kscore extension to WML)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def submit(
        self,
        deployment_id: str,
        values_or_payload: Any,
        retention_days: int | None = None,
        *,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
    ) -> Record:
        """Queue a batch job: rows (list/array), a pandas DataFrame or a payload
        ``{"values": ...}``; the job record.

        A numpy array goes as a .npy body (no JSON encoding of millions of numbers); a
        DataFrame, or an array over 8 MiB, is uploaded as a dataset first (streamed, checked
        against the deployment; it lives as long as the job) and the job scores it.
        ``callback_url`` receives the job's document (POSTed, signed) when it ends, if the
        server's KSCORE_WEBHOOK_ALLOW allows it (else UnprocessableError
        ``callback_not_allowed``). With ``idempotency_key`` (the IETF Idempotency-Key header)
        a retried call answers the job the first one created (within the server's
        KSCORE_IDEMPOTENCY_WINDOW, 24 h by default); for rows uploaded as a dataset the key
        covers the rows, so a retry uploads them again, is answered the first call's job, and
        deletes its own upload.
        Raises KscoreError for rows of no known shape, before anything is sent.
        """
        from kscore.datasets import AUTO_DATASET_BYTES, is_dataframe

        once = {"callback_url": callback_url, "idempotency_key": idempotency_key}
        big = getattr(values_or_payload, "nbytes", 0) > AUTO_DATASET_BYTES
        numeric = npy_bytes_kind(values_or_payload) and values_or_payload.dtype.kind in "biuf"
        if is_dataframe(values_or_payload) or (big and numeric):
            dataset = self._client.datasets.upload(  # kept an hour, and as long as its job
                values_or_payload, deployment_id=deployment_id, retention_days=1 / 24
            )
            return self.submit_dataset(
                deployment_id, str(dataset["id"]), retention_days, uploaded=True, **once
            )
        npy = npy_bytes(values_or_payload)
        if npy is not None:
            params = {"retention_days": retention_days} if retention_days is not None else None
            return self.submit_file(deployment_id, npy, "application/x-npy", params, **once)
        body = job_payload(values_or_payload)
        if retention_days is not None:
            body["retention_days"] = retention_days
        if callback_url is not None:
            body["callback_url"] = callback_url
        url = f"/api/v1/deployments/{_segment(deployment_id)}/jobs"
        response = self._client.send_json("POST", url, body, headers=_key(idempotency_key))
        return _json(response)

    def submit_dataset(
        self,
        deployment_id: str,
        dataset_id: str,
        retention_days: float | None = None,
        *,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
        uploaded: bool = False,
    ) -> Record:
        """Queue a batch job scoring an uploaded dataset; the job record.

        ``callback_url`` and ``idempotency_key`` as for :meth:`submit`. ``uploaded``: the
        dataset was uploaded for this call alone, so it is deleted when the job is refused, or
        when the key answers a job of another dataset (a retry's second upload of the same
        rows). Raises NotFoundError for an unknown dataset, UnprocessableError (422
        ``dataset_mismatch``) when its inputs do not fit the deployment's.
        """
        url = f"/api/v1/deployments/{_segment(deployment_id)}/jobs"
        body: Record = {"dataset_id": dataset_id}
        if retention_days is not None:
            body["retention_days"] = retention_days
        if callback_url is not None:
            body["callback_url"] = callback_url
        try:
            job = _json(self._client.send_json("POST", url, body, headers=_key(idempotency_key)))
        except ApiError:
            # Refused: nothing reads the upload. (Not after a TransportError: the job may
            # exist, and a job's dataset cannot be deleted anyway: 409 dataset_in_use.)
            if uploaded:
                self._drop_upload(dataset_id)
            raise
        if uploaded and job.get("dataset_id") not in (None, dataset_id):
            self._drop_upload(dataset_id)
        return job

    def _drop_upload(self, dataset_id: str) -> None:
        # Tidying only: a dataset left behind expires with its retention.
        with contextlib.suppress(KscoreError):
            self._client.datasets.delete(dataset_id)

    def submit_file(
        self,
        deployment_id: str,
        content: bytes,
        content_type: str,
        params: dict[str, Any] | None = None,
        *,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
    ) -> Record:
        """Queue a batch job from a body already encoded; the job record.

        ``content_type`` says what it is: ``application/x-npy`` (one input),
        ``application/x-npz`` (arrays named by input) or ``application/json``.
        ``callback_url`` and ``idempotency_key`` as for :meth:`submit`.
        """
        url = f"/api/v1/deployments/{_segment(deployment_id)}/jobs"
        params = dict(params or {})
        if callback_url is not None:
            params["callback_url"] = callback_url
        headers = {"Content-Type": content_type, **_key(idempotency_key)}
        response = self._client.request(
            "POST", url, content=content, headers=headers, params=params or None
        )
        return _json(response)

    def get(self, job_id: str) -> Record:
        """One job's record: status, progress, timestamps, error."""
        return self._client.get_json(f"/api/v1/jobs/{_segment(job_id)}")

    def list(self, deployment_id: str | None = None, status: str | None = None) -> Records:
        """Jobs, optionally of one deployment and/or in one status."""
        params = {"deployment_id": deployment_id, "status": status}
        return self._client.paginate("/api/v1/jobs", params=params)

    def wait(
        self,
        job_id: str,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        *,
        interval: float | None = None,
    ) -> Record:
        """Poll until the job completes; its final record.

        ``on_progress(rows_done, rows_total)`` is called on the first poll and on every change.
        Polls every ``interval`` seconds, or backing off from 0.2 s to 2 s when it is None.
        Raises JobFailedError if the job failed or was canceled, WaitTimeoutError after
        ``timeout`` seconds (None: no limit).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delays = backoff(interval, interval) if interval is not None else backoff()
        last: tuple[int, int] | None = None
        while True:
            job = self.get(job_id)
            progress = job.get("progress") or {}
            current = (int(progress.get("rows_done") or 0), int(progress.get("rows_total") or 0))
            if on_progress is not None and current != last:
                on_progress(*current)
            last = current
            status = job.get("status")
            if status == JobStatus.COMPLETED:
                return job
            if status in FINISHED_JOB_STATUSES:
                raise JobFailedError(job)
            _sleep_or_give_up(
                next(delays),
                deadline,
                f"Job '{job_id}' was still {status} after {timeout:g} s."
                if timeout is not None
                else "",
            )

    def result(self, job_id: str, format: str = "json") -> Any:
        """A completed job's result (ConflictError ``job_not_finished`` before that) in
        ``format`` (json, jsonl, csv, npy, npz, parquet), read whole into memory.

        json -> the dict ``{"fields", "values"}``; jsonl -> a list of dicts; npy -> a numpy
        array; npz -> a dict of arrays; csv and parquet -> a pandas DataFrame. Without numpy or
        pandas installed (``pip install 'kscore[data]'``) the bytes as sent. Raises
        ValueError for an unknown format, ApiError (status 406) for npy of a model with
        several outputs. For results larger than memory use :meth:`download_result`.
        """
        url = f"/api/v1/jobs/{_segment(job_id)}/result"
        if format == "json":
            return self._client.get_json(url)
        response = self._client.request("GET", url, params={"format": check_format(format)})
        return decode_result(response.content, format)

    def iter_result(self, job_id: str, format: str = "json") -> Iterator[bytes]:
        """A completed job's result body in ``format``, streamed: the bytes as they arrive."""
        url = f"/api/v1/jobs/{_segment(job_id)}/result"
        yield from self._client.stream(url, params={"format": check_format(format)})

    def download_result(
        self,
        job_id: str,
        dest: str | os.PathLike[str] | None = None,
        format: str | None = None,
    ) -> Path:
        """Stream a completed job's result into ``dest`` (a file or a directory), never whole
        in memory; the path written.

        ``format`` (json, jsonl, csv, npy, npz, parquet) defaults to what ``dest``'s suffix
        names (``preds.csv`` -> csv; ``.ndjson`` and ``.pq`` too), else json. A directory
        gets the server's name ``<job id>.<extension>``. Raises ValueError for an unknown
        format.
        """
        fmt = check_format(format or format_for_path(os.fspath(dest) if dest else None) or "json")
        url = f"/api/v1/jobs/{_segment(job_id)}/result?format={fmt}"
        return self._client.download(url, dest, f"{job_id}.{fmt}")

    def cancel(self, job_id: str) -> Record:
        """Cancel a queued or running job; its record, now ``canceled`` (ConflictError once finished)."""
        return _json(self._client.request("DELETE", f"/api/v1/jobs/{_segment(job_id)}"))


# -- helpers -------------------------------------------------------------------------------


def _key(idempotency_key: str | None) -> dict[str, str]:
    """The Idempotency-Key header (draft-ietf-httpapi-idempotency-key-header), if a key is
    given."""
    return {"Idempotency-Key": idempotency_key} if idempotency_key is not None else {}

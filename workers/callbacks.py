"""Job callbacks, sent from workers: who sends the delivery task (once per job), and the
delivery itself (signed, retried with exponential backoff, every attempt logged on the job)."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import httpx
from celery import Celery, Task

from shared.errors import CallbackNotAllowed, JobNotFound
from shared.instance_store import InstanceStore
from shared.job_document import job_document
from shared.job_record import JobRecord
from shared.job_store import JobStore
from shared.queueing import DELIVER_WEBHOOK, QUEUE_BATCH
from shared.settings import Settings
from shared.timeutil import iso, now
from shared.webhooks import check_callback_url, sign

log = logging.getLogger(__name__)

# Seconds a receiver has to answer one delivery.
DELIVERY_TIMEOUT_S = 10.0


def send_callback(jobs: JobStore, celery: Celery, record: JobRecord) -> None:
    """Queue the delivery of a finished job's callback, exactly once whoever calls: the
    worker that ended the job calls this, and the reconciler for every job it sees finished
    (canceled through the API, or a worker that died between ending a job and this call)."""
    if not jobs.claim_webhook(record):
        return
    try:
        celery.send_task(DELIVER_WEBHOOK, args=[record.instance, record.id], queue=QUEUE_BATCH)
    except Exception:
        jobs.unclaim_webhook(record)  # the reconciler's next pass tries again
        raise
    log.info("callback queued job_id=%s", record.id)


def deliver(
    task: Task, settings: Settings, jobs: JobStore, instances: InstanceStore, instance: str,
    job_id: str,
) -> None:  # fmt: skip
    """POST the job's document to its callback URL; raises celery's Retry for another try."""
    try:
        record = jobs.get(instance, job_id)
    except JobNotFound:
        log.info("callback dropped job_id=%s reason=job_gone", job_id)
        return
    if not record.callback_url:
        return
    attempt = int(task.request.retries) + 1
    entry: dict[str, Any] = {
        "attempt": attempt,
        "at": iso(now()),
        "status_code": None,
        "error": None,
    }
    try:
        # Again at delivery: the name may resolve elsewhere than when the job was submitted.
        check_callback_url(record.callback_url, settings.webhook_allow)
    except CallbackNotAllowed as exc:
        entry["error"] = exc.message
        jobs.log_webhook(record, entry)
        log.warning("callback refused job_id=%s reason=not_allowed", job_id)
        return
    body = json.dumps(job_document(record, record.base_url, [], jobs.webhook_log(record))).encode()
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "webhook-id": record.id,  # the same on every attempt: receivers drop repeats by it
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(instances.webhook_secret(instance), record.id, timestamp, body),
    }
    delivered = False
    try:
        # No redirects: a redirect could lead where the allow-list does not.
        response = httpx.post(
            record.callback_url, content=body, headers=headers, timeout=DELIVERY_TIMEOUT_S
        )
        entry["status_code"] = response.status_code
        delivered = response.is_success
        if not delivered:
            entry["error"] = f"The receiver answered HTTP {response.status_code}."
    except httpx.HTTPError as exc:
        entry["error"] = f"{type(exc).__name__}: {exc}"[:500]
    jobs.log_webhook(record, entry)
    log.info(
        "callback attempt job_id=%s attempt=%d status=%s delivered=%s",
        job_id,
        attempt,
        entry["status_code"],
        delivered,
    )
    if not delivered and attempt < settings.webhook_max_attempts:
        raise task.retry(
            countdown=settings.webhook_backoff_s * 2 ** (attempt - 1),
            max_retries=settings.webhook_max_attempts - 1,
        )

"""Per-request helpers the views share: services, the caller's instance, URLs, paging."""

from __future__ import annotations

import gc
import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from flask import current_app, request

from api.auth import current_instance
from api.services import IdempotentRequest, Services
from shared.dataset_store import DatasetRecord
from shared.errors import PayloadTooLarge


def services() -> Services:
    """The current app's stores and task sender (needs an app context)."""
    return cast(Services, current_app.extensions["kscore"])


def instance() -> str:
    """The caller's instance id, as the request's credentials name it (``api.auth``).

    Raises Unauthorized (401) when the request was not authenticated.
    """
    return current_instance()


def base_url() -> str:
    """The externally visible base URL (KSCORE_PUBLIC_URL or the request's), no trailing slash."""
    return services().settings.public_url or request.host_url.rstrip("/")


def url(path: str) -> str:
    """The absolute URL of an API path such as ``/api/v1/jobs/{id}``."""
    return base_url() + path


def check_body_size() -> None:
    """Refuse a request body over KSCORE_MAX_REQUEST_BYTES; raises PayloadTooLarge (413)."""
    limit = services().settings.max_request_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(
            f"The request body is {request.content_length} bytes, over the limit of {limit} "
            "(KSCORE_MAX_REQUEST_BYTES); split the rows into several jobs.",
            details={"limit_bytes": limit},
        )


IDEMPOTENCY_KEY = "Idempotency-Key"
_BODY_SHA256 = "kscore.body_sha256"


def note_body(body: bytes) -> None:
    """Remember the body's SHA-256 for an Idempotency-Key's fingerprint (only when one is
    sent: the body itself is not kept, so it is freed as soon as it is parsed)."""
    if IDEMPOTENCY_KEY in request.headers:
        request.environ[_BODY_SHA256] = hashlib.sha256(body).hexdigest()


def note_dataset_body(options: dict[str, Any], dataset: DatasetRecord) -> None:
    """For a job scoring a dataset, when an Idempotency-Key is sent: the fingerprint's body is
    the job's options with the dataset's rows (their SHA-256) in place of its id, so a retry
    that uploaded the same rows again, as a new dataset, is the same request."""
    if IDEMPOTENCY_KEY in request.headers:
        rows = f"rows:{dataset.rows_sha256}" if dataset.rows_sha256 else f"id:{dataset.id}"
        doc = json.dumps({**options, "dataset_id": rows}, sort_keys=True, default=str)
        request.environ[_BODY_SHA256] = hashlib.sha256(doc.encode()).hexdigest()


def idempotent_request(key: str | None, *ignored_query: str) -> IdempotentRequest | None:
    """The request's Idempotency-Key and fingerprint (method, path, query but
    ``ignored_query``, media type, body), after its body was read; None without a key."""
    if key is None:
        return None
    query = sorted(
        (name, value)
        for name, values in request.args.lists()
        if name not in ignored_query
        for value in values
    )
    parts = [
        request.method,
        request.path,
        repr(query),
        request.mimetype,
        str(request.environ.get(_BODY_SHA256, "")),
    ]
    return IdempotentRequest(key, hashlib.sha256("\n".join(parts).encode()).hexdigest())


_gc_lock = threading.Lock()
_gc_pausers = 0


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while the block runs (shared by request threads).

    Parsing a large JSON body allocates millions of lists, each of which counts towards the
    next collection: with the collector running, ``json.loads`` of 10,000 image rows takes
    four times as long, and every full pass while those lists live scans them all again.
    Parsed JSON holds no reference cycles: reference counting frees it, nothing is missed.
    """
    global _gc_pausers
    with _gc_lock:
        _gc_pausers += 1
        gc.disable()
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0:
                gc.enable()


def page(
    resources: list[dict[str, Any]], total: int, limit: int, offset: int, **params: Any
) -> dict[str, Any]:
    """A list envelope (for a ``...ListSchema``), with a link to the next page when there is one.

    Returns ``{"resources", "total", "limit", "offset"}`` and ``next`` unless this page is the
    last; ``params`` (None dropped) are carried into the next link's query.
    """
    body: dict[str, Any] = {
        "resources": resources,
        "total": total,
        "limit": limit,
        "offset": offset,
    }
    if offset + len(resources) < total:
        args = {k: v for k, v in params.items() if v is not None}
        args.update(limit=limit, offset=offset + limit)
        qs = "&".join(f"{k}={v}" for k, v in args.items())
        body["next"] = {"href": url(request.path) + "?" + qs}
    return body

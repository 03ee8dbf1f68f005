"""Per-request helpers the views share: services, the caller's instance, URLs, parsing."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from flask import current_app, request
from marshmallow import Schema

from shared.errors import BadRequest, PayloadTooLarge
from shared.scoring import ArrayPayload, parse_array_body
from api.services import Services


def services() -> Services:
    """The app's stores and task sender."""
    return cast(Services, current_app.extensions["kscore"])


def instance() -> str:
    """The caller's instance; everything lives in the default one until auth exists."""
    return services().settings.default_instance


def base_url() -> str:
    """The externally visible base URL, no trailing slash."""
    return services().settings.public_url or request.host_url.rstrip("/")


def url(path: str) -> str:
    """An absolute URL for an API path."""
    return base_url() + path


ARRAY_MIMETYPES = {"application/x-npy", "application/x-npz", "application/octet-stream"}


def _check_body_size() -> None:
    limit = services().settings.max_request_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(
            f"The request body is {request.content_length} bytes, over the limit of {limit} "
            "(KSCORE_MAX_REQUEST_BYTES); split the rows into several jobs.",
            details={"limit_bytes": limit},
        )


def scoring_body(schema: Schema) -> dict[str, Any] | ArrayPayload:
    """Rows to score: JSON through ``schema``, or a .npy/.npz body (application/x-npy)."""
    if request.mimetype in ARRAY_MIMETYPES:
        _check_body_size()
        return parse_array_body(request.get_data(cache=False))
    return json_body(schema)


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


def json_body(schema: Schema) -> dict[str, Any]:
    """The JSON body loaded through ``schema`` (422 with field errors when it does not fit)."""
    _check_body_size()
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise BadRequest("The request body must be a JSON object (Content-Type: application/json).")
    return cast(dict[str, Any], schema.load(data))


def query(schema: Schema) -> dict[str, Any]:
    """Query parameters loaded through ``schema``."""
    return cast(dict[str, Any], schema.load(request.args))


def page(
    resources: list[dict[str, Any]], total: int, limit: int, offset: int, **params: Any
) -> dict[str, Any]:
    """A list envelope with a link to the next page when there is one."""
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

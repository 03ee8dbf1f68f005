"""Backpressure: the request rate per instance, and what a document says when no worker
consumes the queue its work waits in.

The rate limit is Flask-Limiter's, counted in Redis (so every API process shares it) and
keyed by the caller's instance. The limits on work accepted and not finished are the job
store's (``shared/lua/job_create.lua``): they must hold atomically with the job's creation.
"""

from __future__ import annotations

import math
import time
from typing import Any, cast

from flask import Flask, g
from flask_limiter import Limiter, RequestLimit

from api.auth import current_instance
from api.services import Services
from shared.errors import RateLimited
from shared.job_record import JobRecord
from shared.queueing import QUEUE_BATCH, QUEUE_ONLINE

_SCOPE = "instance"


def _caller() -> str:
    return current_instance()


def _anonymous() -> bool:
    # Health, readiness, metrics, the docs and the OpenAPI document act as no instance:
    # they are never limited. A route that needs an instance and has none fails closed itself.
    return g.get("kscore_instance") is None


def _refuse(breached: RequestLimit) -> None:
    """Flask-Limiter's breach callback: raise the one error envelope's 429 instead of its own."""
    rate = breached.limit
    retry_after_s = math.ceil(breached.reset_at - time.time())
    raise RateLimited(
        f"This instance sent more requests than its limit of {rate} (KSCORE_RATE_LIMIT). "
        "Slow down, and retry after the seconds in Retry-After.",
        retry_after_s=retry_after_s,
        details={"limit": str(rate)},
    )


def install(app: Flask) -> None:
    """Rate-limit every view that acts as an instance; call after the blueprints are registered.

    The check wraps the view functions rather than running as a before-request hook: the WML
    blueprint authenticates in its own hook, which runs after the app's, and the limit is
    keyed by the instance that authentication finds. Does nothing when KSCORE_RATE_LIMIT=off.
    """
    svc: Services = app.extensions["kscore"]
    if svc.settings.rate_limit == "off":
        return
    limiter = Limiter(
        key_func=_caller,
        # The app's own connection pool: the same Redis (Sentinel included) as every store.
        storage_uri="redis://",
        storage_options=cast(
            dict[str, Any],
            {
                "connection_pool": svc.redis_client.connection_pool,
                "key_prefix": svc.keys.rate_limits(),
            },
        ),
        strategy="sliding-window-counter",
        headers_enabled=False,
    )
    limiter.init_app(app)
    app.extensions["kscore_limiter"] = limiter
    meter(app, list(app.view_functions))


def meter(app: Flask, endpoints: list[str]) -> None:
    """Count these views against the caller's instance's rate limit (the one ``install`` sets),
    for views registered after it (the console's actions); nothing when KSCORE_RATE_LIMIT=off."""
    limiter: Limiter | None = app.extensions.get("kscore_limiter")
    if limiter is None:
        return
    limited = limiter.shared_limit(
        app.extensions["kscore"].settings.rate_limit,
        scope=_SCOPE,
        exempt_when=_anonymous,
        on_breach=_refuse,
    )
    for endpoint in endpoints:
        app.view_functions[endpoint] = cast(Any, limited(app.view_functions[endpoint]))


def queue_warnings(queue: str, idle: set[str]) -> list[dict[str, Any]]:
    """The ``warnings`` of a document whose work waits in ``queue``, given the idle queues."""
    if queue not in idle:
        return []
    return [
        {
            "code": "no_worker",
            "message": f"No kscore worker is consuming the {queue} queue: this waits until one "
            f"starts (`kscore worker`, or `--queues {queue}`).",
            "queue": queue,
        }
    ]


def job_queue(record: JobRecord) -> str:
    """The queue a job's chunks wait in."""
    return QUEUE_ONLINE if record.kind == "online" else QUEUE_BATCH

"""Operations: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from api.auth import request_from_loopback
from api.context import services
from api.contract import Blueprint
from api.schemas import ErrorSchema, HealthSchema, ReadinessSchema
from api.services import Services
from shared.errors import BackendUnavailable, Forbidden
from shared.metrics import live_workers, read_latency
from shared.queueing import ALL_QUEUES, QUEUE_ONLINE, celery_key_prefix
from shared.status import JobStatus

bp = Blueprint("operations", __name__, description="Health, readiness and metrics.")


@bp.get("/healthz")
@bp.response(200, HealthSchema, description="The API runs and Redis answers.")
@bp.alt_response(503, schema=ErrorSchema, description="Redis is unreachable.")
def healthz() -> dict[str, str]:
    """API up and Redis reachable

    ---
    Returns the status. Raises BackendUnavailable (503) when Redis does not answer.
    """
    svc = services()
    try:
        svc.redis_client.ping()
    except Exception as exc:
        raise BackendUnavailable(f"Redis is unreachable: {exc}") from exc
    return {"status": "ok", "redis": "ok"}


@bp.get("/readyz")
@bp.response(200, ReadinessSchema, description="Workers with a fresh heartbeat.")
@bp.alt_response(503, schema=ErrorSchema, description="No worker is consuming.")
def readyz() -> dict[str, Any]:
    """A worker is consuming

    Ready while some worker's heartbeat is under 30 s old.
    ---
    Returns the workers and their queues. Raises BackendUnavailable (503) without one.
    """
    workers = live_workers(services().redis_client, services().keys)
    if not workers:
        raise BackendUnavailable(
            "No kscore worker is consuming: start one with `kscore worker` (or `make run`)."
        )
    return {"status": "ready", "workers": workers}


class _RedisCollector(Collector):
    def __init__(self, svc: Services) -> None:
        self._svc = svc

    def collect(self) -> Iterator[Metric]:
        svc = self._svc
        counters = svc.jobs.metrics()
        jobs = CounterMetricFamily(
            "kscore_jobs", "Jobs by final status (and created).", labels=["status"]
        )
        # Enum order (completed, failed, canceled) keeps the exposition stable between scrapes.
        statuses = ["created", *(status.value for status in JobStatus if status.finished)]
        for status in statuses:
            jobs.add_metric([status], counters.get(f"jobs_{status}", 0))
        yield jobs
        yield CounterMetricFamily(
            "kscore_rows_scored", "Rows scored by workers.", value=counters.get("rows_scored", 0)
        )
        depth = GaugeMetricFamily(
            "kscore_queue_depth", "Messages waiting per queue.", labels=["queue"]
        )
        prefix = celery_key_prefix(svc.settings)
        for queue in ALL_QUEUES:
            waiting = int(svc.redis_client.llen(prefix + queue))
            if queue == QUEUE_ONLINE:  # online requests travel on the online stream
                waiting += int(svc.redis_client.xlen(svc.keys.online_stream()))
            depth.add_metric([queue], waiting)
        yield depth
        yield CounterMetricFamily(
            "kscore_online_batches",
            "Model calls (batches) that answered online requests.",
            value=counters.get("online_batches", 0),
        )
        yield CounterMetricFamily(
            "kscore_online_batched_requests",
            "Online requests answered in those batches (divided by the batches: the mean "
            "batch size in requests).",
            value=counters.get("online_batched_requests", 0),
        )
        buckets, count, total = read_latency(svc.redis_client, svc.keys)
        yield HistogramMetricFamily(
            "kscore_online_latency_seconds",
            "Online scoring requests, end to end in the API.",
            buckets=[(le, float(c)) for le, c in buckets],
            sum_value=total,
        )
        yield GaugeMetricFamily(
            "kscore_workers",
            "Workers with a fresh heartbeat.",
            value=len(live_workers(svc.redis_client, svc.keys)),
        )
        del count


@bp.get("/metrics")
@bp.response(
    200,
    {"type": "string"},
    content_type="text/plain; version=0.0.4",
    description="Prometheus text exposition format.",
)
@bp.alt_response(
    403,
    schema=ErrorSchema,
    description="A caller not on this machine, while KSCORE_METRICS_ACCESS=loopback.",
)
@bp.alt_response(503, schema=ErrorSchema, description="Redis is unreachable.")
def metrics() -> Response:
    """Prometheus metrics

    Jobs by status, rows scored, queue depths, online latency, live workers. Open to callers
    on this machine; to others only with KSCORE_METRICS_ACCESS=open.
    ---
    Returns the metrics, read from Redis per scrape. Raises Forbidden (403) for a remote
    caller unless KSCORE_METRICS_ACCESS=open; a Redis outage is a 503 from the app's error
    handler.
    """
    if services().settings.metrics_access != "open" and not request_from_loopback():
        raise Forbidden(
            "/metrics answers callers on this machine only; set KSCORE_METRICS_ACCESS=open to "
            "let a Prometheus elsewhere scrape it."
        )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_RedisCollector(services()))
    return Response(generate_latest(registry), mimetype="text/plain; version=0.0.4")

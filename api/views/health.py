"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from collections.abc import Iterator

from flask import Blueprint, Response, jsonify
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from api.context import services
from shared.errors import ServiceUnavailable
from shared.metrics import live_workers, read_latency
from shared.queueing import ALL_QUEUES, celery_key_prefix
from api.services import Services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """200 when the API runs and Redis answers."""
    svc = services()
    try:
        svc.redis_client.ping()
    except Exception as exc:
        raise ServiceUnavailable(f"Redis is unreachable: {exc}") from exc
    return jsonify({"status": "ok", "redis": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    """200 when at least one worker has beaten its heart recently."""
    workers = live_workers(services().redis_client, services().keys)
    if not workers:
        raise ServiceUnavailable(
            "No kscore worker is consuming: start one with `kscore worker` (or `make run`)."
        )
    return jsonify({"status": "ready", "workers": workers})


class _RedisCollector(Collector):
    def __init__(self, svc: Services) -> None:
        self._svc = svc

    def collect(self) -> Iterator[Metric]:
        svc = self._svc
        counters = svc.jobs.metrics()
        jobs = CounterMetricFamily(
            "kscore_jobs", "Jobs by final status (and created).", labels=["status"]
        )
        for status in ("created", "completed", "failed", "canceled"):
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
            depth.add_metric([queue], int(svc.redis_client.llen(prefix + queue)))
        yield depth
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
def metrics() -> Response:
    """Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_RedisCollector(services()))
    return Response(generate_latest(registry), mimetype="text/plain; version=0.0.4")

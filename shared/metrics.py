"""Counters and the online latency histogram, kept in Redis so every API and worker
process adds to the same numbers."""

from __future__ import annotations

import bisect
import time

import redis

from shared.keys import Keys

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
HEARTBEAT_FRESH_SECONDS = 30.0


def latency_bucket(seconds: float) -> str:
    """The histogram bucket (its ``le``) counting a request of ``seconds``."""
    index = bisect.bisect_left(LATENCY_BUCKETS, seconds)
    return str(LATENCY_BUCKETS[index]) if index < len(LATENCY_BUCKETS) else "+Inf"


def observe_latency(client: redis.Redis, keys: Keys, seconds: float) -> None:
    """Count one online request of ``seconds`` into the histogram."""
    bucket = latency_bucket(seconds)
    with client.pipeline(transaction=False) as pipe:
        pipe.hincrby(keys.latency_histogram(), bucket, 1)
        pipe.hincrby(keys.latency_histogram(), "count", 1)
        pipe.hincrbyfloat(keys.latency_histogram(), "sum", seconds)
        pipe.execute()


def read_latency(client: redis.Redis, keys: Keys) -> tuple[list[tuple[str, int]], int, float]:
    """Cumulative buckets (le, count), total count and sum, Prometheus style."""
    raw = {k.decode(): v.decode() for k, v in client.hgetall(keys.latency_histogram()).items()}  # type: ignore[union-attr]
    buckets = []
    running = 0
    for le in [*map(str, LATENCY_BUCKETS), "+Inf"]:
        running += int(raw.get(le, 0))
        buckets.append((le, running))
    return buckets, int(raw.get("count", 0)), float(raw.get("sum", 0.0))


def beat(client: redis.Redis, keys: Keys, worker: str, queues: str) -> None:
    """A worker says it is alive and which queues it consumes."""
    with client.pipeline(transaction=False) as pipe:
        pipe.zadd(keys.workers_index(), {worker: time.time()})
        pipe.set(keys.worker_heartbeat(worker), queues, ex=int(HEARTBEAT_FRESH_SECONDS * 2))
        pipe.execute()


def live_workers(client: redis.Redis, keys: Keys) -> dict[str, str]:
    """Workers that beat recently, with the queues each consumes."""
    cutoff = time.time() - HEARTBEAT_FRESH_SECONDS
    client.zremrangebyscore(keys.workers_index(), "-inf", cutoff)
    names = [n.decode() for n in client.zrange(keys.workers_index(), 0, -1)]  # type: ignore[union-attr]
    if not names:
        return {}
    queues = client.mget([keys.worker_heartbeat(n) for n in names])
    return {n: (q.decode() if q else "") for n, q in zip(names, queues, strict=True)}  # type: ignore[union-attr]


def consumed_queues(client: redis.Redis, keys: Keys) -> set[str]:
    """The queues some live worker consumes (read-only: cheap enough for every request)."""
    cutoff = time.time() - HEARTBEAT_FRESH_SECONDS
    names = client.zrangebyscore(keys.workers_index(), cutoff, "+inf")
    if not names:
        return set()
    raw = client.mget([keys.worker_heartbeat(n.decode()) for n in names])  # type: ignore[union-attr]
    return {queue for q in raw if q for queue in q.decode().split(",") if queue}  # type: ignore[union-attr]

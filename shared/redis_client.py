"""Building the Redis connection from settings (entry points and tests call this)."""

from __future__ import annotations

import redis

from shared.settings import Settings


def connect(settings: Settings) -> redis.Redis:
    """A Redis client for kscore's state. Binary-safe: values come back as bytes."""
    return redis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=5,
        health_check_interval=30,
        retry_on_timeout=True,
    )

"""Building the Redis connection from settings (entry points and tests call this).

Everything in kscore that talks to Redis gets its client here (the broker goes through
:func:`shared.queueing.make_celery`, which reads the same URL). ``KSCORE_REDIS_URL`` names one
server (``redis://``, ``rediss://``, ``unix://``) or a Redis Sentinel deployment
(``sentinel://h1:26379,h2:26379,h3:26379/mymaster/0``): then the client asks the sentinels
where the master is before each new connection, and follows it across a failover.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.connection import Encoder, PythonRespSerializer
from redis.retry import Retry
from redis.sentinel import Sentinel

from shared.settings import Settings, sentinel_target


# A failover takes the sentinels' down-after time plus an election (2-4 s with a down-after of
# 1 s): commands issued meanwhile wait for the new master, about 10 s in all, instead of
# failing. Scripts and transactions are safe to repeat (job completion is idempotent; a
# repeated claim only counts one more start).
def _failover_retry() -> Retry:
    return Retry(ExponentialWithJitterBackoff(base=0.25, cap=2.0), retries=8)


# redis-py's own cutoff: a value past it is sent as a buffer of its own, not copied.
LARGE_VALUE_BYTES = 6000


def _options() -> dict[str, Any]:
    return {
        "socket_connect_timeout": 5,
        "health_check_interval": 30,
        "retry_on_timeout": True,
        # hiredis (installed with redis-py's extra) parses replies in C; commands are packed by
        # redis-py's own packer all the same, which sends a value past LARGE_VALUE_BYTES as a
        # buffer of its own where hiredis's copies it into the command: a 201 MB dataset
        # upload in 6 MB chunks grew the API's peak RSS by 57 MB with hiredis's packer, 32 MB
        # with this one, and on online requests the two packers measured the same.
        "command_packer": PythonRespSerializer(
            LARGE_VALUE_BYTES, Encoder("utf-8", "strict", False).encode
        ),
    }


def connect(settings: Settings) -> redis.Redis:
    """A Redis client for kscore's state. Binary-safe: values come back as bytes."""
    return connect_url(settings.redis_url)


def connect_url(url: str) -> redis.Redis:
    """A client for ``url`` in any form ``KSCORE_REDIS_URL`` takes (see the module docstring).

    Connects to nothing yet. Raises ValueError for a malformed sentinel URL.
    """
    target = sentinel_target(url)
    if target is None:
        return redis.Redis.from_url(url, **_options())
    sentinels = Sentinel(
        list(target.sentinels),
        # A sentinel that is down must not hold up asking the next one (no retries of its
        # own: the connection's retry asks them all again).
        sentinel_kwargs={
            "socket_connect_timeout": 1,
            "socket_timeout": 1,
            "retry": Retry(NoBackoff(), 0),
        },
    )
    return sentinels.master_for(
        target.master_name,
        db=target.db,
        username=target.username,
        password=target.password,
        retry=_failover_retry(),
        **_options(),
    )

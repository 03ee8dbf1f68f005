"""Read-modify-write of one JSON record in Redis, atomic against concurrent writers."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, cast

import redis
from redis.client import Pipeline

T = TypeVar("T")


def update_json_record(
    client: redis.Redis,
    key: str,
    parse: Callable[[bytes], T],
    change: Callable[[T], T],
    serialize: Callable[[T], str],
) -> T | None:
    """Apply ``change`` to the record at ``key`` and store the result; the new record.

    Runs under WATCH (redis-py's ``Redis.transaction``): a concurrent write to ``key`` makes
    it read and change the record again. Returns None, writing nothing, when the key is gone.
    """

    def update(pipe: Pipeline) -> T | None:
        raw = pipe.get(key)
        if raw is None:
            return None
        record = change(parse(cast(bytes, raw)))
        pipe.multi()
        pipe.set(key, serialize(record))
        return record

    # redis-py types ``func`` as returning None, ignoring value_from_callable.
    return cast(
        T | None,
        client.transaction(update, key, value_from_callable=True),  # type: ignore[arg-type]
    )

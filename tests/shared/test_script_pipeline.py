"""ScriptPipeline on a redis-server of its own (the test flushes its script cache)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from kscore.localredis import LocalRedis
from shared.script_pipeline import ScriptPipeline

# Counts its runs, so a script run twice (or not at all) shows.
COUNT = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
FAIL = "return redis.error_reply('refused: ' .. ARGV[1])"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[redis.Redis]:
    with LocalRedis(tmp_path / "redis", persist=False) as server:
        r = redis.Redis.from_url(server.url)
        yield r
        r.close()


def calls(client: redis.Redis, command: str) -> int:
    stats = client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def test_scripts_and_commands_run_once_each_in_order_in_one_round_trip(
    client: redis.Redis,
) -> None:
    count = client.register_script(COUNT)
    client.script_load(COUNT)
    before = {name: calls(client, name) for name in ("script|exists", "evalsha", "script|load")}
    batch = ScriptPipeline(client)
    batch.script(count, ["a"], [2])
    batch.command(lambda pipe: pipe.rpush("log", "between"))
    batch.script(count, ["a"], [3])
    batch.script(count, ["b"], [7])
    assert batch.execute() == [2, 5, 7]
    assert client.lrange("log", 0, -1) == [b"between"]
    # No SCRIPT EXISTS (redis-py's pipeline sends one per execute), no load: EVALSHA only.
    assert calls(client, "script|exists") == before["script|exists"]
    assert calls(client, "script|load") == before["script|load"]
    assert calls(client, "evalsha") == before["evalsha"] + 3


def test_a_script_redis_forgot_is_loaded_and_run_once(client: redis.Redis) -> None:
    count = client.register_script(COUNT)
    client.script_load(COUNT)
    client.script_flush()  # what a restart or a failover leaves: an empty script cache
    batch = ScriptPipeline(client)
    batch.script(count, ["a"], [1])
    batch.command(lambda pipe: pipe.rpush("log", "once"))
    batch.script(count, ["a"], [10])
    assert batch.execute() == [1, 11]
    assert client.get("a") == b"11"  # neither NOSCRIPT reply ran, each re-run ran once
    assert client.lrange("log", 0, -1) == [b"once"]  # the command is not sent again


def test_an_error_a_script_raises_is_raised(client: redis.Redis) -> None:
    count = client.register_script(COUNT)
    fail = client.register_script(FAIL)
    batch = ScriptPipeline(client)
    batch.script(count, ["a"], [1])
    batch.script(fail, [], ["no"])
    with pytest.raises(redis.ResponseError, match="refused: no"):
        batch.execute()
    assert client.get("a") == b"1"  # not a transaction: what ran before stays

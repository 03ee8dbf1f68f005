"""LocalRedis against the real redis-server binary: start, persist with AOF, stop, fail clearly.

The tests talk to the server with redis-py, as everything else in kscore does."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis

from kscore.localredis import LocalRedis, LocalRedisError, find_redis_server, free_port


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_find_redis_server_returns_an_executable() -> None:
    path = find_redis_server()
    assert os.access(path, os.X_OK)
    version = subprocess.run([path, "--version"], capture_output=True, text=True, check=True)
    assert "Redis server" in version.stdout


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_start_stop_and_persistence_across_restarts(tmp_path: Path) -> None:
    started = time.monotonic()
    with LocalRedis(tmp_path) as first:
        assert time.monotonic() - started < 5
        assert first.url == f"redis://127.0.0.1:{first.port}/0"
        assert first.ping()
        assert redis.Redis.from_url(first.url).set("kscore:test", "kept \r\n value") is True
        first_port = first.port
    assert not first.is_running()
    assert not _port_open(first_port)
    assert (tmp_path / "appendonly.aof").exists()
    assert (tmp_path / "redis.log").exists()

    with LocalRedis(tmp_path) as second:
        reply = redis.Redis.from_url(second.url).get("kscore:test")
    assert reply == b"kept \r\n value"


def test_works_with_redis_py(tmp_path: Path) -> None:
    with LocalRedis(tmp_path, persist=False) as server:
        client = redis.Redis.from_url(server.url)
        client.rpush("q", "a", "b")
        assert client.lrange("q", 0, -1) == [b"a", b"b"]
        client.close()


def test_without_persistence_a_restart_starts_empty(tmp_path: Path) -> None:
    with LocalRedis(tmp_path, persist=False) as first:
        redis.Redis.from_url(first.url).set("gone", "1")
    assert not (tmp_path / "appendonly.aof").exists()
    assert not (tmp_path / "dump.rdb").exists()
    with LocalRedis(tmp_path, persist=False) as second:
        assert redis.Redis.from_url(second.url).get("gone") is None


def test_explicit_port_and_idempotent_start_stop(tmp_path: Path) -> None:
    with pytest.raises(LocalRedisError, match="not been started"):
        _ = LocalRedis(tmp_path).url
    port = free_port()
    server = LocalRedis(tmp_path, port=port, persist=False)
    server.start()
    try:
        assert server.port == port
        assert server.start() is server  # already running: no second process
        assert server.is_running()
    finally:
        server.stop()
        server.stop()
    assert not _port_open(port)


def test_a_busy_port_fails_with_the_log_tail(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(LocalRedisError) as caught:
            LocalRedis(tmp_path, port=port, persist=False, startup_timeout=5).start()
    message = str(caught.value)
    assert f"port {port}" in message
    assert str(tmp_path / "redis.log") in message
    assert "Address already in use" in message or "bind" in message.lower()


def test_a_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    server = LocalRedis(tmp_path, executable=str(tmp_path / "no-such-redis-server"))
    with pytest.raises(LocalRedisError, match="Could not run"):
        server.start()
    assert not server.is_running()


def test_stop_survives_a_server_that_already_died(tmp_path: Path) -> None:
    server = LocalRedis(tmp_path, persist=False).start()
    assert server.child is not None
    server.child.process.kill()
    server.child.process.wait()
    server.stop()
    assert not server.is_running()

"""Fixtures over the real parts: a throwaway Redis server, the Flask app, a Celery worker."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
from argon2 import PasswordHasher
from celery import Celery
from celery.contrib.testing.worker import start_worker
from flask import Flask
from flask.testing import FlaskClient

from api.app import create_app
from kscore.localredis import LocalRedis
from shared.instance_store import InstanceStore, NewInstance
from shared.keys import Keys
from shared.queueing import ALL_QUEUES, make_celery
from shared.settings import Settings
from tests.helpers import Receiver
from workers.tasks import register_tasks


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis server for the whole run: KSCORE_TEST_REDIS_URL, or one started here."""
    external = os.environ.get("KSCORE_TEST_REDIS_URL")
    if external:
        yield external
        return
    server = LocalRedis(tmp_path_factory.mktemp("redis"), persist=False)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def base_settings(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings shared by the API under test and the session's worker."""
    return Settings(
        redis_url=redis_url,
        key_prefix=f"kstest-{uuid.uuid4().hex[:8]}",
        data_dir=tmp_path_factory.mktemp("data"),
        chunk_rows=50,
        online_timeout_s=30.0,
        visibility_timeout_s=30.0,
        # Tests poll every 50 ms from many threads; tests/api/test_backpressure.py sets limits.
        rate_limit="off",
        # Job callbacks to the tests' own receivers on loopback, retried within a second.
        webhook_allow=("127.0.0.0/8",),
        webhook_backoff_s=0.2,
    )


@pytest.fixture
def settings(base_settings: Settings) -> Settings:
    """Per test, a fresh instance id: the test sees only what it stored."""
    return base_settings.replace(default_instance=f"t{uuid.uuid4().hex[:12]}")


@pytest.fixture
def redis_client(settings: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.redis_url)
    yield client
    client.close()


@pytest.fixture
def app(settings: Settings, redis_client: redis.Redis) -> Flask:
    return create_app(settings, redis_client)


# Argon2 at its smallest: the suite creates an instance per test, and the production cost
# (64 MiB, 3 passes) is for passwords, not for fixtures. Verification reads the parameters
# from the hash, so the API checks these passwords as it checks real ones.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def instance_store(settings: Settings, redis_client: redis.Redis) -> InstanceStore:
    """The instance store of the installation under test, with a fast password hash."""
    return InstanceStore(redis_client, Keys(settings.key_prefix), FAST_HASHER)


def authorized_client(app: Flask) -> FlaskClient:
    """A test client of ``app`` sending a key of its default instance (made if missing)."""
    svc = app.extensions["kscore"]
    store = InstanceStore(svc.redis_client, svc.keys, FAST_HASHER)
    instance_id = svc.settings.default_instance
    if store.exists(instance_id):
        api_key = store.create_key(instance_id, "test").api_key
    else:
        api_key = store.create(instance_id, instance_id).key.api_key  # names are unique too
    test_client = app.test_client()
    test_client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {api_key}"
    return test_client


@pytest.fixture
def instance(settings: Settings, redis_client: redis.Redis) -> NewInstance:
    """A real instance for the per-test instance id, with its credentials."""
    # Named after its id: instance names are unique within an installation, like ids.
    return instance_store(settings, redis_client).create(
        settings.default_instance, settings.default_instance
    )


@pytest.fixture
def client(app: Flask, instance: NewInstance) -> FlaskClient:
    """A test client that sends the per-test instance's API key on every request."""
    test_client = app.test_client()
    test_client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {instance.key.api_key}"
    return test_client


@pytest.fixture
def anonymous(app: Flask) -> FlaskClient:
    """A test client that sends no credentials."""
    return app.test_client()


@pytest.fixture(scope="session")
def worker(base_settings: Settings) -> Iterator[Celery]:
    """A real Celery worker in this process, consuming every kscore queue."""
    app = make_celery(base_settings)
    register_tasks(app, base_settings)
    with start_worker(
        app,
        pool="threads",
        concurrency=2,
        perform_ping_check=False,
        queues=list(ALL_QUEUES),
        shutdown_timeout=30,
        loglevel="WARNING",
    ):
        yield app


@pytest.fixture(scope="session")
def files_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where session-scoped model files are built."""
    return tmp_path_factory.mktemp("model-files")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """An HTTP server on loopback recording the POSTs it gets (a job callback's receiver)."""
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
            status = 500 if len(state.requests) <= state.failures else 204
            state.answered.append(status)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.timeout = 1
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/kscore"
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)

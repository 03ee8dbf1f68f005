"""Fault tests against real worker subprocesses: a killed worker process loses no rows."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import redis
from flask.testing import FlaskClient

from api.app import create_app
from shared.keys import Keys
from shared.settings import Settings
from tests import keras_files as kf

ROOT = Path(__file__).resolve().parents[2]


def wait_for(check: Any, timeout: float, what: str, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def fault_settings(redis_url: str, tmp_path: Path) -> Settings:
    # A prefix of its own: the session's in-process worker must not take these chunks.
    return Settings(
        redis_url=redis_url,
        key_prefix=f"ksfault-{uuid.uuid4().hex[:8]}",
        data_dir=tmp_path / "data",
        chunk_rows=200,
    )


class Workers:
    """Worker subprocesses for one test, stopped at its end."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, **env: str) -> subprocess.Popen[bytes]:
        environ = {
            **os.environ,
            "KSCORE_REDIS_URL": self.settings.redis_url,
            "KSCORE_KEY_PREFIX": self.settings.key_prefix,
            "KSCORE_DATA_DIR": str(self.settings.data_dir),
            # Small direct calls make each chunk take long enough to be caught mid-way.
            "KSCORE_DIRECT_CALL_MAX_ROWS": "8",
            **env,
        }
        log = (self.log_dir / f"worker{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.main", "worker",
             "-Q", "online,deploy,batch", "--pool", "prefork", "--concurrency", "2",
             "-n", f"fault-{uuid.uuid4().hex[:6]}@%h", "--loglevel", "INFO"],
            cwd=ROOT, env=environ, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        self.procs.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(p.read_text()[-3000:] for p in sorted(self.log_dir.glob("worker*.log")))

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def workers(fault_settings: Settings, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(fault_settings, tmp_path)
    try:
        yield pool
    finally:
        pool.stop()


def deployed_cnn(settings: Settings, workers: Workers, tmp_path: Path) -> tuple[FlaskClient, str]:
    """A client of the API and the href of a small CNN deployment that is DEPLOY_SUCCESS."""
    client = create_app(settings, redis.Redis.from_url(settings.redis_url)).test_client()
    model_file = kf.small_cnn_keras_file(tmp_path)
    stored = client.post(
        "/api/v1/models",
        data={"file": (io.BytesIO(model_file.read_bytes()), model_file.name), "name": "cnn"},
        content_type="multipart/form-data",
    ).get_json()
    deployment = client.post(
        "/api/v1/deployments", json={"model_id": stored["id"], "name": "d"}
    ).get_json()
    href = f"/api/v1/deployments/{deployment['id']}"
    wait_for(
        lambda: client.get(href).get_json()["status"] != "DEPLOY_IN_PROGRESS", 120, "deploy", 0.2
    )
    assert client.get(href).get_json()["status"] == "DEPLOY_SUCCESS", workers.logs()
    return client, href


def wait_finished(client: FlaskClient, job_id: str, timeout: float) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        current = client.get(f"/api/v1/jobs/{job_id}").get_json()
        return current if current["status"] in {"completed", "failed", "canceled"} else None

    return wait_for(finished, timeout, "job to finish", 0.2)  # type: ignore[no-any-return]


def assert_every_row_once(client: FlaskClient, job: dict[str, Any], x: np.ndarray) -> None:
    assert job["status"] == "completed", job
    assert job["progress"] == {"rows_done": len(x), "rows_total": len(x)}
    values = client.get(f"/api/v1/jobs/{job['id']}/result").get_json()["values"]
    assert len(values) == len(x)  # none lost, none duplicated
    np.testing.assert_allclose(
        [v[0] for v in values], kf.expected_small_cnn(x), rtol=1e-4, atol=1e-5
    )


def test_sigkilled_pool_process_loses_no_row_and_counts_none_twice(
    fault_settings: Settings, workers: Workers, tmp_path: Path
) -> None:
    worker = workers.start()
    client, href = deployed_cnn(fault_settings, workers, tmp_path)
    x = np.random.default_rng(7).normal(size=(12000, 8, 8, 1)).astype(np.float32)
    job = client.post(f"{href}/jobs", json={"values": x.tolist()}).get_json()
    keys = Keys(fault_settings.key_prefix)
    inst = fault_settings.default_instance
    attempts_key, done_key = keys.job_attempts(inst, job["id"]), keys.job_done(inst, job["id"])
    store = redis.Redis.from_url(fault_settings.redis_url)

    def in_flight() -> set[bytes]:
        started = set(store.hkeys(attempts_key))
        done = set(store.smembers(done_key))
        return started - done if done else set()

    interrupted = wait_for(in_flight, 120, "chunks in flight after the first completed")
    children = psutil.Process(worker.pid).children()
    assert children, "the prefork worker has no pool processes"
    for child in children:
        child.send_signal(signal.SIGKILL)

    final = wait_finished(client, job["id"], 180)
    assert_every_row_once(client, final, x)
    # The chunks that were being scored when their processes died ran again.
    attempts = {k: int(v) for k, v in store.hgetall(attempts_key).items()}
    assert any(attempts[c] >= 2 for c in interrupted), (interrupted, attempts)
    assert worker.poll() is None  # the worker replaced its pool processes and went on


def test_job_survives_its_whole_worker_dying(
    fault_settings: Settings, workers: Workers, tmp_path: Path
) -> None:
    # A machine that vanishes leaves its tasks unacknowledged in Redis; another worker restores
    # them once they are older than the visibility timeout.
    first = workers.start(KSCORE_VISIBILITY_TIMEOUT="3")
    client, href = deployed_cnn(fault_settings, workers, tmp_path)
    x = np.random.default_rng(8).normal(size=(12000, 8, 8, 1)).astype(np.float32)
    job = client.post(f"{href}/jobs", json={"values": x.tolist()}).get_json()
    wait_for(
        lambda: client.get(f"/api/v1/jobs/{job['id']}").get_json()["progress"]["rows_done"] > 0,
        120, "the first chunk",
    )  # fmt: skip
    for proc in [*psutil.Process(first.pid).children(), psutil.Process(first.pid)]:
        proc.send_signal(signal.SIGKILL)
    first.wait()
    stalled = client.get(f"/api/v1/jobs/{job['id']}").get_json()
    assert stalled["status"] == "running"
    assert stalled["progress"]["rows_done"] < len(x), "the job finished before the kill"
    workers.start(KSCORE_VISIBILITY_TIMEOUT="3")
    final = wait_finished(client, job["id"], 180)
    assert_every_row_once(client, final, x)

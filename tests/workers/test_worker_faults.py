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


@pytest.fixture
def worker_process(fault_settings: Settings, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "KSCORE_REDIS_URL": fault_settings.redis_url,
        "KSCORE_KEY_PREFIX": fault_settings.key_prefix,
        "KSCORE_DATA_DIR": str(fault_settings.data_dir),
        # Small direct calls make each chunk take long enough to be caught mid-way.
        "KSCORE_DIRECT_CALL_MAX_ROWS": "8",
    }
    log = (tmp_path / "worker.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers.main",
            "worker",
            "-Q",
            "online,deploy,batch",
            "--pool",
            "prefork",
            "--concurrency",
            "2",
            "-n",
            f"fault-{uuid.uuid4().hex[:6]}@%h",
            "--loglevel",
            "INFO",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_sigkilled_worker_process_loses_no_row_and_scores_none_twice(
    fault_settings: Settings, worker_process: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    client_redis = redis.Redis.from_url(fault_settings.redis_url)
    client: FlaskClient = create_app(fault_settings, client_redis).test_client()
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
    assert client.get(href).get_json()["status"] == "DEPLOY_SUCCESS", (
        tmp_path / "worker.log"
    ).read_text()[-3000:]

    x = np.random.default_rng(7).normal(size=(12000, 8, 8, 1)).astype(np.float32)
    job = client.post(f"{href}/jobs", json={"values": x.tolist()}).get_json()
    keys = Keys(fault_settings.key_prefix)
    inst = fault_settings.default_instance
    attempts_key, done_key = keys.job_attempts(inst, job["id"]), keys.job_done(inst, job["id"])

    def in_flight() -> set[bytes]:
        started = set(client_redis.hkeys(attempts_key))
        done = set(client_redis.smembers(done_key))
        return started - done if done else set()

    interrupted = wait_for(in_flight, 120, "chunks in flight after the first completed")
    children = psutil.Process(worker_process.pid).children()
    assert children, "the prefork worker has no pool processes"
    for child in children:
        child.send_signal(signal.SIGKILL)

    def finished() -> dict[str, Any] | None:
        current = client.get(f"/api/v1/jobs/{job['id']}").get_json()
        return current if current["status"] in {"completed", "failed", "canceled"} else None

    final = wait_for(finished, 180, "job to finish", 0.2)
    assert final["status"] == "completed", final
    assert final["progress"] == {"rows_done": len(x), "rows_total": len(x)}
    # The chunks that were being scored when their processes died ran again.
    attempts = {k: int(v) for k, v in client_redis.hgetall(attempts_key).items()}
    assert any(attempts[c] >= 2 for c in interrupted), (interrupted, attempts)
    values = client.get(f"/api/v1/jobs/{job['id']}/result").get_json()["values"]
    assert len(values) == len(x)  # every row once: none lost, none duplicated
    np.testing.assert_allclose(
        [v[0] for v in values], kf.expected_small_cnn(x), rtol=1e-4, atol=1e-5
    )
    assert worker_process.poll() is None  # the worker replaced its pool processes and went on

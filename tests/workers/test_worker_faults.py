"""Fault tests against real worker subprocesses: a killed worker process loses no rows."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import redis
from flask.testing import FlaskClient

from shared.keys import Keys
from shared.settings import Settings
from tests import keras_files as kf
from tests.helpers import wait_for
from tests.workers.processes import Workers, deployed_cnn

# Starts its own worker processes and waits on them for seconds.
pytestmark = pytest.mark.slow


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
    proc_settings: Settings, workers: Workers, tmp_path: Path
) -> None:
    worker = workers.start()
    client, href = deployed_cnn(proc_settings, workers, tmp_path)
    x = np.random.default_rng(7).normal(size=(12000, 8, 8, 1)).astype(np.float32)
    job = client.post(f"{href}/jobs", json={"values": x.tolist()}).get_json()
    keys = Keys(proc_settings.key_prefix)
    inst = proc_settings.default_instance
    attempts_key, done_key = keys.job_attempts(inst, job["id"]), keys.job_done(inst, job["id"])
    store = redis.Redis.from_url(proc_settings.redis_url)

    def in_flight() -> set[bytes]:
        started = set(store.hkeys(attempts_key))
        done = set(store.smembers(done_key))
        return started - done if done else set()

    interrupted = wait_for(in_flight, 120, "chunks in flight after the first completed", 0.02)
    children = psutil.Process(worker.pid).children()
    assert children, "the prefork worker has no pool processes"
    for child in children:
        child.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()

    final = wait_finished(client, job["id"], 180)
    print(f"\npool processes killed: the job ended {time.monotonic() - killed_at:.1f} s later")
    assert_every_row_once(client, final, x)
    # The chunks that were being scored when their processes died ran again.
    attempts = {k: int(v) for k, v in store.hgetall(attempts_key).items()}
    assert any(attempts[c] >= 2 for c in interrupted), (interrupted, attempts)
    assert worker.poll() is None  # the worker replaced its pool processes and went on


def test_job_survives_its_whole_worker_dying(
    proc_settings: Settings, workers: Workers, tmp_path: Path
) -> None:
    # A machine that vanishes leaves its tasks unacknowledged in Redis; another worker restores
    # them once they are older than the visibility timeout.
    first = workers.start(KSCORE_VISIBILITY_TIMEOUT="3")
    client, href = deployed_cnn(proc_settings, workers, tmp_path)
    x = np.random.default_rng(8).normal(size=(12000, 8, 8, 1)).astype(np.float32)
    job = client.post(f"{href}/jobs", json={"values": x.tolist()}).get_json()
    wait_for(
        lambda: client.get(f"/api/v1/jobs/{job['id']}").get_json()["progress"]["rows_done"] > 0,
        120, "the first chunk", 0.02,
    )  # fmt: skip
    for proc in [*psutil.Process(first.pid).children(), psutil.Process(first.pid)]:
        proc.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = time.monotonic()
    stalled = client.get(f"/api/v1/jobs/{job['id']}").get_json()
    assert stalled["status"] == "running"
    assert stalled["progress"]["rows_done"] < len(x), "the job finished before the kill"
    workers.start(KSCORE_VISIBILITY_TIMEOUT="3")
    final = wait_finished(client, job["id"], 180)
    # Includes starting the second worker (TensorFlow, the model) after the kill.
    print(f"\nworker killed: the job ended {time.monotonic() - killed_at:.1f} s later")
    assert_every_row_once(client, final, x)

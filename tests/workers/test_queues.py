"""Queues: a worker busy with a long batch job still answers online requests promptly."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from shared.settings import Settings
from tests import keras_files as kf
from tests.helpers import wait_for
from tests.workers.processes import Workers, deployed_cnn

# Starts its own worker processes and waits on them for seconds.
pytestmark = pytest.mark.slow


def test_online_request_is_served_between_batch_chunks(
    proc_settings: Settings, workers: Workers, tmp_path: Path
) -> None:
    # One worker process, so the online request can only be served if it jumps the batch queue.
    workers.start(concurrency=1)
    client, href = deployed_cnn(proc_settings, workers, tmp_path)
    x = np.random.default_rng(1).normal(size=(12000, 8, 8, 1)).astype(np.float32)
    job = client.post(f"{href}/jobs", json={"values": x.tolist()}).get_json()
    job_url = f"/api/v1/jobs/{job['id']}"
    wait_for(
        lambda: client.get(job_url).get_json()["progress"]["rows_done"] > 0,
        120,
        "batch start",
        0.02,
    )

    started = time.monotonic()
    online = client.post(f"{href}/online", json={"values": x[:2].tolist()})
    online_seconds = time.monotonic() - started
    assert online.status_code == 200, online.get_json()
    np.testing.assert_allclose(
        [v[0] for v in online.get_json()["values"]],
        kf.expected_small_cnn(x[:2]),
        rtol=1e-4,
        atol=1e-5,
    )
    during = client.get(job_url).get_json()
    # Answered while the batch job still had most of its chunks queued.
    assert during["status"] == "running", (during, online_seconds)
    assert during["progress"]["rows_done"] < len(x) // 2, (during, online_seconds)
    done = wait_for(
        lambda: (j := client.get(job_url).get_json())["status"] == "completed" and j, 180, "batch"
    )
    assert done["progress"]["rows_done"] == len(x)

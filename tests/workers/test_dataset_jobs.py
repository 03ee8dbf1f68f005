"""A job over a dataset on real worker subprocesses: chunk n read from the dataset's chunk n,
every row once and in order, also when the pool processes scoring it are killed."""

from __future__ import annotations

import io
import signal
from pathlib import Path

import numpy as np
import psutil
import pytest
import redis

from shared.keys import Keys
from shared.settings import Settings
from tests.helpers import wait_for
from tests.workers.processes import Workers, deployed_cnn
from tests.workers.test_worker_faults import assert_every_row_once, wait_finished

# Starts its own worker processes and waits on them for seconds.
pytestmark = pytest.mark.slow


def test_a_dataset_job_survives_killed_pool_processes(
    proc_settings: Settings, workers: Workers, tmp_path: Path
) -> None:
    worker = workers.start()
    client, href = deployed_cnn(proc_settings, workers, tmp_path)
    x = np.random.default_rng(8).normal(size=(12000, 8, 8, 1)).astype(np.float32)
    body = io.BytesIO()
    np.save(body, x.reshape(len(x), -1))  # 64 columns: reshaped to (8, 8, 1) per row
    uploaded = client.post(
        "/api/v1/datasets", data=body.getvalue(), content_type="application/x-npy"
    )
    assert uploaded.status_code == 201, uploaded.get_json()
    dataset = uploaded.get_json()
    assert dataset["chunks"] == 60  # KSCORE_CHUNK_ROWS=200 here
    job = client.post(f"{href}/jobs", json={"dataset_id": dataset["id"]}).get_json()
    keys = Keys(proc_settings.key_prefix)
    inst = proc_settings.default_instance
    store = redis.Redis.from_url(proc_settings.redis_url)
    done_key = keys.job_done(inst, job["id"])
    wait_for(lambda: store.scard(done_key) >= 3, 120, "a few chunks scored", 0.02)
    for child in psutil.Process(worker.pid).children():
        child.send_signal(signal.SIGKILL)
    in_use = client.delete(f"/api/v1/datasets/{dataset['id']}")
    assert in_use.status_code == 409  # the job still reads it
    final = wait_finished(client, job["id"], 240)
    assert_every_row_once(client, final, x)
    assert final["dataset_id"] == dataset["id"]
    # The dataset's chunks were read, never consumed: a second job scores them again.
    again = client.post(f"{href}/jobs", json={"dataset_id": dataset["id"]}).get_json()
    assert_every_row_once(client, wait_finished(client, again["id"], 240), x)
    assert client.delete(f"/api/v1/datasets/{dataset['id']}").status_code == 204
    assert not list(store.scan_iter(keys.dataset_chunk(inst, dataset["id"], 0)))

"""A worker process that starts after a deployment loads its model before any request."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest

from shared.settings import Settings
from tests import keras_files as kf
from tests.helpers import wait_for
from tests.workers.processes import Workers, deployed_cnn

# Starts its own worker processes and waits on them for seconds.
pytestmark = pytest.mark.slow


def test_new_worker_preloads_deployed_models(
    proc_settings: Settings, workers: Workers, tmp_path: Path
) -> None:
    first = workers.start(concurrency=1)
    client, href = deployed_cnn(proc_settings, workers, tmp_path)
    deployment_id = href.rsplit("/", 1)[1]
    second = workers.start(concurrency=1)
    second_log = tmp_path / "worker1.log"
    wait_for(
        lambda: f"model preloaded deployment_id={deployment_id}" in second_log.read_text(),
        120, "the second worker to preload the model", 0.2,
    )  # fmt: skip
    first.send_signal(signal.SIGTERM)
    first.wait(60)
    x = np.random.default_rng(2).normal(size=(3, 8, 8, 1)).astype(np.float32)
    response = client.post(f"{href}/online", json={"values": x.tolist()})
    assert response.status_code == 200, response.get_json()
    np.testing.assert_allclose(
        [v[0] for v in response.get_json()["values"]],
        kf.expected_small_cnn(x),
        rtol=1e-4,
        atol=1e-5,
    )
    log = second_log.read_text()
    # The request (sent after the preload was logged) found the model loaded: the only load
    # in this process was the preload's.
    assert log.count("model loaded sha256=") == 1
    assert second.poll() is None

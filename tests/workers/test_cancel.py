"""Canceling a batch job while the session's real Celery worker is scoring it."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from flask.testing import FlaskClient

from shared.keys import Keys
from shared.queueing import QUEUE_BATCH, celery_key_prefix
from shared.settings import Settings
from shared.status import JobStatus
from tests import keras_files as kf
from tests.helpers import store_model, wait_for

# Scores 20,000 rows on purpose, so a cancel can land while the job runs.
pytestmark = [pytest.mark.usefixtures("worker"), pytest.mark.slow]

ROWS = 20_000
CHUNK_ROWS = 50
# 400 chunks: about 5 s of work for the session worker, and 1 s for the API to send them all,
# so the job is well under way, and far from done, when the test cancels it.
CHUNKS = ROWS // CHUNK_ROWS


@pytest.fixture
def settings(base_settings: Settings) -> Settings:
    """Small chunks for the API under test (only the API splits rows; the worker follows)."""
    return base_settings.replace(
        default_instance=f"t{uuid.uuid4().hex[:12]}", chunk_rows=CHUNK_ROWS
    )


@pytest.fixture(scope="module")
def lstm_h5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A recurrent model: a chunk costs the worker more than its rows cost the API."""
    return kf.tf_keras_lstm_h5_file(tmp_path_factory.mktemp("cancel"))


def path_of(url: str) -> str:
    return url.split("localhost", 1)[-1]


def deployed(client: FlaskClient, model_file: Path) -> dict[str, Any]:
    model = store_model(client, model_file)
    response = client.post("/api/v1/deployments", json={"model_id": model["id"], "name": "dep"})
    assert response.status_code == 202, response.get_json()
    href = path_of(response.get_json()["href"])

    def settled() -> dict[str, Any] | None:
        current: dict[str, Any] = client.get(href).get_json()
        return None if current["status"] == "DEPLOY_IN_PROGRESS" else current

    deployment: dict[str, Any] = wait_for(settled, what="deployment to settle")
    assert deployment["status"] == "DEPLOY_SUCCESS", deployment
    return deployment


def test_a_running_job_stops_at_cancel(
    client: FlaskClient, redis_client: redis.Redis, settings: Settings, lstm_h5: Path
) -> None:
    keys = Keys(settings.key_prefix)
    inst = settings.default_instance
    deployment = deployed(client, lstm_h5)
    x = np.random.default_rng(5).normal(size=(ROWS, kf.LSTM_TIMESTEPS, kf.LSTM_FEATURES))
    submitted = client.post(path_of(deployment["jobs_url"]), json={"values": x.tolist()})
    assert submitted.status_code == 202, submitted.get_json()
    job = submitted.get_json()
    href = path_of(job["href"])

    def scoring() -> bool:
        return client.get(href).get_json()["progress"]["rows_done"] > 0

    wait_for(scoring, 60, "the job to score its first chunk", interval=0.01)
    canceled = client.delete(href)
    assert canceled.status_code == 200, canceled.get_json()
    at_cancel = canceled.get_json()
    done_at_cancel = at_cancel["progress"]["rows_done"]
    assert at_cancel["status"] == JobStatus.CANCELED
    assert 0 < done_at_cancel < ROWS, "the job was not running when it was canceled"
    attempts_key, done_key = keys.job_attempts(inst, job["id"]), keys.job_done(inst, job["id"])
    attempts = redis_client.hgetall(attempts_key)
    chunks_done = redis_client.smembers(done_key)
    assert len(chunks_done) * CHUNK_ROWS == done_at_cancel
    assert len(attempts) < CHUNKS  # some chunks were never started

    # The chunks still queued reach the worker, which skips them: wait until the queue is empty.
    queue = celery_key_prefix(settings) + QUEUE_BATCH
    wait_for(lambda: redis_client.llen(queue) == 0, 120, "the queued chunks to be delivered")
    time.sleep(0.5)  # a chunk taken last has time to finish (and must not count)

    final = client.get(href).get_json()
    assert final["status"] == JobStatus.CANCELED
    assert final["progress"]["rows_done"] == done_at_cancel
    assert redis_client.hgetall(attempts_key) == attempts, "a chunk was started after cancel"
    assert redis_client.smembers(done_key) == chunks_done, "a chunk counted after cancel"
    # Inputs of the chunks that never ran are still there (they expire with the job).
    assert redis_client.exists(keys.job_input(inst, job["id"], CHUNKS - 1)) == 1

    result = client.get(path_of(job["result_url"]))
    assert result.status_code == 409
    assert result.get_json()["error"]["code"] == "job_not_finished"
    again = client.delete(href)
    assert again.status_code == 409
    assert again.get_json()["error"]["code"] == "job_already_finished"

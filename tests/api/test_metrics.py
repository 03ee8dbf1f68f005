"""Metrics and readiness read the right Redis keys (an installation with no worker)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import redis
from flask.testing import FlaskClient

from api.app import create_app
from shared.settings import Settings
from shared.status import DeploymentStatus
from tests import keras_files as kf
from tests.conftest import authorized_client
from tests.helpers import store_model, wait_for


def metric(text: str, name: str) -> float:
    lines = [
        line
        for line in text.splitlines()
        if line.startswith(name + " ") or line.startswith(name + "{")
    ]
    assert lines, f"{name} missing from /metrics"
    return float(lines[0].rsplit(" ", 1)[1])


def test_queue_depth_and_readiness_without_workers(
    base_settings: Settings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    # A prefix of its own: no worker of this test run consumes its queues.
    settings = base_settings.replace(key_prefix=f"ksidle-{uuid.uuid4().hex[:8]}", chunk_rows=2)
    app = create_app(settings, redis_client)
    client = authorized_client(app)
    model = store_model(client, kf.tf_keras_h5_file(tmp_path), "m")
    deployment = client.post(
        "/api/v1/deployments", json={"model_id": model["id"], "name": "d"}
    ).get_json()
    # Arrange a deployed model without a worker, so the queued chunks stay queued.
    app.extensions["kscore"].deployments.set_status(
        settings.default_instance, deployment["id"], DeploymentStatus.DEPLOY_SUCCESS
    )
    job = client.post(
        f"/api/v1/deployments/{deployment['id']}/jobs", json={"values": [[0.0] * 4] * 5}
    )
    assert job.status_code == 202

    text = client.get("/metrics").get_data(as_text=True)
    assert metric(text, 'kscore_queue_depth{queue="batch"}') == 3  # 5 rows in chunks of 2
    assert metric(text, 'kscore_queue_depth{queue="deploy"}') == 1
    assert metric(text, 'kscore_queue_depth{queue="online"}') == 0
    assert metric(text, 'kscore_jobs_total{status="created"}') == 1
    assert metric(text, "kscore_workers") == 0
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert "kscore worker" in ready.get_json()["error"]["message"]
    assert client.get("/api/v1/jobs").get_json()["resources"][0]["status"] == "queued"


@pytest.mark.usefixtures("worker")
def test_readyz_lists_consuming_workers_with_their_queues(client: FlaskClient) -> None:
    wait_for(lambda: client.get("/readyz").status_code == 200, 30, "a heartbeat")
    body = client.get("/readyz").get_json()
    assert body["status"] == "ready"
    assert set(next(iter(body["workers"].values())).split(",")) == {"batch", "deploy", "online"}

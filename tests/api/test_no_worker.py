"""No worker consuming a queue: online requests are refused at once, batch jobs and
deployments are accepted and say what they wait for."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from api.app import create_app
from shared.keys import Keys
from shared.metrics import beat
from shared.settings import Settings
from shared.status import DeploymentStatus
from tests import keras_files as kf
from tests.conftest import authorized_client
from tests.helpers import store_model


@pytest.fixture(scope="module")
def dense_h5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kf.tf_keras_h5_file(tmp_path_factory.mktemp("dense"))


@pytest.fixture
def idle_app(base_settings: Settings, redis_client: redis.Redis) -> Flask:
    # A prefix of its own: no worker of this test run consumes its queues.
    settings = base_settings.replace(key_prefix=f"ksidle-{uuid.uuid4().hex[:8]}")
    return create_app(settings, redis_client)


@pytest.fixture
def idle(idle_app: Flask) -> FlaskClient:
    return authorized_client(idle_app)


def deployed(app: Flask, client: FlaskClient, path: Path) -> dict[str, Any]:
    """A deployment marked DEPLOY_SUCCESS by hand: no worker will ever load it."""
    model = store_model(client, path)
    deployment = client.post(
        "/api/v1/deployments", json={"model_id": model["id"], "name": "d"}
    ).get_json()
    svc = app.extensions["kscore"]
    svc.deployments.set_status(
        svc.settings.default_instance, deployment["id"], DeploymentStatus.DEPLOY_SUCCESS
    )
    return deployment  # type: ignore[no-any-return]


def no_worker(queue: str) -> list[dict[str, Any]]:
    return [
        {
            "code": "no_worker",
            "queue": queue,
            "message": f"No kscore worker is consuming the {queue} queue: this waits until one "
            f"starts (`kscore worker`, or `--queues {queue}`).",
        }
    ]


def test_online_answers_503_no_worker_at_once_and_stores_nothing(
    idle_app: Flask, idle: FlaskClient, dense_h5: Path
) -> None:
    deployment = deployed(idle_app, idle, dense_h5)
    started = time.monotonic()
    response = idle.post(
        f"/api/v1/deployments/{deployment['id']}/online?timeout=20",
        json={"values": [[1.0, 2.0, 3.0, 4.0]]},
    )
    assert time.monotonic() - started < 2  # not after its 20 s timeout
    assert response.status_code == 503
    error = response.get_json()["error"]
    assert error["code"] == "no_worker"
    assert "kscore worker" in error["message"]
    assert error["details"] == {"queue": "online"}
    assert idle.get("/api/v1/jobs").get_json()["total"] == 0
    svc = idle_app.extensions["kscore"]
    assert svc.jobs.backlog(svc.settings.default_instance) == (0, 0)


def test_batch_job_is_accepted_and_says_no_worker_consumes_the_batch_queue(
    idle_app: Flask, idle: FlaskClient, dense_h5: Path
) -> None:
    deployment = deployed(idle_app, idle, dense_h5)
    submitted = idle.post(
        f"/api/v1/deployments/{deployment['id']}/jobs", json={"values": [[1.0, 2.0, 3.0, 4.0]]}
    )
    assert submitted.status_code == 202
    job = submitted.get_json()
    assert job["status"] == "queued"
    assert job["warnings"] == no_worker("batch")
    assert idle.get(f"/api/v1/jobs/{job['id']}").get_json()["warnings"] == no_worker("batch")
    assert idle.get("/api/v1/jobs").get_json()["resources"][0]["warnings"] == no_worker("batch")

    # A worker that consumes the batch queue appears: the note goes.
    svc = idle_app.extensions["kscore"]
    beat(svc.redis_client, Keys(svc.settings.key_prefix), "fake@host", "batch")
    assert idle.get(f"/api/v1/jobs/{job['id']}").get_json()["warnings"] == []
    # A finished job has nothing to wait for.
    assert idle.delete(f"/api/v1/jobs/{job['id']}").get_json()["warnings"] == []


def test_deployment_created_without_a_deploy_worker_says_so(
    idle_app: Flask, idle: FlaskClient, dense_h5: Path
) -> None:
    model = store_model(idle, dense_h5)
    created = idle.post("/api/v1/deployments", json={"model_id": model["id"], "name": "d"})
    assert created.status_code == 202
    assert created.get_json()["warnings"] == no_worker("deploy")
    href = f"/api/v1/deployments/{created.get_json()['id']}"
    assert idle.get(href).get_json()["warnings"] == no_worker("deploy")
    assert idle.get("/api/v1/deployments").get_json()["resources"][0]["warnings"] == no_worker(
        "deploy"
    )
    svc = idle_app.extensions["kscore"]
    beat(svc.redis_client, Keys(svc.settings.key_prefix), "fake@host", "online,deploy")
    assert idle.get(href).get_json()["warnings"] == []


def test_wml_online_without_a_worker_is_503_no_worker_in_wml_body(
    idle_app: Flask, dense_h5: Path
) -> None:
    client = authorized_client(idle_app)
    deployment = deployed(idle_app, client, dense_h5)
    instance = idle_app.extensions["kscore"].settings.default_instance
    response = client.post(
        f"/v3/wml_instances/{instance}/deployments/{deployment['id']}/online",
        json={"values": [[1.0, 2.0, 3.0, 4.0]]},
    )
    assert response.status_code == 503
    assert response.get_json()["errors"][0]["code"] == "no_worker"

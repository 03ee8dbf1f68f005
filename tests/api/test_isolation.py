"""Instances are apart: another instance's models, deployments and jobs are simply not found."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from shared.settings import Settings
from tests import keras_files as kf
from tests.api.test_scoring import deploy, path_of, rows, wait_job
from tests.conftest import instance_store
from tests.helpers import store_model

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture
def intruder(app: Flask, settings: Settings, redis_client: redis.Redis) -> FlaskClient:
    """A client of the same API with a key of another instance."""
    other = instance_store(settings, redis_client).create(f"other-{uuid.uuid4().hex[:8]}")
    test_client = app.test_client()
    test_client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {other.key.api_key}"
    return test_client


def test_every_resource_of_another_instance_is_404(
    client: FlaskClient, intruder: FlaskClient, tmp_path: Path
) -> None:
    model = store_model(client, kf.tf_keras_h5_file(tmp_path))
    deployment = deploy(client, model["id"])
    job = client.post(path_of(deployment["jobs_url"]), json={"values": rows(3).tolist()})
    assert job.status_code == 202
    finished = wait_job(client, job.get_json()["href"])
    assert finished["status"] == "completed"
    m, d, j = model["id"], deployment["id"], finished["id"]
    body = {"values": rows(1).tolist()}

    attempts: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", f"/api/v1/models/{m}", {}),
        ("GET", f"/api/v1/models/{m}/content", {}),
        ("DELETE", f"/api/v1/models/{m}", {}),
        ("POST", "/api/v1/deployments", {"json": {"model_id": m, "name": "steal"}}),
        ("GET", f"/api/v1/deployments/{d}", {}),
        ("DELETE", f"/api/v1/deployments/{d}", {}),
        ("POST", f"/api/v1/deployments/{d}/online", {"json": body}),
        ("POST", f"/api/v1/deployments/{d}/jobs", {"json": body}),
        ("GET", f"/api/v1/deployments/{d}/jobs", {}),
        ("GET", f"/api/v1/jobs/{j}", {}),
        ("GET", f"/api/v1/jobs/{j}/result", {}),
        ("DELETE", f"/api/v1/jobs/{j}", {}),
    ]
    for method, path, kwargs in attempts:
        response = intruder.open(path, method=method, **kwargs)
        assert response.status_code == 404, (method, path, response.get_json())
        assert response.get_json()["error"]["code"].endswith("not_found")

    for listing in ("/api/v1/models", "/api/v1/deployments", "/api/v1/jobs"):
        assert intruder.get(listing).get_json()["total"] == 0
    assert intruder.get(f"/api/v1/jobs?deployment_id={d}").get_json()["total"] == 0
    assert intruder.get(f"/api/v1/deployments?model_id={m}").get_json()["total"] == 0

    # The owner still has everything, untouched.
    assert client.get(f"/api/v1/models/{m}").status_code == 200
    assert client.get(f"/api/v1/deployments/{d}").get_json()["status"] == "DEPLOY_SUCCESS"
    result = client.get(f"/api/v1/jobs/{j}/result")
    assert result.status_code == 200 and len(result.get_json()["values"]) == 3

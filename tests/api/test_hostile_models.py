"""Hostile model files over HTTP (issue 9): each file of ``tests/hostile_models.py`` is refused
at upload with its stable 4xx code and stores nothing; smuggled into Redis past the API (as an
attacker with Redis access would), it fails at deploy with the same code; and the payload it
carries never runs, at upload, deploy or first prediction.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from shared.blob_store import BlobStore
from shared.keys import Keys
from shared.settings import Settings
from tests import keras_files as kf
from tests.helpers import deploy, store_model
from tests.hostile_models import CORPUS, Hostile

pytestmark = pytest.mark.usefixtures("worker")


def upload(client: FlaskClient, path: Path) -> Any:
    return client.post(
        "/api/v1/models",
        data={"file": (io.BytesIO(path.read_bytes()), path.name), "name": "hostile"},
        content_type="multipart/form-data",
    )


def smuggle(
    settings: Settings, redis_client: redis.Redis, client: FlaskClient, tmp_path: Path, path: Path
) -> str:
    """Store ``path`` past the upload check: a harmless model's record, pointed at a blob of
    ``path``'s bytes under ``path``'s name. The model id."""
    harmless = tmp_path / "harmless"
    harmless.mkdir()
    model_id = str(store_model(client, kf.tf_keras_h5_file(harmless))["id"])
    keys = Keys(settings.key_prefix)
    instance = settings.default_instance
    data = path.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    BlobStore(redis_client, keys, settings.blob_chunk_bytes).put_file(
        path, sha256, len(data), ref=f"{instance}/{model_id}"
    )
    record = json.loads(redis_client.get(keys.model(instance, model_id)) or b"{}")
    record.update(sha256=sha256, size_bytes=len(data), filename=path.name, model_filename=path.name)
    redis_client.set(keys.model(instance, model_id), json.dumps(record))
    return model_id


@pytest.mark.parametrize("hostile", CORPUS, ids=[h.id for h in CORPUS])
def test_a_hostile_file_is_refused_at_upload_with_its_code(
    client: FlaskClient, tmp_path: Path, hostile: Hostile
) -> None:
    marker = tmp_path / "marker"
    path = hostile.build(tmp_path, marker)
    response = upload(client, path)
    body = response.get_json()
    assert response.status_code == hostile.status, body
    error = body["error"]
    assert error["code"] == hostile.code, error
    if hostile.reason is not None:
        assert error["details"]["reason"] == hostile.reason, error
    assert path.name in error["message"] or "Model config" in error["message"], error
    assert client.get("/api/v1/models").get_json()["total"] == 0  # nothing stored
    assert not marker.exists()


@pytest.mark.parametrize("hostile", CORPUS, ids=[h.id for h in CORPUS])
def test_a_hostile_file_smuggled_into_redis_fails_at_deploy_and_never_runs(
    settings: Settings,
    redis_client: redis.Redis,
    client: FlaskClient,
    tmp_path: Path,
    hostile: Hostile,
) -> None:
    marker = tmp_path / "marker"
    model_id = smuggle(settings, redis_client, client, tmp_path, hostile.build(tmp_path, marker))
    deployment = deploy(client, model_id)
    assert deployment["status"] == "DEPLOY_FAILED", deployment
    assert deployment["error"]["code"] == hostile.code, deployment["error"]
    # The deployment never became ready, so a prediction is refused too; nothing ran.
    response = client.post(
        f"/api/v1/deployments/{deployment['id']}/online", json={"values": [[0.0] * 4]}
    )
    assert 400 <= response.status_code < 500, response.get_json()
    assert not marker.exists()

"""The WML v3 routes through Flask's test client, against a real worker and real models.

IBM's own client runs against a live server in tests/api/test_wml_client.py; these check the
documents, status codes and error bodies route by route.
"""

from __future__ import annotations

import base64
import io
import json
import tarfile
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from api.app import create_app
from shared.instance_store import NewInstance
from shared.settings import Settings
from tests import keras_files as kf
from tests import keras_kinds as kk
from tests.conftest import instance_store
from tests.helpers import wait_for

pytestmark = pytest.mark.usefixtures("worker")

ASSET = {
    "framework": {
        "name": "tensorflow",
        "version": "1.5",
        "runtimes": [{"name": "python", "version": "3.5"}],
        "libraries": [{"name": "keras", "version": "2.1.3"}],
    },
    "name": "tiny keras model",
    "author": {},
}


def tgz_of(path: Path) -> bytes:
    """``path`` packed alone in a .tgz, as WML users uploaded Keras models."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(path, arcname=path.name)
    return buffer.getvalue()


def basic(username: str, password: str) -> dict[str, str]:
    pair = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


class Wml:
    """A WML caller of one instance: its token on every request, paths from the documents."""

    def __init__(self, client: FlaskClient, new: NewInstance) -> None:
        self.client = client
        self.iid = new.instance.id
        response = client.get(
            "/v3/identity/token", headers=basic(new.instance.username, new.password)
        )
        assert response.status_code == 200, response.get_json()
        self.token = response.get_json()["token"]
        self.headers = {"Authorization": f"Bearer {self.token}"}

    @property
    def base(self) -> str:
        return f"/v3/wml_instances/{self.iid}"

    def get(self, path: str) -> TestResponse:
        return self.client.get(path_of(path), headers=self.headers)

    def delete(self, path: str) -> TestResponse:
        return self.client.delete(path_of(path), headers=self.headers)

    def post(self, path: str, body: dict[str, Any]) -> TestResponse:
        return self.client.post(path_of(path), json=body, headers=self.headers)

    def put_bytes(self, path: str, data: bytes) -> TestResponse:
        return self.client.put(
            path_of(path),
            data=data,
            headers={**self.headers, "Content-Type": "application/octet-stream"},
        )

    def store(self, data: bytes, asset: dict[str, Any] = ASSET) -> tuple[str, TestResponse]:
        created = self.post("/v3/ml_assets/models", asset)
        assert created.status_code == 201, created.get_json()
        doc = created.get_json()
        return doc["metadata"]["guid"], self.put_bytes(
            doc["entity"]["model_version"]["content_url"], data
        )

    def deploy(self, model_id: str, expect: str = "DEPLOY_SUCCESS") -> dict[str, Any]:
        created = self.post(
            f"{self.base}/deployments?sync=false",
            {
                "name": "tiny keras deployment",
                "description": "Description of deployment",
                "type": "online",
                "deployable_asset_url": f"http://localhost{self.base}/published_models/{model_id}",
            },
        )
        assert created.status_code == 202, created.get_json()
        doc = created.get_json()
        assert doc["entity"]["status"] == "DEPLOY_IN_PROGRESS"

        def settled() -> dict[str, Any] | None:
            current = self.get(doc["metadata"]["url"]).get_json()
            return None if current["entity"]["status"] == "DEPLOY_IN_PROGRESS" else current

        final = wait_for(settled, what="deployment to settle")
        assert final["entity"]["status"] == expect, final
        return final  # type: ignore[no-any-return]


def path_of(url: str) -> str:
    return url.split("localhost", 1)[-1].split("scoring.example/kscore", 1)[-1]


def assert_wml_error(response: TestResponse, status: int, code: str) -> dict[str, Any]:
    body = response.get_json()
    assert response.status_code == status, body
    assert set(body) == {"trace", "errors"}, body
    assert body["errors"][0]["code"] == code, body
    return body["errors"][0]  # type: ignore[no-any-return]


@pytest.fixture
def wml(client: FlaskClient, instance: NewInstance) -> Wml:
    return Wml(client, instance)


@pytest.fixture(scope="module")
def dense_tgz(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return tgz_of(kf.tf_keras_sequential_h5_file(tmp_path_factory.mktemp("dense")))


def test_tokens_basic_refresh_and_refusals(
    anonymous: FlaskClient, instance: NewInstance, wml: Wml
) -> None:
    credentials = basic(instance.instance.username, instance.password)
    v2 = anonymous.get("/v2/identity/token", headers=credentials)
    assert v2.status_code == 200 and v2.get_json()["token"].count(".") == 2
    refreshed = anonymous.put("/v3/identity/token", json={"token": wml.token})
    assert refreshed.status_code == 200
    new = {"Authorization": f"Bearer {refreshed.get_json()['token']}"}
    assert anonymous.get(wml.base, headers=new).status_code == 200

    wrong = basic(instance.instance.username, "not-the-password")
    assert_wml_error(anonymous.get("/v3/identity/token", headers=wrong), 401, "unauthorized")
    assert_wml_error(anonymous.get("/v3/identity/token"), 401, "unauthorized")
    assert_wml_error(anonymous.get(wml.base), 401, "unauthorized")
    forged = {"Authorization": "Bearer a.b.c"}
    assert_wml_error(anonymous.get(wml.base, headers=forged), 401, "unauthorized")
    refused = anonymous.put("/v3/identity/token", json={"token": "a.b.c"})
    assert_wml_error(refused, 401, "unauthorized")


def test_the_instance_document_points_at_its_published_models(wml: Wml) -> None:
    doc = wml.get(wml.base).get_json()
    assert doc["metadata"]["guid"] == wml.iid
    assert doc["metadata"]["url"] == f"http://localhost{wml.base}"
    assert (
        doc["entity"]["published_models"]["url"] == f"http://localhost{wml.base}/published_models"
    )


def test_store_list_deploy_score_delete(wml: Wml, dense_tgz: bytes) -> None:
    model_id, put = wml.store(dense_tgz)
    assert put.status_code == 200, put.get_json()
    assert put.get_json()["entity"]["content_status"] == "stored"

    doc = wml.get(f"{wml.base}/published_models/{model_id}").get_json()
    assert doc["metadata"]["guid"] == model_id
    assert doc["metadata"]["url"] == f"http://localhost{wml.base}/published_models/{model_id}"
    assert doc["metadata"]["created_at"].endswith("Z")
    entity = doc["entity"]
    assert entity["name"] == "tiny keras model"
    assert entity["model_type"] == "tensorflow-1.5"
    assert entity["runtime_environment"] == "python-3.5"
    assert entity["deployments"]["count"] == 0
    assert entity["latest_version"]["content_url"].startswith("http://localhost/v3/ml_assets/")

    listed = wml.get(f"{wml.base}/published_models?limit=1000").get_json()
    assert [m["metadata"]["guid"] for m in listed["resources"]] == [model_id]
    assert "next" not in listed

    # The client's type probe: only the model path answers 200 for a model id.
    for probe in (
        f"/v3/functions/{model_id}",
        f"/v3/experiments/{model_id}",
        f"/v3/ml_assets/training_definitions/{model_id}",
        f"/v4/runtimes/{model_id}",
        f"/v4/libraries/{model_id}",
        f"{wml.base}/deployments/{model_id}",
    ):
        assert wml.get(probe).status_code == 404, probe
    for empty in ("/v3/functions", "/v3/experiments", "/v4/runtimes?limit=1000"):
        assert wml.get(empty).get_json() == {"resources": []}, empty

    deployment = wml.deploy(model_id)
    dep_id = deployment["metadata"]["guid"]
    entity = deployment["entity"]
    assert entity["scoring_url"] == f"http://localhost{wml.base}/deployments/{dep_id}/online"
    assert entity["model_type"] == "tensorflow-1.5"
    assert entity["deployable_asset"]["url"].endswith(f"/published_models/{model_id}")
    assert wml.get(f"{wml.base}/published_models/{dep_id}").status_code == 404
    listed = wml.get(f"{wml.base}/deployments").get_json()["resources"]
    assert [d["metadata"]["guid"] for d in listed] == [dep_id]
    counted = wml.get(f"{wml.base}/published_models/{model_id}").get_json()["entity"]
    assert counted["deployments"]["count"] == 1
    by_model = wml.get(counted["deployments"]["url"]).get_json()["resources"]
    assert [d["metadata"]["guid"] for d in by_model] == [dep_id]

    x = np.random.default_rng(3).normal(size=(4, 4)).astype(np.float32)
    scored = wml.post(entity["scoring_url"], {"values": x.tolist()})
    assert scored.status_code == 200, scored.get_json()
    result = scored.get_json()
    assert result["fields"] == ["prediction", "prediction_classes", "probability"]
    expected = kf.expected_dense_softmax(x)
    np.testing.assert_allclose([r[0] for r in result["values"]], expected, rtol=1e-5, atol=1e-6)
    assert [r[1] for r in result["values"]] == expected.argmax(axis=1).tolist()
    np.testing.assert_allclose([r[2] for r in result["values"]], expected, rtol=1e-5, atol=1e-6)
    bad = wml.post(entity["scoring_url"], {"values": [[1, 2]]})
    assert_wml_error(bad, 422, "invalid_scoring_input")

    in_use = wml.delete(f"/v3/ml_assets/models/{model_id}")
    assert_wml_error(in_use, 409, "model_in_use")
    assert wml.delete(f"{wml.base}/deployments/{dep_id}").status_code == 204
    assert wml.delete(f"/v3/ml_assets/models/{model_id}").status_code == 204
    gone = wml.get(f"{wml.base}/published_models/{model_id}")
    assert_wml_error(gone, 404, "model_not_found")
    assert wml.get(f"/v3/ml_assets/models/{model_id}").status_code == 404


def test_a_keras_3_file_is_stored_as_sent(wml: Wml, tmp_path: Path) -> None:
    keras_file = kf.keras3_keras_file(tmp_path)
    asset = {**ASSET, "framework": {"name": "keras", "version": "3"}}
    model_id, put = wml.store(keras_file.read_bytes(), asset)
    assert put.status_code == 200, put.get_json()
    doc = wml.get(f"{wml.base}/published_models/{model_id}").get_json()
    assert doc["entity"]["model_type"] == "keras-3"
    assert doc["entity"]["runtime_environment"] is None


def test_refused_content_keeps_the_asset_waiting(
    wml: Wml, tmp_path: Path, dense_tgz: bytes
) -> None:
    model_id, refused = wml.store(tgz_of(kf.lambda_h5_file(tmp_path)))
    assert_wml_error(refused, 422, "unsafe_model")
    waiting = wml.get(f"/v3/ml_assets/models/{model_id}").get_json()
    assert waiting["entity"]["content_status"] == "pending"
    missing = wml.get(f"{wml.base}/published_models/{model_id}")
    assert (
        "PUT the model file" in assert_wml_error(missing, 409, "model_content_missing")["message"]
    )
    assert wml.get(f"{wml.base}/published_models").get_json()["resources"] == []

    content_url = waiting["entity"]["model_version"]["content_url"]
    garbage = wml.put_bytes(content_url, b"not a model at all")
    assert_wml_error(garbage, 400, "unsupported_model_file")
    assert wml.put_bytes(content_url, dense_tgz).status_code == 200
    again = wml.put_bytes(content_url, dense_tgz)
    assert_wml_error(again, 409, "model_content_exists")
    wrong_version = wml.put_bytes(content_url.replace("/versions/", "/versions/x"), dense_tgz)
    assert wrong_version.status_code == 404


def test_an_asset_without_content_can_be_deleted(wml: Wml) -> None:
    created = wml.post("/v3/ml_assets/models", ASSET).get_json()
    model_id = created["metadata"]["guid"]
    assert wml.delete(f"/v3/ml_assets/models/{model_id}").status_code == 204
    assert wml.delete(f"/v3/ml_assets/models/{model_id}").status_code == 404


def test_asset_fields_are_validated(wml: Wml) -> None:
    sklearn = {**ASSET, "framework": {"name": "scikit-learn", "version": "0.19"}}
    refused = wml.post("/v3/ml_assets/models", sklearn)
    error = assert_wml_error(refused, 422, "validation_failed")
    assert "framework" in error["details"]["fields"]
    batch = wml.post(
        f"{wml.base}/deployments",
        {"name": "d", "type": "batch", "deployable_asset_url": f"{wml.base}/published_models/x"},
    )
    assert_wml_error(batch, 422, "validation_failed")
    # Found by schemathesis: a URL with a newline before its path matched the document's
    # pattern but not the schema's regex (422); it now reaches the lookup: no such model.
    newline = wml.post(
        f"{wml.base}/deployments",
        {"name": "d", "deployable_asset_url": f"http://x\n{wml.base}/published_models/x"},
    )
    assert_wml_error(newline, 404, "model_not_found")


def test_a_model_that_fails_to_load_fails_its_deployment_with_kscores_reason(
    wml: Wml, tmp_path: Path
) -> None:
    model_id, put = wml.store(tgz_of(kk.unknown_argument_h5(tmp_path)))
    assert put.status_code == 200, put.get_json()
    failed = wml.deploy(model_id, expect="DEPLOY_FAILED")["entity"]
    errors = failed["status_details"]["failure"]["errors"]
    error = json.loads(errors[0])
    assert error["code"] == "unsupported_model_file"
    assert "'units_v2'" in error["message"] and "Keras 2.2.4" in error["message"]
    assert failed["status_message"] == error["message"]


def test_lists_page_with_absolute_next_urls(wml: Wml, dense_tgz: bytes) -> None:
    ids = {wml.store(dense_tgz)[0] for _ in range(3)}
    first = wml.get(f"{wml.base}/published_models?limit=2").get_json()
    assert len(first["resources"]) == 2
    assert first["next"]["url"].startswith(f"http://localhost{wml.base}/published_models?")
    second = wml.get(first["next"]["url"]).get_json()
    assert "next" not in second
    seen = {m["metadata"]["guid"] for m in first["resources"] + second["resources"]}
    assert seen == ids


def test_another_instance_sees_nothing_of_this_one(
    app: Flask, wml: Wml, dense_tgz: bytes, settings: Settings, redis_client: redis.Redis
) -> None:
    model_id, _ = wml.store(dense_tgz)
    deployment = wml.deploy(model_id)
    dep_id = deployment["metadata"]["guid"]
    other = Wml(
        app.test_client(),
        instance_store(settings, redis_client).create(f"other-{uuid.uuid4().hex[:8]}"),
    )
    mine = wml.base
    for path in (mine, f"{mine}/published_models/{model_id}", f"{mine}/deployments/{dep_id}"):
        assert_wml_error(other.get(path), 404, "instance_not_found")
    theirs = other.base
    assert other.get(f"{theirs}/published_models/{model_id}").status_code == 404
    assert other.get(f"{theirs}/deployments/{dep_id}").status_code == 404
    assert other.get(f"{theirs}/published_models").get_json() == {"resources": []}
    scored = other.post(f"{theirs}/deployments/{dep_id}/online", {"values": [[1, 2, 3, 4]]})
    assert scored.status_code == 404
    assert other.delete(f"{theirs}/deployments/{dep_id}").status_code == 404
    assert other.delete(f"/v3/ml_assets/models/{model_id}").status_code == 404
    # Still there for its owner.
    assert wml.get(f"{mine}/deployments/{dep_id}").status_code == 200


def test_urls_come_from_kscore_public_url(
    settings: Settings, redis_client: redis.Redis, instance: NewInstance, dense_tgz: bytes
) -> None:
    public = "https://scoring.example/kscore"
    app = create_app(settings.replace(public_url=public), redis_client)
    wml = Wml(app.test_client(), instance)
    doc = wml.get(wml.base).get_json()
    assert doc["entity"]["published_models"]["url"] == f"{public}{wml.base}/published_models"
    created = wml.post("/v3/ml_assets/models", ASSET).get_json()
    content_url = created["entity"]["model_version"]["content_url"]
    assert content_url.startswith(f"{public}/v3/ml_assets/models/{created['metadata']['guid']}/")


def test_a_one_unit_sigmoid_gives_keras_2s_classes(wml: Wml, tmp_path: Path) -> None:
    model_id, _ = wml.store(tgz_of(kf.sigmoid_binary_h5_file(tmp_path)))
    scoring_url = wml.deploy(model_id)["entity"]["scoring_url"]
    x = np.random.default_rng(9).normal(size=(6, 4)).astype(np.float32)
    values = wml.post(scoring_url, {"values": x.tolist()}).get_json()["values"]
    expected = kf.expected_sigmoid(x)
    np.testing.assert_allclose([v[0] for v in values], expected, rtol=1e-5, atol=1e-6)
    assert [v[1] for v in values] == (expected[:, 0] > 0.5).astype(int).tolist()
    np.testing.assert_allclose([v[2] for v in values], expected, rtol=1e-5, atol=1e-6)

"""TensorFlow Serving's REST API (/v1/models) over plain HTTP, compared with Keras."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from shared.settings import Settings
from tests import keras_files as kf
from tests import keras_kinds as kk
from tests.api.test_oip import deploy
from tests.conftest import instance_store

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture(scope="module")
def dense_h5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kf.tf_keras_h5_file(tmp_path_factory.mktemp("tfs-dense"))


@pytest.fixture(scope="module")
def multi_io(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kf.multi_io_keras_file(tmp_path_factory.mktemp("tfs-multi"))


def close(got: Any, expected: np.ndarray) -> None:
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), expected, rtol=1e-5, atol=1e-6)


def test_one_input_one_output_in_both_forms(client: FlaskClient, dense_h5: Path) -> None:
    deployment = deploy(client, dense_h5, "iris")
    x = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    expected = kf.expected_dense_softmax(x)

    rows = client.post("/v1/models/iris:predict", json={"instances": x.tolist()})
    assert rows.status_code == 200, rows.get_json()
    assert list(rows.get_json()) == ["predictions"]
    close(rows.get_json()["predictions"], expected)

    columns = client.post(
        f"/v1/models/{deployment['id']}:predict",  # the id names the deployment too
        json={"signature_name": "serving_default", "inputs": x.tolist()},
    )
    assert columns.status_code == 200, columns.get_json()
    close(columns.get_json()["outputs"], expected)

    versioned = client.post("/v1/models/iris/versions/1:predict", json={"instances": x.tolist()})
    close(versioned.get_json()["predictions"], expected)

    status = client.get("/v1/models/iris").get_json()
    assert status == {
        "model_version_status": [
            {
                "version": "1",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }


def test_several_inputs_and_outputs_are_named(client: FlaskClient, multi_io: Path) -> None:
    deploy(client, multi_io, "multi")
    rng = np.random.default_rng(2)
    a = rng.normal(size=(3, 3)).astype(np.float32)
    b = rng.normal(size=(3, 2)).astype(np.float32)
    expected = kf.expected_multi_io(a, b)

    instances = [{"b": b[i].tolist(), "a": a[i].tolist()} for i in range(3)]
    rows = client.post("/v1/models/multi:predict", json={"instances": instances})
    assert rows.status_code == 200, rows.get_json()
    predictions = rows.get_json()["predictions"]
    assert [set(p) for p in predictions] == [{"score", "kind"}] * 3
    for name in ("score", "kind"):
        close([p[name] for p in predictions], expected[name])

    columns = client.post(
        "/v1/models/multi:predict", json={"inputs": {"a": a.tolist(), "b": b.tolist()}}
    )
    assert columns.status_code == 200, columns.get_json()
    outputs = columns.get_json()["outputs"]
    for name in ("score", "kind"):
        close(outputs[name], expected[name])


def test_int64_ids_keep_every_digit(
    client: FlaskClient, tmp_path_factory: pytest.TempPathFactory
) -> None:
    built = kk.string_and_int64_keras(tmp_path_factory.mktemp("tfs-ids"))
    deploy(client, built.path, "ids")
    text_rows, id_rows = built.inputs
    instances = [
        {"text": t.tolist(), "ids": i.tolist()} for t, i in zip(text_rows, id_rows, strict=True)
    ]
    response = client.post("/v1/models/ids:predict", json={"instances": instances})
    assert response.status_code == 200, response.get_json()
    np.testing.assert_allclose(
        response.get_json()["predictions"], built.expected[0], rtol=1e-6, atol=1e-7
    )


def test_errors_are_tf_serving_shaped(
    app: Flask,
    client: FlaskClient,
    anonymous: FlaskClient,
    dense_h5: Path,
    settings: Settings,
    redis_client: redis.Redis,
) -> None:
    deploy(client, dense_h5, "iris")

    def error(response: Any, status: int) -> str:
        assert response.status_code == status, response.get_json()
        body = response.get_json()
        assert list(body) == ["error"] and isinstance(body["error"], str)
        return str(body["error"])

    error(client.post("/v1/models/nope:predict", json={"instances": [[1, 2, 3, 4]]}), 404)
    error(client.get("/v1/models/nope"), 404)
    error(client.post("/v1/models/iris/versions/2:predict", json={"instances": [[0] * 4]}), 404)
    assert "shape" in error(
        client.post("/v1/models/iris:predict", json={"instances": [[1, 2, 3]]}), 400
    )
    error(client.post("/v1/models/iris:predict", json={"instances": [], "inputs": []}), 400)
    error(client.post("/v1/models/iris:predict", json={"instances": [["a", "b", "c", "d"]]}), 400)
    error(
        client.post(
            "/v1/models/iris:predict", json={"signature_name": "other", "instances": [[0] * 4]}
        ),
        400,
    )
    error(client.post("/v1/models/iris:predict", data="{", content_type="application/json"), 400)
    error(anonymous.post("/v1/models/iris:predict", json={"instances": [[0] * 4]}), 401)

    other = instance_store(settings, redis_client).create(f"other-{uuid.uuid4().hex[:8]}")
    stranger = app.test_client()
    stranger.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {other.key.api_key}"
    error(stranger.post("/v1/models/iris:predict", json={"instances": [[0] * 4]}), 404)
    error(stranger.get("/v1/models/iris"), 404)

"""Operation layers (issue 7, kind 4) and colliding class names (kind 6) over HTTP.

Models whose configs name tensor operations (Keras 3 ``keras.src.ops`` classes, tf_keras
``TFOpLambda`` / ``SlicingOpLambda``) are stored, deployed and scored equal to the Keras that
wrote them, row for row; operations outside the allow-list are refused at upload and, when
smuggled past the API into Redis, at deploy, and nothing they would do ever happens.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from flask.testing import FlaskClient

from shared.blob_store import BlobStore
from shared.keys import Keys
from shared.settings import Settings
from tests import keras_ops as ko
from tests.helpers import deploy

pytestmark = pytest.mark.usefixtures("worker")


def upload(client: FlaskClient, path: Path) -> Any:
    return client.post(
        "/api/v1/models",
        data={"file": (io.BytesIO(path.read_bytes()), path.name), "name": "m"},
        content_type="multipart/form-data",
    )


def scores(client: FlaskClient, deployment: dict[str, Any], inputs: list[np.ndarray]) -> Any:
    if len(inputs) == 1:
        values: list[Any] = inputs[0].tolist()
    else:
        values = [list(row) for row in zip(*(a.tolist() for a in inputs), strict=True)]
    response = client.post(
        f"/api/v1/deployments/{deployment['id']}/online", json={"values": values}
    )
    body = response.get_json()
    assert response.status_code == 200, body
    return np.asarray([row[0] for row in body["values"]])


# --- accepted, deployed and scored equal to Keras --------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        ko.embedding_mask_lstm_keras,
        ko.keras3_operations,
        ko.tf_keras_operations,
        lambda d: ko.tf_keras_operations(d, ".keras"),
    ],
    ids=["keras3-embedding-mask-lstm", "keras3-ops", "tf_keras-ops-h5", "tf_keras-ops-keras"],
)
def test_operation_layers_score_equal_to_keras(
    client: FlaskClient, tmp_path: Path, build: Callable[[Path], Any]
) -> None:
    built = build(tmp_path)
    stored = upload(client, built.path)
    assert stored.status_code == 201, stored.get_json()
    deployment = deploy(client, stored.get_json()["id"])
    assert deployment["status"] == "DEPLOY_SUCCESS", deployment
    got = scores(client, deployment, built.inputs)
    np.testing.assert_allclose(got, built.expected[0], rtol=1e-5, atol=1e-6)


def test_the_issue_example_scores_a_fully_masked_row(client: FlaskClient, tmp_path: Path) -> None:
    built = ko.embedding_mask_lstm_keras(tmp_path)
    stored = upload(client, built.path)
    assert stored.status_code == 201, stored.get_json()
    deployment = deploy(client, stored.get_json()["id"])
    got = scores(client, deployment, [ko.MASKED_ROWS])
    assert got.shape == (2, 2)
    np.testing.assert_allclose(got, built.expected[0], rtol=1e-5, atol=1e-6)


def test_the_builtin_attention_with_its_scale_weight_is_not_a_collision(
    client: FlaskClient, tmp_path: Path
) -> None:
    built = ko.builtin_attention_h5(tmp_path)
    stored = upload(client, built.path)
    assert stored.status_code == 201, stored.get_json()
    deployment = deploy(client, stored.get_json()["id"])
    assert deployment["status"] == "DEPLOY_SUCCESS", deployment
    np.testing.assert_allclose(
        scores(client, deployment, built.inputs), built.expected[0], rtol=1e-5, atol=1e-6
    )


# --- refused: at upload, and at deploy when smuggled past the API ----------------------------


def _write_file_h5(directory: Path, marker: Path) -> Path:
    return ko.tf_keras_op_refused_h5(directory, "io.write_file", marker)


def _write_file_keras(directory: Path, marker: Path) -> Path:
    return ko.keras3_op_refused_keras(directory, "tensorflow.io", "write_file", marker)


def _keras_while_loop(directory: Path, marker: Path) -> Path:
    return ko.keras3_op_refused_keras(directory, "keras.src.ops.core", "WhileLoop", marker)


def _tf_keras_op(function: str) -> Callable[[Path, Path], Path]:
    return lambda directory, marker: ko.tf_keras_op_refused_h5(directory, function, marker)


REFUSED = [
    (_write_file_h5, "tf.math.multiply", "io.write_file"),
    (_tf_keras_op("py_function"), "tf.math.multiply", "tf.py_function"),
    (_tf_keras_op("numpy_function"), "tf.math.multiply", "tf.numpy_function"),
    (_tf_keras_op("print"), "tf.math.multiply", "tf.print"),
    (_write_file_keras, "multiply", "module 'tensorflow.io'"),
    (_keras_while_loop, "multiply", "keras.src.ops.core.WhileLoop"),
]
REFUSED_IDS = [
    "tf_keras-io.write_file",
    "tf_keras-py_function",
    "tf_keras-numpy_function",
    "tf_keras-print",
    "keras3-tensorflow.io.write_file",
    "keras3-WhileLoop",
]


@pytest.mark.parametrize(("build", "layer", "operation"), REFUSED, ids=REFUSED_IDS)
def test_a_refused_operation_is_422_at_upload_naming_it(
    client: FlaskClient, tmp_path: Path, build: Any, layer: str, operation: str
) -> None:
    marker = tmp_path / "marker"
    response = upload(client, build(tmp_path, marker))
    body = response.get_json()
    assert response.status_code == 422, body
    error = body["error"]
    assert error["code"] == "unsafe_model"
    # tf_keras numbers layer names per process: "tf.math.multiply", "tf.math.multiply_1"...
    (refused,) = error["details"]["layers"]
    assert refused["name"].startswith(layer), error
    assert f'"{refused["name"]}"' in error["message"] and operation in error["message"], error
    assert client.get("/api/v1/models").get_json()["total"] == 0  # nothing stored
    assert not marker.exists()


@pytest.mark.parametrize(("build", "layer", "operation"), REFUSED, ids=REFUSED_IDS)
def test_a_refused_operation_smuggled_into_redis_fails_at_deploy_and_never_runs(
    settings: Settings,
    redis_client: redis.Redis,
    client: FlaskClient,
    tmp_path: Path,
    build: Any,
    layer: str,
    operation: str,
) -> None:
    marker = tmp_path / "marker"
    smuggled = build(tmp_path, marker)
    model_id = _store_bypassing_the_check(settings, redis_client, client, tmp_path, smuggled)
    deployment = deploy(client, model_id)
    assert deployment["status"] == "DEPLOY_FAILED", deployment
    error = deployment["error"]
    assert error["code"] == "unsafe_model", error
    assert operation in error["message"], error
    # A prediction is refused too (the deployment never became ready), and nothing ran.
    response = client.post(
        f"/api/v1/deployments/{deployment['id']}/online", json={"values": [[0.0] * 4]}
    )
    assert response.status_code >= 400
    assert not marker.exists()


def _store_bypassing_the_check(
    settings: Settings, redis_client: redis.Redis, client: FlaskClient, tmp_path: Path, path: Path
) -> str:
    """Store ``path`` as an attacker with Redis access would, without the upload check: the
    record of a harmless twin uploaded through the API, pointed at a blob of ``path``'s bytes
    written with the blob store. The model id."""
    harmless = tmp_path / "harmless"
    harmless.mkdir()
    twin = (
        ko.keras3_operations(harmless).path
        if path.suffix == ".keras"
        else ko.tf_keras_multiply_h5(harmless)
    )
    stored = upload(client, twin)
    assert stored.status_code == 201, stored.get_json()
    model_id = str(stored.get_json()["id"])
    keys = Keys(settings.key_prefix)
    instance = settings.default_instance
    data = path.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    BlobStore(redis_client, keys, settings.blob_chunk_bytes).put_file(
        path, sha256, len(data), ref=f"{instance}/{model_id}"
    )
    record = json.loads(redis_client.get(keys.model(instance, model_id)) or b"{}")
    record.update(sha256=sha256, size_bytes=len(data))
    redis_client.set(keys.model(instance, model_id), json.dumps(record))
    return model_id


# --- kind 6: a user's class named like a built-in one ----------------------------------------


@pytest.mark.parametrize(
    "build",
    [ko.custom_attention_h5, ko.custom_attention_keras],
    ids=["tf_keras-h5-custom_objects", "keras3-registered"],
)
def test_a_custom_class_named_like_a_builtin_is_refused_at_upload_naming_the_layer(
    client: FlaskClient, tmp_path: Path, build: Callable[[Path], Path]
) -> None:
    response = upload(client, build(tmp_path))
    body = response.get_json()
    assert response.status_code == 422, body
    error = body["error"]
    assert error["code"] == "unsafe_model"
    expected = '"attn" (Attention: a custom class named like the built-in Attention'
    assert expected in error["message"], error
    assert client.get("/api/v1/models").get_json()["total"] == 0

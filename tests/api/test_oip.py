"""The Open Inference Protocol (/v2) proven with Triton's own client, ``tritonclient[http]``.

kscore runs live on a loopback port (werkzeug's server in a thread) with the in-process worker
and a real Redis; the client sends the API key as a header on each call, as a user would.
Answers are compared with numpy arithmetic over the models' known weights, and with Keras.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
from flask import Flask
from flask.testing import FlaskClient
from tritonclient.utils import InferenceServerException
from werkzeug.serving import make_server

from shared.instance_store import NewInstance
from tests import keras_files as kf
from tests import keras_kinds as kk
from tests.conftest import instance_store
from tests.helpers import store_model, wait_for

pytestmark = pytest.mark.usefixtures("worker")


def deploy(client: FlaskClient, path: Path, name: str) -> dict[str, Any]:
    """Store and deploy a model file; the deployment once DEPLOY_SUCCESS."""
    model = store_model(client, path, name)
    created = client.post("/api/v1/deployments", json={"model_id": model["id"], "name": name})
    assert created.status_code == 202, created.get_json()
    deployment_id = created.get_json()["id"]

    def settled() -> dict[str, Any] | None:
        body = client.get(f"/api/v1/deployments/{deployment_id}").get_json()
        return None if body["status"] == "DEPLOY_IN_PROGRESS" else body

    final = wait_for(settled, what="deployment to settle")
    assert final["status"] == "DEPLOY_SUCCESS", final
    return final  # type: ignore[no-any-return]


@pytest.fixture
def live(app: Flask) -> Iterator[str]:
    """kscore served on a loopback port: ``host:port``, as tritonclient takes it."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.fixture
def triton(live: str) -> Iterator[httpclient.InferenceServerClient]:
    client = httpclient.InferenceServerClient(url=live)
    yield client
    client.close()


@pytest.fixture
def headers(instance: NewInstance) -> dict[str, str]:
    return {"Authorization": f"Bearer {instance.key.api_key}"}


@pytest.fixture(scope="module")
def dense_h5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kf.tf_keras_h5_file(tmp_path_factory.mktemp("oip-dense"))


@pytest.fixture(scope="module")
def multi_io(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kf.multi_io_keras_file(tmp_path_factory.mktemp("oip-multi"))


@pytest.fixture(scope="module")
def text_and_ids(tmp_path_factory: pytest.TempPathFactory) -> kk.BuiltFile:
    return kk.string_and_int64_keras(tmp_path_factory.mktemp("oip-ids"))


def test_health_and_server_metadata(
    triton: httpclient.InferenceServerClient, headers: dict[str, str]
) -> None:
    assert triton.is_server_live(headers=headers)
    assert triton.is_server_ready(headers=headers)
    metadata = triton.get_server_metadata(headers=headers)
    assert metadata["name"] == "kscore"
    assert "binary_tensor_data" in metadata["extensions"]


@pytest.mark.parametrize("binary", [False, True])
def test_dense_model_metadata_and_infer(
    client: FlaskClient,
    triton: httpclient.InferenceServerClient,
    headers: dict[str, str],
    dense_h5: Path,
    binary: bool,
) -> None:
    deployment = deploy(client, dense_h5, "iris")
    assert triton.is_model_ready("iris", headers=headers)
    assert triton.is_model_ready(deployment["id"], headers=headers)  # the id names it too
    metadata = triton.get_model_metadata("iris", headers=headers)
    [spec_in] = metadata["inputs"]
    [spec_out] = metadata["outputs"]
    assert spec_in["datatype"] == "FP32" and spec_in["shape"] == [-1, 4]
    assert spec_out["datatype"] == "FP32" and spec_out["shape"] == [-1, 3]

    x = np.random.default_rng(3).normal(size=(5, 4)).astype(np.float32)
    given = httpclient.InferInput(spec_in["name"], list(x.shape), "FP32")
    given.set_data_from_numpy(x, binary_data=binary)
    wanted = httpclient.InferRequestedOutput(spec_out["name"], binary_data=binary)
    result = triton.infer("iris", [given], outputs=[wanted], request_id="r-1", headers=headers)
    response = result.get_response()
    assert response["model_name"] == "iris"
    assert response["id"] == "r-1"
    got = result.as_numpy(spec_out["name"])
    assert got.dtype == np.float32 and got.shape == (5, 3)
    np.testing.assert_allclose(got, kf.expected_dense_softmax(x), rtol=1e-5, atol=1e-6)


def test_multi_input_multi_output_model(
    client: FlaskClient,
    triton: httpclient.InferenceServerClient,
    headers: dict[str, str],
    multi_io: Path,
) -> None:
    deploy(client, multi_io, "multi")
    metadata = triton.get_model_metadata("multi", headers=headers)
    assert [(t["name"], t["shape"]) for t in metadata["inputs"]] == [("a", [-1, 3]), ("b", [-1, 2])]
    assert [(t["name"], t["shape"]) for t in metadata["outputs"]] == [
        ("score", [-1, 1]),
        ("kind", [-1, 3]),
    ]
    rng = np.random.default_rng(5)
    a = rng.normal(size=(4, 3)).astype(np.float32)
    b = rng.normal(size=(4, 2)).astype(np.float32)
    inputs = [
        httpclient.InferInput("b", [4, 2], "FP32"),
        httpclient.InferInput("a", [4, 3], "FP32"),
    ]
    inputs[0].set_data_from_numpy(b)  # binary, and in another order than the model's
    inputs[1].set_data_from_numpy(a, binary_data=False)
    expected = kf.expected_multi_io(a, b)

    everything = triton.infer("multi", inputs, headers=headers)  # no outputs: all, binary
    for name in ("score", "kind"):
        np.testing.assert_allclose(everything.as_numpy(name), expected[name], rtol=1e-5, atol=1e-6)
    only_kind = triton.infer(
        "multi",
        inputs,
        outputs=[httpclient.InferRequestedOutput("kind", binary_data=False)],
        headers=headers,
    )
    assert [o["name"] for o in only_kind.get_response()["outputs"]] == ["kind"]
    np.testing.assert_allclose(only_kind.as_numpy("kind"), expected["kind"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("binary", [False, True])
def test_int64_and_bytes_inputs_score_as_keras(
    client: FlaskClient,
    triton: httpclient.InferenceServerClient,
    headers: dict[str, str],
    text_and_ids: kk.BuiltFile,
    binary: bool,
) -> None:
    deploy(client, text_and_ids.path, "ids")
    metadata = triton.get_model_metadata("ids", headers=headers)
    assert [(t["name"], t["datatype"]) for t in metadata["inputs"]] == [
        ("text", "BYTES"),
        ("ids", "INT64"),
    ]
    text_rows, id_rows = text_and_ids.inputs
    text = httpclient.InferInput("text", list(text_rows.shape), "BYTES")
    text.set_data_from_numpy(text_rows, binary_data=binary)
    ids = httpclient.InferInput("ids", list(id_rows.shape), "INT64")
    ids.set_data_from_numpy(id_rows, binary_data=binary)  # ids past float32's 2^24
    result = triton.infer(
        "ids",
        [text, ids],
        outputs=[httpclient.InferRequestedOutput("probs", binary_data=binary)],
        headers=headers,
    )
    np.testing.assert_allclose(
        result.as_numpy("probs"), text_and_ids.expected[0], rtol=1e-6, atol=1e-7
    )


def test_errors_take_the_protocols_body(
    client: FlaskClient,
    triton: httpclient.InferenceServerClient,
    headers: dict[str, str],
    dense_h5: Path,
) -> None:
    deploy(client, dense_h5, "iris")
    name = client.get("/v2/models/iris").get_json()["inputs"][0]["name"]

    def infer(x: np.ndarray, datatype: str = "FP32", input_name: str = name) -> Any:
        given = httpclient.InferInput(input_name, list(x.shape), datatype)
        given.set_data_from_numpy(x, binary_data=False)
        return triton.infer("iris", [given], headers=headers)

    with pytest.raises(InferenceServerException) as unknown:
        triton.get_model_metadata("nope", headers=headers)
    assert unknown.value.status() == "404" and "nope" in unknown.value.message()
    assert not triton.is_model_ready("nope", headers=headers)
    with pytest.raises(InferenceServerException) as wrong_shape:
        infer(np.zeros((2, 5), np.float32))
    assert wrong_shape.value.status() == "400"
    with pytest.raises(InferenceServerException) as wrong_type:
        infer(np.zeros((2, 4), np.float64), "FP64")
    assert wrong_type.value.status() == "400" and "FP32" in wrong_type.value.message()
    with pytest.raises(InferenceServerException) as wrong_name:
        infer(np.zeros((2, 4), np.float32), input_name="not_an_input")
    assert wrong_name.value.status() == "400"
    with pytest.raises(InferenceServerException) as no_key:
        triton.get_model_metadata("iris")
    assert no_key.value.status() == "401"
    unknown_route = client.get("/v2/models/iris/explain")
    assert unknown_route.status_code == 404 and set(unknown_route.get_json()) == {"error"}


def test_json_data_flat_or_nested(
    client: FlaskClient, dense_h5: Path, headers: dict[str, str]
) -> None:
    deploy(client, dense_h5, "iris")
    name = client.get("/v2/models/iris").get_json()["inputs"][0]["name"]
    x = np.random.default_rng(9).normal(size=(2, 4)).astype(np.float32)
    expected = kf.expected_dense_softmax(x)
    for data in (x.reshape(-1).tolist(), x.tolist()):
        response = client.post(
            "/v2/models/iris/infer",
            json={"inputs": [{"name": name, "shape": [2, 4], "datatype": "FP32", "data": data}]},
        )
        assert response.status_code == 200, response.get_json()
        [output] = response.get_json()["outputs"]
        assert output["shape"] == [2, 3] and output["datatype"] == "FP32"
        np.testing.assert_allclose(
            np.reshape(output["data"], (2, 3)), expected, rtol=1e-5, atol=1e-6
        )
    too_few = client.post(
        "/v2/models/iris/infer",
        json={"inputs": [{"name": name, "shape": [2, 4], "datatype": "FP32", "data": [1.0]}]},
    )
    assert too_few.status_code == 400 and "elements" in too_few.get_json()["error"]
    bad_type = client.post(
        "/v2/models/iris/infer",
        json={"inputs": [{"name": name, "shape": [1, 4], "datatype": "FLOAT", "data": [0] * 4}]},
    )
    assert bad_type.status_code == 400
    assert "datatype" in bad_type.get_json()["error"], bad_type.get_json()


def test_newest_ready_deployment_of_a_name_answers(
    client: FlaskClient, dense_h5: Path, multi_io: Path
) -> None:
    deploy(client, dense_h5, "shared-name")
    deploy(client, multi_io, "shared-name")  # newer, also DEPLOY_SUCCESS: this one answers
    metadata = client.get("/v2/models/shared-name").get_json()
    assert [t["name"] for t in metadata["inputs"]] == ["a", "b"]
    quoted = urllib.parse.quote("shared-name")
    assert client.get(f"/v2/models/{quoted}/ready").get_json() == {
        "name": "shared-name",
        "ready": True,
    }


def test_another_instance_deployment_is_not_found(
    app: Flask,
    client: FlaskClient,
    dense_h5: Path,
    settings: Any,
    redis_client: Any,
) -> None:
    deployment = deploy(client, dense_h5, "mine")
    other = instance_store(settings, redis_client).create(f"other-{uuid.uuid4().hex[:8]}")
    stranger = app.test_client()
    stranger.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {other.key.api_key}"
    for path in ("/v2/models/mine", f"/v2/models/{deployment['id']}", "/v2/models/mine/ready"):
        response = stranger.get(path)
        assert response.status_code == 404, path
        assert set(response.get_json()) == {"error"}
    infer = stranger.post(
        "/v2/models/mine/infer",
        data=json.dumps({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}),
        content_type="application/json",
    )
    assert infer.status_code == 404 and set(infer.get_json()) == {"error"}

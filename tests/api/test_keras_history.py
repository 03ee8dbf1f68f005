"""Files from Keras's history, scored over HTTP and compared with the Keras that built them,
row for row (issue 7; files built by tests/keras_history.py): nested inputs and outputs,
Keras 1 files, and configs a Keras saved that it could not read back."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask.testing import FlaskClient

from tests import keras_history as kh
from tests.api.test_real_files import deployed, online
from tests.helpers import store_model

pytestmark = pytest.mark.usefixtures("worker")

Build = Callable[[Path], kh.BuiltFile]


def scored(client: FlaskClient, deployment: dict[str, Any], body: dict[str, Any]) -> list[Any]:
    response = online(client, deployment, json=body)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["values"]  # type: ignore[no-any-return]


def rows_of(inputs: list[np.ndarray]) -> list[Any]:
    """One row per sample: the sample itself for one input, else one entry per input."""
    if len(inputs) == 1:
        return inputs[0].tolist()  # type: ignore[no-any-return]
    return [list(row) for row in zip(*(a.tolist() for a in inputs), strict=True)]


# --- kind 3: nested inputs and outputs ------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "input_names", "output_names"),
    [
        (kh.nested_outputs_h5, ["x"], ["a", "b", "c"]),
        (kh.nested_inputs_h5, ["x1", "x2", "x3"], ["out"]),
        (kh.keras3_nested_lists_keras, ["x1", "x2", "x3"], ["a", "b", "c"]),
        # Keras flattens dicts in sorted key order: inputs aa, mm, zz; outputs p=[b, a], q=c.
        (kh.keras3_dicts_keras, ["aa", "mm", "zz"], ["b", "a", "c"]),
    ],
    ids=["tf_keras-nested-outputs", "tf_keras-nested-inputs", "keras3-nested", "keras3-dicts"],
)
def test_nested_inputs_and_outputs_are_named_flat_and_score_as_keras(
    client: FlaskClient,
    tmp_path: Path,
    build: Build,
    input_names: list[str],
    output_names: list[str],
) -> None:
    built = build(tmp_path)
    deployment = deployed(client, built.path)
    model = client.get(f"/api/v1/models/{deployment['model_id']}").get_json()
    assert [i["name"] for i in model["inputs"]] == input_names
    assert [o["name"] for o in model["outputs"]] == output_names
    shapes = [o["shape"][1:] for o in model["outputs"]]
    assert shapes == [list(e.shape[1:]) for e in built.expected]
    by_row = scored(client, deployment, {"values": rows_of(built.inputs)})
    by_name = scored(
        client,
        deployment,
        {"inputs": {n: a.tolist() for n, a in zip(input_names, built.inputs, strict=True)}},
    )
    assert by_row == by_name
    for k, name in enumerate(output_names):
        got = [row[0][name] if len(output_names) > 1 else row[0] for row in by_row]
        np.testing.assert_allclose(got, built.expected[k], rtol=1e-5, atol=1e-6, err_msg=name)


# --- kind 6: Keras 1 files ------------------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        kh.keras1_lstm_dense_h5,
        kh.keras1_conv2d_h5,
        kh.keras1_functional_merge_h5,
        lambda d: kh.keras1_functional_merge_h5(d, "sum"),
        kh.keras1_embedding_gru_h5,
        kh.keras1_conv1d_batchnorm_h5,
        kh.keras1_layer_zoo_h5,
        kh.keras1_masked_lstm_h5,
    ],
    ids=[
        "lstm-dense",
        "conv2d-tf",
        "merge-concat",
        "merge-sum",
        "embedding-gru-rnn",
        "conv1d-bn",
        "pooling-reshape-zoo",
        "masking-lstm",
    ],
)
def test_a_keras1_file_scores_as_the_model_it_was_built_from(
    client: FlaskClient, tmp_path: Path, build: Build
) -> None:
    built = build(tmp_path)
    deployment = deployed(client, built.path)
    model = client.get(f"/api/v1/models/{deployment['model_id']}").get_json()
    assert model["keras_version"] == "1.2.2"
    assert model["inputs"][0]["dtype"] == str(built.inputs[0].dtype)
    values = scored(client, deployment, {"values": built.inputs[0].tolist()})
    np.testing.assert_allclose([v[0] for v in values], built.expected[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("build", "layer", "layer_class", "argument"),
    [
        (lambda d: kh.keras1_conv2d_h5(d, "th").path, "convolution2d_1", "Convolution2D", "dim_ordering"),
        (kh.keras1_highway_h5, "highway_1", "Highway", None),
    ],
    ids=["conv2d-th", "highway"],
)  # fmt: skip
def test_a_keras1_file_that_does_not_convert_is_refused_at_upload(
    client: FlaskClient,
    tmp_path: Path,
    build: Callable[[Path], Path],
    layer: str,
    layer_class: str,
    argument: str | None,
) -> None:
    path = build(tmp_path)
    response = client.post(
        "/api/v1/models",
        data={"file": (io.BytesIO(path.read_bytes()), path.name), "name": "old"},
        content_type="multipart/form-data",
    )
    body = response.get_json()
    assert response.status_code == 400, body
    error = body["error"]
    assert error["code"] == "unsupported_model_file"
    assert "Keras 1" in error["message"] and "Keras 2.0" in error["message"]
    assert f"'{layer}' ({layer_class})" in error["message"]
    assert error["details"]["layer"] == layer and error["details"]["argument"] == argument
    assert client.get("/api/v1/models").get_json()["total"] == 0  # nothing was stored


# --- kind 2: configs a Keras saved that it could not read back -------------------------------


@pytest.mark.parametrize(
    "build",
    [
        kh.relu_ndarray_config_h5,
        kh.bidirectional_shape_inside_h5,
        kh.shared_layer_used_before_its_input_h5,
        kh.bias_initializer_typo_h5,
    ],
    ids=[
        "relu-ndarray-tf1.12",
        "bidirectional-shape-inside-2.2.0",
        "shared-layer-order-2.0.6",
        "bias-initializer-typo-2.0.0",
    ],
)
def test_a_file_its_own_keras_could_not_reload_scores_as_the_model(
    client: FlaskClient, tmp_path: Path, build: Build
) -> None:
    built = build(tmp_path)
    deployment = deployed(client, built.path)
    values = scored(client, deployment, {"values": built.inputs[0].tolist()})
    np.testing.assert_allclose([v[0] for v in values], built.expected[0], rtol=1e-5, atol=1e-6)


def test_store_model_helper_still_accepts_every_history_file(
    client: FlaskClient, tmp_path: Path
) -> None:
    # The upload path alone (no worker needed): each file's signature is read at upload.
    for build in (kh.nested_outputs_h5, kh.keras1_lstm_dense_h5, kh.bidirectional_shape_inside_h5):
        info = store_model(client, build(tmp_path).path)
        assert info["inputs"] and info["outputs"]

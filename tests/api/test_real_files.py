"""Real Keras files of whole kinds, scored over HTTP and compared with the Keras that wrote
them, row for row (files built by tests/keras_kinds.py)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask.testing import FlaskClient

from tests import keras_kinds as kk
from tests.helpers import deployed, store_model, wait_for

pytestmark = pytest.mark.usefixtures("worker")


def online(client: FlaskClient, deployment: dict[str, Any], **kwargs: Any) -> Any:
    return client.post(f"/api/v1/deployments/{deployment['id']}/online", **kwargs)


def predictions(response: Any) -> np.ndarray:
    body = response.get_json()
    assert response.status_code == 200, body
    return np.asarray([row[0] for row in body["values"]])


# --- kind 1: defaults that changed between Keras versions -----------------------------------


@pytest.mark.parametrize(
    "build",
    [
        kk.gru_before_reset_after_h5,
        kk.bidirectional_gru_before_reset_after_h5,
        lambda d: kk.lstm_without_recurrent_activation_h5(d, "2.2.4", "hard_sigmoid"),
        lambda d: kk.lstm_without_recurrent_activation_h5(d, "2.3.1", "sigmoid"),
    ],
    ids=["gru-2.1.2", "bidirectional-gru-2.1.2", "lstm-2.2.4", "lstm-2.3.1"],
)
def test_a_layer_missing_a_later_argument_scores_as_its_keras_did(
    client: FlaskClient, tmp_path: Path, build: Any
) -> None:
    built = build(tmp_path)
    deployment = deployed(client, built.path)
    got = predictions(online(client, deployment, json={"values": built.inputs[0].tolist()}))
    np.testing.assert_allclose(got, built.expected[0], rtol=1e-5, atol=1e-6)


# --- kind 5: integer inputs keep their values -----------------------------------------------


@pytest.fixture(scope="module")
def text_and_ids(tmp_path_factory: pytest.TempPathFactory) -> kk.BuiltFile:
    return kk.string_and_int64_keras(tmp_path_factory.mktemp("ids"))


@pytest.fixture
def ids_deployment(client: FlaskClient, text_and_ids: kk.BuiltFile) -> dict[str, Any]:
    return deployed(client, text_and_ids.path)


def test_int64_ids_past_float32_precision_score_exactly(
    client: FlaskClient, text_and_ids: kk.BuiltFile, ids_deployment: dict[str, Any]
) -> None:
    values = [[w, [i]] for w, i in zip(kk.WORDS, kk.BIG_IDS, strict=True)]
    got = predictions(online(client, ids_deployment, json={"values": values}))
    np.testing.assert_allclose(got, text_and_ids.expected[0], rtol=1e-6, atol=1e-7)
    # The same rows named by input, and as a batch job: the same answer on every path.
    named = {"inputs": {"text": kk.WORDS, "ids": [[i] for i in kk.BIG_IDS]}}
    got_named = predictions(online(client, ids_deployment, json=named))
    np.testing.assert_allclose(got_named, text_and_ids.expected[0], rtol=1e-6, atol=1e-7)
    job = client.post(f"/api/v1/deployments/{ids_deployment['id']}/jobs", json={"values": values})
    assert job.status_code == 202, job.get_json()
    job_id = job.get_json()["id"]
    wait_for(
        lambda: client.get(f"/api/v1/jobs/{job_id}").get_json()["status"] == "completed",
        what="job to complete",
    )
    result = client.get(f"/api/v1/jobs/{job_id}/result").get_json()
    np.testing.assert_allclose(
        [row[0] for row in result["values"]], text_and_ids.expected[0], rtol=1e-6, atol=1e-7
    )


def test_int64_ids_in_an_npz_body_score_exactly(
    client: FlaskClient, text_and_ids: kk.BuiltFile, ids_deployment: dict[str, Any]
) -> None:
    buffer = io.BytesIO()
    np.savez(
        buffer,
        text=np.array([[w] for w in kk.WORDS]),
        ids=np.array([[i] for i in kk.BIG_IDS], dtype=np.int64),
    )
    response = online(
        client, ids_deployment, data=buffer.getvalue(), content_type="application/x-npz"
    )
    np.testing.assert_allclose(predictions(response), text_and_ids.expected[0], rtol=1e-6)


@pytest.mark.parametrize(
    ("value", "why"),
    [(3.7, "not a whole number"), (2.0**70, "out of range"), (2**70, "past 64 bits")],
)
def test_a_value_an_integer_input_cannot_hold_is_422_naming_row_and_input(
    client: FlaskClient, ids_deployment: dict[str, Any], value: Any, why: str
) -> None:
    values = [["a", [16777216]], ["b", [value]]]
    for path in ("online", "jobs"):
        response = client.post(
            f"/api/v1/deployments/{ids_deployment['id']}/{path}", json={"values": values}
        )
        body = response.get_json()
        assert response.status_code == 422, body
        error = body["error"]
        assert error["code"] == "invalid_scoring_input"
        assert "Row 1" in error["message"] and "'ids'" in error["message"], error
        assert error["details"]["row"] == 1 and error["details"]["input"] == "ids"
    assert client.get("/api/v1/jobs").get_json()["total"] == 0  # nothing was stored


def test_a_float_array_for_an_integer_input_must_hold_whole_numbers(
    client: FlaskClient, text_and_ids: kk.BuiltFile, ids_deployment: dict[str, Any]
) -> None:
    def npz(ids: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, text=np.array([["a"], ["b"]]), ids=ids)
        return buffer.getvalue()

    whole = online(
        client,
        ids_deployment,
        data=npz(np.array([[16777216.0], [16777217.0]])),
        content_type="application/x-npz",
    )
    assert whole.status_code == 200, whole.get_json()
    fractional = online(
        client,
        ids_deployment,
        data=npz(np.array([[16777216.0], [3.7]])),
        content_type="application/x-npz",
    )
    body = fractional.get_json()
    assert fractional.status_code == 422, body
    assert body["error"]["details"]["row"] == 1 and body["error"]["details"]["input"] == "ids"


# --- kind 6: refusals that give advice that works -------------------------------------------


def test_a_file_keras_cannot_build_is_refused_naming_writer_layer_argument_and_a_way_out(
    client: FlaskClient, tmp_path: Path
) -> None:
    import tf_keras

    model = store_model(client, kk.unknown_argument_h5(tmp_path))
    created = client.post("/api/v1/deployments", json={"model_id": model["id"], "name": "d"})
    href = "/api/v1/deployments/" + created.get_json()["id"]
    failed = wait_for(
        lambda: (body := client.get(href).get_json())["status"] == "DEPLOY_FAILED" and body,
        what="deployment to fail",
    )
    error = failed["error"]
    assert error["code"] == "unsupported_model_file"
    message = error["message"]
    assert "Keras 2.2.4" in message  # the writer
    assert "'probs' (Dense)" in message and "'units_v2'" in message  # layer and argument
    assert f"tf_keras {tf_keras.__version__}" in message  # a way out, with the version to use
    assert "save_weights" in message

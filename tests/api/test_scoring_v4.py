"""WML v4's scoring body on the native routes: ``input_data`` in, ``predictions`` out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests import keras_files as kf
from tests.api.test_scoring import assert_dense_rows, deploy, path_of, rows, wait_job
from tests.helpers import store_model

pytestmark = pytest.mark.usefixtures("worker")

FIELDS = ["prediction", "prediction_classes", "probability"]


@pytest.fixture
def deployment(client: FlaskClient, tmp_path: Path) -> dict[str, Any]:
    return deploy(client, store_model(client, kf.tf_keras_h5_file(tmp_path))["id"])


def v4(values: list[Any]) -> dict[str, Any]:
    return {"input_data": [{"fields": ["a", "b", "c", "d"], "values": values}]}


def test_online_answers_v4_in_v4s_shape(client: FlaskClient, deployment: dict[str, Any]) -> None:
    x = rows(3, seed=4)
    response = client.post(path_of(deployment["scoring_url"]), json=v4(x.tolist()))
    assert response.status_code == 200, response.get_json()
    [prediction] = response.get_json()["predictions"]
    assert prediction["fields"] == FIELDS
    assert_dense_rows(prediction["values"], x)
    # v3's body keeps v3's answer.
    plain = client.post(path_of(deployment["scoring_url"]), json={"values": x.tolist()})
    assert set(plain.get_json()) == {"fields", "values"}


def test_a_job_submitted_in_v4_gives_its_result_in_v4(
    client: FlaskClient, deployment: dict[str, Any]
) -> None:
    x = rows(120, seed=5)  # several chunks (chunk_rows=50 in the tests' settings)
    submitted = client.post(path_of(deployment["jobs_url"]), json=v4(x.tolist()))
    assert submitted.status_code == 202, submitted.get_json()
    job = wait_job(client, submitted.get_json()["href"])
    assert job["status"] == "completed", job
    result = client.get(path_of(job["result_url"])).get_json()
    [prediction] = result["predictions"]
    assert prediction["fields"] == FIELDS
    assert_dense_rows(prediction["values"], x)


@pytest.mark.parametrize(
    "body",
    [
        {"input_data": []},
        {"input_data": [{"values": [[1, 2, 3, 4]]}, {"values": [[1, 2, 3, 4]]}]},
        {"input_data": [{"fields": ["a"]}]},
        {"input_data": [{"values": [[1, 2, 3, 4]]}], "values": [[1, 2, 3, 4]]},
    ],
)
def test_malformed_v4_bodies_are_422(
    client: FlaskClient, deployment: dict[str, Any], body: dict[str, Any]
) -> None:
    response = client.post(path_of(deployment["scoring_url"]), json=body)
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["error"]["code"] == "validation_failed"

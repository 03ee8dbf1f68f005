"""Requests built to break the API: each is a 4xx in the one envelope, never a 5xx, and
stores nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask.testing import FlaskClient

from tests import keras_files as kf
from tests.helpers import store_model, wait_for

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture
def deployment(client: FlaskClient, tmp_path: Path) -> dict[str, Any]:
    model = store_model(client, kf.tf_keras_h5_file(tmp_path))
    created = client.post("/api/v1/deployments", json={"model_id": model["id"], "name": "d"})
    href = "/api/v1/deployments/" + created.get_json()["id"]
    return wait_for(  # type: ignore[no-any-return]
        lambda: (d := client.get(href).get_json())["status"] == "DEPLOY_SUCCESS" and d,
        what="deployment",
    )


def refused(response: Any, status: int, code: str) -> dict[str, Any]:
    body = response.get_json()
    assert response.status_code == status, body
    assert body["error"]["code"] == code, body
    return body["error"]  # type: ignore[no-any-return]


def nothing_stored(client: FlaskClient) -> None:
    assert client.get("/api/v1/jobs").get_json()["total"] == 0


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("[" * 5000 + "]" * 5000, "nesting"),
        ('{"values": ' + "[" * 5000 + "]" * 5000 + "}", "nesting"),
        ('{"values": [[1, 2, 3, 4]', "syntax"),  # truncated
        (b'{"values": [[1, 2, 3, \xff]]}', "syntax"),  # not UTF-8
    ],
)
def test_malformed_and_deeply_nested_bodies_are_400(
    client: FlaskClient, deployment: dict[str, Any], body: str | bytes, reason: str
) -> None:
    for path in ("online", "jobs"):
        response = client.post(
            f"/api/v1/deployments/{deployment['id']}/{path}",
            data=body,
            content_type="application/json",
        )
        assert refused(response, 400, "bad_request")["details"]["reason"] == reason
    response = client.post("/api/v1/deployments", data=body, content_type="application/json")
    refused(response, 400, "bad_request")
    nothing_stored(client)


def test_a_key_given_twice_is_refused_not_guessed(
    client: FlaskClient, deployment: dict[str, Any]
) -> None:
    body = '{"values": [[1, 2, 3, 4]], "values": [[5, 6, 7, 8]]}'
    response = client.post(
        f"/api/v1/deployments/{deployment['id']}/jobs", data=body, content_type="application/json"
    )
    assert refused(response, 400, "bad_request")["details"]["key"] == "values"
    nothing_stored(client)


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_422_naming_the_row(
    client: FlaskClient, deployment: dict[str, Any], token: str
) -> None:
    body = '{"values": [[1, 2, 3, 4], [1, 2, ' + token + ", 4]]}"
    for path in ("online", "jobs"):
        response = client.post(
            f"/api/v1/deployments/{deployment['id']}/{path}",
            data=body,
            content_type="application/json",
        )
        error = refused(response, 422, "invalid_scoring_input")
        assert error["details"]["row"] == 1
    nothing_stored(client)


def test_scores_that_overflow_come_back_as_null_not_nan(
    client: FlaskClient, deployment: dict[str, Any]
) -> None:
    # float32's largest values overflow the model's softmax: NaN predictions, never a bare NaN token.
    x = np.full((1, 4), 3e38, dtype=np.float32)
    response = client.post(
        f"/api/v1/deployments/{deployment['id']}/online", json={"values": x.tolist()}
    )
    assert response.status_code == 200
    assert b"NaN" not in response.data and b"Infinity" not in response.data


def test_ids_that_would_address_other_keys_are_404(
    client: FlaskClient, deployment: dict[str, Any]
) -> None:
    job = client.post(
        f"/api/v1/deployments/{deployment['id']}/jobs", json={"values": [[1, 2, 3, 4]]}
    ).get_json()
    model_id, job_id = deployment["model_id"], job["id"]
    # Once it completed, the job's done set and attempts hash exist beside its record.
    wait_for(lambda: client.get(f"/api/v1/jobs/{job_id}").get_json()["status"] == "completed")
    for path, code in [
        (f"/api/v1/models/{model_id}:deployments", "model_not_found"),
        (f"/api/v1/models/{model_id}:deployments/content", "model_not_found"),
        (f"/api/v1/deployments/{deployment['id']}:jobs", "deployment_not_found"),
        (f"/api/v1/jobs/{job_id}:done", "job_not_found"),
        (f"/api/v1/jobs/{job_id}:attempts/result", "job_not_found"),
        ("/api/v1/jobs/a%00b", "job_not_found"),
    ]:
        refused(client.get(path), 404, code)
    refused(client.delete(f"/api/v1/models/{model_id}:deployments"), 404, "model_not_found")

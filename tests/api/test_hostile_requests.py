"""Requests built to break the API: each is a 4xx in the one envelope, never a 5xx, and
stores nothing."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from flask.testing import FlaskClient

from api.app import MAX_FORM_PARTS, create_app
from shared.instance_store import NewInstance
from shared.settings import Settings
from tests import keras_files as kf
from tests.conftest import authorized_client
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


# --- numbers, rows and fields ----------------------------------------------------------------


def wml_refused(response: Any, status: int, code: str) -> dict[str, Any]:
    body = response.get_json()
    assert response.status_code == status, body
    assert body["errors"][0]["code"] == code, body
    return body["errors"][0]  # type: ignore[no-any-return]


def scoring_urls(deployment: dict[str, Any], instance: NewInstance) -> list[str]:
    """The native online and jobs routes and WML's online route of ``deployment``."""
    native = f"/api/v1/deployments/{deployment['id']}"
    wml = f"/v3/wml_instances/{instance.instance.id}/deployments/{deployment['id']}/online"
    return [native + "/online", native + "/jobs", wml]


def error_of(response: Any, status: int, code: str) -> dict[str, Any]:
    """The one error of a refusal in either body (kscore's envelope or WML's)."""
    if "errors" in (response.get_json() or {}):
        return wml_refused(response, status, code)
    return refused(response, status, code)


def stored_only_the_deployment(client: FlaskClient) -> None:
    nothing_stored(client)
    assert client.get("/api/v1/models").get_json()["total"] == 1
    assert client.get("/api/v1/deployments").get_json()["total"] == 1


def test_integers_no_input_holds_are_refused(
    client: FlaskClient, deployment: dict[str, Any], instance: NewInstance
) -> None:
    for url in scoring_urls(deployment, instance):
        huge = '{"values": [[1, 2, 3, 4], [1, 2, 1' + "0" * 400 + ", 4]]}"
        error = error_of(
            client.post(url, data=huge, content_type="application/json"),
            422,
            "invalid_scoring_input",
        )
        assert error["details"]["row"] == 1, error
        # Past 4300 digits Python refuses to read the integer at all (quadratic time).
        vast = '{"values": [[' + "9" * 5000 + ", 2, 3, 4]]}"
        response = client.post(url, data=vast, content_type="application/json")
        assert error_of(response, 400, "bad_request")["details"]["reason"] == "number"
    stored_only_the_deployment(client)


@pytest.mark.parametrize(
    ("body", "code", "detail"),
    [
        ({"values": [["1", "2", "3", "4"]]}, "invalid_scoring_input", ("row", 0)),
        ({"values": [[1, 2, 3, 4], [1, 2]]}, "invalid_scoring_input", ("row", 1)),
        ({"values": [[1, 2, 3, 4], [1, 2, [3, 4], 4]]}, "invalid_scoring_input", ("row", 1)),
        ({"values": [[1, 2, 3, 4]], "valeus": [[1, 2, 3, 4]]}, "validation_failed", None),
        ({"input_data": [{"values": [[1, 2, 3, 4]], "field": []}]}, "validation_failed", None),
    ],
)
def test_strings_for_numbers_ragged_rows_and_unknown_fields_are_422(
    client: FlaskClient,
    deployment: dict[str, Any],
    instance: NewInstance,
    body: dict[str, Any],
    code: str,
    detail: tuple[str, int] | None,
) -> None:
    for url in scoring_urls(deployment, instance):
        error = error_of(client.post(url, json=body), 422, code)
        if detail is not None:
            assert error["details"][detail[0]] == detail[1], error
    stored_only_the_deployment(client)


def test_numbers_of_the_body_are_json_numbers(
    client: FlaskClient, deployment: dict[str, Any]
) -> None:
    url = f"/api/v1/deployments/{deployment['id']}/jobs"
    for retention in ["2", True, 10**400, -1]:
        response = client.post(url, json={"values": [[1, 2, 3, 4]], "retention_days": retention})
        assert "retention_days" in refused(response, 422, "validation_failed")["details"]["fields"]
    for query in ["timeout=nan", "timeout=inf", "timeout=1" + "0" * 400, "timeout=-1"]:
        response = client.post(
            f"/api/v1/deployments/{deployment['id']}/online?{query}",
            json={"values": [[1, 2, 3, 4]]},
        )
        assert "timeout" in refused(response, 422, "validation_failed")["details"]["fields"]
    stored_only_the_deployment(client)


# --- ids and names -----------------------------------------------------------------------------


def test_nul_and_dot_dot_in_ids_are_404(
    client: FlaskClient, deployment: dict[str, Any], instance: NewInstance
) -> None:
    v3 = f"/v3/wml_instances/{instance.instance.id}"
    for bad in ["a%00b", "..%2F..%2Fjobs", "%2E%2E", "x%0Ay"]:
        for path in [f"/api/v1/models/{bad}", f"/api/v1/deployments/{bad}", f"/api/v1/jobs/{bad}"]:
            response = client.get(path)
            assert response.status_code == 404 and "error" in response.get_json(), path
        for path in [
            f"{v3}/published_models/{bad}",
            f"{v3}/deployments/{bad}",
            f"/v3/ml_assets/models/{bad}",
        ]:
            response = client.get(path)
            assert response.status_code == 404 and "errors" in response.get_json(), path
        response = client.get(f"/v3/wml_instances/{bad}/deployments")
        assert response.status_code == 404 and "errors" in response.get_json(), bad
        response = client.post(
            "/api/v1/deployments", json={"model_id": bad.replace("%00", "\x00"), "name": "d"}
        )
        refused(response, 404, "model_not_found")
    stored_only_the_deployment(client)


@pytest.mark.parametrize("name", ["a\x00b", "line\nbreak", "bell\x07", "\x1b[31mred"])
def test_control_characters_in_names_are_422(
    client: FlaskClient, deployment: dict[str, Any], instance: NewInstance, name: str
) -> None:
    model_id = deployment["model_id"]
    response = client.post("/api/v1/deployments", json={"model_id": model_id, "name": name})
    assert "name" in refused(response, 422, "validation_failed")["details"]["fields"]
    upload = client.post(
        "/api/v1/models",
        data={"file": (io.BytesIO(b"\x89HDF\r\n\x1a\n"), "model.h5"), "name": name},
        content_type="multipart/form-data",
    )
    assert "name" in refused(upload, 422, "validation_failed")["details"]["fields"]
    asset = client.post("/v3/ml_assets/models", json={"name": name, "framework": {"name": "keras"}})
    assert "name" in wml_refused(asset, 422, "validation_failed")["details"]["fields"]
    published = (
        f"http://localhost/v3/wml_instances/{instance.instance.id}/published_models/{model_id}"
    )
    wml_deployment = client.post(
        f"/v3/wml_instances/{instance.instance.id}/deployments",
        json={"name": name, "deployable_asset_url": published},
    )
    assert "name" in wml_refused(wml_deployment, 422, "validation_failed")["details"]["fields"]
    stored_only_the_deployment(client)


def test_a_description_may_span_lines_but_holds_no_nul(
    client: FlaskClient, deployment: dict[str, Any]
) -> None:
    body = {"model_id": deployment["model_id"], "name": "d", "description": "a\x00b"}
    response = client.post("/api/v1/deployments", json=body)
    assert "description" in refused(response, 422, "validation_failed")["details"]["fields"]
    body["description"] = "two\nlines"
    assert client.post("/api/v1/deployments", json=body).status_code == 202


# (A Windows path, dir\model.h5, is cut to its last part by werkzeug's form parser already.)
@pytest.mark.parametrize("filename", ["../../evil.h5", "dir/model.h5", "a\x00.h5", ".."])
def test_upload_file_names_with_a_directory_or_nul_are_422(
    client: FlaskClient, deployment: dict[str, Any], filename: str
) -> None:
    content = client.get(f"/api/v1/models/{deployment['model_id']}/content").data
    response = client.post(
        "/api/v1/models",
        data={"file": (io.BytesIO(content), filename), "name": "m"},
        content_type="multipart/form-data",
    )
    assert "file" in refused(response, 422, "validation_failed")["details"]["fields"]
    stored_only_the_deployment(client)


# --- multipart, sizes, lengths and types -------------------------------------------------------


def multipart(*parts: tuple[str, bytes, str | None], end: bool = True) -> bytes:
    """A multipart body with boundary B: (name, content, filename or None) per part."""
    body = b""
    for name, content, filename in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--B\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content + b"\r\n"
    return body + (b"--B--\r\n" if end else b"")


def test_truncated_boundless_and_crowded_multipart_bodies_are_refused(
    client: FlaskClient, deployment: dict[str, Any]
) -> None:
    content = client.get(f"/api/v1/models/{deployment['model_id']}/content").data
    whole = multipart(("name", b"m", None), ("file", content, "model.h5"))
    cut = whole[: len(whole) // 2]
    response = client.post(
        "/api/v1/models", data=cut, content_type="multipart/form-data; boundary=B"
    )
    assert "cannot be read" in refused(response, 400, "bad_request")["message"]
    response = client.post("/api/v1/models", data=whole, content_type="multipart/form-data")
    assert "boundary" in refused(response, 400, "bad_request")["message"]
    crowded = multipart(*[(f"f{i}", b"x", None) for i in range(MAX_FORM_PARTS + 1)])
    response = client.post(
        "/api/v1/models", data=crowded, content_type="multipart/form-data; boundary=B"
    )
    assert "form parts" in refused(response, 413, "payload_too_large")["message"]
    # The whole body, for contrast, is stored.
    stored = client.post(
        "/api/v1/models", data=whole, content_type="multipart/form-data; boundary=B"
    )
    assert stored.status_code == 201, stored.get_json()


def test_wrong_content_types_are_refused(
    client: FlaskClient, deployment: dict[str, Any], instance: NewInstance
) -> None:
    rows = b'{"values": [[1, 2, 3, 4]]}'
    json_routes = [
        *scoring_urls(deployment, instance),
        "/api/v1/deployments",
        f"/v3/wml_instances/{instance.instance.id}/deployments",
        "/v3/ml_assets/models",
    ]
    for url in json_routes:
        for content_type in (
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=B",
        ):
            response = client.post(url, data=rows, content_type=content_type)
            assert response.status_code == 400, (url, content_type, response.get_json())
    # JSON where the upload's form belongs: no file part.
    response = client.post("/api/v1/models", data=rows, content_type="application/json")
    assert "file" in refused(response, 422, "validation_failed")["details"]["fields"]
    # An array body that is JSON: neither .npy nor .npz.
    for url in scoring_urls(deployment, instance)[:2]:
        response = client.post(url, data=rows, content_type="application/x-npy")
        refused(response, 422, "invalid_scoring_input")
    stored_only_the_deployment(client)


def test_a_content_length_that_lies_is_400(
    client: FlaskClient, deployment: dict[str, Any], instance: NewInstance
) -> None:
    rows = b'{"values": [[1, 2, 3, 4]]}'
    for url in [*scoring_urls(deployment, instance), "/api/v1/deployments"]:
        longer = client.post(
            url,
            data=rows,
            content_type="application/json",
            environ_overrides={"CONTENT_LENGTH": "1000"},
        )
        assert "Content-Length" in error_of(longer, 400, "bad_request")["message"]
        shorter = client.post(
            url,
            data=rows,
            content_type="application/json",
            environ_overrides={"CONTENT_LENGTH": "9"},
        )
        assert error_of(shorter, 400, "bad_request")["details"]["reason"] == "syntax"
    content = client.get(f"/api/v1/models/{deployment['model_id']}/content").data
    asset = client.post("/v3/ml_assets/models", json={"name": "a", "framework": {"name": "keras"}})
    content_url = asset.get_json()["entity"]["model_version"]["content_url"]
    put = client.put(
        content_url.removeprefix("http://localhost"),
        data=content,
        content_type="application/octet-stream",
        environ_overrides={"CONTENT_LENGTH": str(len(content) + 1000)},
    )
    wml_refused(put, 400, "bad_request")
    upload = client.post(
        "/api/v1/models",
        data=multipart(("name", b"m", None), ("file", content, "model.h5")),
        content_type="multipart/form-data; boundary=B",
        environ_overrides={"CONTENT_LENGTH": str(len(content) + 5000)},
    )
    refused(upload, 400, "bad_request")
    stored_only_the_deployment(client)
    # The asset still waits for its file, and takes it whole.
    retried = client.put(
        content_url.removeprefix("http://localhost"),
        data=content,
        content_type="application/octet-stream",
    )
    assert retried.status_code == 200, retried.get_json()


def test_bodies_over_the_limits_are_413(
    settings: Settings, redis_client: redis.Redis, deployment: dict[str, Any], client: FlaskClient
) -> None:
    content = client.get(f"/api/v1/models/{deployment['model_id']}/content").data
    small = create_app(
        settings.replace(max_request_bytes=1024, max_model_bytes=len(content) - 1), redis_client
    )
    limited = authorized_client(small)
    instance_id = settings.default_instance
    rows = json.dumps({"values": [[1.5, 2.5, 3.5, 4.5]] * 100}).encode()
    assert len(rows) > 1024
    native = f"/api/v1/deployments/{deployment['id']}"
    for url in [
        native + "/online",
        native + "/jobs",
        f"/v3/wml_instances/{instance_id}/deployments/{deployment['id']}/online",
    ]:
        response = limited.post(url, data=rows, content_type="application/json")
        assert error_of(response, 413, "payload_too_large")["details"]["limit_bytes"] == 1024
    upload = limited.post(
        "/api/v1/models",
        data={"file": (io.BytesIO(content), "model.h5"), "name": "m"},
        content_type="multipart/form-data",
    )
    refused(upload, 413, "payload_too_large")
    asset = limited.post("/v3/ml_assets/models", json={"name": "a", "framework": {"name": "keras"}})
    content_url = asset.get_json()["entity"]["model_version"]["content_url"]
    put = limited.put(
        content_url.removeprefix("http://localhost"),
        data=content,
        content_type="application/octet-stream",
    )
    wml_refused(put, 413, "payload_too_large")
    # Past MAX_CONTENT_LENGTH werkzeug refuses before any view reads the body.
    huge = b"0" * (small.config["MAX_CONTENT_LENGTH"] + 1)
    refused(
        limited.post(native + "/jobs", data=huge, content_type="application/json"),
        413,
        "payload_too_large",
    )
    stored_only_the_deployment(client)

"""The OpenAPI document is valid and carries the contract the routes declare."""

from __future__ import annotations

import importlib.metadata
import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from api.inference import is_inference_path
from api.wml.errors import is_wml_path
from shared.status import DeploymentStatus, JobStatus
from tests.api.test_routes_documented import EXCLUDED_PREFIXES


def test_document_is_valid_openapi_3(client: FlaskClient) -> None:
    spec = client.get("/api/v1/openapi.json").get_json()
    validate(spec)
    assert spec["openapi"].startswith("3.0")


def test_every_route_is_documented(app: Flask, client: FlaskClient) -> None:
    spec = client.get("/api/v1/openapi.json").get_json()
    documented = {
        (path, method.upper())
        for path, ops in spec["paths"].items()
        for method in ops
        if method != "parameters"
    }
    served = set()
    for rule in app.url_map.iter_rules():
        if (
            rule.endpoint == "static"
            or rule.rule.startswith("/api/v1/docs")
            or rule.rule == "/api/v1/openapi.json"
            # The web console's pages (the reason is in EXCLUDED_PREFIXES).
            or any(rule.rule.startswith(prefix + "/") for prefix in EXCLUDED_PREFIXES)
        ):
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for method in rule.methods or ():
            if method not in {"HEAD", "OPTIONS"}:
                served.add((path, method))
    assert served == documented


def test_error_envelope_and_scoring_shapes_are_in_the_schemas(client: FlaskClient) -> None:
    schemas = client.get("/api/v1/openapi.json").get_json()["components"]["schemas"]
    assert set(schemas["Error"]["properties"]) == {"error"}
    assert {"fields", "values"} <= set(schemas["ScoringResult"]["properties"])
    assert "inputs" in schemas["ScoringPayload"]["properties"]
    job = schemas["Job"]["properties"]
    assert {"status", "progress", "model_sha256", "result_url", "expires_at"} <= set(job)


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method != "parameters"
    ]


def follow(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow a local $ref (#/components/...) to what it names."""
    while "$ref" in node:
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def test_every_operation_lists_its_errors_with_the_error_envelope(client: FlaskClient) -> None:
    spec = client.get("/api/v1/openapi.json").get_json()
    for path, method, operation in operations(spec):
        where = f"{method.upper()} {path}"
        responses = operation["responses"]
        errors = {
            code: follow(spec, r) for code, r in responses.items() if not code.startswith("2")
        }
        assert "default" in errors, where  # 500, and 503 while Redis is down, on any route
        for code, response in errors.items():
            schema = response["content"]["application/json"]["schema"]
            # WML's routes answer WML's error body (api/wml/errors.py), the inference
            # protocols' theirs (api/inference.py).
            envelope = "Error"
            if is_wml_path(path):
                envelope = "WmlError"
            elif is_inference_path(path):
                envelope = "InferenceError"
            assert schema == {"$ref": f"#/components/schemas/{envelope}"}, (where, code)
        # What each kind of argument can answer, derived from the operation's own declaration.
        params = operation.get("parameters", []) + spec["paths"][path].get("parameters", [])
        if any(p["in"] == "path" for p in params):
            assert "404" in errors, where
        # Neither inference protocol has 422: what kscore calls invalid fields is their 400.
        has_422 = not is_inference_path(path)
        if has_422 and (any(p["in"] == "query" for p in params) or "requestBody" in operation):
            assert "422" in errors, where
        if "requestBody" in operation:
            assert {"400", "413"} <= set(errors), where


def test_limits_of_the_schemas_are_in_the_document(client: FlaskClient) -> None:
    spec = client.get("/api/v1/openapi.json").get_json()
    schemas = spec["components"]["schemas"]
    for name in ("ModelUpload", "DeploymentCreate"):
        assert schemas[name]["properties"]["description"]["maxLength"] == 2000, name
        assert schemas[name]["properties"]["name"]["maxLength"] == 128, name
    upload = spec["paths"]["/api/v1/models"]["post"]["requestBody"]["content"]
    assert upload["multipart/form-data"]["schema"] == {"$ref": "#/components/schemas/ModelUpload"}
    assert schemas["ModelUpload"]["properties"]["file"] == {
        "description": ".h5, .hdf5, .keras, or a .tar.gz/.tgz/.zip holding exactly one.",
        "type": "string",
        "format": "binary",
    }
    assert set(schemas["ModelUpload"]["required"]) == {"file", "name"}

    def query(path: str, method: str = "get") -> dict[str, Any]:
        params = spec["paths"][path][method]["parameters"]
        return {p["name"]: p["schema"] for p in params if p["in"] == "query"}

    for path in ("/api/v1/models", "/api/v1/deployments", "/api/v1/jobs"):
        paging = query(path)
        assert (paging["limit"]["minimum"], paging["limit"]["maximum"]) == (1, 1000), path
        assert (paging["offset"]["minimum"], paging["offset"]["maximum"]) == (0, 1_000_000_000)
    # None: the filter is optional (apispec lists a nullable field's null with its choices).
    assert query("/api/v1/jobs")["status"]["enum"] == [*(s.value for s in JobStatus), None]
    assert "deployment_id" not in query("/api/v1/deployments/{deployment_id}/jobs")
    assert query("/api/v1/deployments/{deployment_id}/online", "post")["timeout"]["maximum"] == 3600
    retention = query("/api/v1/deployments/{deployment_id}/jobs", "post")["retention_days"]
    assert (retention["minimum"], retention["maximum"]) == (0.001, 365)


def test_scoring_bodies_are_json_or_numpy_files(client: FlaskClient) -> None:
    spec = client.get("/api/v1/openapi.json").get_json()
    for path, schema in [
        ("/api/v1/deployments/{deployment_id}/online", "ScoringPayload"),
        ("/api/v1/deployments/{deployment_id}/jobs", "JobCreate"),
    ]:
        content = spec["paths"][path]["post"]["requestBody"]["content"]
        assert content["application/json"]["schema"] == {"$ref": f"#/components/schemas/{schema}"}
        for mimetype in ("application/x-npy", "application/x-npz"):
            assert content[mimetype]["schema"] == {"type": "string", "format": "binary"}


def test_statuses_and_version_come_from_their_one_source(client: FlaskClient) -> None:
    spec = client.get("/api/v1/openapi.json").get_json()
    schemas = spec["components"]["schemas"]
    assert schemas["Job"]["properties"]["status"]["enum"] == [s.value for s in JobStatus]
    assert schemas["Deployment"]["properties"]["status"]["enum"] == [
        s.value for s in DeploymentStatus
    ]
    assert spec["info"]["version"] == importlib.metadata.version("kscore")

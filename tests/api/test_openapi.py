"""The OpenAPI document is valid and describes every route the app serves."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate


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

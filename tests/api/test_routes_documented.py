"""Every route the app serves is in the OpenAPI document, and the document lists nothing else."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

# Served but deliberately not operations of the API; each with its reason.
EXCLUDED = {
    ("/api/v1/openapi.json", "GET"): "the document itself, served by flask-smorest",
    ("/api/v1/docs", "GET"): "the Swagger UI page: HTML for people, not an operation",
    ("/api/v1/docs/static/{filename}", "GET"): "Swagger UI's assets (swagger-ui-bundle)",
}
# Served under these prefixes, never operations of the API; each with its reason.
EXCLUDED_PREFIXES = {
    "/console": "the web console (api/console): HTML pages and forms for people, over the same "
    "services as the API, signed in with a session cookie instead of a key",
}


def excluded(operations: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Those of ``operations`` excluded by name or by prefix."""
    return {
        (path, method)
        for path, method in operations
        if (path, method) in EXCLUDED
        or any(path == p or path.startswith(p + "/") for p in EXCLUDED_PREFIXES)
    }


# Added by Flask/werkzeug to every rule; nothing of ours answers them.
IMPLICIT_METHODS = {"HEAD", "OPTIONS"}


def served(app: Flask) -> set[tuple[str, str]]:
    """(OpenAPI path, method) for every rule in the app's url_map."""
    operations = set()
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in (rule.methods or set()) - IMPLICIT_METHODS:
            operations.add((path, method))
    return operations


def documented(spec: dict[str, Any]) -> set[tuple[str, str]]:
    """(path, method) for every operation in the document."""
    return {
        (path, method.upper())
        for path, item in spec["paths"].items()
        for method in item
        if method != "parameters"
    }


def test_served_routes_and_documented_operations_are_the_same(
    app: Flask, client: FlaskClient
) -> None:
    spec = client.get("/api/v1/openapi.json").get_json()
    routes = served(app)
    assert routes - documented(spec) - excluded(routes) == set(), "served but not documented"
    assert documented(spec) - routes == set(), "documented but not served"


def test_every_exclusion_is_still_served_and_not_documented(
    app: Flask, client: FlaskClient
) -> None:
    spec = client.get("/api/v1/openapi.json").get_json()
    assert set(EXCLUDED) <= served(app), "an exclusion names a route that no longer exists"
    assert excluded(documented(spec)) == set(), "an excluded route is documented after all"
    for prefix in EXCLUDED_PREFIXES:
        assert any(path.startswith(prefix + "/") for path, _ in served(app)), prefix


def test_each_operation_is_tagged_with_its_blueprint(client: FlaskClient) -> None:
    spec = client.get("/api/v1/openapi.json").get_json()
    assert [t["name"] for t in spec["tags"]] == [
        "models",
        "deployments",
        "jobs",
        "datasets",
        "operations",
        "wml",
        "oip",
        "tfserving",
    ]
    tags = {
        (path, method): item[method]["tags"]
        for path, method in ((p, m.lower()) for p, m in documented(spec))
        for item in [spec["paths"][path]]
    }
    assert tags[("/api/v1/models", "post")] == ["models"]
    assert tags[("/api/v1/deployments/{deployment_id}/online", "post")] == ["deployments"]
    # A deployment's jobs are listed and submitted under the deployment, documented as jobs.
    assert tags[("/api/v1/deployments/{deployment_id}/jobs", "post")] == ["jobs"]
    assert tags[("/api/v1/deployments/{deployment_id}/jobs", "get")] == ["jobs"]
    assert tags[("/v3/wml_instances/{instance_id}/deployments/{deployment_id}/online", "post")] == [
        "wml"
    ]
    for path in ("/healthz", "/readyz", "/metrics"):
        assert tags[(path, "get")] == ["operations"]
    assert tags[("/v2/models/{name}/infer", "post")] == ["oip"]
    assert tags[("/v1/models/{name}:predict", "post")] == ["tfserving"]

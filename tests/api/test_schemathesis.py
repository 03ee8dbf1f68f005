"""schemathesis against kscore's own OpenAPI document (/api/v1/openapi.json, /v3 included):
no generated request, valid or not, gets a 5xx or an answer the document does not declare.

Each documented operation is one test, run in-process (WSGI) against the test's app with a
real API key of its instance. Path ids are, at Hypothesis' choice, random or the ids of a
model, deployment, job and WML asset stored for the test, so the checks reach past the 404.
"""

from __future__ import annotations

from base64 import b64encode
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api.app import create_app
from shared.instance_store import NewInstance
from shared.settings import Settings
from tests import keras_files as kf
from tests.helpers import store_model, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("worker")]

# The bound: examples per operation (40 operations: about 50 s in all on 2 cores, with the
# fixtures' deploy and job per test). No per-example deadline: a scoring request waits for the
# worker.
MAX_EXAMPLES = 25

# Their bodies are checked against what no schema can say: a model file's bytes, a dataset's
# file, and rows against the deployment's input signature. A well-formed body there can still be 400 or 422.
CONTENT_CHECKED = frozenset(
    {
        "POST /api/v1/models",
        "POST /api/v1/datasets",
        "POST /api/v1/deployments/{deployment_id}/online",
        "POST /api/v1/deployments/{deployment_id}/jobs",
        "PUT /v3/ml_assets/models/{model_id}/versions/{version_id}/content",
        "POST /v3/wml_instances/{instance_id}/deployments/{deployment_id}/online",
        "POST /v1/models/{name}:predict",
        "POST /v1/models/{name}/versions/{version}:predict",
        "POST /v2/models/{name}/infer",
        "POST /v2/models/{name}/versions/{version}/infer",
    }
)


class AppUnderTest:
    """The WSGI app schemathesis calls: the current test's app.

    The operations are collected from the document before any test runs (an app that never
    reaches its Redis serves it); each test then points this at its own app. (schemathesis's
    ``pytest.from_fixture`` would load the document from a fixture instead, but its lazy
    loader sets a private attribute pytest 9 no longer has.)
    """

    def __init__(self) -> None:
        self.app: Flask = create_app(Settings(redis_url="redis://127.0.0.1:1/0"))

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        return self.app(environ, start_response)  # type: ignore[no-any-return]


under_test = AppUnderTest()
schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", under_test)
# A request kscore refuses for its size (a body, a form field or more form parts than the
# limits allow) is rejected as surely as a malformed one: 413 rejects negative data too.
_rejection = schema.config.checks.negative_data_rejection
_rejection.expected_statuses = [*_rejection.expected_statuses, "413"]


@schema.auth(refresh_interval=None)  # type: ignore[untyped-decorator]
class InstanceCredentials:
    """The test instance's credentials, as each operation documents them: its WML username and
    password (Basic) for a token, its API key (Bearer) elsewhere. schemathesis leaves them out
    of the cases that test a request without credentials."""

    instance: NewInstance | None = None

    def get(self, case: Any, context: Any) -> NewInstance:
        assert InstanceCredentials.instance is not None
        return InstanceCredentials.instance

    def set(self, case: Any, data: NewInstance, context: Any) -> None:
        if case.method == "GET" and case.path.endswith("/identity/token"):
            basic = b64encode(f"{data.instance.username}:{data.password}".encode()).decode()
            case.headers["Authorization"] = f"Basic {basic}"
        else:
            case.headers["Authorization"] = f"Bearer {data.key.api_key}"


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kf.tf_keras_h5_file(tmp_path_factory.mktemp("schemathesis"))


@pytest.fixture
def stored(client: FlaskClient, instance: NewInstance, model_file: Path) -> dict[str, str]:
    """Ids of real things of the test's instance: path parameter name -> id."""
    model = store_model(client, model_file)
    created = client.post("/api/v1/deployments", json={"model_id": model["id"], "name": "d"})
    deployment_id = created.get_json()["id"]
    wait_for(
        lambda: (
            client.get(f"/api/v1/deployments/{deployment_id}").get_json()["status"]
            == "DEPLOY_SUCCESS"
        ),
        what="deployment",
    )
    job = client.post(
        f"/api/v1/deployments/{deployment_id}/jobs", json={"values": [[1, 2, 3, 4]]}
    ).get_json()
    wait_for(lambda: client.get(f"/api/v1/jobs/{job['id']}").get_json()["status"] == "completed")
    asset = client.post(
        "/v3/ml_assets/models", json={"name": "a", "framework": {"name": "tensorflow"}}
    ).get_json()
    return {
        "instance_id": instance.instance.id,
        "name": "d",  # the deployment's name: TensorFlow Serving's and KServe's model name
        "model_id": model["id"],
        "deployment_id": deployment_id,
        "job_id": job["id"],
        "asset_id": asset["metadata"]["guid"],
        "version_id": asset["entity"]["model_version"]["guid"],
    }


@pytest.fixture
def under_this_test(app: Flask, instance: NewInstance) -> None:
    """Point schemathesis at this test's app and credentials (before it draws any case)."""
    under_test.app = app
    InstanceCredentials.instance = instance


def use_stored_ids(case: Any, stored: dict[str, str]) -> None:
    """Put the stored ids in the case's path (a WML asset's id on /v3/ml_assets paths)."""
    path_parameters = case.path_parameters or {}
    for name in path_parameters:
        if name == "model_id" and case.path.startswith("/v3/ml_assets/"):
            path_parameters[name] = stored["asset_id"]
        elif name in stored:
            path_parameters[name] = stored[name]


@schema.parametrize()
@schema.given(real_ids=st.booleans())
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,  # nothing written to .hypothesis/: each run draws anew
    # Fixtures are per test, not per example: each example may see what the one before did.
    # filter_too_much: the dataset upload's raw body (five media types, no schema) leaves
    # Hypothesis few negative examples to draw, on some seeds too few.
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_every_operation_answers_as_documented(
    case: Any,
    real_ids: bool,
    under_this_test: None,
    stored: dict[str, str],
) -> None:
    if real_ids:
        use_stored_ids(case, stored)
    excluded = [positive_data_acceptance] if case.operation.label in CONTENT_CHECKED else []
    case.call_and_validate(excluded_checks=excluded)

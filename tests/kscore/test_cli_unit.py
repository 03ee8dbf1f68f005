"""The kscore CLI and client against ``httpx.MockTransport`` serving canned JSON.

The stub answers in the shapes the kscore API documents and records every request, so the tests
check both what is sent and what is printed. Requests to any other base URL fail as a closed
port would (``httpx.ConnectError``).
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import click
import httpx
import pytest
from click.testing import CliRunner, Result

from kscore import (
    ApiError,
    Client,
    ConflictError,
    DeploymentFailedError,
    JobFailedError,
    KscoreError,
    NotFoundError,
    PayloadTooLargeError,
    ServerError,
    TransportError,
    UnprocessableError,
    WaitTimeoutError,
)
from kscore.cli import CliContext, cli
from kscore.client import content_disposition_filename
from kscore.devstack import DEFAULT_QUEUES, api_command, child_env, public_url, worker_command
from kscore.localredis import free_port
from kscore.payloads import job_payload
from kscore.wml_output import format_result, rows_block, simple_table, wml_table
from shared.status import JobStatus

MODEL_ID = "91bdf650-bef5-49ff-95c9-b4dad233fe80"
MODEL_ID_2 = "bad97714-70b3-44c4-8cca-71fb85c2e74b"
DEP_ID = "41c4e3d8-295b-43f4-808a-367b61e15e9e"
JOB_ID = "5b2d3c1e-0000-4000-8000-000000000001"
CREATED = "2026-11-27T09:00:00.000Z"


# -- the stub server -----------------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-encoded unless bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Route = Callable[[Seen], Reply]


class Stub:
    """Canned answers per (method, path); a list of replies is served in order, the last repeats."""

    url = "http://kscore.test:8080"

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Route | list[Reply]] = {}
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self.transport = httpx.MockTransport(self._handle)

    def on(self, method: str, path: str, *replies: Reply, route: Route | None = None) -> None:
        self.routes[(method, path)] = route if route is not None else list(replies)

    def client(self, **kwargs: Any) -> Client:
        """A client of the stub."""
        return Client(self.url, transport=self.transport, **kwargs)

    def context(self) -> CliContext:
        """The CLI's context object, its clients talking to the stub."""
        return CliContext(transport=self.transport)

    def dispatch(self, seen: Seen) -> Reply:
        with self._lock:
            self.seen.append(seen)
            route = self.routes.get((seen.method, seen.path))
            if route is None:
                message = f"No route for {seen.method} {seen.path}."
                return Reply(404, {"error": {"code": "not_found", "message": message}})
            if callable(route):
                return route(seen)
            return route.pop(0) if len(route) > 1 else route[0]

    def requests(self, method: str, path: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method and s.path == path]

    def _handle(self, request: httpx.Request) -> httpx.Response:
        if not str(request.url).startswith(self.url + "/"):
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        seen = Seen(
            request.method,
            request.url.path,
            parse_qs(request.url.query.decode()),
            {k.lower(): v for k, v in request.headers.items()},
            request.read(),
        )
        reply = self.dispatch(seen)
        headers = dict(reply.headers)
        if isinstance(reply.body, bytes):
            content = reply.body
        elif reply.body is None:
            content = b""
        else:
            content = json.dumps(reply.body).encode()
            headers.setdefault("Content-Type", "application/json")
        return httpx.Response(reply.status, headers=headers, content=content)


@pytest.fixture
def stub() -> Stub:
    return Stub()


def run(stub: Stub, *args: str) -> Result:
    """Invoke the CLI against the stub, stdout and stderr kept apart."""
    return CliRunner().invoke(cli, ["--url", stub.url, *args], obj=stub.context())


# -- canned resources ----------------------------------------------------------------------


def model(model_id: str = MODEL_ID, name: str = "k_keras_seq_mnist") -> dict[str, Any]:
    return {
        "id": model_id,
        "name": name,
        "description": None,
        "framework": "keras",
        "format": "h5",
        "model_type": "keras-2.2.4",
        "keras_version": "2.2.4",
        "backend": "tensorflow",
        "model_class": "Sequential",
        "filename": "mnist.h5",
        "size_bytes": 1234,
        "sha256": "ab" * 32,
        "created_at": CREATED,
        "inputs": [{"name": "dense_input", "shape": [None, 784], "dtype": "float32"}],
        "outputs": [
            {"name": "dense_1", "shape": [None, 10], "dtype": "float32", "activation": "softmax"}
        ],
        "href": f"/api/v1/models/{model_id}",
        "content_url": f"/api/v1/models/{model_id}/content",
    }


def deployment(stub: Stub, status: str, error: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "id": DEP_ID,
        "name": "keras_test_dep",
        "description": None,
        "model_id": MODEL_ID,
        "model_sha256": "ab" * 32,
        "model_type": "keras-2.2.4",
        "type": "online",
        "status": status,
        "error": error,
        "created_at": CREATED,
        "updated_at": CREATED,
        "scoring_url": f"{stub.url}/api/v1/deployments/{DEP_ID}/online",
        "jobs_url": f"{stub.url}/api/v1/deployments/{DEP_ID}/jobs",
        "href": f"/api/v1/deployments/{DEP_ID}",
    }


def job(status: str, done: int = 0, total: int = 2, **extra: Any) -> dict[str, Any]:
    body = {
        "id": JOB_ID,
        "deployment_id": DEP_ID,
        "model_id": MODEL_ID,
        "model_sha256": "ab" * 32,
        "kind": "batch",
        "status": status,
        "progress": {"rows_done": done, "rows_total": total},
        "created_at": CREATED,
        "started_at": None,
        "finished_at": None,
        "expires_at": "2026-12-04T09:00:00.000Z",
        "error": None,
        "href": f"/api/v1/jobs/{JOB_ID}",
        "result_url": f"/api/v1/jobs/{JOB_ID}/result",
    }
    body.update(extra)
    return body


PREDICTION = [0.1] * 10
RESULT = {
    "fields": ["prediction", "prediction_classes", "probability"],
    "values": [[PREDICTION, 6, PREDICTION], [PREDICTION, 0, PREDICTION]],
}


def listing(resources: list[dict[str, Any]], next_href: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"resources": resources, "total": len(resources), "limit": 1000}
    body["offset"] = 0
    if next_href:
        body["next"] = {"href": next_href}
    return body


def envelope(code: str, message: str, **details: Any) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return {"error": error}


# -- output formats ------------------------------------------------------------------------


def test_wml_table_matches_the_bx_ml_sample() -> None:
    table = wml_table(
        ["SI No", "Model Id", "Model Type", "Model Name"],
        [[1, MODEL_ID, "tensorflow-1.5", "k_keras_seq_mnist_local_tar1"]],
    )
    assert table.splitlines() == [
        "SI No   Model Id                               Model Type       Model Name   ",
        f"1       {MODEL_ID}   tensorflow-1.5   k_keras_seq_mnist_local_tar1   ",
    ]


def test_rows_block_aligns_names_as_bx_ml_deploy_does() -> None:
    text = rows_block([("DeploymentId", DEP_ID), ("Scoring endpoint", "http://x"), ("Name", "n")])
    assert text.splitlines() == [
        f"DeploymentId       {DEP_ID}",
        "Scoring endpoint   http://x",
        "Name               n",
    ]


def test_simple_table_matches_the_python_client_sample() -> None:
    rows = [
        [MODEL_ID, "k_keras_seq_mnist_local_tar1", "tensorflow-1.5"],
        [MODEL_ID_2, "k2_keras_seq_mnist_local_tar", "tensorflow-1.5"],
    ]
    assert simple_table(["GUID", "NAME", "FRAMEWORK"], rows).splitlines() == [
        "------------------------------------  ----------------------------  --------------",
        "GUID                                  NAME                          FRAMEWORK",
        f"{MODEL_ID}  k_keras_seq_mnist_local_tar1  tensorflow-1.5",
        f"{MODEL_ID_2}  k2_keras_seq_mnist_local_tar  tensorflow-1.5",
        "------------------------------------  ----------------------------  --------------",
    ]


# -- list ----------------------------------------------------------------------------------


def test_list_models_follows_pages_and_prints_the_wml_table(stub: Stub) -> None:
    def models_page(seen: Seen) -> Reply:
        if seen.query.get("offset") == ["1"]:
            return Reply(body=listing([model(MODEL_ID_2, "second")]))
        return Reply(body=listing([model()], next_href=f"{stub.url}/api/v1/models?offset=1"))

    stub.on("GET", "/api/v1/models", route=models_page)
    result = run(stub, "list", "models")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "Fetching the list of models ...",
        "SI No   Model Id                               Model Type    Model Name   ",
        f"1       {MODEL_ID}   keras-2.2.4   k_keras_seq_mnist   ",
        f"2       {MODEL_ID_2}   keras-2.2.4   second   ",
        "",
        "2 records found.",
        "OK",
        "List models successful",
    ]
    assert len(stub.requests("GET", "/api/v1/models")) == 2


def test_list_models_when_there_are_none(stub: Stub) -> None:
    stub.on("GET", "/api/v1/models", Reply(body=listing([])))
    result = run(stub, "list", "models")
    assert result.exit_code == 0
    assert "0 records found." in result.stdout.splitlines()


def test_list_deployments_prints_the_wml_table(stub: Stub) -> None:
    stub.on("GET", "/api/v1/deployments", Reply(body=listing([deployment(stub, "DEPLOY_SUCCESS")])))
    result = run(stub, "list", "deployments")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "Fetching the list of deployments ..."
    assert re.split(r" {3,}", lines[1].strip()) == [
        "SI No",
        "Deployment Id",
        "Deployment Name",
        "Model Id",
        "Status",
    ]
    assert lines[2].split() == ["1", DEP_ID, "keras_test_dep", MODEL_ID, "DEPLOY_SUCCESS"]
    assert lines[3:] == ["", "1 records found.", "OK", "List deployments successful"]


# -- deploy --------------------------------------------------------------------------------


def test_deploy_waits_for_success_and_prints_the_rows(stub: Stub) -> None:
    stub.on(
        "POST",
        "/api/v1/deployments",
        Reply(
            202,
            deployment(stub, "DEPLOY_IN_PROGRESS"),
            {"Location": f"/api/v1/deployments/{DEP_ID}"},
        ),
    )
    stub.on(
        "GET",
        f"/api/v1/deployments/{DEP_ID}",
        Reply(body=deployment(stub, "DEPLOY_IN_PROGRESS")),
        Reply(body=deployment(stub, "DEPLOY_SUCCESS")),
    )
    result = run(stub, "deploy", MODEL_ID, "keras_test_dep", "--description", "d")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"Deploying the model with MODEL-ID '{MODEL_ID}'...",
        f"DeploymentId       {DEP_ID}",
        f"Scoring endpoint   {stub.url}/api/v1/deployments/{DEP_ID}/online",
        "Name               keras_test_dep",
        "Type               keras-2.2.4",
        "Runtime            None Provided",
        "Status             DEPLOY_SUCCESS",
        f"Created at         {CREATED}",
        "OK",
        "Deploy model successful",
    ]
    [post] = stub.requests("POST", "/api/v1/deployments")
    assert post.json() == {"model_id": MODEL_ID, "name": "keras_test_dep", "description": "d"}
    assert len(stub.requests("GET", f"/api/v1/deployments/{DEP_ID}")) == 2


def test_deploy_failure_prints_the_reason_and_exits_1(stub: Stub) -> None:
    failed = deployment(
        stub,
        "DEPLOY_FAILED",
        {"code": "unsafe_model", "message": "The model has a Lambda layer 'lambda_1'."},
    )
    stub.on("POST", "/api/v1/deployments", Reply(202, deployment(stub, "DEPLOY_IN_PROGRESS")))
    stub.on("GET", f"/api/v1/deployments/{DEP_ID}", Reply(body=failed))
    result = run(stub, "deploy", MODEL_ID, "keras_test_dep")
    assert result.exit_code == 1
    assert "Status             DEPLOY_FAILED" in result.stdout.splitlines()
    assert result.stderr == (
        f"Error: Deployment '{DEP_ID}' failed: The model has a Lambda layer 'lambda_1'. "
        "(unsafe_model)\n"
    )


def test_deploy_says_while_it_waits_that_no_worker_is_consuming(stub: Stub) -> None:
    message = (
        "No kscore worker is consuming the deploy queue: this waits until one starts "
        "(`kscore worker`, or `--queues deploy`)."
    )
    waiting = {
        **deployment(stub, "DEPLOY_IN_PROGRESS"),
        "warnings": [{"code": "no_worker", "queue": "deploy", "message": message}],
    }
    stub.on("POST", "/api/v1/deployments", Reply(202, waiting))
    stub.on(
        "GET",
        f"/api/v1/deployments/{DEP_ID}",
        Reply(body=waiting),
        Reply(body=waiting),
        Reply(body=deployment(stub, "DEPLOY_SUCCESS")),
    )
    result = run(stub, "deploy", MODEL_ID, "keras_test_dep", "-q")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{DEP_ID}\n"
    assert result.stderr == f"Waiting: {message}\n"  # said once, not on every poll


def test_deploy_no_wait_returns_the_accepted_deployment(stub: Stub) -> None:
    stub.on("POST", "/api/v1/deployments", Reply(202, deployment(stub, "DEPLOY_IN_PROGRESS")))
    result = run(stub, "deploy", MODEL_ID, "keras_test_dep", "--no-wait")
    assert result.exit_code == 0, result.output
    assert "Status             DEPLOY_IN_PROGRESS" in result.stdout.splitlines()
    assert stub.requests("GET", f"/api/v1/deployments/{DEP_ID}") == []


# -- score ---------------------------------------------------------------------------------


def _payload_file(tmp_path: Path, doc: Any) -> Path:
    path = tmp_path / "scoring_payload.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def test_score_posts_the_payload_and_prints_the_result(stub: Stub, tmp_path: Path) -> None:
    rows = [[0.0] * 784, [1.0] * 784]
    path = _payload_file(
        tmp_path, {"modelId": MODEL_ID, "deploymentId": DEP_ID, "payload": {"values": rows}}
    )
    stub.on("GET", f"/api/v1/deployments/{DEP_ID}", Reply(body=deployment(stub, "DEPLOY_SUCCESS")))
    stub.on("POST", f"/api/v1/deployments/{DEP_ID}/online", Reply(body=RESULT))
    result = run(stub, "score", str(path))
    assert result.exit_code == 0, result.output
    expected = [
        f"Fetching scoring results for the deployment '{DEP_ID}' ...",
        *format_result(RESULT).splitlines(),
        "OK",
        "Score request successful",
    ]
    assert result.stdout.splitlines() == expected
    [post] = stub.requests("POST", f"/api/v1/deployments/{DEP_ID}/online")
    assert post.json() == {"values": rows}


def test_score_waits_for_the_job_when_the_server_answers_202(stub: Stub, tmp_path: Path) -> None:
    path = _payload_file(tmp_path, {"deploymentId": DEP_ID, "payload": {"values": [[1], [2]]}})
    stub.on("GET", f"/api/v1/deployments/{DEP_ID}", Reply(body=deployment(stub, "DEPLOY_SUCCESS")))
    stub.on(
        "POST",
        f"/api/v1/deployments/{DEP_ID}/online",
        Reply(202, job("queued", kind="online"), {"Location": f"/api/v1/jobs/{JOB_ID}"}),
    )
    stub.on(
        "GET",
        f"/api/v1/jobs/{JOB_ID}",
        Reply(body=job("running", 1)),
        Reply(body=job("completed", 2)),
    )
    stub.on("GET", f"/api/v1/jobs/{JOB_ID}/result", Reply(body=RESULT))
    result = run(stub, "score", str(path), "--timeout", "0.5")
    assert result.exit_code == 0, result.output
    assert format_result(RESULT) in result.stdout
    [post] = stub.requests("POST", f"/api/v1/deployments/{DEP_ID}/online")
    assert post.query == {"timeout": ["0.5"]}


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"modelId": MODEL_ID, "payload": {"values": []}}, 'missing the key "deploymentId"'),
        ({"deploymentId": DEP_ID}, 'missing the key "payload"'),
        ({"deploymentId": DEP_ID, "payload": {"rows": []}}, 'is missing the key "values"'),
        ({"deploymentId": DEP_ID, "payload": {"values": 3}}, '"values" must be a list'),
        ({"deploymentId": 7, "payload": {"values": []}}, '"deploymentId" must be a non-empty'),
        ([1, 2], "must hold a JSON object"),
        ('{"deploymentId": ', "is not valid JSON"),
    ],
)
def test_score_rejects_a_malformed_payload_file(
    stub: Stub, tmp_path: Path, doc: Any, expected: str
) -> None:
    path = _payload_file(tmp_path, doc)
    result = run(stub, "score", str(path))
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ")
    assert expected in result.stderr
    assert stub.seen == []


def test_score_checks_the_model_id_against_the_deployment(stub: Stub, tmp_path: Path) -> None:
    path = _payload_file(
        tmp_path, {"modelId": MODEL_ID_2, "deploymentId": DEP_ID, "payload": {"values": [[1]]}}
    )
    stub.on("GET", f"/api/v1/deployments/{DEP_ID}", Reply(body=deployment(stub, "DEPLOY_SUCCESS")))
    result = run(stub, "score", str(path))
    assert result.exit_code == 1
    assert f"modelId '{MODEL_ID_2}'" in result.stderr
    assert stub.requests("POST", f"/api/v1/deployments/{DEP_ID}/online") == []


def test_score_a_deployment_id_with_a_bare_rows_file(stub: Stub, tmp_path: Path) -> None:
    rows = [[0.5, 1.5], [2.5, 3.5]]
    path = _payload_file(tmp_path, {"values": rows})
    stub.on("GET", f"/api/v1/deployments/{DEP_ID}", Reply(body=deployment(stub, "DEPLOY_SUCCESS")))
    stub.on("POST", f"/api/v1/deployments/{DEP_ID}/online", Reply(body=RESULT))
    result = run(stub, "score", DEP_ID, str(path))
    assert result.exit_code == 0, result.output
    assert (
        result.stdout.splitlines()[0]
        == f"Fetching scoring results for the deployment '{DEP_ID}' ..."
    )
    assert format_result(RESULT) in result.stdout
    [post] = stub.requests("POST", f"/api/v1/deployments/{DEP_ID}/online")
    assert post.json() == {"values": rows}


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"rows": [[1]]}, 'is missing the key "values"'),
        ({"deploymentId": MODEL_ID, "payload": {"values": [[1]]}}, "differs from DEPLOYMENT_ID"),
        ("[1, ", "is not valid JSON"),
    ],
)
def test_score_a_deployment_id_refuses_a_wrong_rows_file(
    stub: Stub, tmp_path: Path, doc: Any, expected: str
) -> None:
    result = run(stub, "score", DEP_ID, str(_payload_file(tmp_path, doc)))
    assert result.exit_code == 1
    assert expected in result.stderr
    assert stub.seen == []


def test_score_of_a_missing_file(stub: Stub, tmp_path: Path) -> None:
    result = run(stub, "score", str(tmp_path / "nope.json"))
    assert result.exit_code == 1
    assert "Cannot read" in result.stderr


# -- errors --------------------------------------------------------------------------------


def test_api_errors_print_message_and_code_on_stderr(stub: Stub) -> None:
    stub.on(
        "GET",
        "/api/v1/models/nope",
        Reply(404, envelope("model_not_found", "No model with id 'nope'.", model_id="nope")),
    )
    result = run(stub, "models", "get", "nope")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == "Error: No model with id 'nope'. (model_not_found)\n"


def test_conflict_on_delete_of_a_model_in_use(stub: Stub) -> None:
    message = "Model is used by deployment 'x'; delete the deployment first."
    stub.on("DELETE", f"/api/v1/models/{MODEL_ID}", Reply(409, envelope("model_in_use", message)))
    result = run(stub, "models", "delete", MODEL_ID)
    assert result.exit_code == 1
    assert result.stderr == f"Error: {message} (model_in_use)\n"


def test_transport_error_names_the_url_and_how_to_start_the_server() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(cli, ["--url", url, "list", "models"])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: Could not connect to kscore at {url}/api/v1/models")
    assert "make run" in result.stderr
    assert "kscore up" in result.stderr
    assert "Traceback" not in result.output


def test_url_comes_from_the_environment(stub: Stub) -> None:
    stub.on("GET", "/api/v1/models", Reply(body=listing([])))
    result = CliRunner(env={"KSCORE_URL": stub.url}).invoke(
        cli, ["list", "models"], obj=stub.context()
    )
    assert result.exit_code == 0, result.output
    assert len(stub.seen) == 1


# -- models --------------------------------------------------------------------------------


def test_models_store_uploads_the_file_and_prints_key_fields(stub: Stub, tmp_path: Path) -> None:
    path = tmp_path / "mnist.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    stub.on(
        "POST",
        "/api/v1/models",
        Reply(201, model(), {"Location": f"/api/v1/models/{MODEL_ID}"}),
    )
    result = run(stub, "models", "store", str(path), "--name", "mnist", "--description", "d")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "Storing the model 'mnist.h5' ..."
    assert f"ModelId       {MODEL_ID}" in lines
    assert "Model Type    keras-2.2.4" in lines
    assert "Inputs        dense_input [null, 784] float32" in lines
    assert "Outputs       dense_1 [null, 10] float32 softmax" in lines
    assert lines[-2:] == ["OK", "Store model successful"]
    [post] = stub.requests("POST", "/api/v1/models")
    assert post.headers["content-type"].startswith("multipart/form-data")
    assert b'name="file"; filename="mnist.h5"' in post.body
    assert b'name="name"\r\n\r\nmnist' in post.body
    assert b'name="description"\r\n\r\nd' in post.body
    assert path.read_bytes() in post.body


def test_models_get_prints_json(stub: Stub) -> None:
    stub.on("GET", f"/api/v1/models/{MODEL_ID}", Reply(body=model()))
    result = run(stub, "models", "get", MODEL_ID)
    assert result.exit_code == 0
    assert json.loads(result.stdout) == model()


def test_models_download_uses_the_served_filename(stub: Stub, tmp_path: Path) -> None:
    content = os.urandom(70_000)
    stub.on(
        "GET",
        f"/api/v1/models/{MODEL_ID}/content",
        Reply(body=content, headers={"Content-Disposition": 'attachment; filename="../mnist.h5"'}),
    )
    result = run(stub, "models", "download", MODEL_ID, "-o", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "mnist.h5").read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnist.h5"]

    target = tmp_path / "copy.h5"
    result = run(stub, "models", "download", MODEL_ID, "--output", str(target))
    assert result.exit_code == 0
    assert target.read_bytes() == content

    result = run(stub, "models", "download", MODEL_ID, "-o", f"{tmp_path}/new/")
    assert result.exit_code == 0
    assert (tmp_path / "new" / "mnist.h5").read_bytes() == content


def test_models_download_of_an_unknown_model(stub: Stub, tmp_path: Path) -> None:
    result = run(stub, "models", "download", "nope", "-o", str(tmp_path))
    assert result.exit_code == 1
    assert "(not_found)" in result.stderr
    assert list(tmp_path.iterdir()) == []


# -- deployments ---------------------------------------------------------------------------


def test_deployments_get_and_delete(stub: Stub) -> None:
    stub.on("GET", f"/api/v1/deployments/{DEP_ID}", Reply(body=deployment(stub, "DEPLOY_SUCCESS")))
    stub.on("DELETE", f"/api/v1/deployments/{DEP_ID}", Reply(204))
    result = run(stub, "deployments", "get", DEP_ID)
    assert result.exit_code == 0
    assert json.loads(result.stdout)["status"] == "DEPLOY_SUCCESS"
    result = run(stub, "deployments", "delete", DEP_ID)
    assert result.exit_code == 0
    assert result.stdout.splitlines()[-1] == "Delete deployment successful"
    assert len(stub.requests("DELETE", f"/api/v1/deployments/{DEP_ID}")) == 1


# -- jobs ----------------------------------------------------------------------------------


def test_jobs_submit_wait_then_result(stub: Stub, tmp_path: Path) -> None:
    rows_file = tmp_path / "rows.json"
    rows_file.write_text(json.dumps({"values": [[1], [2]]}))
    stub.on("POST", f"/api/v1/deployments/{DEP_ID}/jobs", Reply(202, job("queued")))
    stub.on(
        "GET",
        f"/api/v1/jobs/{JOB_ID}",
        Reply(body=job("running", 1)),
        Reply(body=job("completed", 2, finished_at=CREATED)),
    )
    stub.on("GET", f"/api/v1/jobs/{JOB_ID}/result", Reply(body=RESULT))

    result = run(stub, "jobs", "submit", DEP_ID, str(rows_file), "--retention-days", "3", "--wait")
    assert result.exit_code == 0, result.output
    assert f"JobId           {JOB_ID}" in result.stdout.splitlines()
    assert f"Job '{JOB_ID}' completed: 2/2 rows." in result.stdout
    assert result.stdout.splitlines()[-2:] == ["OK", "Submit job successful"]
    [post] = stub.requests("POST", f"/api/v1/deployments/{DEP_ID}/jobs")
    assert post.json() == {"values": [[1], [2]], "retention_days": 3}

    out = tmp_path / "out.json"
    result = run(stub, "jobs", "result", JOB_ID, "-o", str(out))
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text()) == RESULT
    result = run(stub, "jobs", "result", JOB_ID)
    assert json.loads(result.stdout) == RESULT


def test_jobs_submit_accepts_a_wml_payload_for_the_same_deployment(
    stub: Stub, tmp_path: Path
) -> None:
    doc = {"modelId": MODEL_ID, "deploymentId": DEP_ID, "payload": {"values": [[3]]}}
    path = _payload_file(tmp_path, doc)
    stub.on("POST", f"/api/v1/deployments/{DEP_ID}/jobs", Reply(202, job("queued")))
    result = run(stub, "jobs", "submit", DEP_ID, str(path))
    assert result.exit_code == 0, result.output
    [post] = stub.requests("POST", f"/api/v1/deployments/{DEP_ID}/jobs")
    assert post.json() == {"values": [[3]]}

    result = run(stub, "jobs", "submit", "other-deployment", str(path))
    assert result.exit_code == 1
    assert "differs from DEPLOYMENT_ID" in result.stderr


def test_jobs_wait_exits_1_when_the_job_failed(stub: Stub) -> None:
    failed = job("failed", 1, error={"code": "scoring_failed", "message": "Input shape mismatch."})
    stub.on("GET", f"/api/v1/jobs/{JOB_ID}", Reply(body=job("running", 1)), Reply(body=failed))
    result = run(stub, "jobs", "wait", JOB_ID)
    assert result.exit_code == 1
    assert f"Error: Job '{JOB_ID}' failed: Input shape mismatch. (scoring_failed)" in result.stderr


def test_jobs_wait_exits_1_when_the_job_was_canceled(stub: Stub) -> None:
    stub.on("GET", f"/api/v1/jobs/{JOB_ID}", Reply(body=job("canceled", 0)))
    result = run(stub, "jobs", "wait", JOB_ID)
    assert result.exit_code == 1
    assert "was canceled" in result.stderr


def test_jobs_status_cancel_and_list(stub: Stub) -> None:
    stub.on("GET", f"/api/v1/jobs/{JOB_ID}", Reply(body=job("running", 1)))
    stub.on("DELETE", f"/api/v1/jobs/{JOB_ID}", Reply(body=job("canceled", 1)))
    stub.on("GET", "/api/v1/jobs", Reply(body=listing([job("running", 1)])))

    result = run(stub, "jobs", "status", JOB_ID)
    assert result.exit_code == 0
    assert "Status          running" in result.stdout.splitlines()
    assert "Progress        1/2 rows" in result.stdout.splitlines()
    result = run(stub, "jobs", "status", JOB_ID, "--json")
    assert json.loads(result.stdout)["status"] == "running"

    result = run(stub, "jobs", "cancel", JOB_ID)
    assert result.exit_code == 0
    assert "Status          canceled" in result.stdout.splitlines()

    result = run(stub, "jobs", "list", "--deployment-id", DEP_ID, "--status", "running")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1].startswith("SI No   Job Id")
    assert lines[2].split()[:6] == ["1", JOB_ID, DEP_ID, "batch", "running", "1/2"]
    assert lines[-3:] == ["1 records found.", "OK", "List jobs successful"]
    [listed] = stub.requests("GET", "/api/v1/jobs")
    assert listed.query["deployment_id"] == [DEP_ID]
    assert listed.query["status"] == ["running"]


# -- help ----------------------------------------------------------------------------------


def _command_paths(group: click.Group = cli, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = [prefix]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            paths += _command_paths(command, (*prefix, name))
        else:
            paths.append((*prefix, name))
    return paths


def _command(path: tuple[str, ...]) -> click.Command:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


@pytest.mark.parametrize("path", _command_paths(), ids=lambda p: " ".join(p) or "kscore")
def test_every_command_has_help_that_says_what_it_does(path: tuple[str, ...]) -> None:
    command = _command(path)
    assert command.help, f"kscore {' '.join(path)} has no help text"
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: ")
    first_line = command.help.strip().splitlines()[0]
    assert " ".join(first_line.split()) in " ".join(result.stdout.split())


def test_the_expected_verbs_exist() -> None:
    assert set(_command_paths()) >= {
        ("models", "store"),
        ("models", "get"),
        ("models", "delete"),
        ("models", "download"),
        ("list", "models"),
        ("list", "deployments"),
        ("deploy",),
        ("score",),
        ("deployments", "get"),
        ("deployments", "delete"),
        ("jobs", "submit"),
        ("jobs", "status"),
        ("jobs", "wait"),
        ("jobs", "result"),
        ("jobs", "cancel"),
        ("jobs", "list"),
        ("worker",),
        ("api",),
        ("up",),
    }


def test_jobs_list_offers_exactly_the_job_statuses() -> None:
    jobs_list = _command(("jobs", "list"))
    [status] = [p for p in jobs_list.params if p.name == "status"]
    assert isinstance(status.type, click.Choice)
    assert list(status.type.choices) == [s.value for s in JobStatus]


# -- the client on its own -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, ApiError),
        (404, NotFoundError),
        (409, ConflictError),
        (413, PayloadTooLargeError),
        (422, UnprocessableError),
        (500, ServerError),
        (503, ServerError),
    ],
)
def test_error_statuses_map_to_exception_classes(
    stub: Stub, status: int, cls: type[ApiError]
) -> None:
    body = envelope("some_code", "A sentence.", field=["bad"])
    stub.on("GET", f"/api/v1/models/{MODEL_ID}", Reply(status, body))
    with stub.client() as client, pytest.raises(cls) as caught:
        client.repository.get_details(MODEL_ID)
    assert type(caught.value) is cls
    assert (caught.value.status, caught.value.code) == (status, "some_code")
    assert caught.value.details == {"field": ["bad"]}
    assert str(caught.value) == "A sentence. (some_code)"


def test_a_non_envelope_error_body_still_raises_with_an_excerpt(stub: Stub) -> None:
    stub.on("GET", "/healthz", Reply(502, b"<html><body>Bad gateway</body></html>"))
    with stub.client() as client, pytest.raises(ServerError) as caught:
        client.health()
    assert caught.value.code == "http_502"
    assert "Bad gateway" in caught.value.message


def test_client_url_defaults_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KSCORE_URL", "http://example.invalid:9/")
    assert Client().url == "http://example.invalid:9"
    monkeypatch.delenv("KSCORE_URL")
    assert Client().url == "http://127.0.0.1:8080"


def test_transport_error_is_a_kscore_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with Client(url, timeout=2) as client, pytest.raises(TransportError) as caught:
        client.deployments.get_details(DEP_ID)
    assert isinstance(caught.value, KscoreError)
    assert caught.value.url == f"{url}/api/v1/deployments/{DEP_ID}"


def test_list_models_limit_stops_paging(stub: Stub) -> None:
    def page(seen: Seen) -> Reply:
        offset = int(seen.query.get("offset", ["0"])[0])
        href = f"{stub.url}/api/v1/models?limit=1&offset={offset + 1}"
        return Reply(body=listing([model(f"m{offset}")], next_href=href))

    stub.on("GET", "/api/v1/models", route=page)
    with stub.client() as client:
        found = client.repository.list_models(limit=3)
    assert [m["id"] for m in found] == ["m0", "m1", "m2"]
    assert stub.seen[0].query["limit"] == ["3"]
    assert len(stub.seen) == 3


def test_repository_list_prints_guid_name_framework(
    stub: Stub, capsys: pytest.CaptureFixture[str]
) -> None:
    stub.on("GET", "/api/v1/models", Reply(body=listing([model()])))
    with stub.client() as client:
        client.repository.list()
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["GUID", "NAME", "FRAMEWORK"]
    assert lines[2].split() == [MODEL_ID, "k_keras_seq_mnist", "keras-2.2.4"]
    assert lines[0] == lines[-1] and set(lines[0]) == {"-", " "}


def test_deployment_create_gives_up_after_its_timeout(stub: Stub) -> None:
    stub.on("POST", "/api/v1/deployments", Reply(202, deployment(stub, "DEPLOY_IN_PROGRESS")))
    stub.on(
        "GET", f"/api/v1/deployments/{DEP_ID}", Reply(body=deployment(stub, "DEPLOY_IN_PROGRESS"))
    )
    started = time.monotonic()
    with stub.client() as client, pytest.raises(WaitTimeoutError):
        client.deployments.create(MODEL_ID, "n", timeout=0.5)
    assert time.monotonic() - started < 3


def test_deployment_failed_carries_the_details(stub: Stub) -> None:
    failed = deployment(stub, "DEPLOY_FAILED", {"code": "load_failed", "message": "Bad file."})
    stub.on("POST", "/api/v1/deployments", Reply(202, failed))
    stub.on("GET", f"/api/v1/deployments/{DEP_ID}", Reply(body=failed))
    with stub.client() as client, pytest.raises(DeploymentFailedError) as caught:
        client.deployments.create(MODEL_ID, "n")
    assert caught.value.deployment["status"] == "DEPLOY_FAILED"
    assert caught.value.code == "load_failed"


def test_jobs_wait_reports_progress_changes(stub: Stub) -> None:
    stub.on(
        "GET",
        f"/api/v1/jobs/{JOB_ID}",
        Reply(body=job("queued", 0, 4)),
        Reply(body=job("running", 2, 4)),
        Reply(body=job("running", 2, 4)),
        Reply(body=job("completed", 4, 4)),
    )
    seen: list[tuple[int, int]] = []
    with stub.client() as client:
        final = client.jobs.wait(JOB_ID, timeout=30, on_progress=lambda d, t: seen.append((d, t)))
    assert final["status"] == "completed"
    assert seen == [(0, 4), (2, 4), (4, 4)]


def test_jobs_wait_raises_job_failed(stub: Stub) -> None:
    failed = job("failed", 0, error={"code": "worker_lost", "message": "The worker died."})
    stub.on("GET", f"/api/v1/jobs/{JOB_ID}", Reply(body=failed))
    with stub.client() as client, pytest.raises(JobFailedError) as caught:
        client.jobs.wait(JOB_ID)
    assert caught.value.status == "failed"
    assert caught.value.code == "worker_lost"


def test_jobs_submit_wraps_plain_rows(stub: Stub) -> None:
    stub.on("POST", f"/api/v1/deployments/{DEP_ID}/jobs", Reply(202, job("queued")))
    with stub.client() as client:
        assert client.jobs.submit(DEP_ID, [[1, 2]], retention_days=1)["id"] == JOB_ID
    assert stub.seen[0].json() == {"values": [[1, 2]], "retention_days": 1}


def test_job_payload_shapes() -> None:
    class Array:
        def tolist(self) -> list[list[int]]:
            return [[1]]

    assert job_payload([[1], [2]]) == {"values": [[1], [2]]}
    assert job_payload(Array()) == {"values": [[1]]}
    assert job_payload({"inputs": {"a": [[1]]}}) == {"inputs": {"a": [[1]]}}
    assert job_payload({"deploymentId": "d", "payload": {"values": [[1]]}}) == {"values": [[1]]}
    with pytest.raises(KscoreError):
        job_payload({"rows": []})
    with pytest.raises(KscoreError):
        job_payload("1,2,3")


def test_content_disposition_filenames_are_reduced_to_a_base_name() -> None:
    def name(value: str) -> str | None:
        return content_disposition_filename(httpx.Headers({"Content-Disposition": value}))

    assert name('attachment; filename="model.h5"') == "model.h5"
    assert name("attachment; filename=model.h5") == "model.h5"
    assert name("attachment; filename*=UTF-8''mod%C3%A8le.h5") == "modèle.h5"
    assert name('attachment; filename="../../etc/passwd"') == "passwd"
    assert name('attachment; filename=".."') is None
    assert name("attachment") is None


# -- server processes ----------------------------------------------------------------------


def test_process_commands() -> None:
    assert worker_command("deploy,online", 3, node_name="worker1@%h")[1:] == [
        "-m", "celery", "-A", "workers.main", "worker", "-Q", "deploy,online",
        "--concurrency", "3", "-n", "worker1@%h", "--loglevel", "INFO",
    ]  # fmt: skip
    assert api_command("0.0.0.0", 9000, 2)[1:] == [
        "-m", "gunicorn", "-b", "0.0.0.0:9000", "-w", "2", "-k", "gthread", "--threads", "32",
        "--timeout", "120", "--access-logfile", "-", "api.wsgi:app",
    ]  # fmt: skip
    assert public_url("0.0.0.0", 9000) == "http://127.0.0.1:9000"
    assert public_url("::1", 9000) == "http://[::1]:9000"
    env = child_env(
        "redis://127.0.0.1:1/0",
        Path("/d"),
        "http://h:1",
        {"KSCORE_LOG_LEVEL": "DEBUG", "KSCORE_REDIS_URL": "old", "PATH": "/bin"},
    )
    assert env["KSCORE_LOG_LEVEL"] == "DEBUG"
    assert env["PATH"] == "/bin"
    assert env["KSCORE_REDIS_URL"] == "redis://127.0.0.1:1/0"
    assert env["KSCORE_DATA_DIR"] == "/d"
    assert env["KSCORE_PUBLIC_URL"] == "http://h:1"
    assert "KSCORE_TF_THREADS" not in env
    shared = child_env("redis://r", Path("/d"), "http://h:1", {}, workers=64)
    assert shared["KSCORE_TF_THREADS"] == "1"
    chosen = child_env("redis://r", Path("/d"), "http://h:1", {"KSCORE_TF_THREADS": "3"}, workers=2)
    assert chosen["KSCORE_TF_THREADS"] == "3"


def test_up_refuses_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(
            cli, ["up", "--port", str(port), "--data-dir", str(tmp_path / "data")]
        )
    assert result.exit_code == 1
    assert "already in use" in result.stderr
    assert not (tmp_path / "data").exists()


def test_format_result_prints_one_line_per_row_as_wml_did() -> None:
    text = format_result(
        {
            "fields": ["prediction", "prediction_classes", "probability"],
            "values": [[[0.1, 0.9], 1, [0.1, 0.9]], [[0.8, 0.2], 0, [0.8, 0.2]]],
        }
    )
    assert text.splitlines() == [
        "{",
        '    "fields": ["prediction", "prediction_classes", "probability"],',
        '    "values": [',
        "        [[0.1, 0.9], 1, [0.1, 0.9]],",
        "        [[0.8, 0.2], 0, [0.8, 0.2]]",
        "    ]",
        "}",
    ]
    assert json.loads(text)["values"][1][1] == 0


def test_default_queues_put_online_work_first() -> None:
    from shared.queueing import ALL_QUEUES

    assert DEFAULT_QUEUES.split(",") == list(ALL_QUEUES)
    assert worker_command()[worker_command().index("-Q") + 1] == "online,deploy,batch"

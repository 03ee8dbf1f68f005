"""The OpenAPI 3 document, generated from the marshmallow schemas in api.schemas."""

from __future__ import annotations

from functools import cache
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema

from api import schemas as s

_ERR = {"content": {"application/json": {"schema": "Error"}}}


def _json(schema: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _resp(status: int, description: str, schema: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"description": description}
    if schema:
        body.update(_json(schema))
    return {str(status): body}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Malformed request or unsupported file.",
        404: "Unknown id.",
        409: "Conflicts with the resource's state.",
        413: "Too large.",
        422: "Invalid fields or rows; details name them.",
        503: "Redis or the broker is unreachable.",
    }
    return {str(c): {"description": text[c], **_ERR} for c in codes}


_BINARY = {"schema": {"type": "string", "format": "binary"}}


def _rows_body(schema: str) -> dict[str, Any]:
    """JSON rows, or the same rows as a .npy (one input) or .npz (arrays named by input)."""
    return {
        "required": True,
        "description": "JSON, or numpy's own format: a .npy body for a one-input model, or a "
        ".npz holding one array per input, named by input (never pickled objects).",
        "content": {
            "application/json": {"schema": schema},
            "application/x-npy": _BINARY,
            "application/x-npz": _BINARY,
        },
    }


def _id(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string", "format": "uuid"},
    }


def _q(schema: type | Schema) -> dict[str, Any]:
    return {"in": "query", "schema": schema}


@cache
def build_spec() -> dict[str, Any]:
    """The whole document as a dict (built once per process)."""
    spec = APISpec(
        title="kscore",
        version="0.1.0",
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
        info={
            "description": (
                "Self-hosted scoring for Keras models, speaking IBM WML v3's Keras shapes. "
                'Every error is {"error": {"code", "message", "details"}}.'
            )
        },
    )
    for name, schema in [
        ("Error", s.ErrorSchema),
        ("Model", s.ModelSchema),
        ("ModelList", s.ModelListSchema),
        ("Deployment", s.DeploymentSchema),
        ("DeploymentList", s.DeploymentListSchema),
        ("DeploymentCreate", s.DeploymentCreateSchema),
        ("ScoringPayload", s.ScoringPayloadSchema),
        ("ScoringResult", s.ScoringResultSchema),
        ("JobCreate", s.JobCreateSchema),
        ("Job", s.JobSchema),
        ("JobList", s.JobListSchema),
    ]:
        spec.components.schema(name, schema=schema)

    model_id, dep_id, job_id = _id("model_id"), _id("deployment_id"), _id("job_id")
    spec.path(
        path="/api/v1/models",
        operations={
            "post": {
                "summary": "Store a Keras model file",
                "description": "Accepts .h5, .hdf5, .keras, or a .tar.gz/.tgz/.zip holding exactly one. "
                "Inspected without loading; unsafe layers (Lambda, custom classes) are refused.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["file", "name"],
                                "properties": {
                                    "file": {"type": "string", "format": "binary"},
                                    "name": {"type": "string", "minLength": 1, "maxLength": 128},
                                    "description": {"type": "string"},
                                },
                            }
                        }
                    },
                },
                "responses": {**_resp(201, "Stored.", "Model"), **_errors(400, 413, 422)},
            },
            "get": {
                "summary": "List models, newest first",
                "parameters": [_q(s.PageQuerySchema)],
                "responses": {**_resp(200, "A page of models.", "ModelList"), **_errors(422)},
            },
        },
    )
    spec.path(
        path="/api/v1/models/{model_id}",
        parameters=[model_id],
        operations={
            "get": {
                "summary": "One model",
                "responses": {**_resp(200, "The model.", "Model"), **_errors(404)},
            },
            "delete": {
                "summary": "Delete a model",
                "responses": {"204": {"description": "Deleted."}, **_errors(404, 409)},
            },
        },
    )
    spec.path(
        path="/api/v1/models/{model_id}/content",
        parameters=[model_id],
        operations={
            "get": {
                "summary": "Download the original file",
                "responses": {
                    "200": {
                        "description": "The bytes as uploaded.",
                        "content": {
                            "application/octet-stream": {
                                "schema": {"type": "string", "format": "binary"}
                            }
                        },
                    },
                    **_errors(404),
                },
            },
        },
    )
    spec.path(
        path="/api/v1/deployments",
        operations={
            "post": {
                "summary": "Deploy a model",
                "description": "202 in DEPLOY_IN_PROGRESS; poll until DEPLOY_SUCCESS or DEPLOY_FAILED.",
                "requestBody": {"required": True, **_json("DeploymentCreate")},
                "responses": {
                    **_resp(202, "Deploying.", "Deployment"),
                    **_errors(400, 404, 422, 503),
                },
            },
            "get": {
                "summary": "List deployments",
                "parameters": [_q(s.DeploymentQuerySchema)],
                "responses": {
                    **_resp(200, "A page of deployments.", "DeploymentList"),
                    **_errors(422),
                },
            },
        },
    )
    spec.path(
        path="/api/v1/deployments/{deployment_id}",
        parameters=[dep_id],
        operations={
            "get": {
                "summary": "One deployment",
                "responses": {**_resp(200, "The deployment.", "Deployment"), **_errors(404)},
            },
            "delete": {
                "summary": "Delete a deployment",
                "responses": {"204": {"description": "Deleted."}, **_errors(404)},
            },
        },
    )
    scoring_errors = _errors(400, 404, 409, 413, 422, 503)
    spec.path(
        path="/api/v1/deployments/{deployment_id}/online",
        parameters=[dep_id],
        operations={
            "post": {
                "summary": "Score rows online",
                "description": 'Rows as {"values": [...]} (WML v3). Multi-input models: each row lists one entry per input in model order, or send {"inputs": {name: rows}}. Multi-output models: each field of a row is an object keyed by output name. Waits up to `timeout` seconds (default KSCORE_ONLINE_TIMEOUT), then answers 202 with the job.',
                "parameters": [_q(s.OnlineQuerySchema)],
                "requestBody": _rows_body("ScoringPayload"),
                "responses": {
                    **_resp(200, "Predictions, one row per input row.", "ScoringResult"),
                    **_resp(202, "Still running: poll the job in Location.", "Job"),
                    **scoring_errors,
                    "500": {"description": "The model failed on these rows.", **_ERR},
                },
            },
        },
    )
    spec.path(
        path="/api/v1/deployments/{deployment_id}/jobs",
        parameters=[dep_id],
        operations={
            "post": {
                "summary": "Submit a batch job",
                "parameters": [_q(s.JobSubmitQuerySchema)],
                "requestBody": _rows_body("JobCreate"),
                "responses": {
                    **_resp(202, "Queued; Location is the job.", "Job"),
                    **scoring_errors,
                },
            },
            "get": {
                "summary": "This deployment's jobs, newest first",
                "parameters": [_q(s.JobQuerySchema(exclude=("deployment_id",)))],
                "responses": {**_resp(200, "A page of jobs.", "JobList"), **_errors(404, 422)},
            },
        },
    )
    spec.path(
        path="/api/v1/jobs",
        operations={
            "get": {
                "summary": "List jobs",
                "parameters": [_q(s.JobQuerySchema)],
                "responses": {**_resp(200, "A page of jobs.", "JobList"), **_errors(422)},
            },
        },
    )
    spec.path(
        path="/api/v1/jobs/{job_id}",
        parameters=[job_id],
        operations={
            "get": {
                "summary": "Job status and progress",
                "responses": {**_resp(200, "The job.", "Job"), **_errors(404)},
            },
            "delete": {
                "summary": "Cancel a job",
                "description": "A running job stops between chunks.",
                "responses": {**_resp(200, "Canceled.", "Job"), **_errors(404, 409)},
            },
        },
    )
    spec.path(
        path="/api/v1/jobs/{job_id}/result",
        parameters=[job_id],
        operations={
            "get": {
                "summary": "Result of a completed job",
                "responses": {
                    **_resp(200, "Same body as online scoring.", "ScoringResult"),
                    **_errors(404, 409),
                },
            },
        },
    )
    for path, summary in [
        ("/healthz", "API up and Redis reachable"),
        ("/readyz", "A worker is consuming"),
        ("/metrics", "Prometheus metrics"),
    ]:
        spec.path(
            path=path,
            operations={
                "get": {
                    "summary": summary,
                    "responses": {
                        "200": {"description": "OK."},
                        "503": {"description": "Not ready.", **_ERR},
                    },
                }
            },
        )
    document = spec.to_dict()
    for path, operations in document["paths"].items():
        tag = _tag(path)
        for name, operation in operations.items():
            if name != "parameters":
                operation["tags"] = [tag]
    document["tags"] = [{"name": name, "description": text} for name, text in _TAGS.items()]
    return document


_TAGS = {
    "models": "The model repository: Keras files, inspected and stored.",
    "deployments": "Deployed models and online scoring.",
    "jobs": "Batch scoring jobs: status, progress, results, cancellation.",
    "operations": "Health, readiness and metrics.",
}


def _tag(path: str) -> str:
    for name in ("models", "deployments", "jobs"):
        if path.startswith(f"/api/v1/{name}"):
            # A deployment's jobs are submitted and listed under the deployment.
            return "jobs" if name == "deployments" and path.endswith("/jobs") else name
    return "operations"

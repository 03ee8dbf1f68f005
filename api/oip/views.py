"""The Open Inference Protocol's REST routes (``/v2``).

``{name}`` is a deployment of the caller's instance, by id or by name (several with one
name: the newest DEPLOY_SUCCESS one). Errors are ``{"error": "..."}`` (``api.inference``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flask import Response, request

from api.context import check_body_size, gc_paused, services
from api.contract import api_version, parse_json_object
from api.inference import (
    MODEL_VERSION,
    InferenceBlueprint,
    InferenceErrorSchema,
    ModelNotFoundByName,
    datatype_of,
    find_deployment,
    protocol_shape,
    score,
)
from api.oip.schemas import (
    InferRequestSchema,
    InferResponseSchema,
    LiveSchema,
    ModelMetadataSchema,
    ModelReadySchema,
    ReadySchema,
    ServerMetadataSchema,
)
from api.oip.tensors import HEADER_LENGTH, decode_input, encode_response, split_body
from shared.deployment_store import DeploymentRecord
from shared.errors import DeploymentNotReady, MalformedRequest
from shared.metrics import live_workers
from shared.scoring import ArrayPayload
from shared.status import DeploymentStatus

bp = InferenceBlueprint(
    "oip",
    __name__,
    description="The Open Inference Protocol (KServe V2) REST API, as Triton's clients call "
    "it. A model is a deployment, named by its name or id; errors are "
    '{"error": "<message>"}.',
)

MODEL = "/v2/models/<name>"
EXTENSIONS = ["binary_tensor_data"]


class ModelNotReady(DeploymentNotReady):
    status = 400


class ServerNotReady(DeploymentNotReady):
    status = 400


# --- health and metadata ---------------------------------------------------------------------


@bp.get("/v2")
@bp.response(200, ServerMetadataSchema, description="The server.")
def server_metadata() -> dict[str, Any]:
    """Server metadata

    ---
    Returns kscore's name, version and the protocol extensions it speaks.
    """
    return {"name": "kscore", "version": api_version(), "extensions": EXTENSIONS}


@bp.get("/v2/health/live")
@bp.response(200, LiveSchema, description="The API answers.")
def server_live() -> dict[str, bool]:
    """Server live

    ---
    Returns `{"live": true}` whenever the API answers.
    """
    return {"live": True}


@bp.get("/v2/health/ready")
@bp.response(200, ReadySchema, description="Some worker takes work.")
@bp.errors(400, 503)
def server_ready() -> dict[str, bool]:
    """Server ready

    Ready while some worker's heartbeat is under 30 s old (as /readyz).
    ---
    Returns `{"ready": true}`. Raises ServerNotReady (400) without a live worker.
    """
    svc = services()
    if not live_workers(svc.redis_client, svc.keys):
        raise ServerNotReady("No worker is consuming: start one (`kscore worker`).")
    return {"ready": True}


def _tensors(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "name": str(spec["name"]),
            "datatype": datatype_of(spec.get("dtype")),
            "shape": protocol_shape(spec.get("shape")),
        }
        for spec in specs
    ]


def _check_version(name: str, version: str | None) -> None:
    if version is not None and version != MODEL_VERSION:
        raise ModelNotFoundByName(f"{name}/versions/{version}")


def _metadata(name: str, version: str | None = None) -> dict[str, Any]:
    _check_version(name, version)
    deployment = find_deployment(name)
    return {
        "name": name,
        "versions": [MODEL_VERSION],
        "platform": deployment.model_type,
        "inputs": _tensors(deployment.inputs),
        "outputs": _tensors(deployment.outputs),
    }


@bp.get(MODEL)
@bp.response(200, ModelMetadataSchema, description="The model's tensors.")
@bp.errors(404)
def model_metadata(name: str) -> dict[str, Any]:
    """Model metadata

    Inputs and outputs with their datatypes and shapes (-1 for an open dimension). Output
    shapes are those the worker recorded when it deployed the model (unknown, [-1], before).
    ---
    Returns the metadata. Raises ModelNotFoundByName (404).
    """
    return _metadata(name)


@bp.get(MODEL + "/versions/<version>")
@bp.response(200, ModelMetadataSchema, description="The model's tensors.")
@bp.errors(404)
def model_version_metadata(name: str, version: str) -> dict[str, Any]:
    """Model metadata (a version)

    A deployment has one version, "1".
    ---
    Returns the metadata. Raises ModelNotFoundByName (404).
    """
    return _metadata(name, version)


def _ready(name: str, version: str | None = None) -> dict[str, Any]:
    _check_version(name, version)
    deployment = find_deployment(name)
    if deployment.status is not DeploymentStatus.DEPLOY_SUCCESS:
        raise ModelNotReady(f"Deployment {name!r} is {deployment.status}.")
    return {"name": name, "ready": True}


@bp.get(MODEL + "/ready")
@bp.response(200, ModelReadySchema, description="The deployment is DEPLOY_SUCCESS.")
@bp.errors(400, 404)
def model_ready(name: str) -> dict[str, Any]:
    """Model ready

    ---
    Returns `{"name", "ready": true}`. Raises ModelNotReady (400) while the deployment is not
    DEPLOY_SUCCESS, ModelNotFoundByName (404).
    """
    return _ready(name)


@bp.get(MODEL + "/versions/<version>/ready")
@bp.response(200, ModelReadySchema, description="The deployment is DEPLOY_SUCCESS.")
@bp.errors(400, 404)
def model_version_ready(name: str, version: str) -> dict[str, Any]:
    """Model ready (a version)

    ---
    Returns `{"name", "ready": true}`. Raises as GET /v2/models/{name}/ready.
    """
    return _ready(name, version)


# --- inference -------------------------------------------------------------------------------

_INFER_BODY = {
    "required": True,
    "description": "JSON tensors (`data` flat or nested, row-major), or the binary tensor data "
    "extension: this JSON in the first `Inference-Header-Content-Length` bytes, then each "
    "tensor with `parameters.binary_data_size` in order (little-endian; BYTES elements "
    "each after a 4-byte length).",
    "content": {
        "application/json": {"schema": InferRequestSchema},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}


def _read_request() -> tuple[dict[str, Any], memoryview]:
    check_body_size()
    header, binary = split_body(request.get_data(cache=False), request.headers.get(HEADER_LENGTH))
    loaded = InferRequestSchema().load(parse_json_object(header))
    return loaded, memoryview(binary)


def _inputs(
    deployment: DeploymentRecord, tensors: list[dict[str, Any]], binary: memoryview
) -> ArrayPayload:
    specs = {str(s["name"]): s for s in deployment.inputs}
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for tensor in tensors:
        name = tensor["name"]
        spec = specs.get(name)
        if spec is None:
            raise MalformedRequest(
                f"Unexpected inference input {name!r}: the model's inputs are {list(specs)}."
            )
        if name in arrays:
            raise MalformedRequest(f"Input {name!r} is given twice.")
        expected = datatype_of(spec.get("dtype"))
        if tensor["datatype"] != expected:
            raise MalformedRequest(
                f"Input {name!r} is {tensor['datatype']}, but the model expects {expected}."
            )
        arrays[name], offset = decode_input(tensor, binary, offset)
    missing = [n for n in specs if n not in arrays]
    if missing:
        raise MalformedRequest(f"The request lacks the model's inputs {missing}.")
    if offset != len(binary):
        raise MalformedRequest("The binary data is longer than the inputs' binary_data_size.")
    return ArrayPayload(arrays)


def _binary(parameters: dict[str, Any] | None, default: bool) -> bool:
    value = (parameters or {}).get("binary_data", default)
    return bool(value)


def _infer(name: str, version: str | None) -> Response:
    _check_version(name, version)
    deployment = find_deployment(name)
    with gc_paused():  # the parsed tensors are dropped before the collector runs again
        body, binary = _read_request()
        payload = _inputs(deployment, body["inputs"], binary)
        del binary
        outputs = score(deployment, payload)
        del payload
    binary_default = _binary(body.get("parameters"), False) or bool(
        (body.get("parameters") or {}).get("binary_data_output", False)
    )
    by_name = {o.name: o for o in outputs}
    requested = body.get("outputs")
    if requested:
        chosen = []
        for wanted in requested:
            if wanted["name"] not in by_name:
                raise MalformedRequest(
                    f"Unexpected inference output {wanted['name']!r}: the model's outputs are "
                    f"{list(by_name)}."
                )
            chosen.append(
                (by_name[wanted["name"]], _binary(wanted.get("parameters"), binary_default))
            )
    else:
        chosen = [(o, binary_default) for o in outputs]
    header: dict[str, Any] = {"model_name": name, "model_version": MODEL_VERSION}
    if "id" in body:
        header["id"] = body["id"]
    content, header_length = encode_response(header, chosen)
    if header_length is None:
        return Response(content, mimetype="application/json")
    response = Response(content, mimetype="application/octet-stream")
    response.headers[HEADER_LENGTH] = str(header_length)
    return response


_TIMEOUT = "Not scored within KSCORE_ONLINE_TIMEOUT; the job goes on."


@bp.post(MODEL + "/infer")
@bp.doc(requestBody=_INFER_BODY)
@bp.response(200, InferResponseSchema, description="The model's outputs, as it gave them.")
@bp.alt_response(504, schema=InferenceErrorSchema, description=_TIMEOUT)
@bp.errors(400, 404, 409, 413, 503)
def infer(name: str) -> Response:
    """Inference

    The inputs are validated and scored as /api/v1 online rows are; the answer holds the
    model's raw outputs (all of them, or those `outputs` names), in JSON or, asked with
    `binary_data` / `binary_data_output`, binary.
    ---
    Returns the outputs. Raises ModelNotFoundByName (404), DeploymentNotReady (409), 400 for
    tensors that do not fit the model, 413, 503, and 504 past KSCORE_ONLINE_TIMEOUT.
    """
    return _infer(name, None)


@bp.post(MODEL + "/versions/<version>/infer")
@bp.doc(requestBody=_INFER_BODY)
@bp.response(200, InferResponseSchema, description="The model's outputs, as it gave them.")
@bp.alt_response(504, schema=InferenceErrorSchema, description=_TIMEOUT)
@bp.errors(400, 404, 409, 413, 503)
def infer_version(name: str, version: str) -> Response:
    """Inference (a version)

    ---
    Returns the outputs. Raises as POST /v2/models/{name}/infer.
    """
    return _infer(name, version)

"""TensorFlow Serving's REST routes (``/v1/models``).

``{name}`` is a deployment of the caller's instance, by id or by name (several with one
name: the newest DEPLOY_SUCCESS one); it has one version, "1". Errors are
``{"error": "..."}`` (``api.inference``).
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify

from api.context import gc_paused
from api.inference import (
    MODEL_VERSION,
    InferenceBlueprint,
    InferenceErrorSchema,
    ModelNotFoundByName,
    find_deployment,
    json_values,
    request_json,
    score,
)
from api.tfserving.schemas import ModelStatusSchema, PredictRequestSchema, PredictResponseSchema
from shared.deployment_store import DeploymentRecord
from shared.errors import MalformedRequest
from shared.status import DeploymentStatus

bp = InferenceBlueprint(
    "tfserving",
    __name__,
    description="TensorFlow Serving's REST API: predict and model status. A model is a "
    'deployment, named by its name or id; errors are {"error": "<message>"}.',
)

MODEL = "/v1/models/<name>"
SIGNATURE = "serving_default"


def _deployment(name: str, version: str | None) -> DeploymentRecord:
    if version is not None and version != MODEL_VERSION:
        raise ModelNotFoundByName(f"{name}/versions/{version}")
    return find_deployment(name)


# --- model status ----------------------------------------------------------------------------

_STATES = {
    DeploymentStatus.DEPLOY_IN_PROGRESS: "LOADING",
    DeploymentStatus.DEPLOY_SUCCESS: "AVAILABLE",
    DeploymentStatus.DEPLOY_FAILED: "END",
}


def _status(name: str, version: str | None) -> dict[str, Any]:
    deployment = _deployment(name, version)
    failed = deployment.status is DeploymentStatus.DEPLOY_FAILED
    message = str((deployment.error or {}).get("message", "")) if failed else ""
    return {
        "model_version_status": [
            {
                "version": MODEL_VERSION,
                "state": _STATES[deployment.status],
                "status": {"error_code": "UNKNOWN" if failed else "OK", "error_message": message},
            }
        ]
    }


@bp.get(MODEL)
@bp.response(200, ModelStatusSchema, description="The deployment's state.")
@bp.errors(404)
def model_status(name: str) -> dict[str, Any]:
    """Model status

    LOADING while deploying, AVAILABLE once DEPLOY_SUCCESS, END with the reason when it failed.
    ---
    Returns the status. Raises ModelNotFoundByName (404).
    """
    return _status(name, None)


@bp.get(MODEL + "/versions/<version>")
@bp.response(200, ModelStatusSchema, description="The deployment's state.")
@bp.errors(404)
def model_version_status(name: str, version: str) -> dict[str, Any]:
    """Model status (a version)

    A deployment has one version, "1".
    ---
    Returns the status. Raises ModelNotFoundByName (404).
    """
    return _status(name, version)


# --- predict ---------------------------------------------------------------------------------


def _columns(deployment: DeploymentRecord, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """``{input name: rows}`` from either form, and whether it was the row form."""
    names = [str(s["name"]) for s in deployment.inputs]
    if "instances" in body:
        instances = body["instances"]
        if instances and all(isinstance(i, dict) for i in instances):
            columns: dict[str, list[Any]] = {n: [] for n in names}
            for index, instance in enumerate(instances):
                if set(instance) != set(names):
                    raise MalformedRequest(
                        f"Instance {index} must name exactly the model's inputs {names}."
                    )
                for n in names:
                    columns[n].append(instance[n])
            return columns, True
        if len(names) != 1:
            raise MalformedRequest(
                f"The model has the inputs {names}: each instance must be an object naming them."
            )
        return {names[0]: instances}, True
    given = body["inputs"]
    if isinstance(given, dict):
        return given, False  # the scoring path checks that it names exactly the inputs
    if len(names) != 1:
        raise MalformedRequest(
            f'The model has the inputs {names}: "inputs" must be an object naming them.'
        )
    return {names[0]: given}, False


def _predict(name: str, version: str | None) -> Response:
    deployment = _deployment(name, version)
    with gc_paused():  # the parsed rows are dropped before the collector runs again
        body = PredictRequestSchema().load(request_json())
        if body.get("signature_name", SIGNATURE) != SIGNATURE:
            raise MalformedRequest(
                f"Unknown signature {body['signature_name']!r}: a deployment has only "
                f"{SIGNATURE!r}."
            )
        columns, row_form = _columns(deployment, body)
        del body
        outputs = score(deployment, {"inputs": columns})
        del columns
    values = {o.name: json_values(o.array) for o in outputs}
    if row_form:
        if len(outputs) == 1:
            return jsonify({"predictions": values[outputs[0].name]})
        rows = len(outputs[0].array)
        return jsonify({"predictions": [{n: v[i] for n, v in values.items()} for i in range(rows)]})
    if len(outputs) == 1:
        return jsonify({"outputs": values[outputs[0].name]})
    return jsonify({"outputs": values})


_TIMEOUT = "Not scored within KSCORE_ONLINE_TIMEOUT; the job goes on."
# TensorFlow Serving's REST API takes exactly one of the two forms (a body with both or neither
# is its 400 "Missing 'instances' or 'inputs' key"); marshmallow cannot say so in the schema.
_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "allOf": [
                    PredictRequestSchema,
                    {"oneOf": [{"required": ["instances"]}, {"required": ["inputs"]}]},
                ]
            }
        }
    },
}


@bp.post(MODEL + ":predict")
@bp.doc(requestBody=_BODY)
@bp.response(200, PredictResponseSchema, description="The model's outputs, as it gave them.")
@bp.alt_response(504, schema=InferenceErrorSchema, description=_TIMEOUT)
@bp.errors(400, 404, 409, 413, 503)
def predict(name: str) -> Response:
    """Predict

    `instances` (rows) are answered as `predictions`, `inputs` (columns) as `outputs`; the rows
    are validated and scored as /api/v1 online rows are.
    ---
    Returns the outputs. Raises ModelNotFoundByName (404), DeploymentNotReady (409), 400 for
    rows that do not fit the model, 413, 503, and 504 past KSCORE_ONLINE_TIMEOUT.
    """
    return _predict(name, None)


@bp.post(MODEL + "/versions/<version>:predict")
@bp.doc(requestBody=_BODY)
@bp.response(200, PredictResponseSchema, description="The model's outputs, as it gave them.")
@bp.alt_response(504, schema=InferenceErrorSchema, description=_TIMEOUT)
@bp.errors(400, 404, 409, 413, 503)
def predict_version(name: str, version: str) -> Response:
    """Predict (a version)

    ---
    Returns the outputs. Raises as POST /v1/models/{name}:predict.
    """
    return _predict(name, version)

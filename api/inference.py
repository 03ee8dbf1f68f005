"""What the inference protocols share (the Open Inference Protocol's ``/v2`` and TF Serving's
``/v1/models``): a deployment by name, scoring to the model's raw output arrays, the
protocols' ``{"error": "..."}`` body, and the blueprint that documents it.

Scoring goes through ``Services.submit_online`` / ``await_online``, as ``/api/v1`` online
scoring does: the same validation, the same one-chunk job on the online queue; the job asks
the worker for raw tensors (``ResultShape.TENSORS``) instead of WML's three fields.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import marshmallow as ma
import numpy as np
from apispec import BasePlugin
from flask import Response, jsonify, request
from marshmallow import fields

from api import auth
from api.context import check_body_size, instance, services
from api.contract import (
    API_KEY_HEADER_SCHEME,
    BEARER_SCHEME,
    Api,
    Blueprint,
    parse_json_object,
)
from shared.deployment_store import DeploymentRecord
from shared.errors import DeploymentNotFound, ScoringFailed
from shared.keys import is_resource_id
from shared.scoring import ArrayPayload, ResultShape
from shared.status import DeploymentStatus

# Paths whose errors take the protocols' {"error": "..."} body (WML's /v2/identity is not one).
_EXACT = frozenset({"/v2", "/v2/"})
_PREFIXES = ("/v2/health/", "/v2/models/", "/v1/models/")

# A deployment is one version of its name; the protocols want a version string.
MODEL_VERSION = "1"


def is_inference_path(path: str) -> bool:
    """Whether ``path`` belongs to an inference protocol (so its errors take ``{"error"}``)."""
    return path in _EXACT or path.startswith(_PREFIXES)


# Both protocols answer 400 where kscore says 422 (neither protocol uses 422).
_STATUS = {422: 400}


def inference_error(status: int, message: str, details: dict[str, Any] | None = None) -> Response:
    """An error as both protocols write it: ``{"error": "<message>"}``; the protocols have no
    place for details, so field errors (a request body's) are appended to the message."""
    fields_ = (details or {}).get("fields")
    if fields_:
        message = f"{message} {json.dumps(fields_, separators=(', ', ': '))}"
    response = jsonify({"error": message})
    response.status_code = _STATUS.get(status, status)
    return response


class InferenceTimedOut(ScoringFailed):
    status = 504
    code = "scoring_timeout"


class ModelNotFoundByName(DeploymentNotFound):
    """No deployment of the caller's instance has this name or id."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.message = f"No deployment named {name!r} (or with that id) in this instance."


# --- deployments by name ---------------------------------------------------------------------

_PAGE = 500


def find_deployment(name: str) -> DeploymentRecord:
    """The caller's deployment with this id, else the one with this name.

    Several deployments may share a name: the newest DEPLOY_SUCCESS one wins, else (none is
    ready) the newest, so that the caller hears why it cannot score. Raises
    ModelNotFoundByName (404).
    """
    store = services().deployments
    if is_resource_id(name):
        try:
            return store.get(instance(), name)
        except DeploymentNotFound:
            pass
    newest: DeploymentRecord | None = None
    offset = 0
    while True:
        records, total = store.page(instance(), _PAGE, offset)  # newest first
        for record in records:
            if record.name != name:
                continue
            if record.status is DeploymentStatus.DEPLOY_SUCCESS:
                return record
            newest = newest or record
        offset += _PAGE
        if offset >= total or not records:
            break
    if newest is None:
        raise ModelNotFoundByName(name)
    return newest


# --- datatypes -------------------------------------------------------------------------------

# Keras dtype names -> the Open Inference Protocol's tensor datatypes.
DATATYPES = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
    "string": "BYTES",
    "str": "BYTES",
    "object": "BYTES",
}
NUMPY_DTYPES = {v: k for k, v in DATATYPES.items() if k not in {"string", "str", "object"}}


def datatype_of(dtype: Any) -> str:
    """The protocol datatype of a Keras dtype name (float32 when none is recorded)."""
    return DATATYPES.get(str(dtype or "float32"), "FP32")


def protocol_shape(shape: list[int | None] | None) -> list[int]:
    """A recorded shape with ``-1`` for each open dimension (the batch one included)."""
    return [-1 if d is None else int(d) for d in (shape or [None])]


# --- scoring ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Output:
    """One output tensor of a scored request: all rows, as the model gave them."""

    name: str
    datatype: str
    array: np.ndarray


def score(deployment: DeploymentRecord, payload: dict[str, Any] | ArrayPayload) -> list[Output]:
    """Score ``payload`` (``{"inputs": {name: rows}}`` or arrays by input name) online.

    Returns every output of the model, in the deployment's order. Raises what
    ``submit_online`` / ``await_online`` raise, and InferenceTimedOut (504) past
    KSCORE_ONLINE_TIMEOUT.
    """
    started = time.perf_counter()
    svc = services()
    job = svc.submit_online(instance(), deployment.id, payload, ResultShape.TENSORS)
    outcome = svc.await_online(instance(), job, svc.settings.online_timeout_s, started)
    if not isinstance(outcome, bytes):
        raise InferenceTimedOut(
            f"The request was not scored within {svc.settings.online_timeout_s:g} s "
            f"(KSCORE_ONLINE_TIMEOUT); its job {outcome.id} goes on."
        )
    body = json.loads(outcome)
    names: list[str] = body["fields"]
    values: list[list[Any]] = body["values"]
    specs = {str(o["name"]): o for o in deployment.outputs}
    outputs = []
    for k, name in enumerate(names):
        datatype = datatype_of(specs.get(name, {}).get("dtype"))
        column = [row[k] for row in values]
        if datatype == "BYTES":
            array = np.asarray(column, dtype=object)
        else:
            # JSON null (a non-finite prediction) becomes NaN again in a float array.
            array = np.asarray(column, dtype=NUMPY_DTYPES[datatype])
        outputs.append(Output(name, datatype, array))
    return outputs


def json_values(array: np.ndarray) -> list[Any]:
    """The array as nested lists, NaN and infinities as null (JSON has neither)."""
    values: list[Any] = array.tolist()
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        return _finite_or_none(values)
    return values


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


# --- the contract ----------------------------------------------------------------------------


class InferenceErrorSchema(ma.Schema):
    error = fields.String(required=True, metadata={"description": "What went wrong."})


DEFAULT_ERROR = "INFERENCE_UNEXPECTED_ERROR"
UNAUTHORIZED = "INFERENCE_UNAUTHORIZED"


class InferenceBlueprint(Blueprint):
    """kscore's Blueprint for an inference protocol: the caller's API key, and errors in the
    protocols' ``{"error": "..."}`` body (in the document too)."""

    ERROR_SCHEMA: ClassVar[type[ma.Schema]] = InferenceErrorSchema

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.before_request(auth.authenticate_key)

    @staticmethod
    def _prepare_response_doc(doc: Any, doc_info: Any, *, api: Any, **kwargs: Any) -> Any:
        return Blueprint._prepare_response_doc(doc, doc_info, api=_Default(api), **kwargs)


class _Default:
    """The Api as flask-smorest's response documentation reads it, with this default."""

    DEFAULT_ERROR_RESPONSE_NAME = DEFAULT_ERROR

    def __init__(self, api: Any) -> None:
        self._api = api

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)


class _InferenceSecurity(BasePlugin):
    """Documents the API key on the protocols' operations and their 401."""

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        """Set each inference operation's ``security`` and 401 in place; returns nothing."""
        if not is_inference_path(path or ""):
            return
        for operation in (operations or {}).values():
            operation["security"] = [{BEARER_SCHEME: []}, {API_KEY_HEADER_SCHEME: []}]
            operation.setdefault("responses", {})["401"] = UNAUTHORIZED


def document_inference(api: Api) -> None:
    """Add the protocols' default error, 401 and credentials to ``api``'s document (before
    their blueprints are registered)."""
    for name, description in (
        (DEFAULT_ERROR, "Any other error: 500, or 503 while Redis is unreachable."),
        (UNAUTHORIZED, "No API key, or one that is unknown or revoked."),
    ):
        api.spec.components.response(
            name,
            {
                "description": description,
                "content": {"application/json": {"schema": InferenceErrorSchema}},
            },
            lazy=True,
        )
    plugin = _InferenceSecurity()
    plugin.init_spec(api.spec)
    api.spec.plugins.insert(0, plugin)


def request_json() -> dict[str, Any]:
    """The request's JSON object.

    Raises PayloadTooLarge (413) over KSCORE_MAX_REQUEST_BYTES, MalformedRequest (400) for a
    body that is not one JSON object.
    """
    check_body_size()
    return parse_json_object(request.get_data(cache=False))

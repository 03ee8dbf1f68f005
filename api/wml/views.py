"""The WML v3 routes: rows 1-14 and 20-24 of the protocol's inventory.

Each route validates, calls the same services and stores as /api/v1, and answers WML's
document with WML's status code (201 for an asset, 200 for its content, 202 for a deployment,
204 for deletes). Errors take WML's body (``api.wml.errors``).
"""

from __future__ import annotations

import time
from typing import Any

from flask import Response, current_app, request
from werkzeug.utils import secure_filename

from api import auth
from api.context import gc_paused, instance, services, url
from api.contract import RowsBody
from api.schemas import ScoringPayloadSchema, ScoringResultSchema, result_shape_of
from api.wml import documents as docs
from api.wml.content import PrefixedStream, read_head, upload_suffix
from api.wml.contract import WmlBlueprint
from api.wml.schemas import (
    PROPERTY_NAMES,
    EmptyListSchema,
    InstanceSchema,
    ModelAssetCreateSchema,
    ModelAssetSchema,
    PublishedModelListSchema,
    PublishedModelSchema,
    WmlDeploymentCreateSchema,
    WmlDeploymentListSchema,
    WmlDeploymentQuerySchema,
    WmlDeploymentSchema,
    WmlErrorSchema,
    WmlListQuerySchema,
    WmlTokenSchema,
)
from shared.deployment_store import DeploymentRecord
from shared.errors import (
    InstanceNotFound,
    ModelContentMissing,
    ModelNotFound,
    ScoringFailed,
    Unauthorized,
)
from shared.model_store import ModelRecord
from shared.wml_store import WmlStore

bp = WmlBlueprint(
    "wml",
    __name__,
    description="IBM Watson Machine Learning v3, as IBM's Python client calls it.",
)

INSTANCE = "/v3/wml_instances/<instance_id>"


class ScoringTimedOut(ScoringFailed):
    status = 504
    code = "scoring_timeout"


_TOKEN_ENDPOINTS = frozenset({"wml.get_token", "wml.get_token_v2", "wml.refresh_token"})
_HOW = (
    "Send `Authorization: Bearer <token>`, the token from GET /v3/identity/token with your "
    "WML username and password (HTTP Basic)."
)


@bp.before_request
def _authenticate() -> None:
    # Every WML route but the token's takes the token as Bearer (an API key works too).
    if request.endpoint in _TOKEN_ENDPOINTS:
        return
    header = request.headers.get("Authorization", "")
    scheme, _, credential = header.partition(" ")
    settings = services().settings
    if scheme.lower() == "bearer" and credential.strip():
        auth.set_current_instance(auth.instance_for_bearer(credential.strip()))
    elif settings.auth == "disabled" and auth.bound_to_loopback():
        auth.set_current_instance(settings.default_instance)  # as on /api/v1
    else:
        raise Unauthorized("This request needs a WML token. " + _HOW)
    # Another instance's id in the path is simply not found, as its resources are.
    requested = (request.view_args or {}).get("instance_id")
    if requested is not None and requested != instance():
        raise InstanceNotFound(requested)


# --- tokens --------------------------------------------------------------------------------


def _basic_instance() -> str:
    credentials = request.authorization
    if credentials is None or credentials.type != "basic":
        raise Unauthorized("Send your WML username and password with HTTP Basic authentication.")
    return auth.instance_for_wml_basic(credentials.username or "", credentials.password or "")


@bp.get("/v3/identity/token")
@bp.response(200, WmlTokenSchema, description="A token for the instance of these credentials.")
@bp.alt_response(401, schema=WmlErrorSchema, description="Missing or wrong username/password.")
def get_token() -> dict[str, str]:
    """Get a WML token

    HTTP Basic with the instance's WML username and password. The token (a JWT, valid for
    KSCORE_TOKEN_TTL) goes as `Authorization: Bearer` on every other WML route.
    ---
    Returns the token. Raises Unauthorized (401).
    """
    return {"token": auth.issue_wml_token(_basic_instance())}


@bp.get("/v2/identity/token")
@bp.response(200, WmlTokenSchema, description="A token for the instance of these credentials.")
@bp.alt_response(401, schema=WmlErrorSchema, description="Missing or wrong username/password.")
def get_token_v2() -> dict[str, str]:
    """Get a WML token (v2 path)

    As GET /v3/identity/token; IBM's client asks here too.
    ---
    Returns the token. Raises Unauthorized (401).
    """
    return {"token": auth.issue_wml_token(_basic_instance())}


@bp.put("/v3/identity/token")
@bp.arguments(WmlTokenSchema)
@bp.response(200, WmlTokenSchema, description="A new token for the same instance.")
@bp.alt_response(401, schema=WmlErrorSchema, description="The token is forged or expired.")
@bp.errors(400, 413, 422)
def refresh_token(data: dict[str, str]) -> dict[str, str]:
    """Refresh a WML token

    The body carries the current, still valid token; no Authorization header.
    ---
    Returns the new token. Raises Unauthorized (401).
    """
    return {"token": auth.refresh_wml_token(data["token"])}


def _assets() -> WmlStore:
    svc = services()
    return WmlStore(svc.redis_client, svc.keys)


def _no_content_error(model_id: str) -> ModelContentMissing:
    return ModelContentMissing(
        f"Model {model_id} has no file yet: PUT the model file to its content_url first.",
        details={"model_id": model_id},
    )


def _published_model(model_id: str) -> ModelRecord:
    """The stored model ``model_id``; an asset still waiting for its file says so."""
    try:
        return services().models.get(instance(), model_id)
    except ModelNotFound:
        try:
            _assets().get(instance(), model_id)
        except ModelNotFound:
            raise ModelNotFound(model_id) from None
        raise _no_content_error(model_id) from None


def _published_documents(models: list[ModelRecord]) -> list[dict[str, Any]]:
    ids = [m.id for m in models]
    assets = _assets().get_many(instance(), ids)
    counts = services().deployments.count_by_model(instance(), ids)
    return [
        docs.published_model_document(instance(), m, assets.get(m.id), n)
        for m, n in zip(models, counts, strict=True)
    ]


# --- the instance --------------------------------------------------------------------------


@bp.get(INSTANCE)
@bp.response(200, InstanceSchema, description="The instance.")
@bp.errors(404)
def get_instance(instance_id: str) -> dict[str, Any]:
    """A WML instance

    Where the client finds the instance's published models.
    ---
    Returns the instance document. Raises InstanceNotFound (404) for another instance.
    """
    return docs.instance_document(services().instances.get(instance_id))


# --- model assets (the repository) ---------------------------------------------------------


@bp.post("/v3/ml_assets/models")
@bp.arguments(ModelAssetCreateSchema)
@bp.response(201, ModelAssetSchema, description="Created; PUT the file to its content_url.")
@bp.errors(400, 413, 422)
def create_model_asset(data: dict[str, Any]) -> dict[str, Any]:
    """Create a model asset

    The framework as IBM documented it for Keras ("tensorflow" with a "keras" library, or
    "keras"); the file follows at `entity.model_version.content_url`.
    ---
    Returns the asset document. Raises webargs' 422 for the body.
    """
    asset = _assets().create(
        instance(),
        name=data["name"],
        description=data["description"],
        framework=data["framework"],
        author=data["author"],
        properties={k: data[k] for k in PROPERTY_NAMES if k in data},
    )
    return docs.asset_document(asset)


@bp.get("/v3/ml_assets/models/<model_id>")
@bp.response(200, ModelAssetSchema, description="The asset.")
@bp.errors(404)
def get_model_asset(model_id: str) -> dict[str, Any]:
    """A model asset

    ---
    Returns the asset document. Raises ModelNotFound (404).
    """
    return docs.asset_document(_assets().get(instance(), model_id))


@bp.put("/v3/ml_assets/models/<model_id>/versions/<version_id>/content")
@bp.doc(
    requestBody={
        "required": True,
        "description": "The file's raw bytes: a tar (.tgz, .tar.gz) or zip holding one .h5/"
        ".keras, a Keras 3 .keras, or an .h5; the format is read from the bytes.",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
)
@bp.response(200, ModelAssetSchema, description="Stored; the model is published.")
@bp.errors(400, 404, 409, 413, 422)
def put_model_content(model_id: str, version_id: str) -> dict[str, Any]:
    """Upload a model asset's file

    Inspected and refused as on /api/v1/models (unsafe layers, no model file, too large).
    ---
    Returns the asset document. Raises ModelNotFound (404), ModelContentConflict (409,
    stored already), and the model store's refusals (400, 413, 422).
    """
    svc = services()
    assets = _assets()
    asset = assets.begin_upload(instance(), model_id, version_id)
    stored = False
    try:
        head = read_head(request.stream)
        filename = (secure_filename(asset.name) or "model") + upload_suffix(head)
        workdir = svc.settings.data_dir / "tmp"
        workdir.mkdir(parents=True, exist_ok=True)
        svc.models.store_upload(
            instance(),
            PrefixedStream(head, request.stream),  # type: ignore[arg-type]
            filename,
            asset.name,
            asset.description,
            max_bytes=svc.settings.max_model_bytes,
            workdir=workdir,
            model_id=model_id,
        )
        stored = True
    finally:
        assets.end_upload(instance(), model_id, stored=stored)
    return docs.asset_document(assets.get(instance(), model_id))


@bp.delete("/v3/ml_assets/models/<model_id>")
@bp.response(204, description="Deleted.")
@bp.errors(404, 409)
def delete_model_asset(model_id: str) -> Response:
    """Delete a model

    Refused (409 model_in_use) while a deployment uses it.
    ---
    Returns an empty 204. Raises ModelNotFound (404) and ModelInUse (409).
    """
    try:
        services().models.delete(instance(), model_id)
    except ModelNotFound:
        # An asset whose file never arrived is still the client's to delete.
        if not _assets().delete(instance(), model_id):
            raise
    else:
        _assets().delete(instance(), model_id)
    return current_app.response_class(status=204)


# --- published models ----------------------------------------------------------------------


@bp.get(INSTANCE + "/published_models")
@bp.arguments(WmlListQuerySchema, location="query")
@bp.response(200, PublishedModelListSchema, description="A page of published models.")
@bp.errors(404, 422)
def list_published_models(args: dict[str, Any], instance_id: str) -> dict[str, Any]:
    """List published models, newest first

    Every stored model of the instance, also those stored through /api/v1.
    ---
    Returns the page; `next` only when there is a next page.
    """
    models, total = services().models.page(instance(), args["limit"], args["offset"])
    list_url = docs.instance_url(instance_id) + "/published_models"
    return docs.page(_published_documents(models), total, args["limit"], args["offset"], list_url)


@bp.get(INSTANCE + "/published_models/<model_id>")
@bp.response(200, PublishedModelSchema, description="The published model.")
@bp.errors(404, 409)
def get_published_model(instance_id: str, model_id: str) -> dict[str, Any]:
    """A published model

    404 for any other id (the client's type probe relies on it).
    ---
    Returns the document. Raises ModelNotFound (404), ModelContentMissing (409) for an asset
    still waiting for its file.
    """
    return _published_documents([_published_model(model_id)])[0]


@bp.get(INSTANCE + "/published_models/<model_id>/deployments")
@bp.arguments(WmlListQuerySchema, location="query")
@bp.response(200, WmlDeploymentListSchema, description="A page of the model's deployments.")
@bp.errors(404, 409, 422)
def list_model_deployments(args: dict[str, Any], instance_id: str, model_id: str) -> dict[str, Any]:
    """List a published model's deployments, newest first

    ---
    Returns the page. Raises ModelNotFound (404).
    """
    _published_model(model_id)
    records, total = services().deployments.page(
        instance(), args["limit"], args["offset"], model_id=model_id
    )
    list_url = docs.published_model_url(instance_id, model_id) + "/deployments"
    return docs.page(_deployment_documents(records), total, args["limit"], args["offset"], list_url)


# --- deployments ---------------------------------------------------------------------------


def _deployment_documents(records: list[DeploymentRecord]) -> list[dict[str, Any]]:
    assets = _assets().get_many(instance(), sorted({r.model_id for r in records}))
    return [docs.deployment_document(instance(), r, assets.get(r.model_id)) for r in records]


@bp.post(INSTANCE + "/deployments")
@bp.arguments(WmlDeploymentQuerySchema, location="query")
@bp.arguments(WmlDeploymentCreateSchema)
@bp.response(202, WmlDeploymentSchema, description="Deploying: poll until DEPLOY_SUCCESS.")
@bp.errors(400, 404, 409, 413, 422, 503)
def create_deployment(
    query: dict[str, Any], data: dict[str, Any], instance_id: str
) -> dict[str, Any]:
    """Deploy a published model

    Answers 202 in DEPLOY_IN_PROGRESS; a worker loads and warms up the model, then the status
    is DEPLOY_SUCCESS, or DEPLOY_FAILED with the reason in `status_details.failure.errors`.
    ---
    Returns the deployment. Raises ModelNotFound (404), ModelContentMissing (409) and
    BackendUnavailable (503).
    """
    model_id = data["deployable_asset_url"].rstrip("/").rsplit("/", 1)[-1]
    _published_model(model_id)
    record = services().create_deployment(instance(), model_id, data["name"], data["description"])
    return _deployment_documents([record])[0]


@bp.get(INSTANCE + "/deployments")
@bp.arguments(WmlListQuerySchema, location="query")
@bp.response(200, WmlDeploymentListSchema, description="A page of deployments.")
@bp.errors(404, 422)
def list_deployments(args: dict[str, Any], instance_id: str) -> dict[str, Any]:
    """List deployments, newest first

    ---
    Returns the page; `next` only when there is a next page.
    """
    records, total = services().deployments.page(instance(), args["limit"], args["offset"])
    list_url = docs.instance_url(instance_id) + "/deployments"
    return docs.page(_deployment_documents(records), total, args["limit"], args["offset"], list_url)


@bp.get(INSTANCE + "/deployments/<deployment_id>")
@bp.response(200, WmlDeploymentSchema, description="The deployment.")
@bp.errors(404)
def get_deployment(instance_id: str, deployment_id: str) -> dict[str, Any]:
    """A deployment

    404 for any other id, a model's included (the client's type probe relies on it).
    ---
    Returns the document. Raises DeploymentNotFound (404).
    """
    return _deployment_documents([services().deployments.get(instance(), deployment_id)])[0]


@bp.delete(INSTANCE + "/deployments/<deployment_id>")
@bp.response(204, description="Deleted.")
@bp.errors(404)
def delete_deployment(instance_id: str, deployment_id: str) -> Response:
    """Delete a deployment

    ---
    Returns an empty 204. Raises DeploymentNotFound (404).
    """
    services().deployments.delete(instance(), deployment_id)
    return current_app.response_class(status=204)


@bp.post(INSTANCE + "/deployments/<deployment_id>/online")
@bp.rows_body(ScoringPayloadSchema)
@bp.response(200, ScoringResultSchema, description="Predictions, one row per input row.")
@bp.alt_response(500, schema=WmlErrorSchema, description="The model failed on these rows.")
@bp.alt_response(
    504,
    schema=WmlErrorSchema,
    description="Not answered within KSCORE_ONLINE_TIMEOUT; the job in details goes on.",
)
@bp.errors(400, 404, 409, 413, 422, 503)
def score(rows: RowsBody, instance_id: str, deployment_id: str) -> Response:
    """Score rows online

    As /api/v1/deployments/{id}/online: {"values": [...]} in, the WML Keras rows out.
    ---
    Returns the predictions. Raises as the native route, and ScoringTimedOut (504) past
    KSCORE_ONLINE_TIMEOUT (WML clients accept nothing but 200).
    """
    started = time.perf_counter()
    svc = services()
    with gc_paused():  # the parsed rows are dropped before the collector runs again
        body = rows.read()
        job = svc.submit_online(instance(), deployment_id, body, result_shape_of(body))
        del body
    outcome = svc.await_online(instance(), job, svc.settings.online_timeout_s, started)
    if isinstance(outcome, bytes):
        return Response(outcome, mimetype="application/json")
    raise ScoringTimedOut(
        f"The rows were not scored within {svc.settings.online_timeout_s:g} s "
        "(KSCORE_ONLINE_TIMEOUT); the job goes on.",
        details={"job_id": outcome.id, "job_url": url(f"/api/v1/jobs/{outcome.id}")},
    )


# --- what kscore does not have: empty lists (the client's repository.list() reads them) ---


def _empty_list(path: str, what: str) -> None:
    def view(args: dict[str, Any]) -> dict[str, Any]:
        return {"resources": []}

    view.__name__ = "list_" + path.rsplit("/", 1)[-1]
    view.__doc__ = f"List {what} (always empty)\n\nkscore has none; WML clients list them."
    bp.get(path)(
        bp.arguments(WmlListQuerySchema, location="query")(
            bp.response(200, EmptyListSchema, description="Always empty.")(bp.errors(422)(view))
        )
    )


for _path, _what in (
    ("/v3/ml_assets/training_definitions", "training definitions"),
    ("/v3/experiments", "experiments"),
    ("/v3/functions", "functions"),
    ("/v4/runtimes", "runtimes"),
    ("/v4/libraries", "libraries"),
):
    _empty_list(_path, _what)

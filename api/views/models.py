"""The model repository: upload, list, read, download and delete Keras model files."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app
from werkzeug.datastructures import FileStorage
from werkzeug.utils import secure_filename

from api.context import instance, page, services, url
from api.contract import LOCATION, Blueprint
from api.schemas import ModelListSchema, ModelSchema, ModelUploadSchema, PageQuerySchema
from shared.model_store import ModelRecord
from shared.timeutil import iso

bp = Blueprint(
    "models",
    __name__,
    url_prefix="/api/v1/models",
    description="The model repository: Keras files, inspected and stored.",
)


def model_resource(record: ModelRecord) -> dict[str, Any]:
    """The model's fields for ModelSchema to dump, with absolute URLs."""
    href = url(f"/api/v1/models/{record.id}")
    return {
        **record.__dict__,
        "framework": "keras",
        "model_type": record.model_type,
        "created_at": iso(record.created_at),
        "href": href,
        "content_url": href + "/content",
    }


@bp.post("")
@bp.arguments(ModelUploadSchema, location="multipart")
@bp.response(201, ModelSchema, description="Stored.", headers=LOCATION)
@bp.errors(400, 413, 422)
def create_model(form: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Store a Keras model file

    Accepts .h5, .hdf5, .keras, or a .tar.gz/.tgz/.zip holding exactly one. Inspected without
    loading; unsafe layers (Lambda, custom classes) are refused (422 unsafe_model).
    ---
    Returns the model and its Location. Raises UnsupportedModelFile (400), PayloadTooLarge
    (413) and UnsafeModel (422) from the store; webargs' 422 for the form.
    """
    upload: FileStorage = form["file"]
    svc = services()
    workdir = svc.settings.data_dir / "tmp"
    workdir.mkdir(parents=True, exist_ok=True)
    record = svc.models.store_upload(
        instance(),
        upload.stream,  # type: ignore[arg-type]
        upload.filename or "",  # never empty: ModelUploadSchema refuses a nameless file part
        form["name"],
        form["description"],
        max_bytes=svc.settings.max_model_bytes,
        workdir=workdir,
    )
    body = model_resource(record)
    return body, {"Location": body["href"]}


@bp.get("")
@bp.arguments(PageQuerySchema, location="query")
@bp.response(200, ModelListSchema, description="A page of models.")
@bp.errors(422)
def list_models(args: dict[str, Any]) -> dict[str, Any]:
    """List models, newest first

    ---
    Returns a page for ModelListSchema. Raises webargs' 422 for bad paging.
    """
    records, total = services().models.page(instance(), args["limit"], args["offset"])
    return page([model_resource(r) for r in records], total, args["limit"], args["offset"])


@bp.get("/<model_id>")
@bp.response(200, ModelSchema, description="The model.")
@bp.errors(404)
def get_model(model_id: str) -> dict[str, Any]:
    """One model

    ---
    Returns the model's fields. Raises ModelNotFound (404).
    """
    return model_resource(services().models.get(instance(), model_id))


@bp.get("/<model_id>/content")
@bp.response(
    200,
    {"type": "string", "format": "binary"},
    content_type="application/octet-stream",
    description="The bytes as uploaded, under the original filename.",
)
@bp.errors(404)
def get_model_content(model_id: str) -> Response:
    """Download the original file

    ---
    Returns the stored bytes, streamed. Raises ModelNotFound (404).
    """
    svc = services()
    record = svc.models.get(instance(), model_id)
    chunks = svc.models.blobs.iter_chunks(record.sha256)
    response = current_app.response_class(chunks, mimetype="application/octet-stream")
    download_name = secure_filename(record.filename) or "model"
    response.headers["Content-Disposition"] = f'attachment; filename="{download_name}"'
    response.headers["Content-Length"] = str(record.size_bytes)
    response.headers["ETag"] = f'"{record.sha256}"'
    return response


@bp.delete("/<model_id>")
@bp.response(204, description="Deleted.")
@bp.errors(404, 409)
def delete_model(model_id: str) -> Response:
    """Delete a model

    Refused (409 model_in_use) while a deployment uses it.
    ---
    Returns an empty 204. Raises ModelNotFound (404) and ModelInUse (409).
    """
    services().models.delete(instance(), model_id)
    return current_app.response_class(status=204)

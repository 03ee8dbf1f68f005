"""The model repository: upload, list, read, download and delete Keras model files."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.utils import secure_filename

from api.context import instance, page, query, services, url
from api.schemas import ModelListSchema, ModelSchema, ModelUploadSchema, PageQuerySchema
from shared.errors import ValidationFailed
from shared.model_store import ModelRecord
from shared.timeutil import iso

bp = Blueprint("models", __name__, url_prefix="/api/v1/models")

_model_schema = ModelSchema()


def model_json(record: ModelRecord) -> dict[str, Any]:
    """The model as the API shows it."""
    href = url(f"/api/v1/models/{record.id}")
    return _model_schema.dump(
        {
            **record.__dict__,
            "framework": "keras",
            "model_type": record.model_type,
            "created_at": iso(record.created_at),
            "href": href,
            "content_url": href + "/content",
        }
    )


@bp.post("")
def create_model() -> tuple[Response, int, dict[str, str]]:
    """Store an uploaded model file (multipart: file, name, description)."""
    form = ModelUploadSchema().load(request.form.to_dict())
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise ValidationFailed(
            'Attach the model file as the multipart field "file".',
            details={"fields": {"file": ["Missing data for required field."]}},
        )
    svc = services()
    workdir = svc.settings.data_dir / "tmp"
    workdir.mkdir(parents=True, exist_ok=True)
    record = svc.models.store_upload(
        instance(),
        upload.stream,  # type: ignore[arg-type]
        upload.filename,
        form["name"],
        form["description"],
        max_bytes=svc.settings.max_model_bytes,
        workdir=workdir,
    )
    body = model_json(record)
    return jsonify(body), 201, {"Location": body["href"]}


@bp.get("")
def list_models() -> Response:
    """Models, newest first."""
    args = query(PageQuerySchema())
    records, total = services().models.page(instance(), args["limit"], args["offset"])
    body = page([model_json(r) for r in records], total, args["limit"], args["offset"])
    return jsonify(ModelListSchema().dump(body))


@bp.get("/<model_id>")
def get_model(model_id: str) -> Response:
    """One model."""
    return jsonify(model_json(services().models.get(instance(), model_id)))


@bp.get("/<model_id>/content")
def get_model_content(model_id: str) -> Response:
    """The original uploaded bytes, streamed, under the original filename."""
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
def delete_model(model_id: str) -> tuple[str, int]:
    """Delete a model that no deployment uses."""
    services().models.delete(instance(), model_id)
    return "", 204

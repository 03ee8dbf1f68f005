"""Datasets: rows uploaded once, in any of the formats people keep them in, scored by jobs."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, request

from api.context import instance, page, services, url
from api.contract import LOCATION, Blueprint
from api.dataset_services import delete_dataset, store_dataset
from api.schemas import DatasetListSchema, DatasetSchema, DatasetUploadQuerySchema, PageQuerySchema
from shared.dataset_formats import MEDIA_TYPES, dataset_format
from shared.dataset_store import DatasetRecord
from shared.errors import PayloadTooLarge
from shared.timeutil import iso

bp = Blueprint(
    "datasets",
    __name__,
    url_prefix="/api/v1/datasets",
    description="Input rows uploaded once (.npy, .npz, .csv, .jsonl, .parquet), scored by jobs.",
)

_BINARY = {"schema": {"type": "string", "format": "binary"}}
_UPLOAD_BODY = {
    "required": True,
    "description": "The file itself as the raw body (not multipart), read in pieces: .npy "
    "(one input), .npz (one array per input, named by input), .csv (numeric columns, header "
    "optional), .jsonl (a row per line: a list, or an object naming each input), .parquet "
    "(numeric columns, or one list column per input).",
    "content": {mimetype: _BINARY for mimetype in (*MEDIA_TYPES, "application/octet-stream")},
}


def dataset_resource(record: DatasetRecord) -> dict[str, Any]:
    """The dataset's fields for DatasetSchema to dump, with its absolute URL."""
    return {
        **record.__dict__,
        "bytes": record.size_bytes,
        "created_at": iso(record.created_at),
        "expires_at": iso(record.expires_at),
        "href": url(f"/api/v1/datasets/{record.id}"),
    }


@bp.post("")
@bp.arguments(DatasetUploadQuerySchema, location="query")
@bp.doc(requestBody=_UPLOAD_BODY)
@bp.response(201, DatasetSchema, description="Stored.", headers=LOCATION)
@bp.errors(400, 404, 413, 422, 503)
def create_dataset(args: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Upload a dataset

    The body is streamed to Redis chunk by chunk (never whole in memory); the format comes
    from `format` or the Content-Type. With `deployment_id` every row is checked against that
    deployment's inputs on the way in. Every error names the row (0-based) and the column.
    ---
    Returns the dataset and its Location. Raises DatasetFormatUnknown (400), DeploymentNotFound
    (404), PayloadTooLarge (413, KSCORE_MAX_DATASET_BYTES), DatasetInvalid, DatasetMismatch or
    ScoringInputInvalid (422); a refused upload keeps nothing.
    """
    svc = services()
    limit = svc.settings.max_dataset_bytes
    fmt = dataset_format(args["format"], request.mimetype)
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(
            f"The dataset is {request.content_length} bytes, over the limit of {limit} "
            "(KSCORE_MAX_DATASET_BYTES); split it.",
            details={"limit_bytes": limit},
        )
    # The app's limit is for model files and JSON bodies; this route counts its own bytes.
    request.max_content_length = limit
    retention_days = args["retention_days"]
    record = store_dataset(
        svc,
        instance(),
        request.stream,
        fmt=fmt,
        name=args["name"],
        retention_s=retention_days * 86400.0 if retention_days else None,
        deployment_id=args["deployment_id"],
        header=args["header"],
    )
    body = dataset_resource(record)
    return body, {"Location": body["href"]}


@bp.get("")
@bp.arguments(PageQuerySchema, location="query")
@bp.response(200, DatasetListSchema, description="A page of datasets.")
@bp.errors(422)
def list_datasets(args: dict[str, Any]) -> dict[str, Any]:
    """List datasets, newest first

    ---
    Returns a page for DatasetListSchema. Raises webargs' 422 for bad paging.
    """
    records, total = services().datasets.page(instance(), args["limit"], args["offset"])
    return page([dataset_resource(r) for r in records], total, args["limit"], args["offset"])


@bp.get("/<dataset_id>")
@bp.response(200, DatasetSchema, description="The dataset.")
@bp.errors(404)
def get_dataset(dataset_id: str) -> dict[str, Any]:
    """One dataset

    ---
    Returns the dataset's fields. Raises DatasetNotFound (404), also once it expired.
    """
    return dataset_resource(services().datasets.get(instance(), dataset_id))


@bp.delete("/<dataset_id>")
@bp.response(204, description="Deleted.")
@bp.errors(404, 409)
def delete(dataset_id: str) -> Response:
    """Delete a dataset

    Refused (409 dataset_in_use) while a job that reads it is queued or running.
    ---
    Returns an empty 204. Raises DatasetNotFound (404) and DatasetInUse (409).
    """
    delete_dataset(services(), instance(), dataset_id)
    return current_app.response_class(status=204)

"""marshmallow schemas of every request and response.

The routes in api/views declare them with flask-smorest, which loads requests and dumps
responses through them and generates the OpenAPI document from them.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from flask_smorest.fields import Upload
from marshmallow import Schema, ValidationError, fields, post_load, pre_load, validate

from shared.errors import ValidationFailed
from shared.result_formats import FORMATS as RESULT_FORMATS
from shared.scoring import ArrayPayload, ResultShape
from shared.settings import MAX_BATCH_SIZE_LIMIT, MAX_BATCH_WAIT_MS_LIMIT
from shared.status import DeploymentStatus, JobStatus

JOB_STATUSES = [s.value for s in JobStatus]
DEPLOYMENT_STATUSES = [s.value for s in DeploymentStatus]


class FullMatch(validate.Regexp):
    """A pattern the whole value must match, as JSON Schema's anchored ``pattern`` reads it
    (marshmallow's Regexp matches a prefix, and its ``$`` lets a trailing newline through)."""

    def __call__(self, value: Any) -> Any:
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


# Names are labels shown in lists and tables: no control characters (NUL, newlines, escapes).
NAME_CHARACTERS = FullMatch(
    r"^[^\x00-\x1f\x7f]*$", error="Use no control characters (NUL, newline, tab...) in a name."
)
# A description may span lines, but holds no NUL (C strings, terminals and logs cut there).
DESCRIPTION_CHARACTERS = FullMatch(r"^[^\x00]*$", error="Use no NUL character in a description.")
# What an uploaded file's name may not hold: a directory, or control characters.
_UNSAFE_FILENAME = re.compile(r"[/\\\x00-\x1f\x7f]|^\.\.?$")


class JsonNumber(fields.Float):
    """A number of a JSON body: a string ("2") or a boolean is refused, not converted."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str | bool):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


def name_field() -> fields.String:
    """A required name of 1-128 characters without control characters."""
    return fields.String(required=True, validate=[validate.Length(1, 128), NAME_CHARACTERS])


def description_field() -> fields.String:
    """An optional description of up to 2000 characters without NUL."""
    return fields.String(
        load_default=None,
        allow_none=True,
        validate=[validate.Length(max=2000), DESCRIPTION_CHARACTERS],
    )


class ErrorBodySchema(Schema):
    code = fields.String(required=True, metadata={"description": "Stable snake_case code."})
    message = fields.String(
        required=True, metadata={"description": "What went wrong and what to do."}
    )
    details = fields.Dict(metadata={"description": "Field errors or facts that help."})


class ErrorSchema(Schema):
    error = fields.Nested(ErrorBodySchema, required=True)


class PageQuerySchema(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 1000))
    offset = fields.Integer(load_default=0, validate=validate.Range(0, 1_000_000_000))


class LinkSchema(Schema):
    href = fields.String(required=True)


class TensorSpecSchema(Schema):
    name = fields.String(required=True)
    shape = fields.List(
        fields.Integer(allow_none=True),
        required=True,
        allow_none=True,
        metadata={
            "description": "First dimension is the batch (null). An output's shape is null "
            "until a deployment has loaded the model."
        },
    )
    dtype = fields.String(required=True)
    activation = fields.String(
        allow_none=True, metadata={"description": "Final activation, outputs only."}
    )


class ModelUploadSchema(Schema):
    """The multipart form of a model upload: the file and its name and description."""

    file = Upload(
        required=True,
        metadata={"description": ".h5, .hdf5, .keras, or a .tar.gz/.tgz/.zip holding exactly one."},
    )
    name = name_field()
    description = description_field()

    @pre_load
    def _require_file(self, data: Any, **kwargs: Any) -> Any:
        # Browsers send an empty file part (no filename) when no file was chosen, which a
        # required field would accept; and a missing file deserves a message naming the part.
        upload = data.get("file")
        if upload is None or not getattr(upload, "filename", None):
            raise ValidationFailed(
                'Attach the model file as the multipart field "file".',
                details={"fields": {"file": ["Missing data for required field."]}},
            )
        if _UNSAFE_FILENAME.search(upload.filename):
            raise ValidationFailed(
                "Send the model file under its bare name (model.h5): no directory, no control "
                "characters.",
                details={"fields": {"file": ["Not a bare file name."]}},
            )
        return data


class ModelSchema(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True)
    description = fields.String(allow_none=True)
    framework = fields.String(metadata={"description": 'Always "keras".'})
    format = fields.String(metadata={"description": '"h5" or "keras".'})
    model_type = fields.String(metadata={"description": 'e.g. "keras-2.2.4", as WML listed it.'})
    keras_version = fields.String(allow_none=True)
    backend = fields.String(allow_none=True)
    model_class = fields.String()
    filename = fields.String(metadata={"description": "Name of the uploaded file."})
    size_bytes = fields.Integer()
    sha256 = fields.String()
    created_at = fields.String(metadata={"description": "ISO 8601, UTC."})
    inputs = fields.List(fields.Nested(TensorSpecSchema))
    outputs = fields.List(fields.Nested(TensorSpecSchema))
    href = fields.String()
    content_url = fields.String()


class ModelListSchema(Schema):
    resources = fields.List(fields.Nested(ModelSchema), required=True)
    total = fields.Integer()
    limit = fields.Integer()
    offset = fields.Integer()
    next = fields.Nested(LinkSchema, metadata={"description": "Absent on the last page."})


class BatchingSchema(Schema):
    """Dynamic batching of a deployment's online requests."""

    max_batch_size = fields.Integer(
        strict=True,
        validate=validate.Range(1, MAX_BATCH_SIZE_LIMIT),
        metadata={
            "description": "At most this many rows in one model call (default "
            "KSCORE_MAX_BATCH_SIZE); a larger request is scored alone."
        },
    )
    max_wait_ms = JsonNumber(
        validate=validate.Range(0, MAX_BATCH_WAIT_MS_LIMIT),
        metadata={
            "description": "How long a worker waits for more requests to join a batch once "
            "requests arrive together, in ms (default KSCORE_MAX_BATCH_WAIT_MS); 0 never "
            "waits. A lone request never waits."
        },
    )


def batching_field(what: str) -> fields.Nested:
    return fields.Nested(BatchingSchema, metadata={"description": what})


class DeploymentCreateSchema(Schema):
    model_id = fields.String(required=True, validate=validate.Length(1, 64))
    name = name_field()
    description = description_field()
    batching = batching_field("Batching of online requests; missing values take the defaults.")


class DeploymentPatchSchema(Schema):
    """A move to another model behind the same scoring URL (name, description, batching
    optional: a batching object changes the values it names)."""

    model_id = fields.String(
        validate=validate.Length(1, 64),
        metadata={
            "description": "A model of this instance whose inputs equal the current one's "
            "(default: the current model: nothing moves)."
        },
    )
    name = fields.String(validate=[validate.Length(1, 128), NAME_CHARACTERS])
    description = fields.String(
        allow_none=True, validate=[validate.Length(max=2000), DESCRIPTION_CHARACTERS]
    )
    batching = batching_field("Batching of online requests: the values given change.")


class DeploymentQuerySchema(PageQuerySchema):
    model_id = fields.String(load_default=None)


class WarningSchema(Schema):
    code = fields.String(required=True, metadata={"description": '"no_worker".'})
    message = fields.String(required=True)
    queue = fields.String(metadata={"description": "The queue no live worker consumes."})


_WARNINGS = fields.List(
    fields.Nested(WarningSchema),
    metadata={
        "description": "Why the work may not move, e.g. no live worker consumes its queue "
        "(looked up on every read, while it is pending). Empty otherwise."
    },
)


class PendingModelSchema(Schema):
    model_id = fields.String(required=True)
    model_sha256 = fields.String(required=True)
    requested_at = fields.String(metadata={"description": "ISO 8601, UTC."})


class PreviousModelSchema(Schema):
    model_id = fields.String(required=True)
    model_sha256 = fields.String(required=True)
    switched_at = fields.String(
        metadata={"description": "When answers switched to the current model (ISO 8601, UTC)."}
    )


class DeploymentSchema(Schema):
    id = fields.String(required=True)
    batching = fields.Nested(
        BatchingSchema,
        metadata={"description": "The batching of online requests in effect (with defaults)."},
    )
    name = fields.String()
    description = fields.String(allow_none=True)
    model_id = fields.String()
    model_sha256 = fields.String()
    model_type = fields.String()
    type = fields.String(metadata={"description": 'Always "online".'})
    status = fields.String(
        # Validators never run on dump: this one puts the values in the document as an enum.
        validate=validate.OneOf(DEPLOYMENT_STATUSES),
        metadata={"description": ", ".join(DEPLOYMENT_STATUSES)},
    )
    error = fields.Nested(ErrorBodySchema, allow_none=True)
    inputs = fields.List(fields.Nested(TensorSpecSchema))
    outputs = fields.List(fields.Nested(TensorSpecSchema))
    created_at = fields.String()
    updated_at = fields.String()
    scoring_url = fields.String()
    jobs_url = fields.String()
    href = fields.String()
    warnings = _WARNINGS
    pending_model = fields.Nested(
        PendingModelSchema,
        allow_none=True,
        metadata={
            "description": "The model a PATCH asked for, while a worker loads it; the current "
            "model serves until then."
        },
    )
    pending_error = fields.Nested(
        ErrorBodySchema,
        allow_none=True,
        metadata={
            "description": "Why the last PATCH's model did not load (the current model kept "
            "serving)."
        },
    )
    previous_model = fields.Nested(
        PreviousModelSchema,
        allow_none=True,
        metadata={"description": "The model served before the last switch."},
    )


class DeploymentListSchema(ModelListSchema):
    resources = fields.List(fields.Nested(DeploymentSchema), required=True)


class V4InputSchema(Schema):
    """One entry of WML v4's ``input_data``."""

    fields_ = fields.List(fields.String(), data_key="fields", metadata={"description": "Ignored."})
    values = fields.List(fields.Raw(allow_none=True), required=True)


# Left in a loaded scoring body by ScoringPayloadSchema; taken out by result_shape_of.
_RESULT_SHAPE = "_result_shape"


def result_shape_of(body: dict[str, Any] | ArrayPayload) -> ResultShape:
    """The shape a scoring body asks its answer in, taken out of a body loaded by
    ScoringPayloadSchema (v4's ``input_data`` is answered in v4's ``predictions``)."""
    if isinstance(body, dict):
        return ResultShape(body.pop(_RESULT_SHAPE, ResultShape.WML_V3))
    return ResultShape.WML_V3


class RowsField(fields.List):
    """A list of rows; rows the body parser already read into an array
    (``shared.json_rows``) pass through as that array."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, np.ndarray):
            return value
        return super()._deserialize(value, attr, data, **kwargs)


class ScoringPayloadSchema(Schema):
    fields_ = fields.List(
        fields.String(),
        data_key="fields",
        metadata={"description": "Accepted and ignored (WML payloads may name their columns)."},
    )
    values = RowsField(
        # Nulls pass through, so the row check can say which row holds one.
        fields.Raw(allow_none=True),
        metadata={
            "description": (
                "One entry per row, shaped like the model's input without the batch "
                "dimension. Multi-input models: each row is a list with one entry per input, "
                "in model order."
            )
        },
    )
    inputs = fields.Dict(
        keys=fields.String(),
        values=fields.List(fields.Raw(allow_none=True)),
        metadata={"description": "Multi-input models, alternatively: input name -> rows."},
    )
    input_data = fields.List(
        fields.Nested(V4InputSchema),
        validate=validate.Length(equal=1, error="Send the rows as one entry of input_data."),
        metadata={
            "description": 'WML v4: [{"fields": [...], "values": [...]}] instead of "values"; '
            'the answer is then v4\'s {"predictions": [{"fields", "values"}]}.'
        },
    )

    @post_load
    def _from_v4(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if "input_data" not in data:
            return data
        if "values" in data or "inputs" in data:
            raise ValidationFailed(
                'Send the rows either as "input_data" (WML v4) or as "values", not both.',
                details={"fields": {"input_data": ["Cannot be combined with values or inputs."]}},
            )
        data["values"] = data.pop("input_data")[0]["values"]
        data[_RESULT_SHAPE] = ResultShape.WML_V4
        return data


def _callback_url_field(where: str) -> fields.String:
    return fields.String(
        load_default=None,
        validate=validate.Length(min=1, max=2048),
        metadata={
            "description": (
                f"{where}POST the job's document here when it ends, signed as Standard "
                "Webhooks do (webhook-id, webhook-timestamp, webhook-signature) with the "
                "instance's secret (`kscore admin webhook-secret`). The host must be allowed "
                "by KSCORE_WEBHOOK_ALLOW (422 callback_not_allowed otherwise)."
            )
        },
    )


def dataset_rows(body: dict[str, Any], dataset_id: str) -> str:
    """``dataset_id`` of a loaded JobCreateSchema body that sends no rows of its own.

    Raises ValidationFailed (422) when it also sends ``values``, ``inputs`` or ``input_data``.
    """
    if body.get("values") is not None or body.get("inputs") is not None:
        raise ValidationFailed(
            'Send either "dataset_id" or rows ("values", "inputs", "input_data"), not both.',
            details={"fields": {"dataset_id": ["Cannot be combined with rows."]}},
        )
    return dataset_id


class JobCreateSchema(ScoringPayloadSchema):
    dataset_id = fields.String(
        load_default=None,
        validate=validate.Length(1, 64),
        metadata={
            "description": "Score an uploaded dataset (POST /api/v1/datasets) instead of "
            '"values"/"inputs": the job reads its rows from the dataset, chunk by chunk.'
        },
    )
    callback_url = _callback_url_field("")
    retention_days = JsonNumber(
        load_default=None,
        allow_none=True,
        validate=validate.Range(min=0.001, max=365),
        metadata={
            "description": "Keep this job and its result this long (default KSCORE_JOB_RETENTION)."
        },
    )


class JobSubmitQuerySchema(Schema):
    callback_url = _callback_url_field("With a .npy/.npz body: ")
    retention_days = fields.Float(
        load_default=None,
        validate=validate.Range(min=0.001, max=365),
        metadata={"description": "With a .npy/.npz body: keep the job this long (days)."},
    )


class IdempotencyHeaderSchema(Schema):
    idempotency_key = fields.String(
        data_key="Idempotency-Key",
        load_default=None,
        validate=[
            validate.Length(min=1, max=255),
            FullMatch(r"^[\x20-\x7e]*$", error="Use printable ASCII characters only."),
        ],
        metadata={
            "description": (
                "A key of your choice (e.g. a UUID) that makes this request safe to retry: "
                "the same key with the same request, within KSCORE_IDEMPOTENCY_WINDOW (24 h), "
                "answers the job the first request created (Idempotency-Replayed: true) and "
                "scores the rows once; with another body it is a 422 "
                "idempotency_key_reused; while the first request is still being accepted, a "
                "409 idempotency_key_in_use. A request refused with 4xx leaves the key unused."
            )
        },
    )


class OnlineQuerySchema(Schema):
    timeout = fields.Float(
        load_default=None,
        validate=validate.Range(min=0, max=3600),
        metadata={"description": "Seconds to wait before answering 202 with the job."},
    )


class ScoringResultSchema(Schema):
    fields_ = fields.List(
        fields.String(),
        data_key="fields",
        required=True,
        metadata={"description": '["prediction", "prediction_classes", "probability"]'},
    )
    values = fields.List(
        fields.List(fields.Raw()),
        required=True,
        metadata={
            "description": (
                "One row per input row, in order: [prediction, prediction_classes, "
                "probability]. Multi-output models: each of the three is an object keyed by "
                "output name."
            )
        },
    )


class ProgressSchema(Schema):
    rows_done = fields.Integer()
    rows_total = fields.Integer()


class WebhookDeliverySchema(Schema):
    attempt = fields.Integer(metadata={"description": "1 for the first try."})
    at = fields.String(metadata={"description": "When it was sent (ISO 8601, UTC)."})
    status_code = fields.Integer(
        allow_none=True, metadata={"description": "The receiver's HTTP status; null if none."}
    )
    error = fields.String(allow_none=True, metadata={"description": "Why it failed, if it did."})


class JobSchema(Schema):
    id = fields.String(required=True)
    kind = fields.String(metadata={"description": '"batch" or "online".'})
    status = fields.String(
        validate=validate.OneOf(JOB_STATUSES),  # documents the enum; dumping skips validators
        metadata={"description": ", ".join(JOB_STATUSES)},
    )
    progress = fields.Nested(ProgressSchema)
    deployment_id = fields.String()
    dataset_id = fields.String(
        allow_none=True, metadata={"description": "The dataset it scores, if it scores one."}
    )
    model_id = fields.String()
    model_sha256 = fields.String(metadata={"description": "The exact model file that scored it."})
    created_at = fields.String()
    started_at = fields.String(allow_none=True)
    finished_at = fields.String(allow_none=True)
    expires_at = fields.String()
    error = fields.Nested(ErrorBodySchema, allow_none=True)
    href = fields.String()
    result_url = fields.String()
    warnings = _WARNINGS
    callback_url = fields.String(
        allow_none=True,
        metadata={"description": "Where this document is POSTed, signed, when the job ends."},
    )
    webhook_deliveries = fields.List(
        fields.Nested(WebhookDeliverySchema),
        metadata={"description": "Each attempt to deliver the callback, oldest first."},
    )


class JobListSchema(ModelListSchema):
    resources = fields.List(fields.Nested(JobSchema), required=True)


class JobQuerySchema(PageQuerySchema):
    deployment_id = fields.String(load_default=None)
    status = fields.String(load_default=None, validate=validate.OneOf(JOB_STATUSES))


class ResultQuerySchema(Schema):
    format = fields.String(
        load_default=None,
        validate=validate.OneOf(list(RESULT_FORMATS)),
        metadata={
            "description": "The result's format (wins over Accept): "
            + ", ".join(RESULT_FORMATS)
            + "."
        },
    )


class HealthSchema(Schema):
    status = fields.String(required=True, metadata={"description": 'Always "ok".'})
    redis = fields.String(required=True, metadata={"description": 'Always "ok".'})


class ReadinessSchema(Schema):
    status = fields.String(required=True, metadata={"description": 'Always "ready".'})
    workers = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        required=True,
        metadata={"description": "Worker name -> the queues it consumes, comma-separated."},
    )


DATASET_FORMATS = ["npy", "npz", "csv", "jsonl", "parquet"]


class DatasetUploadQuerySchema(Schema):
    format = fields.String(
        load_default=None,
        validate=validate.OneOf(DATASET_FORMATS),
        metadata={"description": "The body's format; default: from the Content-Type."},
    )
    name = fields.String(load_default=None, validate=[validate.Length(1, 128), NAME_CHARACTERS])
    retention_days = fields.Float(
        load_default=None,
        validate=validate.Range(min=0.001, max=365),
        metadata={"description": "Keep the dataset this long (default KSCORE_DATASET_RETENTION)."},
    )
    deployment_id = fields.String(
        load_default=None,
        validate=validate.Length(1, 64),
        metadata={
            "description": "Check every row against this deployment's inputs while uploading "
            "(422 naming the row and column) and store them in its dtypes."
        },
    )
    header = fields.Boolean(
        load_default=None,
        metadata={
            "description": "csv: whether the first line names the columns (default: it does "
            "when it is not all numbers)."
        },
    )


class DatasetInputSchema(Schema):
    name = fields.String(
        allow_none=True,
        metadata={
            "description": "The input's name; null for the one unnamed array of a .npy, "
            ".csv, .jsonl of lists or table of scalar columns."
        },
    )
    shape = fields.List(
        fields.Integer(), required=True, metadata={"description": "Per row, e.g. [28, 28, 1]."}
    )
    dtype = fields.String(required=True)


class DatasetSchema(Schema):
    id = fields.String(required=True)
    name = fields.String(allow_none=True)
    format = fields.String(validate=validate.OneOf(DATASET_FORMATS))
    rows = fields.Integer()
    bytes = fields.Integer(metadata={"description": "What its chunks take in Redis."})
    chunks = fields.Integer()
    chunk_rows = fields.Integer(
        metadata={"description": "Rows per chunk (the last may hold fewer)."}
    )
    inputs = fields.List(fields.Nested(DatasetInputSchema))
    columns = fields.List(
        fields.String(),
        allow_none=True,
        metadata={"description": "Column names of a .csv header or a table's scalar columns."},
    )
    created_at = fields.String(metadata={"description": "ISO 8601, UTC."})
    expires_at = fields.String(
        metadata={"description": "ISO 8601, UTC; a job reading it extends it to its own expiry."}
    )
    validated_for = fields.String(
        allow_none=True,
        metadata={"description": "The deployment whose inputs the rows were checked against."},
    )
    rows_sha256 = fields.String(
        allow_none=True,
        metadata={
            "description": "SHA-256 (hex) of the rows as stored: each chunk's arrays' dtype, "
            "shape and values, in order. Two uploads of the same rows stored in the same "
            "dtypes agree, whatever the file's format; a job's Idempotency-Key fingerprint "
            "uses it. null for a dataset stored before it was recorded."
        },
    )
    href = fields.String()


class DatasetListSchema(ModelListSchema):
    resources = fields.List(fields.Nested(DatasetSchema), required=True)

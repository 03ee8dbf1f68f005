"""marshmallow schemas of TensorFlow Serving's REST bodies (predict and model status)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validates_schema


class PredictRequestSchema(Schema):
    signature_name = fields.String(
        metadata={"description": "Only `serving_default`, the one signature a deployment has."}
    )
    instances = fields.List(
        fields.Raw(allow_none=True),
        metadata={
            "description": "The row form: one entry per row, the input's value for a "
            "one-input model, or an object naming every input."
        },
    )
    inputs = fields.Raw(
        metadata={
            "description": "The columnar form: the rows of a one-input model, or an object "
            "mapping each input name to its rows."
        }
    )

    @validates_schema
    def _one_form(self, data: dict[str, Any], **kwargs: Any) -> None:
        if ("instances" in data) == ("inputs" in data):
            raise ValidationError('Send exactly one of "instances" and "inputs".')


class PredictResponseSchema(Schema):
    predictions = fields.List(
        fields.Raw(allow_none=True),
        metadata={
            "description": "For `instances`: one entry per row, the output's value, or an "
            "object keyed by output name when the model has several outputs."
        },
    )
    outputs = fields.Raw(
        metadata={
            "description": "For `inputs`: the output's rows, or an object mapping each output "
            "name to its rows."
        }
    )


class StatusSchema(Schema):
    error_code = fields.String(required=True, metadata={"description": "OK, or UNKNOWN."})
    error_message = fields.String(required=True)


class VersionStatusSchema(Schema):
    version = fields.String(required=True)
    state = fields.String(
        required=True, metadata={"description": "LOADING, AVAILABLE, or END (failed)."}
    )
    status = fields.Nested(StatusSchema, required=True)


class ModelStatusSchema(Schema):
    model_version_status = fields.List(fields.Nested(VersionStatusSchema), required=True)

"""marshmallow schemas of the Open Inference Protocol's REST bodies (KServe V2, as Triton
serves them): requests are loaded through them, answers documented by them."""

from __future__ import annotations

from marshmallow import INCLUDE, Schema, fields, validate

DATATYPE_NAMES = [
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
]  # fmt: skip


class ParametersField(fields.Dict):
    """``parameters``: any object; kscore reads ``binary_data_size`` and ``binary_data``."""


class ServerMetadataSchema(Schema):
    name = fields.String(required=True)
    version = fields.String(required=True)
    extensions = fields.List(fields.String(), required=True)


class LiveSchema(Schema):
    live = fields.Boolean(required=True)


class ReadySchema(Schema):
    ready = fields.Boolean(required=True)


class ModelReadySchema(ReadySchema):
    name = fields.String(required=True)


class MetadataTensorSchema(Schema):
    name = fields.String(required=True)
    datatype = fields.String(required=True, metadata={"enum": DATATYPE_NAMES})
    shape = fields.List(
        fields.Integer(), required=True, metadata={"description": "-1 for an open dimension."}
    )


class ModelMetadataSchema(Schema):
    name = fields.String(required=True, metadata={"description": "The deployment's name."})
    versions = fields.List(fields.String(), required=True)
    platform = fields.String(required=True, metadata={"description": "keras-<version>."})
    inputs = fields.List(fields.Nested(MetadataTensorSchema), required=True)
    outputs = fields.List(
        fields.Nested(MetadataTensorSchema),
        required=True,
        metadata={"description": "Shapes as the worker recorded them when it deployed the model."},
    )


class RequestInputSchema(Schema):
    class Meta:
        unknown = INCLUDE

    name = fields.String(required=True)
    shape = fields.List(fields.Integer(validate=validate.Range(min=0)), required=True)
    datatype = fields.String(required=True, validate=validate.OneOf(DATATYPE_NAMES))
    parameters = ParametersField()
    data = fields.Raw(
        metadata={"description": "Flat or nested, row-major; absent for binary data."}
    )


class RequestOutputSchema(Schema):
    class Meta:
        unknown = INCLUDE

    name = fields.String(required=True)
    parameters = ParametersField()


class InferRequestSchema(Schema):
    class Meta:
        unknown = INCLUDE

    id = fields.String()
    parameters = ParametersField()
    inputs = fields.List(
        fields.Nested(RequestInputSchema), required=True, validate=validate.Length(min=1)
    )
    outputs = fields.List(fields.Nested(RequestOutputSchema))


class ResponseOutputSchema(Schema):
    name = fields.String(required=True)
    shape = fields.List(fields.Integer(), required=True)
    datatype = fields.String(required=True)
    parameters = ParametersField()
    data = fields.List(fields.Raw(allow_none=True), metadata={"description": "Flat, row-major."})


class InferResponseSchema(Schema):
    model_name = fields.String(required=True)
    model_version = fields.String()
    id = fields.String()
    outputs = fields.List(fields.Nested(ResponseOutputSchema), required=True)

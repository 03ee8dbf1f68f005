"""marshmallow schemas of WML v3's requests and documents, as IBM's client sends and reads them.

Documents are dumped through these (so the OpenAPI document shows them); requests are loaded
through them. Field names are WML's, not kscore's.
"""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from api.schemas import DEPLOYMENT_STATUSES, description_field, name_field

# What a Keras model's framework is called in WML: IBM documented "tensorflow" (with a
# "keras" library) for Keras models; "keras" is accepted as well.
FRAMEWORKS = ["tensorflow", "keras"]


class WmlErrorItemSchema(Schema):
    code = fields.String(required=True, metadata={"description": "kscore's snake_case code."})
    message = fields.String(required=True)
    details = fields.Dict(metadata={"description": "Field errors or facts that help."})


class WmlErrorSchema(Schema):
    trace = fields.String(required=True, metadata={"description": "Id of this error."})
    errors = fields.List(fields.Nested(WmlErrorItemSchema), required=True)


class WmlTokenSchema(Schema):
    token = fields.String(
        required=True,
        metadata={"description": "A JWT; its payload's `exp` is what the client reads."},
    )


class WmlMetadataSchema(Schema):
    guid = fields.String(required=True, metadata={"description": "Lowercase UUID."})
    url = fields.String(required=True, metadata={"description": "This document's URL."})
    created_at = fields.String(allow_none=True, metadata={"description": "ISO 8601, UTC."})
    modified_at = fields.String(allow_none=True)


class WmlLinkSchema(Schema):
    url = fields.String(required=True)


class WmlCountedLinkSchema(WmlLinkSchema):
    count = fields.Integer(required=True)


class WmlListQuerySchema(Schema):
    limit = fields.Integer(load_default=100, validate=validate.Range(1, 1000))
    offset = fields.Integer(load_default=0, validate=validate.Range(0, 1_000_000_000))


class EmptyListSchema(Schema):
    resources = fields.List(fields.Dict(), required=True, metadata={"description": "Always []."})


# --- instance ----------------------------------------------------------------------------


class InstanceEntitySchema(Schema):
    name = fields.String()
    status = fields.String(metadata={"description": 'Always "Active".'})
    published_models = fields.Nested(WmlLinkSchema, required=True)
    deployments = fields.Nested(WmlLinkSchema, required=True)


class InstanceSchema(Schema):
    metadata = fields.Nested(WmlMetadataSchema, required=True)
    entity = fields.Nested(InstanceEntitySchema, required=True)


# --- model assets and published models ---------------------------------------------------


class NameVersionSchema(Schema):
    name = fields.String(required=True)
    version = fields.String(load_default=None, allow_none=True)


class WmlFrameworkSchema(Schema):
    name = fields.String(
        required=True,
        validate=validate.OneOf(FRAMEWORKS, error="kscore serves Keras models: use {choices}."),
    )
    version = fields.String(load_default=None, allow_none=True)
    runtimes = fields.List(fields.Nested(NameVersionSchema))
    libraries = fields.List(fields.Nested(NameVersionSchema))


# Model fields the client may send (models.py::_publish_from_archive), kept as sent.
_PROPERTIES = {
    "input_data_schema": fields.Dict(),
    "output_data_schema": fields.Dict(),
    "training_data_schema": fields.Dict(),
    "training_data_reference": fields.List(fields.Dict()),
    "training_definition_url": fields.String(),
    "label_column": fields.String(),
    "evaluation": fields.Dict(),
    "runtime_url": fields.String(),
}
PROPERTY_NAMES = tuple(_PROPERTIES)


class ModelAssetCreateSchema(Schema.from_dict(_PROPERTIES)):  # type: ignore[misc]
    name = name_field()
    description = description_field()
    framework = fields.Nested(WmlFrameworkSchema, required=True)
    author = fields.Dict(load_default=dict)


class ModelVersionSchema(Schema):
    guid = fields.String(required=True)
    url = fields.String(required=True)
    content_url = fields.String(
        required=True, metadata={"description": "PUT the model file's bytes here."}
    )
    created_at = fields.String()


class ModelAssetEntitySchema(Schema.from_dict(_PROPERTIES)):  # type: ignore[misc]
    name = fields.String(required=True)
    description = fields.String(allow_none=True)
    framework = fields.Nested(WmlFrameworkSchema)
    author = fields.Dict()
    model_version = fields.Nested(ModelVersionSchema, required=True)
    content_status = fields.String(metadata={"description": "pending, uploading or stored."})


class ModelAssetSchema(Schema):
    metadata = fields.Nested(WmlMetadataSchema, required=True)
    entity = fields.Nested(ModelAssetEntitySchema, required=True)


class PublishedModelEntitySchema(Schema.from_dict(_PROPERTIES)):  # type: ignore[misc]
    name = fields.String(required=True)
    description = fields.String(allow_none=True)
    model_type = fields.String(
        required=True,
        metadata={
            "description": "The framework's name-version as the client sent it "
            '("tensorflow-1.5"); "keras-<version>" for models stored through /api/v1.'
        },
    )
    runtime_environment = fields.String(allow_none=True, metadata={"example": "python-3.5"})
    author = fields.Dict()
    latest_version = fields.Nested(ModelVersionSchema)
    deployments = fields.Nested(WmlCountedLinkSchema)


class PublishedModelSchema(Schema):
    metadata = fields.Nested(WmlMetadataSchema, required=True)
    entity = fields.Nested(PublishedModelEntitySchema, required=True)


class PublishedModelListSchema(Schema):
    resources = fields.List(fields.Nested(PublishedModelSchema), required=True)
    next = fields.Nested(WmlLinkSchema, metadata={"description": "Absent on the last page."})


# --- deployments -------------------------------------------------------------------------


class WmlDeploymentQuerySchema(Schema):
    sync = fields.Boolean(
        load_default=False,
        metadata={
            "description": "Accepted; kscore always answers 202 and deploys in the background."
        },
    )


class WmlDeploymentCreateSchema(Schema):
    name = name_field()
    description = description_field()
    type = fields.String(
        load_default="online",
        validate=validate.OneOf(["online"], error="kscore deploys for online scoring only."),
    )
    deployable_asset_url = fields.String(
        required=True,
        # [\s\S], not ".": marshmallow matches from the start, the document's pattern is
        # searched, and "." stops at a newline, so ".*" refused URLs the document allowed.
        validate=validate.Regexp(
            r"[\s\S]*/published_models/[^/]+/?$",
            error="Must be the URL of a published model (.../published_models/<id>).",
        ),
    )


class WmlFailureSchema(Schema):
    errors = fields.List(
        fields.String(),
        metadata={"description": 'JSON strings {"code", "message"}, as WML sent them.'},
    )


class StatusDetailsSchema(Schema):
    status = fields.String(required=True)
    failure = fields.Nested(WmlFailureSchema)


class DeployableAssetSchema(Schema):
    guid = fields.String(required=True)
    url = fields.String(required=True)
    name = fields.String()
    type = fields.String(metadata={"description": 'Always "model".'})


class WmlDeploymentEntitySchema(Schema):
    name = fields.String(required=True)
    description = fields.String(allow_none=True)
    type = fields.String(required=True, metadata={"description": 'Always "online".'})
    status = fields.String(
        required=True,
        validate=validate.OneOf(DEPLOYMENT_STATUSES),  # documents the enum
        metadata={"description": ", ".join(DEPLOYMENT_STATUSES)},
    )
    status_details = fields.Nested(StatusDetailsSchema)
    status_message = fields.String(metadata={"description": "Why it failed."})
    scoring_url = fields.String(required=True)
    model_type = fields.String(allow_none=True)
    runtime_environment = fields.String(allow_none=True)
    deployable_asset = fields.Nested(DeployableAssetSchema, required=True)
    published_model = fields.Nested(DeployableAssetSchema)


class WmlDeploymentSchema(Schema):
    metadata = fields.Nested(WmlMetadataSchema, required=True)
    entity = fields.Nested(WmlDeploymentEntitySchema, required=True)


class WmlDeploymentListSchema(Schema):
    resources = fields.List(fields.Nested(WmlDeploymentSchema), required=True)
    next = fields.Nested(WmlLinkSchema, metadata={"description": "Absent on the last page."})

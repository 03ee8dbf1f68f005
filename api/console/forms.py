"""The rows a console form sends (pasted JSON or a file), loaded as the JSON API loads a
scoring body, and a form loaded through an API schema with the API's error words."""

from __future__ import annotations

import json
from typing import Any

from flask import (
    request,
)
from marshmallow import ValidationError

from api.context import services
from api.schemas import (
    ScoringPayloadSchema,
)
from shared.errors import (
    MalformedRequest,
    PayloadTooLarge,
    ValidationFailed,
)
from shared.scoring import ArrayPayload, parse_array_body


def rows_from_form() -> dict[str, Any] | ArrayPayload:
    """The rows of a form: a file (.json, .npy, .npz) or JSON pasted as ``[[...]]`` or an
    object such as ``{"values": ...}``, loaded as the API loads a scoring body."""
    limit = services().settings.max_request_bytes
    upload = request.files.get("rows_file")
    if upload is not None and upload.filename:
        data = upload.stream.read(limit + 1)
        if len(data) > limit:
            raise PayloadTooLarge(
                f"The file is over the limit of {limit} bytes (KSCORE_MAX_REQUEST_BYTES); "
                "split the rows into several jobs.",
                details={"limit_bytes": limit},
            )
        if upload.filename.lower().endswith((".npy", ".npz")):
            return parse_array_body(data, limit)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedRequest("The file is not UTF-8 JSON, .npy or .npz.") from None
    else:
        text = request.form.get("rows", "")
    if not text.strip():
        raise ValidationFailed(
            'Paste the rows as JSON, such as [[1.0, 2.0]] or {"values": [[1.0, 2.0]]}, or '
            "choose a file.",
            details={"fields": {"rows": ["Missing data for required field."]}},
        )
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedRequest(
            f"The rows are not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
        ) from None
    if isinstance(parsed, list):
        parsed = {"values": parsed}
    if not isinstance(parsed, dict):
        raise ValidationFailed(
            'Send a list of rows, [[...]], or an object such as {"values": [[...]]}.',
            details={"fields": {"rows": ["Not a list or an object."]}},
        )
    return load_form(ScoringPayloadSchema(), parsed)


def load_form(schema: Any, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` loaded through ``schema``; raises ValidationFailed (422) as the API words it."""
    try:
        return dict(schema.load(data))
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        names = ", ".join(sorted(str(k) for k in messages))
        raise ValidationFailed(
            f"The request has invalid fields: {names}.", details={"fields": messages}
        ) from None

"""WML's error body, ``{"trace", "errors": [{"code", "message"}]}``, on every WML path.

kscore's domain errors carry their status and code; on a WML path the app's error handlers
render them in this body instead of kscore's own envelope, including the 404s of routes
kscore does not serve (the client's artifact-type probe relies on those).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from flask import Response, jsonify

log = logging.getLogger(__name__)

# /v2/identity/token is WML's too (the client's repository fetches a token there).
_PREFIXES = ("/v3/", "/v4/", "/v2/identity/")

NOT_FOUND_MESSAGE = (
    "No such WML endpoint: kscore serves WML v3's tokens, published models, deployments and "
    "online scoring for Keras models (see /api/v1/docs)."
)


def is_wml_path(path: str) -> bool:
    """Whether ``path`` belongs to the WML API (so its errors take WML's body)."""
    return path.startswith(_PREFIXES)


def wml_error(status: int, code: str, message: str, details: dict[str, Any] | None) -> Response:
    """The response for an error on a WML path: a fresh trace id and the one error."""
    trace = uuid.uuid4().hex
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    log.info("wml error trace=%s status=%d code=%s", trace, status, code)
    response = jsonify({"trace": trace, "errors": [error]})
    response.status_code = status
    return response

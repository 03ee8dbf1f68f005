"""The Flask app factory. Importing this module builds nothing; ``create_app`` does."""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Flask, Response, jsonify, request
from marshmallow import ValidationError
from werkzeug.exceptions import ClientDisconnected, HTTPException

from api import auth, console, limits
from api.contract import KscoreRequest, build_api
from api.inference import document_inference, inference_error, is_inference_path
from api.services import Services
from api.wml.errors import NOT_FOUND_MESSAGE, is_wml_path, wml_error
from shared.errors import DomainError
from shared.redis_client import connect
from shared.settings import Settings

log = logging.getLogger(__name__)

MAX_FORM_PARTS = 16


def create_app(settings: Settings, client: redis.Redis | None = None) -> Flask:
    """Build the API for these settings (and, in tests, this Redis client).

    Returns the Flask app; connects to nothing until a request needs Redis.
    """
    from api.oip import views as oip
    from api.tfserving import views as tfserving
    from api.views import datasets, deployments, docs, health, jobs, models
    from api.wml import views as wml
    from api.wml.contract import document_wml

    # No static folder: Flask would otherwise serve ./static of whatever directory it runs in.
    app = Flask("kscore.api", static_folder=None)
    app.request_class = KscoreRequest
    # A request body may be a model file up to the limit, plus the multipart envelope.
    app.config["MAX_CONTENT_LENGTH"] = (
        max(settings.max_model_bytes, settings.max_request_bytes) + 1024 * 1024
    )
    app.config["MAX_FORM_MEMORY_SIZE"] = 1024 * 1024
    # An upload is three parts (file, name, description): parsing thousands is work for nothing.
    app.config["MAX_FORM_PARTS"] = MAX_FORM_PARTS
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["kscore"] = Services.build(settings, client or connect(settings))
    api = build_api(app)
    auth.install(app)
    document_wml(api)
    document_inference(api)
    for module in (models, deployments, jobs, datasets, health, wml, oip, tfserving):
        api.register_blueprint(module.bp)
    app.register_blueprint(docs.bp)  # a page for people, not an operation of the API
    limits.install(app)  # wraps the views registered above
    console.install(app)  # after the limits: it meters only its actions, not its polling
    # After build_api: these replace flask-smorest's own HTTPException handler.
    _register_error_handlers(app)
    return app


def _envelope(
    status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> Response:
    if is_wml_path(request.path):
        return wml_error(status, code, message, details)
    if is_inference_path(request.path):
        return inference_error(status, message, details)
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    response = jsonify({"error": body})
    response.status_code = status
    return response


def _validation_failed(messages: dict[str, Any] | list[Any]) -> Response:
    fields = messages if isinstance(messages, dict) else {"_schema": messages}
    names = ", ".join(sorted(str(k) for k in fields))
    return _envelope(
        422, "validation_failed", f"The request has invalid fields: {names}.", {"fields": fields}
    )


_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def domain_error(exc: DomainError) -> Response:
        if exc.status >= 500:
            log.error("request failed code=%s message=%s", exc.code, exc.message)
        response = _envelope(exc.status, exc.code, exc.message, exc.details)
        response.headers.update(exc.headers)
        return response

    @app.errorhandler(ValidationError)
    def validation_error(exc: ValidationError) -> Response:
        return _validation_failed(exc.messages)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        webargs_data = getattr(exc, "data", None)
        if status == 422 and isinstance(webargs_data, dict) and "messages" in webargs_data:
            # flask-smorest's @arguments failed: webargs keys the messages by location
            # ({"query": {"limit": [...]}}) and stops at the first location that fails, so
            # flattening loses nothing and the details read as from any other validation.
            fields: dict[str, Any] = {}
            for messages in webargs_data["messages"].values():
                fields.update(messages if isinstance(messages, dict) else {"_schema": messages})
            return _validation_failed(fields)
        message = exc.description or exc.name
        if isinstance(exc, ClientDisconnected):
            message = (
                "The request body ended before its Content-Length said it would: send the "
                "whole body, with its true length."
            )
        if status == 413:
            # Werkzeug's: a body past MAX_CONTENT_LENGTH, or a form past its limits.
            message = (
                "The request is larger than this server accepts: a body over "
                "KSCORE_MAX_MODEL_BYTES / KSCORE_MAX_REQUEST_BYTES, a form field over 1 MiB, "
                f"or more than {MAX_FORM_PARTS} form parts."
            )
        if status == 404:
            if is_wml_path(request.path):
                message = NOT_FOUND_MESSAGE
            elif is_inference_path(request.path):
                message = "No such endpoint of the inference protocols; see /api/v1/docs."
            else:
                message = "No such endpoint. The API lives under /api/v1; see /api/v1/docs."

        response = _envelope(
            status, _HTTP_CODES.get(status, exc.name.lower().replace(" ", "_")), message
        )
        valid_methods = getattr(exc, "valid_methods", None)
        if valid_methods:
            response.headers["Allow"] = ", ".join(valid_methods)  # RFC 9110 wants it on 405
        return response

    @app.errorhandler(redis.ConnectionError)
    def redis_down(exc: redis.ConnectionError) -> Response:
        log.error("redis unreachable error=%s", exc)
        return _envelope(
            503, "service_unavailable", "kscore's Redis is unreachable; retry shortly."
        )

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return _envelope(
            500, "internal_error", "An unexpected error occurred; the server log has the details."
        )

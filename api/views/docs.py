"""The OpenAPI document and an interactive docs page, served from installed packages (no CDN)."""

from __future__ import annotations

from importlib.resources import files

from flask import Blueprint, Response, jsonify, send_from_directory

from api.openapi import build_spec

bp = Blueprint("docs", __name__, url_prefix="/api/v1")


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3 document."""
    return jsonify(build_spec())


@bp.get("/docs")
def docs_page() -> Response:
    """Swagger UI over the OpenAPI document."""
    html = files("api").joinpath("static/docs.html").read_text(encoding="utf-8")
    return Response(html, mimetype="text/html")


@bp.get("/docs/static/<path:filename>")
def docs_static(filename: str) -> Response:
    """Swagger UI's assets, from the swagger-ui-bundle package."""
    from swagger_ui_bundle import swagger_ui_path

    return send_from_directory(swagger_ui_path, filename, max_age=86400)

"""The interactive docs page, Swagger UI served from the swagger-ui-bundle package (no CDN).

The OpenAPI document it shows, /api/v1/openapi.json, is served by flask-smorest
(``api.contract.build_api``). This page is for people, not an operation of the API, so it is a
plain Flask blueprint and stays out of the document.
"""

from __future__ import annotations

from importlib.resources import files

from flask import Blueprint, Response, send_from_directory

bp = Blueprint("docs", __name__, url_prefix="/api/v1")


@bp.get("/docs")
def docs_page() -> Response:
    """Swagger UI over the OpenAPI document; returns the HTML page."""
    html = files("api").joinpath("static/docs.html").read_text(encoding="utf-8")
    return Response(html, mimetype="text/html")


@bp.get("/docs/static/<path:filename>")
def docs_static(filename: str) -> Response:
    """Swagger UI's assets from the swagger-ui-bundle package; raises ResourceNotFound (404) for others."""
    from swagger_ui_bundle import swagger_ui_path

    return send_from_directory(swagger_ui_path, filename, max_age=86400)

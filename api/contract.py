"""How a route declares its HTTP contract, once: kscore's flask-smorest Api and Blueprint.

Each view states its arguments and every response it can give next to its code
(``@bp.arguments``, ``@bp.response``, ``@bp.errors``, ``@bp.rows_body``); those declarations
parse the request, dump the response and make the OpenAPI document at /api/v1/openapi.json,
so the document cannot drift from the code.
"""

from __future__ import annotations

import importlib.metadata
import json
from collections import Counter
from collections.abc import Callable
from functools import wraps
from typing import Any, ClassVar, TypeVar, cast

import flask
import flask_smorest
import marshmallow as ma
import orjson
from apispec import BasePlugin
from flask import Flask, Request, request
from webargs.flaskparser import FlaskParser
from werkzeug.datastructures import CombinedMultiDict
from werkzeug.exceptions import BadRequest
from werkzeug.formparser import FormDataParser

from api.context import check_body_size, note_body, services
from api.schemas import ErrorSchema
from shared.errors import MalformedRequest
from shared.json_rows import numeric_rows
from shared.scoring import ArrayPayload, parse_array_body

F = TypeVar("F", bound=Callable[..., Any])

OPENAPI_VERSION = "3.0.3"

# What an error status means on any route; a route that means more says so with alt_response.
ERROR_DESCRIPTIONS = {
    400: "Malformed request or unsupported file.",
    404: "Unknown id.",
    406: "The format asked for (query or Accept) does not exist or cannot hold this; the "
    "message lists the formats that can.",
    409: "Conflicts with the resource's state.",
    413: "Too large.",
    422: "Invalid fields or rows; details name them.",
    429: "A per-instance limit (request rate, queued rows or jobs) was reached; see Retry-After.",
    500: "Unexpected failure; the server log has the details.",
    503: "Redis or the broker is unreachable.",
}

# Documents the header of a response that created something (201/202).
LOCATION = {"Location": {"description": "The new resource's URL.", "schema": {"type": "string"}}}

# Documents the header of an answer given again for a repeated Idempotency-Key.
REPLAYED = {
    "Idempotency-Replayed": {
        "description": "`true` when this answers an earlier request with the same "
        "Idempotency-Key (its job, not a new one); absent otherwise.",
        "schema": {"type": "string", "enum": ["true"]},
    }
}

# The bodies numpy writes itself; application/octet-stream is sniffed for either.
ARRAY_MIMETYPES = ("application/x-npy", "application/x-npz", "application/octet-stream")

_BINARY = {"schema": {"type": "string", "format": "binary"}}


class KscoreRequest(flask.Request):
    """Flask's request, whose form body is refused when it cannot be read.

    Werkzeug's form parser drops a body it cannot parse (truncated, or without its boundary)
    and leaves the form empty, so a cut-off upload would read as one without a file: here it is
    a 400 that says so.
    """

    def make_form_data_parser(self) -> FormDataParser:
        parser = super().make_form_data_parser()
        parser.silent = False
        return parser

    def _load_form_data(self) -> None:
        try:
            super()._load_form_data()
        except ValueError as exc:
            raise BadRequest(
                f"The form body cannot be read ({exc}): send multipart/form-data with its "
                "boundary, complete."
            ) from None


class Parser(FlaskParser):
    """webargs' Flask parser with kscore's body rules.

    Adds the ``multipart`` location (form fields and files as one schema, so an upload is one
    documented request body) and refuses unknown query parameters and form fields, as unknown
    JSON fields are: a typo such as ``?stauts=failed`` must not silently widen a listing.
    """

    # webargs declares these two as plain class attributes (not ClassVar): override alike.
    __location_map__: dict[str, str | Callable[..., Any]] = {  # noqa: RUF012
        **FlaskParser.__location_map__,
        "multipart": "load_multipart",
    }
    DEFAULT_UNKNOWN_BY_LOCATION: dict[str, str | None] = {  # noqa: RUF012
        **FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION,
        "query": ma.RAISE,
        "querystring": ma.RAISE,
        "multipart": ma.RAISE,
    }

    def load_json(self, req: Request, schema: ma.Schema) -> Any:
        """The JSON object in the body.

        Raises PayloadTooLarge (413) over KSCORE_MAX_REQUEST_BYTES, and MalformedRequest (400) for a
        body that is not a JSON object, where webargs would treat it as empty.
        """
        check_body_size()
        if not req.is_json:
            raise MalformedRequest(
                "The request body must be a JSON object (Content-Type: application/json)."
            )
        # cache=False: the request keeps no reference to the body or the parsed rows, so they
        # are freed as soon as the view drops them (see api.context.gc_paused).
        body = req.get_data(cache=False)
        note_body(body)
        return parse_json_object(body)

    def load_multipart(self, req: Request, schema: ma.Schema) -> Any:
        """Form fields and files of a multipart body, as one mapping."""
        return self._makeproxy(CombinedMultiDict([req.form, req.files]), schema)


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        twice = next(key for key, n in Counter(key for key, _ in pairs).items() if n > 1)
        raise MalformedRequest(
            f"The JSON body names the key {twice!r} twice in one object; send each key once.",
            details={"key": twice},
        )
    return obj


def _keys_seen(value: Any) -> int:
    """Keys of the objects in ``value``, looking into lists through their first item only.

    Never more than the body's keys: a list whose later items hold objects is undercounted.
    """
    count = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            count += len(item)
            stack.extend(v for v in item.values() if isinstance(v, dict | list))
        elif isinstance(item, list) and item and isinstance(item[0], dict | list):
            stack.append(item[0])
    return count


def _fast_json_object(body: bytes) -> dict[str, Any] | None:
    """The body parsed by orjson (about 4x faster than the standard library on rows of
    numbers), or None where the standard parser must decide: anything orjson refuses (NaN
    tokens, numbers past float64 or 64-bit integers, bad UTF-8: the standard parser's
    messages and checks apply), and any body whose ``:`` count differs from the keys found
    (orjson keeps the last of a repeated key silently; a ``:`` inside a string also lands
    here, harmlessly)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or body.count(b":") != _keys_seen(data):
        return None
    return data


def parse_json_object(body: bytes) -> dict[str, Any]:
    """A request body parsed as one JSON object.

    Raises MalformedRequest (400) for a body that is not valid UTF-8 JSON, that is nested
    deeper than the parser goes (Python's recursion limit, about 1,000 levels: no scoring
    payload comes near it), that repeats a key within an object (RFC 8259 leaves the meaning
    open; kscore refuses rather than guess), or that is not an object.
    """
    data = numeric_rows(body) or _fast_json_object(body)
    if data is not None:
        return data
    try:
        data = json.loads(body, object_pairs_hook=_refuse_duplicate_keys)
    except RecursionError:
        raise MalformedRequest(
            "The JSON body is nested too deeply to be a scoring payload.",
            details={"reason": "nesting"},
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        if "integer string conversion" in str(exc):
            # Python's guard against quadratic int parsing; its message advises the server.
            raise MalformedRequest(
                "The JSON body holds an integer with more than 4300 digits; no input holds it.",
                details={"reason": "number"},
            ) from None
        raise MalformedRequest(
            f"The request body is not valid JSON ({exc}).", details={"reason": "syntax"}
        ) from None
    if not isinstance(data, dict):
        raise MalformedRequest(
            "The request body must be a JSON object (Content-Type: application/json)."
        )
    return data


class RowsBody:
    """The rows of a scoring request, read when the view asks (see ``Blueprint.rows_body``)."""

    def __init__(self, schema: ma.Schema) -> None:
        self.schema = schema

    def read(self) -> dict[str, Any] | ArrayPayload:
        """The JSON body loaded through the schema, or a .npy/.npz body as arrays.

        Raises PayloadTooLarge (413), MalformedRequest (400), a 422 naming invalid fields, or
        ScoringInputInvalid (422) for an array body numpy cannot read safely.
        """
        if request.mimetype in ARRAY_MIMETYPES:
            check_body_size()
            limit = services().settings.max_request_bytes
            body = request.get_data(cache=False)
            note_body(body)
            return parse_array_body(body, limit)
        return cast(dict[str, Any], Blueprint.ARGUMENTS_PARSER.parse(self.schema, location="json"))


def _documentation_only(decorator: Callable[[F], F]) -> Callable[[F], F]:
    """A flask-smorest decorator that only documents (``alt_response``, ``doc``), applied for
    its documentation (``_apidoc``) without its run-time wrapper: each such wrapper only calls
    the view through ``current_app.ensure_sync`` (a context lookup and a coroutine check), and
    a scoring route carries about ten of them, about 4% of an online request's API time."""

    def decorate(func: F) -> F:
        wrapper = decorator(func)
        func._apidoc = wrapper._apidoc  # type: ignore[attr-defined]
        return func

    return decorate


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint with kscore's parser and two declarations of its own."""

    ARGUMENTS_PARSER = Parser()
    DEFAULT_LOCATION_CONTENT_TYPE_MAPPING: ClassVar[dict[str, str]] = {
        **flask_smorest.Blueprint.DEFAULT_LOCATION_CONTENT_TYPE_MAPPING,
        "multipart": "multipart/form-data",
    }

    # The body of every error a route of this blueprint answers.
    ERROR_SCHEMA: ClassVar[type[ma.Schema]] = ErrorSchema

    def alt_response(self, status_code: Any, **kwargs: Any) -> Callable[[F], F]:
        """flask-smorest's ``alt_response``, documenting only (see ``_documentation_only``)."""
        return _documentation_only(super().alt_response(status_code, **kwargs))

    @staticmethod
    def doc(**kwargs: Any) -> Callable[[F], F]:
        """flask-smorest's ``doc``, documenting only (see ``_documentation_only``)."""
        return _documentation_only(flask_smorest.Blueprint.doc(**kwargs))

    def errors(self, *statuses: int) -> Callable[[F], F]:
        """Declare the error statuses a route answers, each with the one error envelope.

        Returns a decorator; raises KeyError for a status without a description here.
        """
        decorators = [
            self.alt_response(
                status, schema=self.ERROR_SCHEMA, description=ERROR_DESCRIPTIONS[status]
            )
            for status in statuses
        ]

        def decorate(func: F) -> F:
            for decorator in decorators:
                func = decorator(func)
            return func

        return decorate

    def rows_body(self, schema: type[ma.Schema]) -> Callable[[F], F]:
        """Declare a scoring body: JSON through ``schema``, or a .npy/.npz file.

        Returns a decorator that documents the body and passes the view a ``RowsBody`` (after
        any ``@arguments``). The view reads it inside ``gc_paused`` rather than before the
        call, so the parsed rows are dropped before the collector runs again; flask-smorest
        cannot describe a body with a schema for one media type and bytes for others.
        """
        request_body = {
            "required": True,
            "description": "JSON, or numpy's own format: a .npy body for a one-input model, "
            "or a .npz holding one array per input, named by input (never pickled objects).",
            "content": {
                "application/json": {"schema": schema},
                **{mimetype: _BINARY for mimetype in ARRAY_MIMETYPES},
            },
        }

        loader = schema()  # one instance: building a schema per request cost ~5% of one

        def decorate(func: F) -> F:
            @wraps(func)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                return func(*args, RowsBody(loader), **kwargs)

            return self.doc(requestBody=request_body)(cast(F, wrapper))

        return decorate


def api_version() -> str:
    """kscore's version from the installed package's metadata ("unknown" when not installed)."""
    try:
        return importlib.metadata.version("kscore")
    except importlib.metadata.PackageNotFoundError:
        # A source tree on PYTHONPATH without `pip install -e .`: still serve a document.
        return "unknown"


BEARER_SCHEME = "bearer"
API_KEY_HEADER_SCHEME = "api_key_header"
UNAUTHORIZED_RESPONSE = "UNAUTHORIZED"


class Security(BasePlugin):
    """Documents who may call what: ``/api/v1`` operations need an API key (bearer, or the
    ``X-API-Key`` header) and may answer 401; the operations outside it are open."""

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        """Set each operation's ``security`` and its 401 response in place; returns nothing."""
        protected = (path or "").startswith("/api/v1")
        for operation in (operations or {}).values():
            if protected:
                operation.setdefault("responses", {})["401"] = UNAUTHORIZED_RESPONSE
            else:
                operation.setdefault("security", [])  # unless a plugin before said otherwise


class ResponsesInStatusOrder(BasePlugin):
    """Lists each operation's responses by status, "default" last.

    flask-smorest lists them in the order the decorators were applied (innermost first), which
    would put the errors before the answer a reader looks for first.
    """

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        """Reorder ``operations[method]["responses"]`` in place; returns nothing."""
        for operation in (operations or {}).values():
            responses = operation.get("responses")
            if responses:
                operation["responses"] = dict(
                    sorted(responses.items(), key=lambda item: (item[0] == "default", str(item[0])))
                )


class Api(flask_smorest.Api):
    """flask-smorest's Api; its generated error responses use kscore's error envelope."""

    ERROR_SCHEMA = ErrorSchema
    # Every operation's "default" response: what no route declares, any route can answer.
    DEFAULT_ERROR_RESPONSE_NAME = "UNEXPECTED_ERROR"


def build_api(app: Flask) -> Api:
    """Configure flask-smorest on ``app``: the spec, and its JSON at /api/v1/openapi.json.

    Returns the Api, to register the blueprints with. Registers flask-smorest's own error
    handler, which ``api.app`` replaces with the one envelope afterwards.
    """
    app.config.update(
        API_TITLE="kscore",
        API_VERSION=api_version(),
        OPENAPI_VERSION=OPENAPI_VERSION,
        OPENAPI_URL_PREFIX="/api/v1",
        OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS={
            "info": {
                "description": (
                    "Self-hosted scoring for Keras models, speaking IBM WML v3's Keras shapes. "
                    'Every error is {"error": {"code", "message", "details"}}. '
                    "Every /api/v1 operation needs an API key: `Authorization: Bearer <key>` "
                    "(an API key or a WML token) or `X-API-Key: <key>`; so does every operation "
                    "of the Open Inference Protocol (/v2) and TF Serving (/v1/models), whose "
                    'errors are {"error": "<message>"}.'
                )
            },
            "security": [{BEARER_SCHEME: []}, {API_KEY_HEADER_SCHEME: []}],
        },
    )
    # Security before ResponsesInStatusOrder: the 401 it adds is sorted with the rest.
    api = Api(app, spec_kwargs={"extra_plugins": [Security(), ResponsesInStatusOrder()]})
    api.spec.components.security_scheme(
        BEARER_SCHEME,
        {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key (`kscore admin create-key`; `kscore up` writes one to "
            "<data dir>/credentials.json) or a WML token.",
        },
    )
    api.spec.components.security_scheme(
        API_KEY_HEADER_SCHEME,
        {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "An API key."},
    )
    api.spec.components.response(
        UNAUTHORIZED_RESPONSE,
        {
            "description": "No API key, or one that is unknown or revoked (401 unauthorized, "
            "with WWW-Authenticate).",
            "content": {"application/json": {"schema": ErrorSchema}},
        },
        lazy=True,
    )
    api.spec.components.response(
        Api.DEFAULT_ERROR_RESPONSE_NAME,
        {
            "description": "Any other error, in the same envelope: 500 internal_error, or 503 "
            "service_unavailable while Redis is unreachable.",
            "content": {"application/json": {"schema": ErrorSchema}},
        },
        lazy=True,
    )
    return api

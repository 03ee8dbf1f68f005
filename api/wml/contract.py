"""How the WML routes declare their contract: kscore's Blueprint with WML's error body and
WML's credentials (HTTP Basic for a token, the token as Bearer for the rest) in the document."""

from __future__ import annotations

from typing import Any

from apispec import BasePlugin

from api.contract import BEARER_SCHEME, Api, Blueprint
from api.wml.errors import is_wml_path
from api.wml.schemas import WmlErrorSchema


class WmlBlueprint(Blueprint):
    """kscore's Blueprint whose documented errors carry WML's error body."""

    ERROR_SCHEMA = WmlErrorSchema

    @staticmethod
    def _prepare_response_doc(doc: Any, doc_info: Any, *, api: Any, **kwargs: Any) -> Any:
        # Every operation's "default" response is the Api's, in kscore's envelope; these
        # routes answer WML's body, documented by DEFAULT_ERROR (see ``document_wml``).
        return Blueprint._prepare_response_doc(doc, doc_info, api=_WmlDefault(api), **kwargs)


DEFAULT_ERROR = "WML_UNEXPECTED_ERROR"


class _WmlDefault:
    """The Api as flask-smorest's response documentation reads it, with WML's default."""

    DEFAULT_ERROR_RESPONSE_NAME = DEFAULT_ERROR

    def __init__(self, api: Any) -> None:
        self._api = api

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)


UNAUTHORIZED = "WML_UNAUTHORIZED"
BASIC_SCHEME = "wml_basic"
TOKEN_PATHS = ("/v3/identity/token", "/v2/identity/token")


class _WmlSecurity(BasePlugin):
    """Documents WML's credentials: HTTP Basic for a token, the token as Bearer for the rest."""

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        """Set the ``security`` and 401 of WML operations in place; returns nothing."""
        if not is_wml_path(path or ""):
            return
        for method, operation in (operations or {}).items():
            if path in TOKEN_PATHS:
                # The refresh carries the token in its body, with no Authorization.
                operation["security"] = [{BASIC_SCHEME: []}] if method == "get" else []
            else:
                operation["security"] = [{BEARER_SCHEME: []}]
                operation.setdefault("responses", {})["401"] = UNAUTHORIZED


def document_wml(api: Api) -> None:
    """Add WML's default error, 401 and credentials to ``api``'s document (before the
    blueprints are registered: the plugin runs as each route is documented)."""
    api.spec.components.response(
        DEFAULT_ERROR,
        {
            "description": "Any other error, in the same body: 500 internal_error, or 503 "
            "service_unavailable while Redis is unreachable.",
            "content": {"application/json": {"schema": WmlErrorSchema}},
        },
        lazy=True,
    )
    api.spec.components.response(
        UNAUTHORIZED,
        {
            "description": "No token, or one that is forged or expired (401 unauthorized).",
            "content": {"application/json": {"schema": WmlErrorSchema}},
        },
        lazy=True,
    )
    api.spec.components.security_scheme(
        BASIC_SCHEME,
        {
            "type": "http",
            "scheme": "basic",
            "description": "An instance's WML username and password.",
        },
    )
    plugin = _WmlSecurity()
    plugin.init_spec(api.spec)
    # First, so that the Api's own plugins (open by default, responses in order) see its work.
    api.spec.plugins.insert(0, plugin)

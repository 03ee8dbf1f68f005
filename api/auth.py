"""Who is calling: credentials in, the caller's instance out.

Every ``/api/v1`` request passes :func:`authenticate` (a before-request hook): an API key or a
WML token as ``Authorization: Bearer ...`` (or ``X-API-Key``) names the instance, and
``api.context.instance()`` returns it to every view and service call. Other blueprints (the
WML ``/v3`` one) authenticate in their own hook and call :func:`set_current_instance`.

WML tokens are JWTs (HS256). IBM's client reads ``exp`` from the payload segment with the
*standard* base64 alphabet (wml-v3-client-protocol.md section 2), so the payload's JSON is
written such that its base64url form is also valid standard base64 (see ``_PayloadEncoder``).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import time
from typing import Any, cast

import jwt
from flask import Flask, current_app, g, request

from api.services import Services
from shared.errors import Unauthorized

log = logging.getLogger(__name__)

TOKEN_ISSUER = "kscore"
_ALGORITHM = "HS256"
# Blueprints under /api/v1 that stay open: the OpenAPI document and the docs page.
_OPEN_BLUEPRINTS = frozenset({"api-docs", "docs"})
_HOW = (
    "Send `Authorization: Bearer <api key>` (or `X-API-Key`). `kscore up` writes a key to "
    "<data dir>/credentials.json; `kscore admin create-key` makes more."
)


def _services() -> Services:
    # Not api.context's: that module returns current_instance() to the views, so it imports
    # this one.
    return cast(Services, current_app.extensions["kscore"])


def current_instance() -> str:
    """The caller's instance for this request.

    Raises Unauthorized (401) when no hook authenticated the request: a route that forgot to
    authenticate fails closed.
    """
    instance = g.get("kscore_instance")
    if instance is None:
        raise Unauthorized("This request carries no credentials. " + _HOW)
    return str(instance)


def set_current_instance(instance_id: str) -> None:
    """Make ``instance_id`` the caller's instance for the rest of this request."""
    g.kscore_instance = instance_id


def instance_for_bearer(token: str) -> str:
    """The instance of an API key or a WML token.

    Raises Unauthorized (401) for an unknown, revoked, malformed or expired credential, or a
    token of a deleted instance.
    """
    svc = _services()
    if token.count(".") == 2:
        instance = _instance_of_token(token)
        if svc.instances.exists(instance):
            return instance
        raise Unauthorized("The token's instance no longer exists.")
    instance_id = svc.instances.instance_for_api_key(token)
    if instance_id is None:
        raise Unauthorized("The API key is unknown or revoked. " + _HOW)
    return instance_id


def instance_for_wml_basic(username: str, password: str) -> str:
    """The instance whose WML ``username`` / ``password`` these are.

    Raises Unauthorized (401) on bad credentials.
    """
    instance_id = _services().instances.instance_for_password(username, password)
    if instance_id is None:
        raise Unauthorized("Wrong username or password.")
    return instance_id


def issue_wml_token(instance_id: str) -> str:
    """A signed WML token for the instance, valid for KSCORE_TOKEN_TTL (12 h by default).

    The token is ``header.payload.signature`` (a JWT, HS256); the payload holds ``exp``
    (epoch seconds), ``iat``, ``iss`` and the instance as ``sub`` and ``instance_id``, and
    decodes with standard base64 as well as base64url.
    """
    svc = _services()
    issued = int(time.time())
    claims = {
        "iss": TOKEN_ISSUER,
        "sub": instance_id,
        "instance_id": instance_id,
        "iat": issued,
        "exp": issued + int(svc.settings.token_ttl_s),
    }
    return jwt.encode(
        claims, svc.token_secret(), algorithm=_ALGORITHM, json_encoder=_PayloadEncoder
    )


def refresh_wml_token(token: str) -> str:
    """A new token for the instance of a valid token (signature and expiry checked).

    Raises Unauthorized (401) for a token that is forged, expired, malformed, or whose
    instance was deleted.
    """
    if token.count(".") != 2:
        raise Unauthorized("Only a WML token can be refreshed; this is not one.")
    return issue_wml_token(instance_for_bearer(token))


def _instance_of_token(token: str) -> str:
    try:
        claims = jwt.decode(
            token,
            _services().token_secret(),
            algorithms=[_ALGORITHM],
            issuer=TOKEN_ISSUER,
            options={"require": ["exp", "iat", "iss", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("The token has expired; get a new one.") from None
    except jwt.InvalidTokenError:
        raise Unauthorized("The token is not valid. " + _HOW) from None
    return str(claims["sub"])


class _PayloadEncoder(json.JSONEncoder):
    """JSON whose base64url form contains no '-' or '_', i.e. is also standard base64.

    In base64, a group of 3 bytes becomes 4 characters, and with ASCII input (high bit 0) only
    the 4th character can reach values 62 and 63 ('-'/'_' in base64url, '+'/'/' in standard),
    and only for the bytes '>', '?', '~' and DEL. JSON can write those four, which occur only
    inside strings here, as \\u escapes: the token then decodes the same with either alphabet.
    """

    _ESCAPES = str.maketrans({">": "\\u003e", "?": "\\u003f", "~": "\\u007e", "\x7f": "\\u007f"})

    def __init__(self, **kwargs: Any) -> None:
        kwargs["ensure_ascii"] = True
        super().__init__(**kwargs)

    def encode(self, o: Any) -> str:
        return super().encode(o).translate(self._ESCAPES)


# The /api/v1 hook


def _credential() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    key = request.headers.get("X-API-Key", "").strip()
    return key or None


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` (an address or ``localhost``) is a loopback address."""
    if not host:
        return False
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bound_to_loopback() -> bool:
    """Whether this request came in on a loopback listener (the server's own address)."""
    # Werkzeug's and gunicorn's servers set SERVER_NAME to the listening socket's address.
    return is_loopback(request.environ.get("SERVER_NAME"))


def request_from_loopback() -> bool:
    """Whether the caller is on this machine: a loopback peer, and no proxy in between (a
    reverse proxy on the same host would make every caller look local)."""
    proxied = "X-Forwarded-For" in request.headers or "Forwarded" in request.headers
    return not proxied and is_loopback(request.remote_addr)


def authenticate() -> None:
    """Before-request hook for ``/api/v1``: sets the caller's instance or raises Unauthorized."""
    if not request.path.startswith("/api/v1") or request.blueprint in _OPEN_BLUEPRINTS:
        return
    if request.path.rstrip("/") in {"/api/v1/docs", "/api/v1/openapi.json"}:
        return  # the open pages with a trailing slash: routing answers them, not a 401
    authenticate_key()


def authenticate_key() -> None:
    """Set the caller's instance from an API key (or WML token) as ``/api/v1`` takes it:
    ``Authorization: Bearer`` or ``X-API-Key``; the inference protocols' blueprints call it
    from their own hooks. Raises Unauthorized (401)."""
    settings = _services().settings
    if settings.auth == "disabled" and bound_to_loopback():
        set_current_instance(settings.default_instance)
        return
    credential = _credential()
    if credential is None:
        header = request.headers.get("Authorization", "").strip()
        if header:
            # The most common slip: the key sent bare, or as HTTP Basic, instead of Bearer.
            scheme = header.partition(" ")[0] if " " in header else "no scheme"
            raise Unauthorized(
                f"The Authorization header has {scheme!r} where `Bearer <api key>` is "
                f"expected. {_HOW}"
            )
        raise Unauthorized("This request needs credentials. " + _HOW)
    set_current_instance(instance_for_bearer(credential))


def install(app: Flask) -> None:
    """Register the ``/api/v1`` hook; warns when KSCORE_AUTH=disabled."""
    settings = app.extensions["kscore"].settings
    if settings.auth == "disabled":
        log.warning(
            "KSCORE_AUTH=disabled: requests to an API bound to loopback (127.0.0.0/8, ::1) are "
            "not authenticated and act as instance %s; on any other address every request "
            "still needs a key",
            settings.default_instance,
        )
    app.before_request(authenticate)

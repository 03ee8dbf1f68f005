"""The console's session cookie: signed with a key derived from the installation's token
secret, sent back only to ``/console``, and opened on no other path."""

from __future__ import annotations

import hashlib
import hmac
from typing import cast

from flask import Flask, Request, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer

from api.services import Services

PREFIX = "/console"
COOKIE_NAME = "kscore_console"


def is_console_path(path: str) -> bool:
    """Whether ``path`` is one of the console's."""
    return path == PREFIX or path.startswith(PREFIX + "/")


def console_secret(app: Flask, purpose: str) -> bytes:
    """A key for ``purpose`` (the session, the CSRF tokens), derived from the token secret
    (KSCORE_TOKEN_SECRET, or the one every API process of the installation reads from Redis):
    every API process signs and checks alike, and no new setting is needed."""
    services = cast(Services, app.extensions["kscore"])
    secret = services.token_secret().encode()
    return hmac.new(secret, f"kscore console {purpose}".encode(), hashlib.sha256).digest()


class ConsoleSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, for console paths only.

    The JSON API never has a session: its requests do not read the token secret from Redis,
    and no cookie can stand in for their credentials.
    """

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if not is_console_path(request.path):
            return None  # Flask substitutes a null session, which it never saves
        return super().open_session(app, request)

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        return URLSafeTimedSerializer(
            console_secret(app, "session"),
            salt=self.salt,
            serializer=self.serializer,
            signer_kwargs={
                "key_derivation": self.key_derivation,
                "digest_method": self.digest_method,
            },
        )

    def get_cookie_name(self, app: Flask) -> str:
        return COOKIE_NAME

    def get_cookie_path(self, app: Flask) -> str:
        return PREFIX

    def get_cookie_httponly(self, app: Flask) -> bool:
        return True

    def get_cookie_samesite(self, app: Flask) -> str:
        # Lax: a link to the console from elsewhere opens signed in; a cross-site POST
        # carries no cookie (and would lack the CSRF token anyway).
        return "Lax"

    def get_cookie_secure(self, app: Flask) -> bool:
        services = cast(Services, app.extensions["kscore"])
        public_url = services.settings.public_url or ""
        return request.is_secure or public_url.startswith("https://")

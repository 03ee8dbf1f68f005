"""The web console at ``/console/``: server-rendered pages for people, over the same services
the JSON API calls.

Signing in exchanges an API key for a token (``api.auth.issue_wml_token``, as WML's
``/v3/identity/token`` does), kept in a session cookie that only ``/console`` receives
(HttpOnly, SameSite=Lax, Secure over https). Every form carries a CSRF token (Flask-WTF),
checked by this blueprint only: the JSON API reads no cookie, so a cross-site page cannot act
through it, and its clients send no token.
"""

from __future__ import annotations

from flask import Flask
from flask_wtf.csrf import CSRFProtect

from api import limits
from api.console.session import ConsoleSessionInterface

csrf = CSRFProtect()


def install(app: Flask) -> None:
    """Serve the console on ``app``: its blueprint, its session cookie and CSRF checks.

    Register it after ``api.limits.install``: the console polls job progress every second, so
    only its actions (``METERED``) count against the instance's rate limit, as the API calls
    they stand for do.
    """
    from api.console import job_views  # noqa: F401  (its routes join the blueprint)
    from api.console.views import METERED, bp

    # CSRFProtect checks nothing by itself; the console's hook calls csrf.protect().
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    # The token lives as long as the signed-in session, not an hour: a page left open and
    # used later still posts.
    app.config["WTF_CSRF_TIME_LIMIT"] = None
    app.session_interface = ConsoleSessionInterface()
    csrf.init_app(app)
    app.register_blueprint(bp)
    limits.meter(app, [f"{bp.name}.{view}" for view in METERED])

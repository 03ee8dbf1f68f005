"""The API's entry point: ``gunicorn "api.wsgi:app"`` or ``flask --app api.wsgi run``."""

from __future__ import annotations

import gc
import logging

from api.app import create_app
from shared.errors import SettingsError
from shared.settings import Settings

try:
    settings = Settings.from_env()
except SettingsError as exc:
    # A bad KSCORE_* value stops the process at start-up with one readable line.
    raise SystemExit(f"kscore: {exc}") from None
logging.basicConfig(
    level=settings.log_level,
    format="%(asctime)s %(levelname)s %(name)s %(message)s",
)
app = create_app(settings)
# Everything built so far lives as long as the process: keep it out of the cyclic GC's full
# passes, which otherwise stall requests with large JSON bodies (the many lists they allocate
# trigger them) by tens of milliseconds.
gc.freeze()

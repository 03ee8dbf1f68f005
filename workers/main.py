"""The worker's entry point: ``celery -A workers.main worker -Q online,deploy,batch``."""

from __future__ import annotations

import logging

from shared.errors import SettingsError
from shared.queueing import make_celery
from shared.settings import Settings
from workers.model_loader import legacy_keras_refusal
from workers.tasks import register_tasks

if refusal := legacy_keras_refusal():
    # Before anything else: the variable changes which Keras every loader in this process runs.
    raise SystemExit(f"kscore: the worker will not start: {refusal}")
try:
    settings = Settings.from_env()
except SettingsError as exc:
    # A bad KSCORE_* value stops the process at start-up with one readable line.
    raise SystemExit(f"kscore: {exc}") from None
logging.basicConfig(
    level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
)
app = make_celery(settings)
register_tasks(app, settings)

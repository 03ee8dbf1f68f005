"""The worker's entry point: ``celery -A workers.main worker -Q online,deploy,batch``."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import worker_ready

from shared.queueing import make_celery
from shared.settings import Settings
from workers.tasks import register_tasks, start_heartbeat

settings = Settings.from_env()
logging.basicConfig(
    level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
)
app = make_celery(settings)
register_tasks(app, settings)


@worker_ready.connect
def _on_ready(sender: Any = None, **_: Any) -> None:
    hostname = getattr(sender, "hostname", "worker")
    queues = ",".join(sorted(q.name for q in app.amqp.queues.consume_from.values()))
    start_heartbeat(settings, hostname, queues)

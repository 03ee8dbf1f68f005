"""The Celery configuration both sides share: task names, queues, delivery guarantees.

The API only sends tasks by name; the worker registers the functions under these names.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from celery import Celery

from shared.settings import SentinelTarget, Settings, sentinel_target

DEPLOY_MODEL = "kscore.deploy_model"
SCORE_CHUNK = "kscore.score_chunk"
DELIVER_WEBHOOK = "kscore.deliver_webhook"

QUEUE_ONLINE = "online"
QUEUE_DEPLOY = "deploy"
QUEUE_BATCH = "batch"
# Order matters: with the "priority" strategy a worker always takes online work first.
ALL_QUEUES = (QUEUE_ONLINE, QUEUE_DEPLOY, QUEUE_BATCH)


def celery_key_prefix(settings: Settings) -> str:
    """Prefix of Celery's own keys in Redis, so installations sharing a Redis stay apart."""
    return f"{settings.key_prefix}:celery:"


def broker_url(redis_url: str) -> str:
    """Kombu's spelling of a one-server ``KSCORE_REDIS_URL``: the same, except a Unix socket
    (redis-py's ``unix:///path?db=N`` is Kombu's ``redis+socket:///path?virtual_host=N``)."""
    parts = urlsplit(redis_url)
    if parts.scheme != "unix":
        return redis_url
    query = [("virtual_host" if k == "db" else k, v) for k, v in parse_qsl(parts.query)]
    tail = f"?{urlencode(query)}" if query else ""
    return f"redis+socket://{parts.netloc}{parts.path}{tail}"


def sentinel_broker_url(target: SentinelTarget) -> str:
    """Kombu's spelling of a sentinel deployment: one ``sentinel://`` URL per sentinel, joined
    by ``;`` (each carries the master's credentials and database; the master's name goes in
    the transport options)."""
    auth = ""
    if target.username or target.password:
        auth = f"{quote(target.username or '', safe='')}:{quote(target.password or '', safe='')}@"
    return ";".join(
        f"sentinel://{auth}{f'[{host}]' if ':' in host else host}:{port}/{target.db}"
        for host, port in target.sentinels
    )


def make_celery(settings: Settings) -> Celery:
    """A Celery app configured for kscore; builds no connection until first use."""
    sentinel = sentinel_target(settings.redis_url)
    broker = broker_url(settings.redis_url) if sentinel is None else sentinel_broker_url(sentinel)
    app = Celery("kscore", broker=broker, set_as_current=False)
    transport: dict[str, Any] = {
        "visibility_timeout": settings.visibility_timeout_s,
        "global_keyprefix": celery_key_prefix(settings),
        "queue_order_strategy": "priority",
        # Look for tasks whose worker vanished often enough that they come back soon after the
        # visibility timeout, not Kombu's default of up to 100 s later.
        "unacked_restore_interval": max(1, min(60, int(settings.visibility_timeout_s / 3))),
        "unacked_restore_throttle": 1,
    }
    if sentinel is not None:
        # Kombu's sentinel transport asks the sentinels for this master on every connection.
        transport["master_name"] = sentinel.master_name
        transport["sentinel_kwargs"] = {"socket_connect_timeout": 1, "socket_timeout": 1}
    app.conf.update(
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        accept_content=["json"],
        # Results live in kscore's job records; Celery only moves messages.
        task_ignore_result=True,
        result_backend=None,
        # Tasks are idempotent (chunks complete exactly once), so redelivery is safe and
        # a task whose worker died is run again instead of lost.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # A task that raised (tasks catch model errors themselves, so this is Redis failing
        # under them) stays unacknowledged and comes back after the visibility timeout.
        task_acks_on_failure_or_timeout=False,
        worker_prefetch_multiplier=1,
        task_default_queue=QUEUE_BATCH,
        task_routes={DEPLOY_MODEL: {"queue": QUEUE_DEPLOY}},
        worker_hijack_root_logger=False,
        # Task events (received, started, succeeded, ...) and the client's task-sent event, so
        # Flower shows every task: published on Redis pub/sub, nothing in kscore reads them.
        worker_send_task_events=True,
        task_send_sent_event=True,
    )
    return app

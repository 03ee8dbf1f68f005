"""The job record is the truth, and this enforces it.

A job's chunks and a deployment's deploy travel as Celery messages in Redis. A crash of Redis
(its append-only file replayed without the last writes), of a worker host, or an operator's
mistake can lose a message while the record still says the work is pending; nothing would ever
pick it up, and the job would stay ``running`` for good. One worker at a time (elected through
a lease in Redis, renewed every pass) compares the records with the messages that exist:

- every chunk of an active job that is not scored yet must be in a queue or held unacknowledged
  by a worker (Celery's ``acks_late``: a chunk being scored is in Kombu's ``unacked`` hash),
  taken over a connection that still exists (see :meth:`Reconciler.server_epoch`);
- every DEPLOY_IN_PROGRESS deployment must have its deploy task in a queue or held;
- every online request (a job with ``transport`` "stream") must have its entry on the online
  stream (waiting, or pending with a consumer; ``shared.online_queue``). Its rows live only
  there, so one missing on two passes cannot be sent again: its job fails with
  ``request_lost`` and the caller hears it (a consumer that died is not this case: its entries
  stay pending and another consumer reclaims them).

A message missing on two passes in a row (a message moves from its queue to ``unacked`` in two
steps, so one look can miss it) is sent again. Sending one twice is safe: chunks complete
exactly once (``job_complete.lua``), and a chunk started more than ``KSCORE_CHUNK_MAX_ATTEMPTS``
times fails its job with ``worker_lost``, so every job ends. The pass reads each queue and the
unacked hash once, in pages: its cost grows with the messages in flight, not with history.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import redis
from celery import Celery

from shared.dataset_store import DatasetStore
from shared.deployment_store import DeploymentStore
from shared.errors import JobNotFound
from shared.job_store import JobStore
from shared.keys import Keys
from shared.online_queue import queued_job_ids
from shared.queueing import (
    ALL_QUEUES,
    DEPLOY_MODEL,
    QUEUE_BATCH,
    QUEUE_DEPLOY,
    QUEUE_ONLINE,
    SCORE_CHUNK,
    celery_key_prefix,
)
from shared.settings import Settings
from shared.status import FinishOutcome, JobStatus
from workers.callbacks import send_callback

log = logging.getLogger(__name__)

Task = tuple[str, tuple[Any, ...]]
_PAGE = 1000

# Take the lease if it is free or ours, and extend it; 1 if we hold it now.
_LEAD = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""


@dataclass
class ReconcileReport:
    """What one pass found and did."""

    active_jobs: int = 0
    resent_chunks: list[tuple[str, int]] = field(default_factory=list)
    resent_deploys: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)


def task_of(raw: bytes) -> Task | None:
    """The task name and arguments of a Kombu message as the Redis transport stores it.

    ``raw`` is the JSON envelope (Celery message protocol 2: ``headers.task`` names the task,
    the base64 ``body`` is ``[args, kwargs, embed]``). None for anything else.
    """
    try:
        message = json.loads(raw)
        name = message["headers"]["task"]
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return str(name), tuple(args)
    except (ValueError, KeyError, TypeError, IndexError):
        return None


# Not a task: the marker of an online request whose stream entry is missing.
LOST_REQUEST = "online-request"


class Reconciler:
    """Re-sends the chunks and deploys whose messages were lost; see the module docstring."""

    def __init__(self, settings: Settings, client: redis.Redis, celery: Celery, name: str) -> None:
        self._settings = settings
        self._r = client
        self._celery = celery
        self._name = name
        self._keys = Keys(settings.key_prefix)
        self._jobs = JobStore(client, self._keys)
        self._datasets = DatasetStore(client, self._keys)
        self._deployments = DeploymentStore(client, self._keys)
        self._prefix = celery_key_prefix(settings)
        self._lead = client.register_script(_LEAD)
        self._suspects: set[Task] = set()
        self._warned_info = False

    def lead(self) -> bool:
        """Take or keep the lease (three intervals long); True while this worker holds it."""
        lease_ms = int(3 * self._settings.reconcile_interval_s * 1000)
        return bool(self._lead(keys=[self._keys.reconciler_lease()], args=[self._name, lease_ms]))

    def server_epoch(self) -> float:
        """The time (UNIX seconds) before which no connection to this Redis server survives.

        Every client connection ends when redis-server restarts or when a replica is promoted in
        its master's place, so a message a worker took before then is in Kombu's ``unacked``
        hash with nobody to run or acknowledge it (Kombu puts such messages back only after the
        visibility timeout, an hour by default). The server is told apart by ``INFO server``'s
        ``run_id``, new at every start, and recorded in ``{p}:reconciler:server`` (kept in the
        append-only file and replicated, so a restart or a promotion shows as a new run_id):

        - the first run_id ever seen, or a restart (the server started after the last pass
          that saw the old one): the server's start time (``now - uptime_in_seconds``);
        - a promotion (the new master was up before that pass, as a replica): the time the
          change is seen. A message taken from the new master between its promotion and this
          pass counts as lost too and is sent once more; exactly-once completion makes that
          harmless.

        0.0 (the visibility timeout alone decides) where ``INFO`` is refused, as some managed
        Redis services allow. Raises redis.RedisError if Redis fails (the pass starts over).
        """
        try:
            info = cast(dict[str, Any], self._r.info("server"))
        except redis.ResponseError as exc:
            if not self._warned_info:
                log.warning("reconcile cannot read INFO server error=%s", exc)
                self._warned_info = True
            return 0.0
        run_id = str(info["run_id"])
        now = time.time()
        started = now - float(info["uptime_in_seconds"])
        key = self._keys.reconciler_server()
        seen = {
            k.decode(): v.decode()
            for k, v in cast(dict[bytes, bytes], self._r.hgetall(key)).items()
        }
        if seen.get("run_id") == run_id:
            epoch = float(seen["epoch"])
        elif not seen or started > float(seen["seen_at"]):
            epoch = started
        else:
            epoch = now
        if seen and seen.get("run_id") != run_id:
            log.warning(
                "reconcile redis restarted or failed over run_id=%s unacked_before=%.3f "
                "(messages taken before then count as lost)",
                run_id,
                epoch,
            )
        self._r.hset(key, mapping={"run_id": run_id, "epoch": epoch, "seen_at": now})
        return epoch

    def in_flight(self) -> set[Task]:
        """Every task waiting in kscore's queues or held unacknowledged by a worker.

        An unacknowledged message does not count when it is older than the visibility timeout
        (its worker lost it: a host that vanished) or than :meth:`server_epoch` (it was taken
        over a connection that a Redis restart or failover ended: the worker reconnected and
        never ran it, and Kombu could not put it back on a dead connection). It is sent again;
        when Kombu restores the old one too, that duplicate is dropped at claim time.
        """
        found: set[Task] = set()
        for queue in ALL_QUEUES:
            for raw in self._pages(self._prefix + queue):
                task = task_of(raw)
                if task is not None:
                    found.add(task)
        fresh_since = max(time.time() - self._settings.visibility_timeout_s, self.server_epoch())
        tags = cast(
            list[bytes],
            self._r.zrangebyscore(self._prefix + "unacked_index", fresh_since, "+inf"),
        )
        held = (
            cast(list[bytes | None], self._r.hmget(self._prefix + "unacked", tags)) if tags else []
        )
        for raw in (h for h in held if h is not None):
            try:
                task = task_of(json.dumps(json.loads(raw)[0]).encode())
            except (ValueError, TypeError, IndexError):
                task = None
            if task is not None:
                found.add(task)
        return found

    def _fail_lost(self, instance: str, job_id: str) -> None:
        error = {
            "code": "request_lost",
            "message": "The online request's entry is gone from Redis (a restart without its "
            "last writes, or an eviction) before a worker answered it; send it again.",
        }
        if self._jobs.finish(instance, job_id, JobStatus.FAILED, error) is FinishOutcome.FINISHED:
            log.warning("reconcile failed online request job_id=%s reason=request_lost", job_id)

    def _pages(self, key: str) -> Iterator[bytes]:
        start = 0
        while True:
            page = cast(list[bytes], self._r.lrange(key, start, start + _PAGE - 1))
            yield from page
            if len(page) < _PAGE:
                return
            start += _PAGE

    def run_once(self) -> ReconcileReport:
        """One pass: find the pending work whose message is missing, and send it again.

        Returns what was found and re-sent. Raises redis.RedisError if Redis fails meanwhile
        (the next pass starts over).
        """
        report = ReconcileReport()
        flying = self.in_flight()
        streamed = set(queued_job_ids(self._r, self._keys))
        wanted: dict[Task, str] = {}
        for instance, job_id in self._jobs.active():
            try:
                record = self._jobs.get(instance, job_id)
            except JobNotFound:  # expired or deleted
                self._jobs.forget_active(instance, job_id)
                continue
            if record.finished:
                # A job canceled through the API, failed at enqueue, or whose worker died
                # between ending it and queueing its callback: the callback is sent here.
                send_callback(self._jobs, self._celery, record)
                if record.dataset_id:  # the dataset goes back to its own retention
                    self._datasets.release_finished(instance, record.dataset_id, job_id)
                self._jobs.forget_active(instance, job_id)
                continue
            report.active_jobs += 1
            if record.transport == "stream":
                if record.id not in streamed:
                    wanted[(LOST_REQUEST, (instance, job_id))] = QUEUE_ONLINE
                continue
            queue = QUEUE_ONLINE if record.kind == "online" else QUEUE_BATCH
            for chunk in self._jobs.pending_chunks(record):
                wanted[(SCORE_CHUNK, (instance, job_id, chunk))] = queue
        for deployment in self._deployments.in_progress():
            wanted[(DEPLOY_MODEL, (deployment.instance, deployment.id))] = QUEUE_DEPLOY
        missing = {task for task in wanted if task not in flying}
        for task in missing & self._suspects:
            name, args = task
            if name == LOST_REQUEST:
                self._fail_lost(str(args[0]), str(args[1]))
                report.failed_requests.append(str(args[1]))
                continue
            self._celery.send_task(name, args=list(args), queue=wanted[task])
            if name == SCORE_CHUNK:
                report.resent_chunks.append((str(args[1]), int(args[2])))
                log.warning(
                    "reconcile resent chunk job_id=%s chunk=%s reason=message_lost",
                    args[1],
                    args[2],
                )
            else:
                report.resent_deploys.append(str(args[1]))
                log.warning("reconcile resent deploy deployment_id=%s reason=message_lost", args[1])
        # A message found missing now is sent on the next pass if it is still missing then.
        self._suspects = missing - self._suspects
        return report


class ReconcilerThread:
    """Runs a :class:`Reconciler` every ``KSCORE_RECONCILE_INTERVAL`` in a daemon thread of a
    worker's main process, whenever this worker holds the lease."""

    def __init__(self, reconciler: Reconciler, interval_s: float) -> None:
        self._reconciler = reconciler
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kscore-reconciler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self._interval_s + 5)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            started = time.perf_counter()
            try:
                if not self._reconciler.lead():
                    continue
                report = self._reconciler.run_once()
            except Exception as exc:  # Redis down, broker down: the next pass tries again
                log.warning("reconcile pass failed error=%s", exc)
                continue
            log.debug(
                "reconcile pass active_jobs=%d resent_chunks=%d resent_deploys=%d seconds=%.3f",
                report.active_jobs,
                len(report.resent_chunks),
                len(report.resent_deploys),
                time.perf_counter() - started,
            )

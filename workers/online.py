"""Dynamic batching of online requests: a thread in each worker pool process drains the online
stream (``shared.online_queue``) and scores concurrent requests for one model in one call.

The wait is bounded as Triton's dynamic batcher bounds it (``max_queue_delay``: a request
waits at most that long for batch-mates) and greedy as BentoML's adaptive batcher is when
traffic is light: what is on the stream is taken at once, and the thread waits up to the
deployment's ``max_wait_ms`` for more rows only while requests are arriving together (the last
read, or the last batch, held more than one), so a lone client never waits. A batch never holds
more than the first request's ``max_batch_size`` rows (a single larger request is scored alone).

celery-batches (a Celery task class that hands a task the requests buffered in a worker) was
the first candidate; it keeps a Celery message per request (publish, deliver, a prefork pipe
hop and, with events on, three event publishes), which profiling showed cost more than the
model, and it flushes on a timer rather than greedily. The stream has none of those costs:
the API adds the entry in the script that writes the job, the worker reads many in one call and
settles a whole batch (answers, acknowledgements) in one pipeline.

Errors stay per request: rows that cannot be decoded fail their own job; if the merged model
call raises, each request of the batch is scored alone, so only those whose rows make the
model fail are failed (with the error ``score_chunk`` would record).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import redis

from shared.errors import DomainError
from shared.online_queue import OnlineQueue, OnlineRequest
from shared.redis_client import connect
from shared.results import render
from shared.scoring import decode_chunk
from shared.settings import Settings
from shared.status import ClaimOutcome

if TYPE_CHECKING:
    from workers.model_loader import LoadedModel
    from workers.tasks import Runtime

log = logging.getLogger(__name__)

# How long one read blocks when the stream is idle (ms): the bound on noticing a stop.
IDLE_BLOCK_MS = 1000
# How often (s) a consumer looks for requests a dead consumer left pending.
RECLAIM_EVERY_S = 1.0


def record_error(exc: BaseException, code: str) -> dict[str, Any]:
    """The error a record shows: a domain error as it is, anything else under ``code``."""
    if isinstance(exc, DomainError):
        return {"code": exc.code, "message": exc.message}
    text = str(exc).strip().splitlines()
    return {"code": code, "message": f"{type(exc).__name__}: {text[0] if text else ''}"[:1000]}


class OnlineBatcher:
    """Reads the online stream as one consumer and answers the requests it takes, in batches.

    ``runtime`` gives this process's Runtime (its job store and model cache). Start it in the
    process that scores: a prefork pool process, or the worker itself for a thread pool.
    """

    def __init__(self, settings: Settings, runtime: Callable[[], Runtime]) -> None:
        self._settings = settings
        self._runtime = runtime
        self._stop = threading.Event()
        self._last_batch = 1
        self._thread = threading.Thread(target=self._run, name="kscore-online", daemon=True)
        self.consumer = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop after the batch in hand (its answers are written first)."""
        self._stop.set()
        self._thread.join(timeout=timeout_s)

    def _run(self) -> None:
        client = connect(self._settings)
        queue = OnlineQueue(client, self._runtime().keys, self.consumer)
        reclaim_ms = max(1, int(self._settings.online_reclaim_s * 1000))
        next_reclaim = 0.0
        while not self._stop.is_set():
            try:
                if time.monotonic() >= next_reclaim:
                    next_reclaim = time.monotonic() + RECLAIM_EVERY_S
                    taken, bad = queue.reclaim(reclaim_ms)
                    queue.drop(bad)
                    if taken:
                        log.warning(
                            "online requests reclaimed count=%d consumer=%s",
                            len(taken),
                            self.consumer,
                        )
                        self.score(queue, taken)
                requests, bad = queue.read(self._settings.max_batch_size, IDLE_BLOCK_MS)
                queue.drop(bad)
                if requests:
                    self.score(queue, self._gather(queue, requests))
            except redis.RedisError as exc:  # what it took stays pending: reclaimed later
                log.warning("online stream read failed error=%s", exc)
                self._stop.wait(1.0)
            except Exception:  # a bug: log it, keep serving; the entries are reclaimed later
                log.exception("online batch failed consumer=%s", self.consumer)
                self._stop.wait(0.1)
        client.close()

    def _gather(self, queue: OnlineQueue, requests: list[OnlineRequest]) -> list[OnlineRequest]:
        """``requests`` plus those that arrive within the first one's ``max_wait_ms``, while
        its model's rows stay under its ``max_batch_size``; no wait for a lone request."""
        first = requests[0]
        if first.max_wait_ms <= 0 or (len(requests) == 1 and self._last_batch <= 1):
            return requests
        deadline = time.monotonic() + first.max_wait_ms / 1000.0
        while True:
            rows = sum(r.rows for r in requests if r.model_key == first.model_key)
            room = first.max_batch_size - rows
            left_ms = (deadline - time.monotonic()) * 1000.0
            if room <= 0 or left_ms <= 0:
                return requests
            # BLOCK 0 would wait for ever: under a millisecond left, only take what is there.
            more, bad = queue.read(room, int(left_ms) if left_ms >= 1 else None)
            queue.drop(bad)
            if not more:
                return requests
            requests = requests + more

    def score(self, queue: OnlineQueue, requests: list[OnlineRequest]) -> None:
        """Answer ``requests``: by model, in batches of at most the first one's
        ``max_batch_size`` rows, each settled in one round trip."""
        by_model: dict[tuple[str, str], list[OnlineRequest]] = {}
        for request in requests:
            by_model.setdefault(request.model_key, []).append(request)
        largest = 0
        for group in by_model.values():
            batch: list[OnlineRequest] = []
            rows = 0
            for request in group:
                if batch and rows + request.rows > batch[0].max_batch_size:
                    self._score_batch(queue, batch)
                    largest = max(largest, len(batch))
                    batch, rows = [], 0
                batch.append(request)
                rows += request.rows
            self._score_batch(queue, batch)
            largest = max(largest, len(batch))
        self._last_batch = largest

    def _score_batch(self, queue: OnlineQueue, batch: list[OnlineRequest]) -> None:
        rt = self._runtime()
        started = time.perf_counter()
        claims = rt.jobs.claim_chunks(
            [(r.instance, r.job_id, 0) for r in batch], rt.settings.chunk_max_attempts
        )
        run = [r for r, c in zip(batch, claims, strict=True) if c is ClaimOutcome.RUN]
        for request, claim in zip(batch, claims, strict=True):
            if claim is not ClaimOutcome.RUN:  # canceled, answered before, or out of attempts
                log.info("online request skipped job_id=%s claim=%s", request.job_id, claim)
        completed: list[tuple[str, str, int, bytes]] = []
        failed: list[tuple[str, str, dict[str, Any]]] = []
        if run:
            try:
                model = rt.models.get(run[0].model_sha256, run[0].model_filename)
            except Exception as exc:  # every request of this model fails, and says why
                log.exception("online model failed to load sha256=%s", run[0].model_sha256)
                error = record_error(exc, "scoring_failed")
                failed = [(r.instance, r.job_id, error) for r in run]
            else:
                completed, failed = self._predict(model, run)
        rt.jobs.settle_online(completed, failed, [r.entry_id for r in batch])
        log.debug(
            "online batch requests=%d rows=%d failed=%d seconds=%.4f",
            len(batch),
            sum(r.rows for r in run),
            len(failed),
            time.perf_counter() - started,
        )

    def _predict(
        self, model: LoadedModel, run: list[OnlineRequest]
    ) -> tuple[list[tuple[str, str, int, bytes]], list[tuple[str, str, dict[str, Any]]]]:
        specs = [s.to_dict() for s in model.input_specs]
        completed: list[tuple[str, str, int, bytes]] = []
        failed: list[tuple[str, str, dict[str, Any]]] = []
        # Requests whose arrays agree in per-row shape and dtype can share one call.
        groups: dict[tuple[Any, ...], list[tuple[OnlineRequest, list[np.ndarray]]]] = {}
        for request in run:
            try:
                arrays = decode_chunk(request.data, specs)
            except Exception as exc:
                log.exception("online rows unreadable job_id=%s", request.job_id)
                failed.append((request.instance, request.job_id, record_error(exc, "bad_input")))
                continue
            key = tuple((a.shape[1:], a.dtype.str) for a in arrays)
            groups.setdefault(key, []).append((request, arrays))
        for members in groups.values():
            outputs: list[list[np.ndarray]] | None = None
            if len(members) > 1:
                merged = [
                    np.concatenate(parts) for parts in zip(*(m[1] for m in members), strict=True)
                ]
                try:
                    together = model.predict(merged)
                except Exception as exc:  # some request's rows: find it by scoring each alone
                    log.info("online batch call failed, scoring alone error=%s", exc)
                else:
                    outputs = []
                    start = 0
                    for _, arrays in members:
                        end = start + len(arrays[0])
                        outputs.append([o[start:end] for o in together])
                        start = end
            for index, (request, arrays) in enumerate(members):
                try:
                    mine = outputs[index] if outputs is not None else model.predict(arrays)
                    rows = len(arrays[0])
                    completed.append(
                        (
                            request.instance,
                            request.job_id,
                            rows,
                            render(mine, "online", request.result_shape, request.output_names),
                        )
                    )
                except Exception as exc:  # the job says failed and why; the log keeps the rest
                    log.exception("online request failed job_id=%s", request.job_id)
                    failed.append(
                        (request.instance, request.job_id, record_error(exc, "scoring_failed"))
                    )
        return completed, failed

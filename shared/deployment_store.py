"""Deployments: metadata and status, one JSON record each, indexed by creation time."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any, cast

import redis
from redis.client import Pipeline

from shared.errors import (
    DeploymentMovePending,
    DeploymentNotFound,
    DeploymentNotReady,
    ModelInputsMismatch,
    ModelNotFound,
)
from shared.json_records import update_json_record
from shared.keys import Keys, is_resource_id
from shared.model_store import ModelRecord
from shared.status import DeploymentStatus
from shared.timeutil import now

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeploymentRecord:
    """A deployment as kept in Redis. It copies what scoring needs from its model."""

    id: str
    instance: str
    name: str
    description: str | None
    model_id: str
    model_sha256: str
    model_filename: str
    model_type: str
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    status: DeploymentStatus
    error: dict[str, Any] | None
    created_at: float
    updated_at: float
    # A move (PATCH with a new model_id): the model a worker is loading, ``{"model_id",
    # "model_sha256", "model_filename", "model_type", "requested_at"}``; why the last move
    # failed (the current model kept serving); and the model served before the last switch,
    # ``{"model_id", "model_sha256", "switched_at"}``. Absent from records written before moves.
    pending_model: dict[str, Any] | None = None
    pending_error: dict[str, Any] | None = None
    previous_model: dict[str, Any] | None = None
    # Dynamic batching of its online requests, as the caller set it: ``{"max_batch_size":
    # rows, "max_wait_ms": ms}``, either key absent for the installation's default.
    batching: dict[str, Any] | None = None

    def batching_with(self, max_batch_size: int, max_wait_ms: float) -> dict[str, Any]:
        """The batching in effect: the caller's values over the defaults given."""
        given = self.batching or {}
        return {
            "max_batch_size": int(given.get("max_batch_size", max_batch_size)),
            "max_wait_ms": float(given.get("max_wait_ms", max_wait_ms)),
        }

    def to_json(self) -> str:
        """The record as stored in Redis (JSON text)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> DeploymentRecord:
        """The record stored as ``raw``. Raises ValueError for an unknown status."""
        data = json.loads(raw)
        data["status"] = DeploymentStatus(data["status"])
        return cls(**data)


def input_mismatches(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[str]:
    """Why rows that fit inputs ``old`` would not fit inputs ``new`` (names, shapes, dtypes in
    order); empty when they fit alike."""

    def described(specs: list[dict[str, Any]]) -> list[tuple[Any, Any, Any]]:
        return [(s["name"], list(s["shape"] or []), s["dtype"]) for s in specs]

    before, after = described(old), described(new)
    if len(before) != len(after):
        return [f"the deployment's model takes {len(before)} input(s), this model {len(after)}"]
    return [
        f"input {i}: {b[0]!r} {b[1]} {b[2]} now, {a[0]!r} {a[1]} {a[2]} in this model"
        for i, (b, a) in enumerate(zip(before, after, strict=True))
        if b != a
    ]


# Deployments whose records one API process keeps for scoring (``DeploymentStore.current``).
CURRENT_CACHE_SIZE = 256


class DeploymentStore:
    """Create, read, list, update and delete deployments."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._keys = keys
        self._current: OrderedDict[str, tuple[DeploymentRecord, str]] = OrderedDict()
        self._current_lock = threading.Lock()

    def create(
        self,
        instance: str,
        model: ModelRecord,
        name: str,
        description: str | None,
        batching: dict[str, Any] | None = None,
    ) -> DeploymentRecord:
        """A new deployment in DEPLOY_IN_PROGRESS, atomically tied to a model that exists.

        Returns the stored record. Raises ModelNotFound when the model is gone (a concurrent
        DELETE of the model either sees this deployment and answers 409, or wins and this
        raises).
        """
        ts = now()
        record = DeploymentRecord(
            id=str(uuid.uuid4()),
            instance=instance,
            name=name,
            description=description,
            model_id=model.id,
            model_sha256=model.sha256,
            model_filename=model.filename,
            model_type=model.model_type,
            inputs=model.inputs,
            outputs=model.outputs,
            status=DeploymentStatus.DEPLOY_IN_PROGRESS,
            error=None,
            created_at=ts,
            updated_at=ts,
            batching=batching or None,
        )
        model_key = self._keys.model(instance, model.id)

        def write(pipe: Pipeline) -> None:
            # The model must still exist when the deployment is written: a concurrent
            # DELETE of the model watches the deployments set and retries.
            if not pipe.exists(model_key):
                raise ModelNotFound(model.id)
            pipe.multi()
            pipe.set(self._keys.deployment(instance, record.id), record.to_json())
            pipe.zadd(self._keys.deployments_index(instance), {record.id: ts})
            pipe.sadd(self._keys.model_deployments(instance, model.id), record.id)

        self._r.transaction(write, model_key, value_from_callable=True)
        log.info("deployment created deployment_id=%s model_id=%s", record.id, model.id)
        return record

    def get(self, instance: str, deployment_id: str) -> DeploymentRecord:
        """The deployment ``deployment_id``. Raises DeploymentNotFound for an unknown id."""
        if not is_resource_id(deployment_id):
            raise DeploymentNotFound(deployment_id)
        raw = self._r.get(self._keys.deployment(instance, deployment_id))
        if raw is None:
            raise DeploymentNotFound(deployment_id)
        return DeploymentRecord.from_json(raw)

    def current(
        self, instance: str, deployment_id: str, *, fresh: bool = False
    ) -> tuple[DeploymentRecord, str]:
        """The deployment and the SHA-1 (hex) of its record as stored, for a job to be
        created against (``JobStore.create(deployment_sha1=...)``), from this process's cache
        of the last ``CURRENT_CACHE_SIZE`` deployments scored unless ``fresh``. Only records
        that can score (DEPLOY_SUCCESS) are kept: one that cannot is read each time, so a
        refusal never comes from a record that is out of date.

        The cached record may be out of date: job_create.lua compares the digest with the
        stored record and refuses the job (``DeploymentChanged``) if they differ, and the
        caller then asks again with ``fresh``. So a job is never created against a record
        other than the stored one, and an online request pays no read for its deployment.
        Raises DeploymentNotFound for an unknown id.
        """
        key = self._keys.deployment(instance, deployment_id)
        if not fresh:
            with self._current_lock:
                cached = self._current.get(key)
                if cached is not None:
                    self._current.move_to_end(key)
                    return cached
        if not is_resource_id(deployment_id):
            raise DeploymentNotFound(deployment_id)
        raw = cast(bytes | None, self._r.get(key))
        if raw is None:
            with self._current_lock:
                self._current.pop(key, None)
            raise DeploymentNotFound(deployment_id)
        entry = (DeploymentRecord.from_json(raw), hashlib.sha1(raw).hexdigest())
        with self._current_lock:
            if entry[0].status is DeploymentStatus.DEPLOY_SUCCESS:
                self._current[key] = entry
                if len(self._current) > CURRENT_CACHE_SIZE:
                    self._current.popitem(last=False)
            else:
                self._current.pop(key, None)
        return entry

    def page(
        self, instance: str, limit: int, offset: int, model_id: str | None = None
    ) -> tuple[list[DeploymentRecord], int]:
        """Up to ``limit`` deployments after skipping ``offset``, newest first (only those of
        ``model_id`` when given), and how many there are in all."""
        if model_id is not None:
            members = self._r.smembers(self._keys.model_deployments(instance, model_id))
            ids = sorted(i.decode() for i in members)  # type: ignore[union-attr]
            records = self._load(instance, ids)
            records.sort(key=lambda d: d.created_at, reverse=True)
            return records[offset : offset + limit], len(records)
        index = self._keys.deployments_index(instance)
        page = [i.decode() for i in self._r.zrevrange(index, offset, offset + limit - 1)]  # type: ignore[union-attr]
        return self._load(instance, page), int(self._r.zcard(index))

    def count_by_model(self, instance: str, model_ids: list[str]) -> list[int]:
        """How many deployments use each of ``model_ids``, in that order."""
        with self._r.pipeline(transaction=False) as pipe:
            for model_id in model_ids:
                pipe.scard(self._keys.model_deployments(instance, model_id))
            return [int(n) for n in pipe.execute()]

    def newest_ready(self, limit: int) -> list[DeploymentRecord]:
        """Up to ``limit`` DEPLOY_SUCCESS deployments of any instance, newest first, one per model
        file: what a new worker process loads before its first request."""
        candidates = self._newest_of_every_instance(4 * limit)
        ready, seen = [], set()
        for record in sorted(candidates, key=lambda d: d.created_at, reverse=True):
            if record.status is DeploymentStatus.DEPLOY_SUCCESS and record.model_sha256 not in seen:
                seen.add(record.model_sha256)
                ready.append(record)
        return ready[:limit]

    def in_progress(self, per_instance: int = 1000) -> list[DeploymentRecord]:
        """DEPLOY_IN_PROGRESS or moving deployments of any instance, among each instance's
        newest ``per_instance``: what a reconciler checks for a lost deploy task."""
        return [
            record
            for record in self._newest_of_every_instance(per_instance)
            if record.status is DeploymentStatus.DEPLOY_IN_PROGRESS
            or record.pending_model is not None
        ]

    def _newest_of_every_instance(self, per_instance: int) -> list[DeploymentRecord]:
        records: list[DeploymentRecord] = []
        for key in self._r.scan_iter(self._keys.deployments_index("*"), count=1000):
            instance = self._keys.instance_of_deployments_index(key.decode())
            if instance is None:
                continue  # e.g. a model's set of deployments, which ends the same way
            ids = [i.decode() for i in self._r.zrevrange(key, 0, per_instance - 1)]  # type: ignore[union-attr]
            records += self._load(instance, ids)
        return records

    def _load(self, instance: str, ids: list[str]) -> list[DeploymentRecord]:
        if not ids:
            return []
        raws = self._r.mget([self._keys.deployment(instance, i) for i in ids])
        return [DeploymentRecord.from_json(r) for r in raws if r is not None]

    def set_status(
        self,
        instance: str,
        deployment_id: str,
        status: DeploymentStatus,
        error: dict[str, Any] | None = None,
        *,
        outputs: list[dict[str, Any]] | None = None,
    ) -> DeploymentRecord | None:
        """Move a deployment to ``status`` with ``error`` (None clears it), in one write.

        ``outputs``, when given, replaces the output specs with those the loaded model
        reports (one ``{"name", "shape", "dtype", "activation"}`` each, the batch dimension
        None), so a client that sees DEPLOY_SUCCESS already sees the shapes. Returns the
        updated record, or None if the deployment was deleted meanwhile.
        """

        def change(record: DeploymentRecord) -> DeploymentRecord:
            return replace(
                record,
                status=DeploymentStatus(status),
                error=error,
                outputs=record.outputs if outputs is None else outputs,
                updated_at=now(),
            )

        updated = update_json_record(
            self._r,
            self._keys.deployment(instance, deployment_id),
            DeploymentRecord.from_json,
            change,
            DeploymentRecord.to_json,
        )
        if updated is not None:
            log.info("deployment status deployment_id=%s status=%s", deployment_id, status)
        return updated

    def start_move(
        self,
        instance: str,
        deployment_id: str,
        model: ModelRecord,
        changes: dict[str, Any],
    ) -> DeploymentRecord:
        """Record ``model`` as the deployment's pending model (and apply ``changes``: ``name``,
        ``description``, ``batching``: the values it names replace the record's), holding the
        model against DELETE, in one transaction.

        The current model keeps serving until ``switch_model``. The same model as the current
        one moves nothing: only ``changes`` apply. Returns the updated record. Raises
        DeploymentNotFound, ModelNotFound, DeploymentMovePending (another move is loading),
        DeploymentNotReady (the first deploy is still loading) and ModelInputsMismatch.
        """
        if not is_resource_id(deployment_id):
            raise DeploymentNotFound(deployment_id)
        key = self._keys.deployment(instance, deployment_id)
        model_key = self._keys.model(instance, model.id)

        def write(pipe: Pipeline) -> DeploymentRecord:
            raw = pipe.get(key)
            if raw is None:
                raise DeploymentNotFound(deployment_id)
            if not pipe.exists(model_key):
                raise ModelNotFound(model.id)
            record = DeploymentRecord.from_json(cast(bytes, raw))
            if record.pending_model is not None:
                raise DeploymentMovePending(
                    f"Deployment {deployment_id} is already moving to model "
                    f"{record.pending_model['model_id']}; wait until GET shows it current "
                    "(or a pending_error), then PATCH again.",
                    details={"pending_model_id": record.pending_model["model_id"]},
                )
            if record.status is DeploymentStatus.DEPLOY_IN_PROGRESS:
                raise DeploymentNotReady(
                    f"Deployment {deployment_id} is still loading its first model; PATCH it "
                    "once it is DEPLOY_SUCCESS or DEPLOY_FAILED.",
                    details={"status": record.status},
                )
            mismatches = input_mismatches(record.inputs, model.inputs)
            if mismatches:
                raise ModelInputsMismatch(
                    f"Model {model.id} does not take the rows deployment {deployment_id} "
                    f"takes ({'; '.join(mismatches)}); a deployment moves only to a model "
                    "with the same inputs (names, shapes, dtypes). Deploy it separately.",
                    details={"mismatches": mismatches},
                )
            pending = None
            if model.id != record.model_id:
                pending = {
                    "model_id": model.id,
                    "model_sha256": model.sha256,
                    "model_filename": model.filename,
                    "model_type": model.model_type,
                    "requested_at": now(),
                }
            applied = dict(changes)
            if "batching" in applied:  # a PATCH names the batching values it changes
                applied["batching"] = {**(record.batching or {}), **applied["batching"]} or None
            updated = replace(
                record,
                **applied,
                pending_model=pending,
                pending_error=None if pending else record.pending_error,
                updated_at=now(),
            )
            pipe.multi()
            pipe.set(key, updated.to_json())
            if pending is not None:
                pipe.sadd(self._keys.model_deployments(instance, model.id), deployment_id)
            return updated

        # redis-py types ``func`` as returning None, ignoring value_from_callable.
        updated = cast(
            DeploymentRecord,
            self._r.transaction(write, key, model_key, value_from_callable=True),  # type: ignore[arg-type]
        )
        log.info(
            "deployment move started deployment_id=%s model_id=%s moving=%s",
            deployment_id, model.id, updated.pending_model is not None,
        )  # fmt: skip
        return updated

    def switch_model(
        self, instance: str, deployment_id: str, model_id: str, outputs: list[dict[str, Any]]
    ) -> DeploymentRecord | None:
        """Make the pending ``model_id`` (loaded and warmed up) the current model, in one
        write: the next request scores with it. ``outputs`` as ``set_status`` takes them.

        The model served until now becomes ``previous_model`` and loses this deployment's hold.
        Returns the record; None, writing nothing, when the deployment is gone or no longer
        moving to ``model_id``.
        """

        def change(record: DeploymentRecord) -> DeploymentRecord:
            pending = record.pending_model or {}
            ts = now()
            return replace(
                record,
                model_id=pending["model_id"],
                model_sha256=pending["model_sha256"],
                model_filename=pending["model_filename"],
                model_type=pending["model_type"],
                outputs=outputs,
                status=DeploymentStatus.DEPLOY_SUCCESS,
                error=None,
                pending_model=None,
                pending_error=None,
                previous_model={
                    "model_id": record.model_id,
                    "model_sha256": record.model_sha256,
                    "switched_at": ts,
                },
                updated_at=ts,
            )

        def release(record: DeploymentRecord, pipe: Pipeline) -> None:
            pipe.srem(self._keys.model_deployments(instance, record.model_id), deployment_id)

        updated = self._end_move(instance, deployment_id, model_id, change, release)
        if updated is not None:
            log.info("deployment switched deployment_id=%s model_id=%s", deployment_id, model_id)
        return updated

    def fail_move(
        self, instance: str, deployment_id: str, model_id: str, error: dict[str, Any]
    ) -> DeploymentRecord | None:
        """Record why the pending ``model_id`` did not load; the current model keeps serving
        and the pending model loses this deployment's hold. Returns the record; None when the
        deployment is gone or no longer moving to ``model_id``."""

        def change(record: DeploymentRecord) -> DeploymentRecord:
            return replace(record, pending_model=None, pending_error=error, updated_at=now())

        def release(record: DeploymentRecord, pipe: Pipeline) -> None:
            pipe.srem(self._keys.model_deployments(instance, model_id), deployment_id)

        updated = self._end_move(instance, deployment_id, model_id, change, release)
        if updated is not None:
            log.info(
                "deployment move failed deployment_id=%s model_id=%s code=%s",
                deployment_id, model_id, error.get("code"),
            )  # fmt: skip
        return updated

    def _end_move(
        self,
        instance: str,
        deployment_id: str,
        model_id: str,
        change: Callable[[DeploymentRecord], DeploymentRecord],
        release: Callable[[DeploymentRecord, Pipeline], None],
    ) -> DeploymentRecord | None:
        key = self._keys.deployment(instance, deployment_id)

        def write(pipe: Pipeline) -> DeploymentRecord | None:
            raw = pipe.get(key)
            if raw is None:
                return None
            record = DeploymentRecord.from_json(cast(bytes, raw))
            if (record.pending_model or {}).get("model_id") != model_id:
                return None  # a stale task: that move ended already
            updated = change(record)
            pipe.multi()
            pipe.set(key, updated.to_json())
            release(record, pipe)  # in the same transaction as the record that says so
            return updated

        # redis-py types ``func`` as returning None, ignoring value_from_callable.
        return cast(
            DeploymentRecord | None,
            self._r.transaction(write, key, value_from_callable=True),  # type: ignore[arg-type]
        )

    def delete(self, instance: str, deployment_id: str) -> DeploymentRecord:
        """Delete a deployment and release its hold on its model (and on a pending one).

        Returns the deleted record. Raises DeploymentNotFound for an unknown id.
        """
        if not is_resource_id(deployment_id):
            raise DeploymentNotFound(deployment_id)
        key = self._keys.deployment(instance, deployment_id)

        def remove(pipe: Pipeline) -> DeploymentRecord:
            # Under WATCH: a move starting or ending meanwhile changes which models it holds.
            raw = pipe.get(key)
            if raw is None:
                raise DeploymentNotFound(deployment_id)
            record = DeploymentRecord.from_json(cast(bytes, raw))
            held = {record.model_id}
            if record.pending_model is not None:
                held.add(record.pending_model["model_id"])
            pipe.multi()
            pipe.delete(key)
            pipe.zrem(self._keys.deployments_index(instance), deployment_id)
            for model_id in held:
                pipe.srem(self._keys.model_deployments(instance, model_id), deployment_id)
            return record

        record = cast(
            DeploymentRecord,
            self._r.transaction(remove, key, value_from_callable=True),  # type: ignore[arg-type]
        )
        log.info("deployment deleted deployment_id=%s", deployment_id)
        return record

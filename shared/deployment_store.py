"""Deployments: metadata and status, one JSON record each, indexed by creation time."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import asdict, dataclass, replace
from typing import Any

import redis
from redis.client import Pipeline

from shared.errors import DeploymentNotFound, ModelNotFound
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

    def to_json(self) -> str:
        """The record as stored in Redis (JSON text)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> DeploymentRecord:
        """The record stored as ``raw``. Raises ValueError for an unknown status."""
        data = json.loads(raw)
        data["status"] = DeploymentStatus(data["status"])
        return cls(**data)


class DeploymentStore:
    """Create, read, list, update and delete deployments."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._keys = keys

    def create(
        self, instance: str, model: ModelRecord, name: str, description: str | None
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
        """DEPLOY_IN_PROGRESS deployments of any instance, among each instance's newest
        ``per_instance``: what a reconciler checks for a lost deploy task."""
        return [
            record
            for record in self._newest_of_every_instance(per_instance)
            if record.status is DeploymentStatus.DEPLOY_IN_PROGRESS
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

    def delete(self, instance: str, deployment_id: str) -> DeploymentRecord:
        """Delete a deployment and release its hold on the model.

        Returns the deleted record. Raises DeploymentNotFound for an unknown id.
        """
        record = self.get(instance, deployment_id)
        with self._r.pipeline(transaction=True) as pipe:
            pipe.delete(self._keys.deployment(instance, deployment_id))
            pipe.zrem(self._keys.deployments_index(instance), deployment_id)
            pipe.srem(self._keys.model_deployments(instance, record.model_id), deployment_id)
            pipe.execute()
        log.info("deployment deleted deployment_id=%s", deployment_id)
        return record

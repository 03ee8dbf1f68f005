"""The model registry: one JSON record per model, an index by creation time, and the file as
a content-addressed blob."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, cast

import redis
from redis.client import Pipeline

from shared.blob_store import BlobStore, copy_stream
from shared.errors import ModelInUse, ModelNotFound, PayloadTooLarge, UnsupportedModelFile
from shared.json_records import update_json_record
from shared.keras_file import (
    ARCHIVE_EXTENSIONS,
    MODEL_EXTENSIONS,
    ModelInfo,
    extract_model_file,
    inspect_model_file,
)
from shared.keys import Keys, is_resource_id
from shared.timeutil import now

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelRecord:
    """A stored model as kept in Redis."""

    id: str
    instance: str
    name: str
    description: str | None
    filename: str
    model_filename: str
    format: str
    keras_version: str | None
    backend: str | None
    model_class: str
    size_bytes: int
    sha256: str
    created_at: float
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    layer_classes: list[str] = field(default_factory=list)

    @property
    def model_type(self) -> str:
        """WML's 'Model Type' column: framework and version."""
        return f"keras-{self.keras_version}" if self.keras_version else "keras"

    def to_json(self) -> str:
        """The record as stored in Redis (JSON text)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> ModelRecord:
        """The record stored as ``raw``."""
        return cls(**json.loads(raw))


def accepted_extension(filename: str) -> bool:
    """Whether the upload's name ends in an extension kscore stores."""
    lowered = filename.lower()
    return lowered.endswith(MODEL_EXTENSIONS + ARCHIVE_EXTENSIONS)


class ModelStore:
    """Create, read, list and delete models of one installation."""

    def __init__(self, client: redis.Redis, keys: Keys, blobs: BlobStore) -> None:
        self._r = client
        self._keys = keys
        self.blobs = blobs

    def store_upload(
        self,
        instance: str,
        stream: BinaryIO,
        filename: str,
        name: str,
        description: str | None,
        *,
        max_bytes: int,
        workdir: Path,
        model_id: str | None = None,
    ) -> ModelRecord:
        """Validate, inspect and store an uploaded model file; nothing is stored on refusal.

        ``max_bytes`` limits the upload's size; ``workdir`` holds its temporary files;
        ``model_id`` is the new model's id when the caller issued it already (a WML asset
        created before its content), else a new UUID. Returns
        the stored record. Raises UnsupportedModelFile for a file kscore cannot store (wrong
        extension, empty, not a model), PayloadTooLarge past ``max_bytes``, UnsafeModel for a
        file whose config names unsafe layers, redis.RedisError when Redis fails.
        """
        if not accepted_extension(filename):
            raise UnsupportedModelFile(
                f"{filename!r} is not a file kscore can store: use a Keras model file "
                "(.h5, .hdf5, .keras) or a .tar.gz, .tgz or .zip archive holding exactly one.",
                details={"filename": filename},
            )
        tmp = Path(tempfile.mkdtemp(prefix="upload-", dir=workdir))
        try:
            upload = tmp / "upload.bin"
            try:
                sha256, size = copy_stream(stream, upload, max_bytes)
            except OverflowError:
                raise PayloadTooLarge(
                    f"The model file is larger than the limit of {max_bytes} bytes "
                    "(KSCORE_MAX_MODEL_BYTES).",
                    details={"limit_bytes": max_bytes},
                ) from None
            if size == 0:
                raise UnsupportedModelFile(
                    f"{filename!r} is empty: upload the file written by model.save().",
                    details={"filename": filename},
                )
            model_path, model_filename = extract_model_file(upload, filename, tmp / "extracted")
            info = inspect_model_file(model_path, model_filename)
            record = _record(
                model_id or str(uuid.uuid4()),
                instance,
                name,
                description,
                filename,
                model_filename,
                info,
                size,
                sha256,
            )
            # The blob reference comes before the record: a concurrent delete of the last model
            # using the same bytes can then never remove the blob this record points to.
            ref = f"{instance}/{record.id}"
            self.blobs.put_file(upload, sha256, size, ref=ref)
            try:
                with self._r.pipeline(transaction=True) as pipe:
                    pipe.set(self._keys.model(instance, record.id), record.to_json())
                    pipe.zadd(self._keys.models_index(instance), {record.id: record.created_at})
                    pipe.execute()
            except BaseException:
                self.blobs.release(sha256, ref)
                raise
            log.info("model stored model_id=%s sha256=%s size=%d", record.id, sha256, size)
            return record
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def get(self, instance: str, model_id: str) -> ModelRecord:
        """The model ``model_id``. Raises ModelNotFound for an unknown id."""
        if not is_resource_id(model_id):
            raise ModelNotFound(model_id)
        raw = self._r.get(self._keys.model(instance, model_id))
        if raw is None:
            raise ModelNotFound(model_id)
        return ModelRecord.from_json(raw)

    def page(self, instance: str, limit: int, offset: int) -> tuple[list[ModelRecord], int]:
        """Up to ``limit`` models after skipping ``offset``, newest first, and how many there
        are in all."""
        index = self._keys.models_index(instance)
        ids = self._r.zrevrange(index, offset, offset + limit - 1)
        total = int(self._r.zcard(index))
        if not ids:
            return [], total
        raws = self._r.mget([self._keys.model(instance, i.decode()) for i in ids])  # type: ignore[union-attr]
        return [ModelRecord.from_json(r) for r in raws if r is not None], total

    def delete(self, instance: str, model_id: str) -> None:
        """Delete a model unless a deployment uses it; drop its blob if no other model does.

        Returns nothing. Raises ModelNotFound for an unknown id, ModelInUse (409) while a
        deployment uses the model.
        """
        if not is_resource_id(model_id):
            raise ModelNotFound(model_id)
        key = self._keys.model(instance, model_id)
        deps_key = self._keys.model_deployments(instance, model_id)

        def remove(pipe: Pipeline) -> ModelRecord:
            raw = pipe.get(key)
            if raw is None:
                raise ModelNotFound(model_id)
            in_use = sorted(d.decode() for d in pipe.smembers(deps_key))  # type: ignore[union-attr]
            if in_use:
                raise ModelInUse(
                    f"Model {model_id} is used by {len(in_use)} deployment(s) "
                    f"({', '.join(in_use)}); delete them first.",
                    details={"deployment_ids": in_use},
                )
            record = ModelRecord.from_json(raw)
            pipe.multi()
            pipe.delete(key)
            pipe.zrem(self._keys.models_index(instance), model_id)
            # In the same transaction: the record and its hold on the blob go together.
            self.blobs.release(record.sha256, f"{instance}/{model_id}", pipe)
            return record

        # redis-py types ``func`` as returning None, ignoring value_from_callable.
        record = cast(
            ModelRecord,
            self._r.transaction(remove, key, deps_key, value_from_callable=True),  # type: ignore[arg-type]
        )
        log.info("model deleted model_id=%s sha256=%s", model_id, record.sha256)

    def record_outputs(
        self, instance: str, model_id: str, outputs: list[dict[str, Any]]
    ) -> ModelRecord | None:
        """Replace the model's output specs with those a worker's loaded model reports.

        Until a deployment records them, a model's output shapes are None (only Keras can
        work them out). ``outputs`` as ``DeploymentStore.set_status`` takes them. Returns
        the updated record; None if the model was deleted meanwhile.
        """
        return update_json_record(
            self._r,
            self._keys.model(instance, model_id),
            ModelRecord.from_json,
            lambda record: replace(record, outputs=outputs),
            ModelRecord.to_json,
        )


def _record(
    model_id: str,
    instance: str,
    name: str,
    description: str | None,
    filename: str,
    model_filename: str,
    info: ModelInfo,
    size: int,
    sha256: str,
) -> ModelRecord:
    return ModelRecord(
        id=model_id,
        instance=instance,
        name=name,
        description=description,
        filename=Path(filename).name,
        model_filename=Path(model_filename).name,
        format=info.format,
        keras_version=info.keras_version,
        backend=info.backend,
        model_class=info.model_class,
        size_bytes=size,
        sha256=sha256,
        created_at=now(),
        inputs=[spec.to_dict() for spec in info.inputs],
        outputs=[spec.to_dict() for spec in info.outputs],
        layer_classes=list(info.layer_classes),
    )

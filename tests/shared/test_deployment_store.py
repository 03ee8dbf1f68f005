"""Deployments on a real Redis: tied to a model that exists, statuses, pages, delete, preload."""

from __future__ import annotations

import hashlib
import threading
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from shared.blob_store import BlobStore
from shared.deployment_store import DeploymentRecord, DeploymentStore, input_mismatches
from shared.errors import (
    DeploymentMovePending,
    DeploymentNotFound,
    DeploymentNotReady,
    ModelInputsMismatch,
    ModelInUse,
    ModelNotFound,
)
from shared.job_record import JobRecord
from shared.job_store import DeploymentChanged, JobStore
from shared.keys import Keys
from shared.model_store import ModelRecord, ModelStore
from shared.settings import Settings
from shared.status import DeploymentStatus
from tests import keras_files as kf


class ModelStoreHelper:
    """Stores a model file as an upload."""

    def __init__(self, models: ModelStore, workdir: Path) -> None:
        self.models = models
        self.workdir = workdir

    def __call__(self, instance: str, path: Path) -> ModelRecord:
        with path.open("rb") as fh:
            return self.models.store_upload(
                instance, fh, path.name, "m", None, max_bytes=10**7, workdir=self.workdir
            )


@pytest.fixture
def store(models: ModelStore, tmp_path: Path) -> ModelStoreHelper:
    return ModelStoreHelper(models, tmp_path)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two model files with different bytes."""
    directory = tmp_path_factory.mktemp("deployment-store")
    return [
        kf.keras2_standalone_h5_file(directory, "2.2.4"),
        kf.keras2_standalone_h5_file(directory, "2.1.6"),
    ]


@pytest.fixture
def keys(settings: Settings) -> Keys:
    """A prefix of this test's own: newest_ready looks at every instance of a prefix."""
    return Keys(f"{settings.key_prefix}-deps-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def models(redis_client: redis.Redis, keys: Keys) -> ModelStore:
    return ModelStore(redis_client, keys, BlobStore(redis_client, keys, 4096))


@pytest.fixture
def deployments(redis_client: redis.Redis, keys: Keys) -> DeploymentStore:
    return DeploymentStore(redis_client, keys)


def test_a_deployment_copies_its_model_and_starts_in_progress(
    deployments: DeploymentStore, store: ModelStoreHelper, settings: Settings, files: list[Path]
) -> None:
    inst = settings.default_instance
    model = store(inst, files[0])
    created = deployments.create(inst, model, "dep", "about it")
    assert created.status is DeploymentStatus.DEPLOY_IN_PROGRESS
    assert (created.model_id, created.model_sha256) == (model.id, model.sha256)
    assert (created.inputs, created.outputs) == (model.inputs, model.outputs)
    assert created.error is None
    assert deployments.get(inst, created.id) == created
    with pytest.raises(DeploymentNotFound):
        deployments.get("another-instance", created.id)


def test_no_deployment_of_a_deleted_model(
    deployments: DeploymentStore,
    models: ModelStore,
    store: ModelStoreHelper,
    settings: Settings,
    files: list[Path],
) -> None:
    inst = settings.default_instance
    model = store(inst, files[0])
    models.delete(inst, model.id)
    with pytest.raises(ModelNotFound):
        deployments.create(inst, model, "dep", None)
    assert deployments.page(inst, 10, 0) == ([], 0)
    assert deployments.page(inst, 10, 0, model_id=model.id) == ([], 0)


def test_deploying_and_deleting_a_model_at_once_never_orphans_a_deployment(
    deployments: DeploymentStore,
    models: ModelStore,
    store: ModelStoreHelper,
    settings: Settings,
    files: list[Path],
) -> None:
    inst = settings.default_instance
    for _ in range(20):
        model = store(inst, files[0])
        outcomes: dict[str, object] = {}

        def deploy(model: ModelRecord = model, outcomes: dict[str, object] = outcomes) -> None:
            try:
                outcomes["deploy"] = deployments.create(inst, model, "dep", None)
            except ModelNotFound as exc:
                outcomes["deploy"] = exc

        def delete(model: ModelRecord = model, outcomes: dict[str, object] = outcomes) -> None:
            try:
                models.delete(inst, model.id)
                outcomes["delete"] = "deleted"
            except ModelInUse as exc:
                outcomes["delete"] = exc

        threads = [threading.Thread(target=deploy), threading.Thread(target=delete)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if outcomes["delete"] == "deleted":
            assert isinstance(outcomes["deploy"], ModelNotFound)
            assert deployments.page(inst, 10, 0, model_id=model.id)[1] == 0
        else:
            assert isinstance(outcomes["delete"], ModelInUse)
            assert models.get(inst, model.id) == model
            deployed = outcomes["deploy"]
            assert isinstance(deployed, DeploymentRecord)
            deployments.delete(inst, deployed.id)
            models.delete(inst, model.id)


def test_set_status_records_the_outcome(
    deployments: DeploymentStore, store: ModelStoreHelper, settings: Settings, files: list[Path]
) -> None:
    inst = settings.default_instance
    created = deployments.create(inst, store(inst, files[0]), "dep", None)
    error = {"code": "model_load_failed", "message": "no"}
    failed = deployments.set_status(inst, created.id, DeploymentStatus.DEPLOY_FAILED, error)
    assert failed is not None and failed.status is DeploymentStatus.DEPLOY_FAILED
    assert failed.error == error and failed.updated_at >= created.updated_at
    assert deployments.get(inst, created.id) == failed

    ready = deployments.set_status(inst, created.id, DeploymentStatus.DEPLOY_SUCCESS)
    assert ready is not None and ready.error is None
    assert deployments.get(inst, created.id).status is DeploymentStatus.DEPLOY_SUCCESS

    deployments.delete(inst, created.id)
    assert deployments.set_status(inst, created.id, DeploymentStatus.DEPLOY_SUCCESS) is None
    with pytest.raises(DeploymentNotFound):
        deployments.get(inst, created.id)


def test_a_job_is_created_only_against_the_stored_record(
    deployments: DeploymentStore,
    redis_client: redis.Redis,
    keys: Keys,
    store: ModelStoreHelper,
    settings: Settings,
    files: list[Path],
) -> None:
    inst = settings.default_instance
    created = deployments.create(inst, store(inst, files[0]), "dep", None)
    deployments.set_status(inst, created.id, DeploymentStatus.DEPLOY_SUCCESS)
    record, digest = deployments.current(inst, created.id)
    stored = redis_client.get(keys.deployment(inst, created.id))
    assert isinstance(stored, bytes) and digest == hashlib.sha1(stored).hexdigest()
    assert record == deployments.get(inst, created.id)
    jobs = JobStore(redis_client, keys)

    def create(sha1: str) -> JobRecord:
        return jobs.create(
            inst,
            kind="online",
            deployment_id=created.id,
            model_id=record.model_id,
            model_sha256=record.model_sha256,
            model_filename=record.model_filename,
            rows_total=1,
            chunk_rows=1,
            input_chunks=[b"rows"],
            fields=["prediction"],
            output_names=["y"],
            retention_s=60,
            stream_entry={"i": inst},
            deployment_sha1=sha1,
        )

    # Another API process changes the deployment: this one's cache still has the old record,
    # and a job against it is refused with nothing written.
    other = DeploymentStore(redis_client, keys)
    other.set_status(
        inst, created.id, DeploymentStatus.DEPLOY_FAILED, {"code": "x", "message": "y"}
    )
    assert deployments.current(inst, created.id) == (record, digest)
    with pytest.raises(DeploymentChanged):
        create(digest)
    assert jobs.backlog(inst) == (0, 0)
    assert redis_client.xlen(keys.online_stream()) == 0
    assert jobs.page(inst, 10, 0) == ([], 0)

    fresh, fresh_digest = deployments.current(inst, created.id, fresh=True)
    assert fresh.status is DeploymentStatus.DEPLOY_FAILED and fresh_digest != digest
    assert deployments.current(inst, created.id) == (fresh, fresh_digest)  # read again, not kept
    job = create(fresh_digest)
    assert jobs.get(inst, job.id).transport == "stream"
    ((_, entry),) = redis_client.xrange(keys.online_stream())
    assert entry == {b"i": inst.encode(), b"j": job.id.encode(), b"x": b"rows"}

    other.delete(inst, created.id)
    with pytest.raises(DeploymentChanged):
        create(fresh_digest)
    with pytest.raises(DeploymentNotFound):
        deployments.current(inst, created.id, fresh=True)
    with pytest.raises(DeploymentNotFound):  # and the cache forgot it
        deployments.current(inst, created.id)


def test_pages_newest_first_in_all_or_of_one_model(
    deployments: DeploymentStore, store: ModelStoreHelper, settings: Settings, files: list[Path]
) -> None:
    inst = settings.default_instance
    a, b = store(inst, files[0]), store(inst, files[1])
    made = [deployments.create(inst, m, f"d{n}", None) for n, m in enumerate([a, b, a, a])]
    page, total = deployments.page(inst, 3, 0)
    assert total == 4 and [d.id for d in page] == [made[3].id, made[2].id, made[1].id]
    assert [d.id for d in deployments.page(inst, 3, 3)[0]] == [made[0].id]
    page, total = deployments.page(inst, 2, 0, model_id=a.id)
    assert total == 3 and [d.id for d in page] == [made[3].id, made[2].id]
    assert [d.id for d in deployments.page(inst, 2, 2, model_id=a.id)[0]] == [made[0].id]
    assert deployments.page(inst, 10, 0, model_id=b.id) == ([made[1]], 1)


def test_delete_releases_the_model(
    deployments: DeploymentStore,
    models: ModelStore,
    store: ModelStoreHelper,
    settings: Settings,
    files: list[Path],
) -> None:
    inst = settings.default_instance
    model = store(inst, files[0])
    first, second = (deployments.create(inst, model, n, None) for n in ("d1", "d2"))
    assert deployments.delete(inst, first.id) == first
    with pytest.raises(DeploymentNotFound):
        deployments.delete(inst, first.id)
    with pytest.raises(ModelInUse):
        models.delete(inst, model.id)
    deployments.delete(inst, second.id)
    assert deployments.page(inst, 10, 0) == ([], 0)
    models.delete(inst, model.id)


def test_newest_ready_gives_one_deployment_per_model_file_across_instances(
    deployments: DeploymentStore, store: ModelStoreHelper, files: list[Path]
) -> None:
    ok = DeploymentStatus.DEPLOY_SUCCESS
    a1 = store("inst-a", files[0])
    a2 = store("inst-b", files[0])  # the same file again: one blob, one load in a worker
    b = store("inst-a", files[1])
    old_a = deployments.create("inst-a", a1, "old", None)
    deployments.set_status("inst-a", old_a.id, ok)
    ready_b = deployments.create("inst-a", b, "b", None)
    deployments.set_status("inst-a", ready_b.id, ok)
    new_a = deployments.create("inst-b", a2, "new", None)
    deployments.set_status("inst-b", new_a.id, ok)
    failed = deployments.create("inst-a", b, "failed", None)
    deployments.set_status("inst-a", failed.id, DeploymentStatus.DEPLOY_FAILED)
    deployments.create("inst-b", a2, "still deploying", None)

    assert [d.id for d in deployments.newest_ready(10)] == [new_a.id, ready_b.id]
    assert [d.id for d in deployments.newest_ready(1)] == [new_a.id]


def test_a_move_holds_both_models_then_switches_in_one_write(
    deployments: DeploymentStore,
    models: ModelStore,
    store: ModelStoreHelper,
    settings: Settings,
    files: list[Path],
) -> None:
    inst = settings.default_instance
    a, b = store(inst, files[0]), store(inst, files[1])
    created = deployments.create(inst, a, "dep", None)
    with pytest.raises(DeploymentNotReady):  # still loading its first model
        deployments.start_move(inst, created.id, b, {})
    deployments.set_status(inst, created.id, DeploymentStatus.DEPLOY_SUCCESS)

    moving = deployments.start_move(inst, created.id, b, {"name": "renamed"})
    assert moving.name == "renamed" and moving.model_id == a.id  # A still serves
    assert moving.pending_model is not None and moving.pending_model["model_sha256"] == b.sha256
    assert created.id in {d.id for d in deployments.in_progress()}  # the reconciler watches
    with pytest.raises(DeploymentMovePending):
        deployments.start_move(inst, created.id, b, {})
    for model in (a, b):
        with pytest.raises(ModelInUse):
            models.delete(inst, model.id)

    outputs = [{"name": "probs", "shape": [None, 3], "dtype": "float32", "activation": None}]
    assert deployments.switch_model(inst, created.id, "another-model", outputs) is None  # stale
    switched = deployments.switch_model(inst, created.id, b.id, outputs)
    assert switched is not None and deployments.get(inst, created.id) == switched
    assert (switched.model_id, switched.model_sha256) == (b.id, b.sha256)
    assert switched.outputs == outputs and switched.pending_model is None
    assert switched.previous_model is not None
    assert switched.previous_model["model_id"] == a.id
    assert deployments.switch_model(inst, created.id, b.id, outputs) is None  # redelivered
    models.delete(inst, a.id)  # no longer held
    with pytest.raises(ModelInUse):
        models.delete(inst, b.id)
    deployments.delete(inst, created.id)
    models.delete(inst, b.id)


def test_a_failed_move_keeps_the_current_model_and_releases_the_new_one(
    deployments: DeploymentStore,
    models: ModelStore,
    store: ModelStoreHelper,
    settings: Settings,
    files: list[Path],
) -> None:
    inst = settings.default_instance
    a, b = store(inst, files[0]), store(inst, files[1])
    created = deployments.create(inst, a, "dep", None)
    ready = deployments.set_status(inst, created.id, DeploymentStatus.DEPLOY_SUCCESS)
    deployments.start_move(inst, created.id, b, {})
    error = {"code": "model_load_failed", "message": "no"}
    failed = deployments.fail_move(inst, created.id, b.id, error)
    assert failed is not None and failed.pending_error == error and failed.pending_model is None
    assert ready is not None and (failed.model_id, failed.status) == (a.id, ready.status)
    models.delete(inst, b.id)
    # Deleting a moving deployment releases both models.
    c = store(inst, files[1])
    deployments.start_move(inst, created.id, c, {})
    deployments.delete(inst, created.id)
    models.delete(inst, a.id)
    models.delete(inst, c.id)


def test_a_move_needs_the_same_inputs(
    deployments: DeploymentStore, store: ModelStoreHelper, settings: Settings, files: list[Path]
) -> None:
    inst = settings.default_instance
    a = store(inst, files[0])
    created = deployments.create(inst, a, "dep", None)
    deployments.set_status(inst, created.id, DeploymentStatus.DEPLOY_SUCCESS)
    renamed = replace(a, id=str(uuid.uuid4()), inputs=[{**a.inputs[0], "dtype": "int32"}])
    with pytest.raises(ModelNotFound):  # not stored
        deployments.start_move(inst, created.id, renamed, {})
    b = store(inst, files[1])
    other = replace(b, inputs=[{**b.inputs[0], "dtype": "int32"}])
    with pytest.raises(ModelInputsMismatch) as refused:
        deployments.start_move(inst, created.id, other, {})
    assert "int32" in refused.value.details["mismatches"][0]
    assert input_mismatches(a.inputs, a.inputs + a.inputs)
    assert deployments.get(inst, created.id).pending_model is None


def test_records_written_before_moves_still_read() -> None:
    record = DeploymentRecord.from_json(
        '{"id": "d", "instance": "i", "name": "n", "description": null, "model_id": "m", '
        '"model_sha256": "s", "model_filename": "f.h5", "model_type": "keras-2.2.4", '
        '"inputs": [], "outputs": [], "status": "DEPLOY_SUCCESS", "error": null, '
        '"created_at": 1.0, "updated_at": 1.0}'
    )
    assert (record.pending_model, record.pending_error, record.previous_model) == (None,) * 3

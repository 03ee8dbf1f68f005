"""The model registry on a real Redis: store, read, page, delete, and the blobs models share."""

from __future__ import annotations

import io
import threading
import uuid
from pathlib import Path

import pytest
import redis

from shared.blob_store import BlobStore
from shared.deployment_store import DeploymentStore
from shared.errors import ModelInUse, ModelNotFound, PayloadTooLarge, UnsupportedModelFile
from shared.keys import Keys
from shared.model_store import ModelRecord, ModelStore
from shared.settings import Settings
from tests import keras_files as kf

MAX_BYTES = 10 * 1024**2


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kf.keras2_standalone_h5_file(tmp_path_factory.mktemp("model-store"))


@pytest.fixture
def keys(settings: Settings) -> Keys:
    """A prefix of this test's own, so blob references count only this test's models."""
    return Keys(f"{settings.key_prefix}-models-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def models(redis_client: redis.Redis, keys: Keys) -> ModelStore:
    # Small chunks: a model file is many chunks, so writers and deleters interleave.
    return ModelStore(redis_client, keys, BlobStore(redis_client, keys, 512))


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


def store(
    models: ModelStore, instance: str, path: Path, workdir: Path, name: str = "m"
) -> ModelRecord:
    with path.open("rb") as fh:
        return models.store_upload(
            instance, fh, path.name, name, None, max_bytes=MAX_BYTES, workdir=workdir
        )


def all_keys(client: redis.Redis, keys: Keys) -> set[str]:
    return {k.decode() for k in client.scan_iter(f"{keys.prefix}:*")}


def test_store_get_page_and_delete(
    models: ModelStore, settings: Settings, model_file: Path, workdir: Path
) -> None:
    inst = settings.default_instance
    stored = [store(models, inst, model_file, workdir, name=f"m{n}") for n in range(3)]
    first = stored[0]
    assert models.get(inst, first.id) == first
    assert (first.name, first.filename, first.format) == ("m0", model_file.name, "h5")
    assert first.size_bytes == model_file.stat().st_size
    assert [i["name"] for i in first.inputs] and [o["name"] for o in first.outputs]
    page, total = models.page(inst, 2, 0)
    assert total == 3 and [r.id for r in page] == [stored[2].id, stored[1].id]
    assert [r.id for r in models.page(inst, 2, 2)[0]] == [first.id]
    assert models.page("another-instance", 10, 0) == ([], 0)

    models.delete(inst, first.id)
    with pytest.raises(ModelNotFound):
        models.get(inst, first.id)
    with pytest.raises(ModelNotFound):
        models.delete(inst, first.id)
    assert models.page(inst, 10, 0)[1] == 2
    assert list(workdir.iterdir()) == []  # uploads leave no temporary files


def test_a_refused_upload_stores_nothing(
    models: ModelStore,
    settings: Settings,
    keys: Keys,
    redis_client: redis.Redis,
    model_file: Path,
    workdir: Path,
    tmp_path: Path,
) -> None:
    inst = settings.default_instance
    with pytest.raises(UnsupportedModelFile):
        store(models, inst, kf.not_a_model_file(tmp_path), workdir)
    with pytest.raises(UnsupportedModelFile):
        store(models, inst, kf.empty_file(tmp_path), workdir)
    with pytest.raises(UnsupportedModelFile):
        models.store_upload(
            inst, io.BytesIO(b"x"), "model.pkl", "m", None, max_bytes=MAX_BYTES, workdir=workdir
        )
    with pytest.raises(PayloadTooLarge), model_file.open("rb") as fh:
        models.store_upload(inst, fh, model_file.name, "m", None, max_bytes=100, workdir=workdir)
    assert all_keys(redis_client, keys) == set()
    assert list(workdir.iterdir()) == []


def test_a_model_in_use_is_not_deleted(
    models: ModelStore,
    settings: Settings,
    keys: Keys,
    redis_client: redis.Redis,
    model_file: Path,
    workdir: Path,
) -> None:
    inst = settings.default_instance
    deployments = DeploymentStore(redis_client, keys)
    model = store(models, inst, model_file, workdir)
    deployment = deployments.create(inst, model, "dep", None)
    with pytest.raises(ModelInUse) as caught:
        models.delete(inst, model.id)
    assert caught.value.status == 409
    assert caught.value.details == {"deployment_ids": [deployment.id]}
    assert models.get(inst, model.id) == model
    assert models.blobs.info(model.sha256) is not None

    deployments.delete(inst, deployment.id)
    models.delete(inst, model.id)
    assert models.blobs.info(model.sha256) is None


def test_models_of_the_same_bytes_share_one_blob(
    models: ModelStore,
    settings: Settings,
    keys: Keys,
    redis_client: redis.Redis,
    model_file: Path,
    workdir: Path,
    tmp_path: Path,
) -> None:
    inst = settings.default_instance
    a = store(models, inst, model_file, workdir)
    b = store(models, "other-instance", model_file, workdir)
    assert a.sha256 == b.sha256 and a.id != b.id
    assert models.blobs.refs(a.sha256) == {f"{inst}/{a.id}", f"other-instance/{b.id}"}
    chunk_keys = {k for k in all_keys(redis_client, keys) if ":chunk:" in k}
    assert len(chunk_keys) == -(-model_file.stat().st_size // 512)  # stored once

    models.delete(inst, a.id)
    copy = models.blobs.write_to(b.sha256, tmp_path / "cache" / "model.h5")
    assert copy.read_bytes() == model_file.read_bytes()
    models.delete("other-instance", b.id)
    assert models.blobs.info(a.sha256) is None
    assert all_keys(redis_client, keys) == set()


def test_a_failed_record_write_gives_the_blob_reference_back(
    models: ModelStore,
    settings: Settings,
    keys: Keys,
    redis_client: redis.Redis,
    model_file: Path,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(self: ModelRecord) -> str:
        raise redis.ConnectionError("injected fault: Redis went away before the record")

    monkeypatch.setattr(ModelRecord, "to_json", broken)
    with pytest.raises(redis.ConnectionError, match="injected"):
        store(models, settings.default_instance, model_file, workdir)
    assert all_keys(redis_client, keys) == set()


def test_concurrent_stores_and_deletes_of_the_same_bytes_never_lose_a_blob(
    models: ModelStore,
    settings: Settings,
    keys: Keys,
    redis_client: redis.Redis,
    model_file: Path,
    workdir: Path,
    tmp_path: Path,
) -> None:
    """Each thread stores the file and deletes it again, over and over, so the blob's last
    reference keeps going away while other threads store the same bytes; some threads keep
    their last model. Every model left must point to a complete blob."""
    inst = settings.default_instance
    threads, rounds = 6, 30
    kept: list[ModelRecord] = []
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def churn(n: int) -> None:
        try:
            start.wait()
            for r in range(rounds):
                record = store(models, inst, model_file, workdir)
                # While a model exists its blob is complete: the model's reference keeps it.
                assert models.blobs.info(record.sha256) is not None, "a stored model's blob is gone"
                if n % 2 == 0 and r == rounds - 1:
                    kept.append(record)
                else:
                    models.delete(inst, record.id)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=churn, args=(n,)) for n in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=120)
    assert not errors, errors
    assert len(kept) == threads // 2

    sha = model_file.read_bytes()
    for n, record in enumerate(kept):
        assert models.get(inst, record.id) == record
        copy = models.blobs.write_to(record.sha256, tmp_path / "cache" / f"{n}.h5")
        assert copy.read_bytes() == sha
    assert models.blobs.refs(kept[0].sha256) == {f"{inst}/{r.id}" for r in kept}
    assert models.page(inst, 100, 0)[1] == len(kept)

    for record in kept:
        models.delete(inst, record.id)
    assert models.blobs.info(kept[0].sha256) is None
    assert all_keys(redis_client, keys) == set()

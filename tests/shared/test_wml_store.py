"""WML assets against a real Redis: created before their file, claimed once, kept or expired."""

from __future__ import annotations

import pytest
import redis

from shared.errors import ModelContentConflict, ModelNotFound
from shared.keys import Keys
from shared.settings import Settings
from shared.status import AssetContent
from shared.wml_store import PENDING_TTL_S, WmlAsset, WmlStore


@pytest.fixture
def store(settings: Settings, redis_client: redis.Redis) -> WmlStore:
    return WmlStore(redis_client, Keys(settings.key_prefix))


def new_asset(store: WmlStore, instance: str) -> WmlAsset:
    return store.create(
        instance,
        name="m",
        description=None,
        framework={
            "name": "tensorflow",
            "version": "1.5",
            "runtimes": [{"name": "python", "version": "3.5"}],
        },
        author={},
        properties={"label_column": "y"},
    )


def ttl(redis_client: redis.Redis, settings: Settings, instance: str, asset: WmlAsset) -> int:
    return int(redis_client.ttl(Keys(settings.key_prefix).wml_asset(instance, asset.id)))  # type: ignore[arg-type]


def test_an_asset_waits_for_its_file_and_says_what_the_client_sent(
    store: WmlStore, settings: Settings, redis_client: redis.Redis
) -> None:
    instance = settings.default_instance
    asset = new_asset(store, instance)
    assert store.get(instance, asset.id) == asset
    assert asset.content is AssetContent.PENDING
    assert asset.model_type == "tensorflow-1.5"
    assert asset.runtime_environment == "python-3.5"
    assert 0 < ttl(redis_client, settings, instance, asset) <= PENDING_TTL_S
    assert store.get_many(instance, [asset.id, "other"]) == {asset.id: asset}
    with pytest.raises(ModelNotFound):
        store.get("another-instance", asset.id)


def test_content_is_claimed_once_and_kept_for_good(
    store: WmlStore, settings: Settings, redis_client: redis.Redis
) -> None:
    instance = settings.default_instance
    asset = new_asset(store, instance)
    with pytest.raises(ModelNotFound):
        store.begin_upload(instance, asset.id, "another-version")
    assert (
        store.begin_upload(instance, asset.id, asset.version_id).content is AssetContent.UPLOADING
    )
    with pytest.raises(ModelContentConflict):
        store.begin_upload(instance, asset.id, asset.version_id)  # a concurrent upload
    # An upload still running expires like a pending asset if its process dies.
    assert ttl(redis_client, settings, instance, asset) > 0
    store.end_upload(instance, asset.id, stored=True)
    assert store.get(instance, asset.id).content is AssetContent.STORED
    assert ttl(redis_client, settings, instance, asset) == -1
    with pytest.raises(ModelContentConflict):
        store.begin_upload(instance, asset.id, asset.version_id)
    assert store.delete(instance, asset.id) is True
    assert store.delete(instance, asset.id) is False


def test_a_refused_file_leaves_the_asset_waiting_again(
    store: WmlStore, settings: Settings, redis_client: redis.Redis
) -> None:
    instance = settings.default_instance
    asset = new_asset(store, instance)
    store.begin_upload(instance, asset.id, asset.version_id)
    store.end_upload(instance, asset.id, stored=False)
    assert store.get(instance, asset.id).content is AssetContent.PENDING
    assert 0 < ttl(redis_client, settings, instance, asset) <= PENDING_TTL_S
    assert (
        store.begin_upload(instance, asset.id, asset.version_id).content is AssetContent.UPLOADING
    )

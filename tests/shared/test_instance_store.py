"""Instances and credentials in Redis: secrets only as hashes, keys revocable, deletes guarded."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import redis

from shared.blob_store import BlobStore
from shared.errors import ApiKeyNotFound, InstanceExists, InstanceNotEmpty, InstanceNotFound
from shared.instance_store import InstanceStore
from shared.keys import Keys
from shared.model_store import ModelStore
from shared.settings import Settings
from tests import keras_files as kf
from tests.conftest import FAST_HASHER


@pytest.fixture
def settings(base_settings: Settings) -> Settings:
    """Each test its own installation (key prefix): instance names are unique per
    installation, and these tests name their instances freely."""
    return base_settings.replace(
        key_prefix=f"inst-{uuid.uuid4().hex[:8]}", default_instance=f"t{uuid.uuid4().hex[:12]}"
    )


@pytest.fixture
def keys(settings: Settings) -> Keys:
    """A prefix of this test's own: the scans below see only what this test wrote."""
    return Keys(f"{settings.key_prefix}-inst-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def store(redis_client: redis.Redis, keys: Keys) -> InstanceStore:
    return InstanceStore(redis_client, keys, FAST_HASHER)


def everything_stored(client: redis.Redis, keys: Keys) -> bytes:
    """Every key name and value under the prefix, concatenated."""
    dump = b""
    for key in client.scan_iter(f"{keys.prefix}:*"):
        kind = client.type(key)
        dump += key
        if kind == b"string":
            dump += client.get(key) or b""
        elif kind == b"hash":
            dump += b"".join(k + v for k, v in client.hgetall(key).items())
        elif kind == b"set":
            dump += b"".join(client.smembers(key))
        elif kind == b"zset":
            dump += b"".join(client.zrange(key, 0, -1))
        elif kind == b"list":
            dump += b"".join(client.lrange(key, 0, -1))
    return dump


def test_secrets_are_never_stored_in_clear(
    store: InstanceStore, redis_client: redis.Redis, keys: Keys
) -> None:
    # The production hasher: what is stored is what a real installation stores.
    real = InstanceStore(redis_client, keys)
    new = real.create("team-a")
    extra = real.create_key(new.instance.id, "ci")
    password = real.reset_password(new.instance.id)
    assert real.instance_for_api_key(extra.api_key) == new.instance.id  # writes last-used
    stored = everything_stored(redis_client, keys)
    assert stored  # the scan saw the instance
    for secret in (new.key.api_key, extra.api_key, new.password, password):
        assert secret.encode() not in stored
    for key in (new.key.api_key, extra.api_key):
        # nor the random part of a key on its own (43 characters after the key id)
        assert key.split("_", 2)[2].encode() not in stored
    assert b"$argon2id$" in stored


def test_api_keys_name_their_instance_until_revoked(store: InstanceStore) -> None:
    a, b = store.create("a"), store.create("b")
    assert store.instance_for_api_key(a.key.api_key) == a.instance.id
    assert store.instance_for_api_key(b.key.api_key) == b.instance.id
    ci = store.create_key(a.instance.id, "ci")
    assert [k.name for k in store.keys_of(a.instance.id)] == ["default", "ci"]
    with pytest.raises(ApiKeyNotFound):
        store.revoke_key(b.instance.id, ci.record.id)  # not b's key
    store.revoke_key(a.instance.id, ci.record.id)
    assert store.instance_for_api_key(ci.api_key) is None
    assert store.instance_for_api_key(a.key.api_key) == a.instance.id
    # A key's id with another secret is not the key.
    forged = ci.api_key.rsplit("_", 1)[0] + "_" + "A" * 43
    assert store.instance_for_api_key(forged) is None
    assert store.instance_for_api_key(a.key.api_key + "x") is None


def test_wml_password(store: InstanceStore) -> None:
    new = store.create("a")
    username = new.instance.username
    assert store.instance_for_password(username, new.password) == new.instance.id
    assert store.instance_for_password(username, "wrong") is None
    assert store.instance_for_password("nobody", new.password) is None
    fresh = store.reset_password(new.instance.id)
    assert store.instance_for_password(username, new.password) is None
    assert store.instance_for_password(username, fresh) == new.instance.id


def test_instance_ids_are_unique_and_listed(store: InstanceStore) -> None:
    new = store.create("named", "fixed-id")
    with pytest.raises(InstanceExists):
        store.create("again", "fixed-id")
    other = store.create("uuid")
    assert len(other.instance.id) == 36 and other.instance.id == other.instance.id.lower()
    assert [i.id for i in store.all()] == [new.instance.id, other.instance.id]
    with pytest.raises(InstanceNotFound):
        store.create_key("missing", "k")


def test_delete_is_refused_while_models_remain_unless_forced(
    store: InstanceStore, redis_client: redis.Redis, keys: Keys, tmp_path: Path
) -> None:
    new = store.create("a")
    iid = new.instance.id
    models = ModelStore(redis_client, keys, BlobStore(redis_client, keys, 1024))
    model_file = kf.keras2_standalone_h5_file(tmp_path)
    with model_file.open("rb") as stream:
        record = models.store_upload(
            iid, stream, model_file.name, "m", None, max_bytes=10**8, workdir=tmp_path
        )
    with pytest.raises(InstanceNotEmpty):
        store.delete(iid)
    assert store.instance_for_api_key(new.key.api_key) == iid  # nothing changed
    store.delete(iid, force=True)
    assert store.instance_for_api_key(new.key.api_key) is None
    assert store.instance_for_password(new.instance.username, new.password) is None
    assert not list(redis_client.scan_iter(keys.instance_pattern(iid)))
    assert not redis_client.exists(keys.blob_meta(record.sha256))  # its blob released
    assert [i.id for i in store.all()] == []


def test_an_empty_instance_deletes_without_force(store: InstanceStore) -> None:
    new = store.create("a")
    store.delete(new.instance.id)
    assert not store.exists(new.instance.id)
    with pytest.raises(InstanceNotFound):
        store.delete(new.instance.id)


def test_instance_names_are_unique_until_the_instance_is_deleted(store: InstanceStore) -> None:
    first = store.create("team-a")
    with pytest.raises(InstanceExists) as taken:
        store.create("team-a")
    assert first.instance.id in taken.value.message and "create-key" in taken.value.message
    store.delete(first.instance.id)
    assert store.create("team-a").instance.id != first.instance.id

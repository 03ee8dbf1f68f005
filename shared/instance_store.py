"""Instances (tenants) and their credentials: API keys and the WML username and password.

Secrets are never stored. An API key is 256 random bits, so a SHA-256 of it is enough to keep
it from being read back out of Redis, and is compared with ``hmac.compare_digest``. The WML
password is what a person may type, copy into notebooks and reuse, so it gets a slow hash:
Argon2id (argon2-cffi, RFC 9106's low-memory profile by default).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import uuid
from dataclasses import asdict, dataclass, replace
from typing import cast

import redis
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from redis.client import Pipeline

from shared.errors import (
    ApiKeyNotFound,
    InstanceExists,
    InstanceNotEmpty,
    InstanceNotFound,
    ValidationFailed,
)
from shared.json_records import update_json_record
from shared.keys import INSTANCE_ID, Keys
from shared.redis_client import connect_url
from shared.timeutil import now
from shared.webhooks import new_secret

log = logging.getLogger(__name__)

API_KEY_PREFIX = "ksk_"
# Writing "last used" on every request would double the Redis writes of a busy key; to the
# minute is what a person deciding whether a key is still in use needs.
LAST_USED_RESOLUTION_S = 60.0


@dataclass(frozen=True)
class InstanceRecord:
    """An instance as kept in Redis (``password_hash`` is Argon2's encoded hash)."""

    id: str
    name: str
    created_at: float
    username: str
    password_hash: str

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> InstanceRecord:
        return cls(**json.loads(raw))


@dataclass(frozen=True)
class ApiKeyRecord:
    """An API key as kept in Redis: its id, owner, name and times, and a hash of the key."""

    id: str
    instance: str
    name: str
    created_at: float
    last_used_at: float | None
    key_sha256: str

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> ApiKeyRecord:
        return cls(**json.loads(raw))


@dataclass(frozen=True)
class IssuedKey:
    """A new API key: the record, and the key itself, which is shown once and never stored."""

    record: ApiKeyRecord
    api_key: str


@dataclass(frozen=True)
class NewInstance:
    """A new instance with its first credentials (the password and key are shown once)."""

    instance: InstanceRecord
    password: str
    key: IssuedKey


def open_instance_store(redis_url: str, key_prefix: str) -> InstanceStore:
    """The instance store of the installation at ``redis_url`` with ``key_prefix`` (for the
    admin commands, which talk to Redis directly)."""
    return InstanceStore(connect_url(redis_url), Keys(key_prefix))


def new_instance_id() -> str:
    """A lowercase UUID4: WML clients expect instance ids shaped like IBM's."""
    return str(uuid.uuid4())


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _split_api_key(api_key: str) -> str | None:
    """The key id of ``ksk_<id>_<secret>``, or None for anything else."""
    if not api_key.startswith(API_KEY_PREFIX):
        return None
    key_id, sep, secret = api_key[len(API_KEY_PREFIX) :].partition("_")
    if not sep or not secret or len(key_id) != 16 or not key_id.isalnum():
        return None
    return key_id


def _name(name: str, what: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 128:
        raise ValidationFailed(
            f"The {what} name must be 1-128 characters.", details={"fields": {"name": [name]}}
        )
    return name


class InstanceStore:
    """Create, list and delete instances; issue, check and revoke their credentials."""

    def __init__(
        self, client: redis.Redis, keys: Keys, hasher: PasswordHasher | None = None
    ) -> None:
        self._r = client
        self._keys = keys
        self._hasher = hasher or PasswordHasher()
        self._dummy_hash: str | None = None

    # instances

    def create(
        self, name: str, instance_id: str | None = None, key_name: str = "default"
    ) -> NewInstance:
        """A new instance with a WML username and password and one API key.

        Returns them, the password and key in clear for the one time they are shown. Raises
        InstanceExists (409) when ``instance_id`` is taken, ValidationFailed for a bad name or
        id (ids are lowercase letters, digits and '-').
        """
        name = _name(name, "instance")
        instance_id = instance_id or new_instance_id()
        if not INSTANCE_ID.fullmatch(instance_id):
            raise ValidationFailed(
                f"Instance id {instance_id!r} must be 1-64 lowercase letters, digits and '-'.",
                details={"fields": {"instance_id": [instance_id]}},
            )
        password = secrets.token_urlsafe(24)
        record = InstanceRecord(
            id=instance_id,
            name=name,
            created_at=now(),
            username=str(uuid.uuid4()),
            password_hash=self._hasher.hash(password),
        )
        key = self._new_key(instance_id, key_name)
        instance_key = self._keys.instance(instance_id)

        names_key = self._keys.instance_names()

        def write(pipe: Pipeline) -> None:
            if pipe.exists(instance_key):
                raise InstanceExists(
                    f"An instance with id {instance_id!r} exists already.",
                    details={"instance_id": instance_id},
                )
            holder = cast(bytes | None, pipe.hget(names_key, name))
            if holder is not None:
                taken_by = holder.decode()
                raise InstanceExists(
                    f"An instance named {name!r} exists already (id {taken_by}); pick another "
                    "name, or create a key for that one (kscore admin create-key).",
                    details={"name": name, "instance_id": taken_by},
                )
            pipe.multi()
            pipe.hset(names_key, name, instance_id)
            pipe.set(instance_key, record.to_json())
            pipe.zadd(self._keys.instances_index(), {instance_id: record.created_at})
            pipe.set(self._keys.wml_user(record.username), instance_id)
            self._write_key(pipe, key.record)

        self._r.transaction(write, instance_key, names_key)
        log.info("instance created instance_id=%s", instance_id)
        return NewInstance(instance=record, password=password, key=key)

    def get(self, instance_id: str) -> InstanceRecord:
        """The instance ``instance_id``. Raises InstanceNotFound for an unknown id."""
        raw = self._r.get(self._keys.instance(instance_id))
        if raw is None:
            raise InstanceNotFound(instance_id)
        return InstanceRecord.from_json(cast(bytes, raw))

    def exists(self, instance_id: str) -> bool:
        """Whether the instance exists (deleted instances do not)."""
        return bool(self._r.exists(self._keys.instance(instance_id)))

    def all(self) -> list[InstanceRecord]:
        """Every instance, oldest first."""
        ids = [
            i.decode()
            for i in cast(list[bytes], self._r.zrange(self._keys.instances_index(), 0, -1))
        ]
        if not ids:
            return []
        raws = cast(list[bytes | None], self._r.mget([self._keys.instance(i) for i in ids]))
        return [InstanceRecord.from_json(r) for r in raws if r is not None]

    def model_count(self, instance_id: str) -> int:
        """How many models the instance holds."""
        return int(cast(int, self._r.zcard(self._keys.models_index(instance_id))))

    def delete(self, instance_id: str, *, force: bool = False) -> None:
        """Delete an instance, its credentials and (with ``force``) everything it holds.

        Raises InstanceNotFound, and InstanceNotEmpty (409) while it holds models and
        ``force`` is false. Credentials go first, so nobody acts on the instance while its
        models and deployments are removed.
        """
        record = self.get(instance_id)
        models = self.model_count(instance_id)
        if models and not force:
            raise InstanceNotEmpty(
                f"Instance {instance_id} holds {models} model(s); delete them first, or delete "
                "the instance with everything it holds (kscore admin delete-instance --force).",
                details={"instance_id": instance_id, "models": models},
            )
        key_ids = self._key_ids(instance_id)
        with self._r.pipeline(transaction=True) as pipe:
            pipe.delete(self._keys.instance(instance_id))
            pipe.zrem(self._keys.instances_index(), instance_id)
            pipe.hdel(self._keys.instance_names(), record.name)
            pipe.delete(self._keys.wml_user(record.username))
            for key_id in key_ids:
                pipe.delete(self._keys.api_key(key_id))
            pipe.execute()
        if force:
            self._purge(instance_id)
        log.info("instance deleted instance_id=%s models=%d", instance_id, models)

    def _purge(self, instance_id: str) -> None:
        # Deferred: the stores pull in the Keras file reader, which admin commands that never
        # purge should not pay for.
        from shared.blob_store import BlobStore
        from shared.deployment_store import DeploymentStore
        from shared.model_store import ModelStore

        deployments = DeploymentStore(self._r, self._keys)
        index = self._keys.deployments_index(instance_id)
        for raw in cast(list[bytes], self._r.zrange(index, 0, -1)):
            deployments.delete(instance_id, raw.decode())
        # Through the model store, so each model's hold on its shared blob is released.
        model_store = ModelStore(self._r, self._keys, BlobStore(self._r, self._keys, 1))
        for raw in cast(list[bytes], self._r.zrange(self._keys.models_index(instance_id), 0, -1)):
            model_store.delete(instance_id, raw.decode())
        # What is left: jobs, their chunks and indexes.
        batch: list[bytes] = []
        for key in self._r.scan_iter(self._keys.instance_pattern(instance_id), count=1000):
            batch.append(key)
            if len(batch) >= 500:
                self._r.delete(*batch)
                batch = []
        if batch:
            self._r.delete(*batch)

    # API keys

    def _new_key(self, instance_id: str, name: str) -> IssuedKey:
        key_id = secrets.token_hex(8)
        api_key = f"{API_KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        record = ApiKeyRecord(
            id=key_id,
            instance=instance_id,
            name=_name(name, "key"),
            created_at=now(),
            last_used_at=None,
            key_sha256=_sha256(api_key),
        )
        return IssuedKey(record=record, api_key=api_key)

    def _write_key(self, pipe: Pipeline, record: ApiKeyRecord) -> None:
        pipe.set(self._keys.api_key(record.id), record.to_json())
        pipe.sadd(self._keys.instance_api_keys(record.instance), record.id)

    def create_key(self, instance_id: str, name: str) -> IssuedKey:
        """A new API key for the instance. Raises InstanceNotFound for an unknown instance."""
        key = self._new_key(instance_id, name)
        instance_key = self._keys.instance(instance_id)

        def write(pipe: Pipeline) -> None:
            if not pipe.exists(instance_key):
                raise InstanceNotFound(instance_id)
            pipe.multi()
            self._write_key(pipe, key.record)

        self._r.transaction(write, instance_key)
        log.info("api key created instance_id=%s key_id=%s", instance_id, key.record.id)
        return key

    def _key_ids(self, instance_id: str) -> list[str]:
        members = cast(set[bytes], self._r.smembers(self._keys.instance_api_keys(instance_id)))
        return sorted(m.decode() for m in members)

    def keys_of(self, instance_id: str) -> list[ApiKeyRecord]:
        """The instance's API keys, oldest first. Raises InstanceNotFound."""
        self.get(instance_id)
        ids = self._key_ids(instance_id)
        if not ids:
            return []
        raws = cast(list[bytes | None], self._r.mget([self._keys.api_key(i) for i in ids]))
        records = [ApiKeyRecord.from_json(r) for r in raws if r is not None]
        return sorted(records, key=lambda k: k.created_at)

    def revoke_key(self, instance_id: str, key_id: str) -> None:
        """Revoke one key of the instance; it is refused from the next request on.

        Raises ApiKeyNotFound when the instance has no such key.
        """
        raw = self._r.get(self._keys.api_key(key_id))
        if raw is None or ApiKeyRecord.from_json(cast(bytes, raw)).instance != instance_id:
            raise ApiKeyNotFound(key_id)
        with self._r.pipeline(transaction=True) as pipe:
            pipe.delete(self._keys.api_key(key_id))
            pipe.srem(self._keys.instance_api_keys(instance_id), key_id)
            pipe.execute()
        log.info("api key revoked instance_id=%s key_id=%s", instance_id, key_id)

    def instance_for_api_key(self, api_key: str) -> str | None:
        """The instance of a live API key, or None for an unknown, revoked or malformed key."""
        key_id = _split_api_key(api_key)
        if key_id is None:
            return None
        redis_key = self._keys.api_key(key_id)
        raw = self._r.get(redis_key)
        if raw is None:
            return None
        record = ApiKeyRecord.from_json(cast(bytes, raw))
        if not hmac.compare_digest(record.key_sha256, _sha256(api_key)):
            return None
        used = now()
        if record.last_used_at is None or used - record.last_used_at > LAST_USED_RESOLUTION_S:
            # xx: a key revoked since the read above stays revoked.
            self._r.set(redis_key, replace(record, last_used_at=used).to_json(), xx=True)
        return record.instance

    # WML credentials

    def reset_password(self, instance_id: str) -> str:
        """A new WML password for the instance (the old one stops working); shown once.

        Raises InstanceNotFound.
        """
        password = secrets.token_urlsafe(24)
        encoded = self._hasher.hash(password)
        updated = update_json_record(
            self._r,
            self._keys.instance(instance_id),
            InstanceRecord.from_json,
            lambda record: replace(record, password_hash=encoded),
            InstanceRecord.to_json,
        )
        if updated is None:
            raise InstanceNotFound(instance_id)
        log.info("wml password reset instance_id=%s", instance_id)
        return password

    def instance_for_password(self, username: str, password: str) -> str | None:
        """The instance whose WML username and password these are, or None."""
        raw_id = self._r.get(self._keys.wml_user(username))
        record = None
        if raw_id is not None:
            raw = self._r.get(self._keys.instance(cast(bytes, raw_id).decode()))
            record = InstanceRecord.from_json(cast(bytes, raw)) if raw is not None else None
        # An unknown username costs the same hash as a known one: timing does not tell which
        # usernames exist.
        encoded = record.password_hash if record else self._dummy()
        try:
            self._hasher.verify(encoded, password)
        except (VerificationError, InvalidHashError):
            return None
        return record.id if record else None

    def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))
        return self._dummy_hash

    # the token signing secret

    def token_secret(self) -> str:
        """The installation's token signing secret, made once and shared through Redis."""
        key = self._keys.token_secret()
        self._r.set(key, secrets.token_urlsafe(48), nx=True)
        return cast(bytes, self._r.get(key)).decode()

    # the webhook signing secret

    def webhook_secret(self, instance_id: str) -> str:
        """The instance's webhook signing secret (``whsec_...``), made on first use.

        Raises InstanceNotFound for an unknown instance.
        """
        self.get(instance_id)  # InstanceNotFound
        key = self._keys.webhook_secret(instance_id)
        self._r.set(key, new_secret(), nx=True)
        return cast(bytes, self._r.get(key)).decode()

"""What WML v3 clients tell kscore that a model record does not hold.

A WML client creates a model asset (name, framework, runtimes...) first and sends its file
in a second request, so the asset is remembered here between the two; the file then becomes
an ordinary model (``ModelStore.store_upload``) with the asset's id. An asset whose file never
arrives expires after :data:`PENDING_TTL_S`.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import asdict, dataclass, replace
from typing import Any

import redis

from shared.errors import ModelContentConflict, ModelNotFound
from shared.json_records import update_json_record
from shared.keys import Keys
from shared.status import AssetContent
from shared.timeutil import now

log = logging.getLogger(__name__)

#: How long an asset waits for its file.
PENDING_TTL_S = 86400


@dataclass(frozen=True)
class WmlAsset:
    """A WML model asset as its client created it."""

    id: str
    instance: str
    name: str
    description: str | None
    framework: dict[str, Any]
    """``{"name", "version", "runtimes"?, "libraries"?}`` as sent."""
    author: dict[str, Any]
    properties: dict[str, Any]
    """The other documented fields the client sent (schemas, label column...), kept as sent."""
    version_id: str
    content: AssetContent
    created_at: float
    modified_at: float

    @property
    def model_type(self) -> str:
        """WML's model type: the framework's name and version, e.g. ``tensorflow-1.5``."""
        name, version = self.framework.get("name"), self.framework.get("version")
        return f"{name}-{version}" if version else str(name)

    @property
    def runtime_environment(self) -> str | None:
        """The first runtime as ``name-version`` (``python-3.5``), as WML showed it."""
        runtimes = self.framework.get("runtimes") or []
        if not runtimes:
            return None
        first = runtimes[0]
        return f"{first.get('name')}-{first.get('version')}"

    def to_json(self) -> str:
        """The record as stored in Redis (JSON text)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> WmlAsset:
        """The record stored as ``raw``."""
        data = json.loads(raw)
        data["content"] = AssetContent(data["content"])
        return cls(**data)


class WmlStore:
    """Create, read and delete WML model assets, and move their content along."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._keys = keys

    def create(
        self,
        instance: str,
        *,
        name: str,
        description: str | None,
        framework: dict[str, Any],
        author: dict[str, Any],
        properties: dict[str, Any],
    ) -> WmlAsset:
        """A new asset waiting for its file (expires after PENDING_TTL_S); returns it."""
        ts = now()
        asset = WmlAsset(
            id=str(uuid.uuid4()),
            instance=instance,
            name=name,
            description=description,
            framework=framework,
            author=author,
            properties=properties,
            version_id=str(uuid.uuid4()),
            content=AssetContent.PENDING,
            created_at=ts,
            modified_at=ts,
        )
        self._r.set(self._keys.wml_asset(instance, asset.id), asset.to_json(), ex=PENDING_TTL_S)
        log.info("wml asset created model_id=%s", asset.id)
        return asset

    def get(self, instance: str, model_id: str) -> WmlAsset:
        """The asset ``model_id``. Raises ModelNotFound for an unknown (or expired) id."""
        raw = self._r.get(self._keys.wml_asset(instance, model_id))
        if raw is None:
            raise ModelNotFound(model_id)
        return WmlAsset.from_json(raw)

    def get_many(self, instance: str, model_ids: list[str]) -> dict[str, WmlAsset]:
        """The assets among ``model_ids`` (models stored otherwise have none), by id."""
        if not model_ids:
            return {}
        raws = self._r.mget([self._keys.wml_asset(instance, i) for i in model_ids])
        assets = (WmlAsset.from_json(raw) for raw in raws if raw is not None)
        return {asset.id: asset for asset in assets}

    def begin_upload(self, instance: str, model_id: str, version_id: str) -> WmlAsset:
        """Claim the asset's content for one upload (pending -> uploading); returns the asset.

        Raises ModelNotFound for an unknown asset or version, ModelContentConflict when a file
        is stored already or another upload holds the claim.
        """

        def claim(asset: WmlAsset) -> WmlAsset:
            if asset.version_id != version_id:
                raise ModelNotFound(model_id)
            if asset.content is not AssetContent.PENDING:
                raise ModelContentConflict(
                    f"Model {model_id} has its content already ({asset.content}); store the "
                    "file as a new model instead.",
                    details={"model_id": model_id, "content": asset.content},
                )
            return replace(asset, content=AssetContent.UPLOADING)

        claimed = self._update(instance, model_id, claim)
        if claimed is None:
            raise ModelNotFound(model_id)
        # The rewrite dropped the TTL: an upload that dies half-way must not keep the asset.
        self._r.expire(self._keys.wml_asset(instance, model_id), PENDING_TTL_S)
        return claimed

    def end_upload(self, instance: str, model_id: str, *, stored: bool) -> None:
        """Record the upload's end: the asset keeps its file for good, or waits again."""
        content = AssetContent.STORED if stored else AssetContent.PENDING
        self._update(instance, model_id, lambda a: replace(a, content=content, modified_at=now()))
        key = self._keys.wml_asset(instance, model_id)
        if stored:
            # The asset now lives as long as its model (deleted together, through /v3).
            self._r.persist(key)
        else:
            self._r.expire(key, PENDING_TTL_S)  # the rewrite dropped the TTL

    def delete(self, instance: str, model_id: str) -> bool:
        """Forget the asset; whether there was one."""
        return bool(self._r.delete(self._keys.wml_asset(instance, model_id)))

    def _update(self, instance: str, model_id: str, change: Any) -> WmlAsset | None:
        key = self._keys.wml_asset(instance, model_id)
        return update_json_record(self._r, key, WmlAsset.from_json, change, WmlAsset.to_json)

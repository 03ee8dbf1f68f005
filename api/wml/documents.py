"""kscore's records as the documents WML v3 returned: ``{"metadata": {...}, "entity": {...}}``.

Every URL is absolute, from KSCORE_PUBLIC_URL or the request (``api.context.url``): the client
follows ``content_url``, ``scoring_url``, ``published_models.url`` and ``next.url`` verbatim.
"""

from __future__ import annotations

import json
from typing import Any

from api.context import url
from shared.deployment_store import DeploymentRecord
from shared.instance_store import InstanceRecord
from shared.model_store import ModelRecord
from shared.status import DeploymentStatus
from shared.timeutil import iso
from shared.wml_store import WmlAsset


def instance_url(instance: str) -> str:
    """The instance document's URL."""
    return url(f"/v3/wml_instances/{instance}")


def published_model_url(instance: str, model_id: str) -> str:
    """A published model's URL (what ``deployable_asset_url`` names)."""
    return f"{instance_url(instance)}/published_models/{model_id}"


def asset_url(model_id: str) -> str:
    """A model asset's URL, where clients create and delete models."""
    return url(f"/v3/ml_assets/models/{model_id}")


def deployment_url(instance: str, deployment_id: str) -> str:
    """A deployment's URL; its scoring URL adds ``/online``."""
    return f"{instance_url(instance)}/deployments/{deployment_id}"


def instance_document(instance: InstanceRecord) -> dict[str, Any]:
    """The instance: where its published models and deployments are listed."""
    href = instance_url(instance.id)
    created = iso(instance.created_at)
    return {
        "metadata": {
            "guid": instance.id,
            "url": href,
            "created_at": created,
            "modified_at": created,
        },
        "entity": {
            "name": instance.name,
            "status": "Active",
            "published_models": {"url": href + "/published_models"},
            "deployments": {"url": href + "/deployments"},
        },
    }


def _version(model_id: str, version_id: str, created_at: float) -> dict[str, Any]:
    href = f"{asset_url(model_id)}/versions/{version_id}"
    return {
        "guid": version_id,
        "url": href,
        "content_url": href + "/content",
        "created_at": iso(created_at),
    }


def asset_document(asset: WmlAsset) -> dict[str, Any]:
    """A model asset as its creation answered it: where to PUT the file."""
    return {
        "metadata": {
            "guid": asset.id,
            "url": asset_url(asset.id),
            "created_at": iso(asset.created_at),
            "modified_at": iso(asset.modified_at),
        },
        "entity": {
            **asset.properties,
            "name": asset.name,
            "description": asset.description,
            "framework": asset.framework,
            "author": asset.author,
            "model_version": _version(asset.id, asset.version_id, asset.created_at),
            "content_status": asset.content,
        },
    }


def published_model_document(
    instance: str, model: ModelRecord, asset: WmlAsset | None, deployments: int
) -> dict[str, Any]:
    """A stored model as a published model: its type as the client named it (or kscore's
    ``keras-<version>`` for a model stored through /api/v1), and its deployments."""
    href = published_model_url(instance, model.id)
    # A model stored through /api/v1 never had a WML version: its id stands in.
    version = _version(model.id, asset.version_id if asset else model.id, model.created_at)
    entity: dict[str, Any] = dict(asset.properties) if asset else {}
    entity.update(
        name=model.name,
        description=model.description,
        model_type=asset.model_type if asset else model.model_type,
        runtime_environment=asset.runtime_environment if asset else None,
        author=asset.author if asset else {},
        latest_version=version,
        deployments={"count": deployments, "url": href + "/deployments"},
    )
    return {
        "metadata": {
            "guid": model.id,
            "url": href,
            "created_at": iso(model.created_at),
            "modified_at": iso(asset.modified_at if asset else model.created_at),
        },
        "entity": entity,
    }


def deployment_document(
    instance: str, deployment: DeploymentRecord, asset: WmlAsset | None
) -> dict[str, Any]:
    """A deployment; a failed one carries kscore's reason as WML's ``failure.errors``."""
    href = deployment_url(instance, deployment.id)
    model = {
        "guid": deployment.model_id,
        "url": published_model_url(instance, deployment.model_id),
        "type": "model",
    }
    if asset is not None:
        model["name"] = asset.name
    entity: dict[str, Any] = {
        "name": deployment.name,
        "description": deployment.description,
        "type": "online",
        "status": deployment.status,
        "status_details": {"status": deployment.status},
        "scoring_url": href + "/online",
        "model_type": asset.model_type if asset else deployment.model_type,
        "runtime_environment": asset.runtime_environment if asset else None,
        "deployable_asset": model,
        "published_model": model,
    }
    if deployment.status is DeploymentStatus.DEPLOY_FAILED:
        error = deployment.error or {}
        message = str(error.get("message") or "The model could not be deployed.")
        failure = {"code": error.get("code") or "deploy_failed", "message": message}
        # WML sent each error as a JSON string; the client prints its "message".
        entity["status_details"]["failure"] = {"errors": [json.dumps(failure)]}
        entity["status_message"] = message
    return {
        "metadata": {
            "guid": deployment.id,
            "url": href,
            "created_at": iso(deployment.created_at),
            "modified_at": iso(deployment.updated_at),
        },
        "entity": entity,
    }


def page(
    resources: list[dict[str, Any]], total: int, limit: int, offset: int, list_url: str
) -> dict[str, Any]:
    """A WML list: ``{"resources"}``, with ``next.url`` only when a next page exists (the client
    follows ``next`` whenever the key is there)."""
    body: dict[str, Any] = {"resources": resources}
    if offset + len(resources) < total:
        body["next"] = {"url": f"{list_url}?limit={limit}&offset={offset + limit}"}
    return body

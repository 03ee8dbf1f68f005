"""Small helpers the test modules share."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient


def wait_for(
    check: Callable[[], Any], timeout: float = 60.0, what: str = "condition", interval: float = 0.05
) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def store_model(client: FlaskClient, path: Path, name: str = "model") -> dict[str, Any]:
    """Upload a model file through the API; its JSON (the upload must succeed)."""
    response = client.post(
        "/api/v1/models",
        data={"file": (io.BytesIO(path.read_bytes()), path.name), "name": name},
        content_type="multipart/form-data",
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()  # type: ignore[no-any-return]


def deploy(client: FlaskClient, model_id: str, name: str = "d") -> dict[str, Any]:
    """Deploy a stored model; the deployment once it settled (DEPLOY_SUCCESS or DEPLOY_FAILED)."""
    created = client.post("/api/v1/deployments", json={"model_id": model_id, "name": name})
    assert created.status_code == 202, created.get_json()
    href = "/api/v1/deployments/" + created.get_json()["id"]

    def settled() -> dict[str, Any] | None:
        body = client.get(href).get_json()
        return None if body["status"] == "DEPLOY_IN_PROGRESS" else body

    return wait_for(settled, what="deployment to settle")  # type: ignore[no-any-return]


def deployed(client: FlaskClient, path: Path, name: str = "model") -> dict[str, Any]:
    """Store and deploy a model file; the deployment, which must reach DEPLOY_SUCCESS."""
    final = deploy(client, store_model(client, path, name)["id"])
    assert final["status"] == "DEPLOY_SUCCESS", final
    return final


@dataclass
class Receiver:
    """What the receiver was sent; it answers 500 to the first ``failures`` requests."""

    url: str
    failures: int = 0
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)

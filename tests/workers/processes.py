"""Helpers for tests that run real Celery workers as subprocesses (kscore's dev-stack
supervisor starts and stops them)."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import redis
from flask.testing import FlaskClient

from api.app import create_app
from kscore.devstack import Supervisor
from shared.settings import Settings
from tests import keras_files as kf
from tests.conftest import authorized_client
from tests.helpers import store_model, wait_for

ROOT = Path(__file__).resolve().parents[2]
STOP_GRACE_SECONDS = 30.0  # a warm shutdown lets a chunk in progress finish


class Workers:
    """Worker subprocesses for one test (logs ``worker<N>.log`` in ``log_dir``), stopped at its end."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        env = {
            **os.environ,
            "KSCORE_REDIS_URL": settings.redis_url,
            "KSCORE_KEY_PREFIX": settings.key_prefix,
            "KSCORE_DATA_DIR": str(settings.data_dir),
            # Small direct calls make each chunk take long enough to be caught mid-way.
            "KSCORE_DIRECT_CALL_MAX_ROWS": "8",
        }
        self.stack = Supervisor(log_dir, env, cwd=ROOT)

    def start(self, concurrency: int = 2, **env: str) -> subprocess.Popen[bytes]:
        """Start one more worker (``env`` on top of the test's settings); its process."""
        index = sum(c.role == "worker" for c in self.stack.children)
        child = self.stack.start_worker(
            f"worker{index}",
            concurrency=concurrency,
            node_name=f"fault-{uuid.uuid4().hex[:6]}@%h",
            env=env,
        )
        return child.process

    def logs(self) -> str:
        return "\n".join(c.log_tail(60)[-3000:] for c in self.stack.children)

    def stop(self) -> None:
        self.stack.stop(grace=STOP_GRACE_SECONDS)


def deployed_cnn(settings: Settings, workers: Workers, tmp_path: Path) -> tuple[FlaskClient, str]:
    """A client of the API and the href of a small CNN deployment that is DEPLOY_SUCCESS."""
    client = authorized_client(create_app(settings, redis.Redis.from_url(settings.redis_url)))
    stored = store_model(client, kf.small_cnn_keras_file(tmp_path), "cnn")
    deployment = client.post(
        "/api/v1/deployments", json={"model_id": stored["id"], "name": "d"}
    ).get_json()
    href = f"/api/v1/deployments/{deployment['id']}"
    wait_for(
        lambda: client.get(href).get_json()["status"] != "DEPLOY_IN_PROGRESS", 120, "deploy", 0.2
    )
    assert client.get(href).get_json()["status"] == "DEPLOY_SUCCESS", workers.logs()
    return client, href

"""Helpers for tests that run real Celery workers as subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import redis
from flask.testing import FlaskClient

from api.app import create_app
from shared.settings import Settings
from tests import keras_files as kf
from tests.helpers import store_model, wait_for

ROOT = Path(__file__).resolve().parents[2]


class Workers:
    """Worker subprocesses for one test, stopped at its end."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, concurrency: int = 2, **env: str) -> subprocess.Popen[bytes]:
        environ = {
            **os.environ,
            "KSCORE_REDIS_URL": self.settings.redis_url,
            "KSCORE_KEY_PREFIX": self.settings.key_prefix,
            "KSCORE_DATA_DIR": str(self.settings.data_dir),
            # Small direct calls make each chunk take long enough to be caught mid-way.
            "KSCORE_DIRECT_CALL_MAX_ROWS": "8",
            **env,
        }
        log = (self.log_dir / f"worker{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.main", "worker",
             "-Q", "online,deploy,batch", "--pool", "prefork", "--concurrency", str(concurrency),
             "-n", f"fault-{uuid.uuid4().hex[:6]}@%h", "--loglevel", "INFO"],
            cwd=ROOT, env=environ, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        self.procs.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(p.read_text()[-3000:] for p in sorted(self.log_dir.glob("worker*.log")))

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def deployed_cnn(settings: Settings, workers: Workers, tmp_path: Path) -> tuple[FlaskClient, str]:
    """A client of the API and the href of a small CNN deployment that is DEPLOY_SUCCESS."""
    client = create_app(settings, redis.Redis.from_url(settings.redis_url)).test_client()
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

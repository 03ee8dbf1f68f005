"""Helpers for tests that run real Celery workers as subprocesses (kscore's dev-stack
supervisor starts and stops them)."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import cast

import redis
from flask.testing import FlaskClient

from api.app import create_app
from api.services import Services
from kscore.devstack import Supervisor
from shared.keys import Keys
from shared.queueing import ALL_QUEUES, SCORE_CHUNK, celery_key_prefix
from shared.settings import Settings
from tests import keras_files as kf
from tests.conftest import authorized_client
from tests.helpers import store_model, wait_for
from workers.reconciler import Task, task_of

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
            # The workers' delivery and reconciler timing are the test's, never a default the
            # test's own Settings do not show.
            "KSCORE_VISIBILITY_TIMEOUT": f"{settings.visibility_timeout_s:.3f}s",
            "KSCORE_RECONCILE_INTERVAL": f"{settings.reconcile_interval_s:.3f}s",
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

    def unfinished_report(self, services: Services, instance: str, jobs: list[str]) -> str:
        """What a fault test's failure needs: each unfinished job's pending chunks and where
        their messages are (a queue, Kombu's unacked hash, or nowhere), and each worker's
        warnings, reconnects and last task (the log tails alone miss the minutes after a kill)."""
        lines: list[str] = []
        try:
            lines.extend(_pending_report(services, instance, jobs, self.settings))
        except Exception as exc:  # a report, not a second failure
            lines.append(f"no job report: {exc!r}")
        for child in self.stack.children:
            text = child.log_path.read_text(errors="replace") if child.log_path.exists() else ""
            notable = [line for line in text.splitlines() if any(mark in line for mark in _NOTABLE)]
            received = [line for line in text.splitlines() if " received" in line]
            lines.append(f"--- {child.name}: warnings, errors, connects ---")
            lines.extend(notable[-80:])
            lines.append(f"last task received: {received[-1] if received else None}")
        return "\n".join(lines)

    def stop(self) -> None:
        self.stack.stop(grace=STOP_GRACE_SECONDS)


_NOTABLE = (" WARNING ", " ERROR ", " CRITICAL ", "reconcile", "Connected to", " ready.")


def _pending_report(
    services: Services, instance: str, jobs: list[str], settings: Settings
) -> list[str]:
    client = services.redis_client
    prefix = celery_key_prefix(settings)
    queued: set[Task] = set()
    for queue in ALL_QUEUES:
        for raw in cast(list[bytes], client.lrange(prefix + queue, 0, -1)):
            task = task_of(raw)
            if task is not None:
                queued.add(task)
    unacked: dict[Task, float] = {}
    scores = dict(
        cast(
            list[tuple[bytes, float]],
            client.zrange(prefix + "unacked_index", 0, -1, withscores=True),
        )
    )
    for tag, raw in cast(dict[bytes, bytes], client.hgetall(prefix + "unacked")).items():
        task = task_of(json.dumps(json.loads(raw)[0]).encode())
        if task is not None:
            unacked[task] = scores.get(tag, 0.0)
    server = client.hgetall(Keys(settings.key_prefix).reconciler_server())
    lines = [
        f"queued messages {len(queued)}, unacked {len(unacked)}, now {time.time():.1f}, "
        f"reconciler's server record {server}"
    ]
    for job_id in jobs:
        record = services.jobs.get(instance, job_id)
        if record.finished:
            continue
        pending = services.jobs.pending_chunks(record)
        where = []
        for chunk in pending:
            task = (SCORE_CHUNK, (instance, job_id, chunk))
            held = unacked.get(task)
            where.append(
                f"{chunk}:queued" if task in queued
                else f"{chunk}:unacked@{held:.1f}" if held is not None
                else f"{chunk}:nowhere"
            )  # fmt: skip
        lines.append(
            f"unfinished {job_id}: {record.status} rows {record.rows_done}/{record.rows_total}, "
            f"pending {' '.join(where)}"
        )
    return lines


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

"""Fault tests against real worker subprocesses: a killed worker process loses no rows."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import redis
from flask.testing import FlaskClient

from shared.keys import Keys
from shared.settings import Settings
from tests import keras_files as kf
from tests.helpers import wait_for
from tests.workers.processes import Workers, deployed_cnn

# Starts its own worker processes and waits on them for seconds.
pytestmark = pytest.mark.slow


def wait_finished(client: FlaskClient, job_id: str, timeout: float) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        current = client.get(f"/api/v1/jobs/{job_id}").get_json()
        return current if current["status"] in {"completed", "failed", "canceled"} else None

    return wait_for(finished, timeout, "job to finish", 0.2)  # type: ignore[no-any-return]


def assert_every_row_once(client: FlaskClient, job: dict[str, Any], x: np.ndarray) -> None:
    assert job["status"] == "completed", job
    assert job["progress"] == {"rows_done": len(x), "rows_total": len(x)}
    values = client.get(f"/api/v1/jobs/{job['id']}/result").get_json()["values"]
    assert len(values) == len(x)  # none lost, none duplicated
    np.testing.assert_allclose(
        [v[0] for v in values], kf.expected_small_cnn(x), rtol=1e-4, atol=1e-5
    )


def test_sigkilled_pool_process_loses_no_row_and_counts_none_twice(
    proc_settings: Settings, workers: Workers, tmp_path: Path
) -> None:
    worker = workers.start()
    client, href = deployed_cnn(proc_settings, workers, tmp_path)
    x = np.random.default_rng(7).normal(size=(12000, 8, 8, 1)).astype(np.float32)
    job = client.post(f"{href}/jobs", json={"values": x.tolist()}).get_json()
    keys = Keys(proc_settings.key_prefix)
    inst = proc_settings.default_instance
    attempts_key, done_key = keys.job_attempts(inst, job["id"]), keys.job_done(inst, job["id"])
    store = redis.Redis.from_url(proc_settings.redis_url)

    def in_flight() -> set[bytes]:
        started = set(store.hkeys(attempts_key))
        done = set(store.smembers(done_key))
        return started - done if done else set()

    interrupted = wait_for(in_flight, 120, "chunks in flight after the first completed", 0.02)
    children = psutil.Process(worker.pid).children()
    assert children, "the prefork worker has no pool processes"
    for child in children:
        child.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()

    final = wait_finished(client, job["id"], 180)
    print(f"\npool processes killed: the job ended {time.monotonic() - killed_at:.1f} s later")
    assert_every_row_once(client, final, x)
    # The chunks that were being scored when their processes died ran again.
    attempts = {k: int(v) for k, v in store.hgetall(attempts_key).items()}
    assert any(attempts[c] >= 2 for c in interrupted), (interrupted, attempts)
    assert worker.poll() is None  # the worker replaced its pool processes and went on


def test_job_survives_its_whole_worker_dying(
    proc_settings: Settings, workers: Workers, tmp_path: Path
) -> None:
    # A machine that vanishes leaves its tasks unacknowledged in Redis; another worker restores
    # them once they are older than the visibility timeout.
    first = workers.start(KSCORE_VISIBILITY_TIMEOUT="3")
    client, href = deployed_cnn(proc_settings, workers, tmp_path)
    x = np.random.default_rng(8).normal(size=(12000, 8, 8, 1)).astype(np.float32)
    job = client.post(f"{href}/jobs", json={"values": x.tolist()}).get_json()
    wait_for(
        lambda: client.get(f"/api/v1/jobs/{job['id']}").get_json()["progress"]["rows_done"] > 0,
        120, "the first chunk", 0.02,
    )  # fmt: skip
    for proc in [*psutil.Process(first.pid).children(), psutil.Process(first.pid)]:
        proc.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = time.monotonic()
    stalled = client.get(f"/api/v1/jobs/{job['id']}").get_json()
    assert stalled["status"] == "running"
    assert stalled["progress"]["rows_done"] < len(x), "the job finished before the kill"
    workers.start(KSCORE_VISIBILITY_TIMEOUT="3")
    final = wait_finished(client, job["id"], 180)
    # Includes starting the second worker (TensorFlow, the model) after the kill.
    print(f"\nworker killed: the job ended {time.monotonic() - killed_at:.1f} s later")
    assert_every_row_once(client, final, x)


def test_online_requests_held_by_a_killed_worker_are_answered_by_another(
    proc_settings: Settings, workers: Workers, tmp_path: Path
) -> None:
    # A worker's batcher takes many online requests from the stream at once; killed with
    # them pending, it answers none. Another worker's consumer reclaims them (XAUTOCLAIM)
    # after KSCORE_ONLINE_RECLAIM and answers each once; none hangs.
    first = workers.start(concurrency=1, KSCORE_ONLINE_RECLAIM="2")
    client, href = deployed_cnn(proc_settings, workers, tmp_path)
    rng = np.random.default_rng(9)
    xs = [rng.normal(size=(10_000, 8, 8, 1)).astype(np.float32) for _ in range(12)]
    tree = [*psutil.Process(first.pid).children(), psutil.Process(first.pid)]
    for proc in tree:  # paused while the requests queue up, so it takes them all at once
        proc.send_signal(signal.SIGSTOP)
    jobs = []
    for x in xs:
        # timeout=0.01: answered 202 with the job, which the test then polls.
        response = client.post(f"{href}/online?timeout=0.01", json={"values": x.tolist()})
        assert response.status_code in (200, 202), response.get_json()
        jobs.append(response.get_json().get("id") if response.status_code == 202 else None)
    for proc in tree:
        proc.send_signal(signal.SIGCONT)
    time.sleep(0.5)  # it reads the stream (every request, pending now) and starts scoring
    for proc in tree:
        proc.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = time.monotonic()
    pending = [job_id for job_id in jobs if job_id is not None]
    unfinished = [
        j for j in pending if client.get(f"/api/v1/jobs/{j}").get_json()["status"] != "completed"
    ]
    assert unfinished, "every request was answered before the kill: nothing was tested"
    workers.start(concurrency=1, KSCORE_ONLINE_RECLAIM="2")
    for x, job_id in zip(xs, jobs, strict=True):
        if job_id is None:
            continue
        final = wait_finished(client, job_id, 180)
        assert final["status"] == "completed", final
        values = client.get(f"/api/v1/jobs/{job_id}/result").get_json()["values"]
        assert len(values) == len(x)
        np.testing.assert_allclose(
            [v[0] for v in values], kf.expected_small_cnn(x), rtol=1e-4, atol=1e-5
        )
    assert "online requests reclaimed" in workers.logs()
    print(f"\nworker killed with {len(unfinished)} online requests unanswered: all answered "
          f"{time.monotonic() - killed_at:.1f} s later")  # fmt: skip

"""Backpressure: per-instance limits on queued rows, queued jobs and the request rate (429
with Retry-After, nothing stored), counters kept exact by the scripts that move jobs, and a
burst of submissions against a live API and a real worker."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from api.app import create_app
from shared.job_store import JobStore
from shared.keys import Keys
from shared.settings import Settings
from shared.status import ClaimOutcome, CompleteOutcome, DeploymentStatus, JobStatus
from tests import keras_files as kf
from tests.conftest import authorized_client, instance_store
from tests.helpers import store_model, wait_for

ROW = [1.0, 2.0, 3.0, 4.0]


@pytest.fixture(scope="module")
def dense_h5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kf.tf_keras_h5_file(tmp_path_factory.mktemp("dense"))


def idle_app(base_settings: Settings, client: redis.Redis, **limits: Any) -> Flask:
    """An app on a prefix no worker consumes, so accepted jobs stay queued."""
    settings = base_settings.replace(key_prefix=f"ksidle-{uuid.uuid4().hex[:8]}", **limits)
    return create_app(settings, client)


def deployed(app: Flask, client: FlaskClient, path: Path, instance: str | None = None) -> str:
    """The jobs URL of a deployment marked DEPLOY_SUCCESS by hand (no worker loads it); two
    requests."""
    model = store_model(client, path)
    deployment = client.post(
        "/api/v1/deployments", json={"model_id": model["id"], "name": "d"}
    ).get_json()
    svc = app.extensions["kscore"]
    svc.deployments.set_status(
        instance or svc.settings.default_instance,
        deployment["id"],
        DeploymentStatus.DEPLOY_SUCCESS,
    )
    return f"/api/v1/deployments/{deployment['id']}/jobs"


def backlog(app: Flask) -> tuple[int, int]:
    svc = app.extensions["kscore"]
    return svc.jobs.backlog(svc.settings.default_instance)  # type: ignore[no-any-return]


def assert_429(response: Any, code: str) -> dict[str, Any]:
    assert response.status_code == 429, response.get_json()
    assert int(response.headers["Retry-After"]) >= 1
    error = response.get_json()["error"]
    assert error["code"] == code
    return error  # type: ignore[no-any-return]


# -- queued work ----------------------------------------------------------------------------


def test_queued_jobs_limit_is_429_with_retry_after_and_stores_nothing(
    base_settings: Settings, redis_client: redis.Redis, dense_h5: Path
) -> None:
    app = idle_app(base_settings, redis_client, max_queued_jobs=2)
    client = authorized_client(app)
    jobs_url = deployed(app, client, dense_h5)
    first, _ = (client.post(jobs_url, json={"values": [ROW]}).get_json() for _ in range(2))
    error = assert_429(client.post(jobs_url, json={"values": [ROW]}), "queued_jobs_limit")
    assert "KSCORE_MAX_QUEUED_JOBS" in error["message"]
    assert error["details"] == {"limit": 2, "queued_jobs": 2}
    assert client.get("/api/v1/jobs").get_json()["total"] == 2
    assert backlog(app) == (2, 2)
    # A canceled job makes room.
    assert client.delete(f"/api/v1/jobs/{first['id']}").status_code == 200
    assert backlog(app) == (1, 1)
    assert client.post(jobs_url, json={"values": [ROW]}).status_code == 202


def test_queued_rows_limit_is_429_and_a_job_over_it_alone_is_413(
    base_settings: Settings, redis_client: redis.Redis, dense_h5: Path
) -> None:
    app = idle_app(base_settings, redis_client, max_queued_rows=10)
    client = authorized_client(app)
    jobs_url = deployed(app, client, dense_h5)
    assert client.post(jobs_url, json={"values": [ROW] * 6}).status_code == 202
    error = assert_429(client.post(jobs_url, json={"values": [ROW] * 5}), "queued_rows_limit")
    assert "KSCORE_MAX_QUEUED_ROWS" in error["message"]
    assert error["details"] == {"limit": 10, "queued_rows": 6, "rows": 5}
    assert backlog(app) == (6, 1)
    assert client.post(jobs_url, json={"values": [ROW] * 4}).status_code == 202
    too_big = client.post(jobs_url, json={"values": [ROW] * 11})
    assert (
        too_big.status_code == 413
        and "KSCORE_MAX_QUEUED_ROWS" in too_big.get_json()["error"]["message"]
    )
    assert client.get("/api/v1/jobs").get_json()["total"] == 2
    assert backlog(app) == (10, 2)


def test_two_instances_have_separate_budgets(
    base_settings: Settings, redis_client: redis.Redis, dense_h5: Path
) -> None:
    app = idle_app(base_settings, redis_client, max_queued_jobs=1, rate_limit="4/minute")
    mine = authorized_client(app)
    jobs_url = deployed(app, mine, dense_h5)  # requests 1 and 2 of 4
    assert mine.post(jobs_url, json={"values": [ROW]}).status_code == 202
    assert_429(mine.post(jobs_url, json={"values": [ROW]}), "queued_jobs_limit")
    assert_429(mine.get("/api/v1/jobs"), "rate_limited")

    other = instance_store(app.extensions["kscore"].settings, redis_client).create(
        f"other-{uuid.uuid4().hex[:8]}"
    )
    theirs = app.test_client()
    theirs.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {other.key.api_key}"
    their_jobs = deployed(app, theirs, dense_h5, other.instance.id)
    assert theirs.post(their_jobs, json={"values": [ROW]}).status_code == 202
    assert theirs.get("/api/v1/jobs").get_json()["total"] == 1
    assert_429(theirs.get("/api/v1/jobs"), "rate_limited")
    svc = app.extensions["kscore"]
    assert svc.jobs.backlog(other.instance.id) == (1, 1)
    assert backlog(app) == (1, 1)


# -- request rate ---------------------------------------------------------------------------


def test_rate_limit_is_429_with_retry_after_and_leaves_health_and_docs_alone(
    base_settings: Settings, redis_client: redis.Redis, dense_h5: Path
) -> None:
    app = idle_app(base_settings, redis_client, rate_limit="3/minute")
    client = authorized_client(app)
    for _ in range(3):
        assert client.get("/api/v1/models").status_code == 200
    response = client.get("/api/v1/models")
    error = assert_429(response, "rate_limited")
    assert "KSCORE_RATE_LIMIT" in error["message"] and "3 per 1 minute" in error["message"]
    assert 1 <= int(response.headers["Retry-After"]) <= 61
    # Refused before the view ran: an upload past the limit stores nothing.
    refused = client.post(
        "/api/v1/models",
        data={"file": (dense_h5.open("rb"), dense_h5.name), "name": "m"},
        content_type="multipart/form-data",
    )
    assert_429(refused, "rate_limited")
    svc = app.extensions["kscore"]
    assert svc.models.page(svc.settings.default_instance, 10, 0)[1] == 0
    # The WML routes share the instance's budget.
    wml = client.get(f"/v3/wml_instances/{svc.settings.default_instance}")
    assert wml.status_code == 429
    assert wml.get_json()["errors"][0]["code"] == "rate_limited"
    assert int(wml.headers["Retry-After"]) >= 1
    for path in ("/healthz", "/readyz", "/api/v1/openapi.json", "/api/v1/docs", "/metrics"):
        for _ in range(5):
            assert client.get(path).status_code != 429, path


# -- the counters are exact -----------------------------------------------------------------


def test_every_terminal_transition_releases_the_backlog_exactly_once(
    base_settings: Settings, redis_client: redis.Redis
) -> None:
    keys = Keys(f"ksidle-{uuid.uuid4().hex[:8]}")
    jobs = JobStore(redis_client, keys)
    inst = "backlog"

    def create(rows: int, chunks: int = 1, retention_s: float = 60.0) -> str:
        return jobs.create(
            inst,
            kind="batch",
            deployment_id=str(uuid.uuid4()),
            model_id="m",
            model_sha256="0" * 64,
            model_filename="m.h5",
            rows_total=rows,
            chunk_rows=rows,
            input_chunks=[b"x"] * chunks,
            fields=["prediction"],
            output_names=["y"],
            retention_s=retention_s,
        ).id

    completed, failed, canceled, lost, expired = (create(n) for n in (1, 2, 3, 4, 5))
    assert jobs.backlog(inst) == (15, 5)
    # completed: the last chunk; a redelivered chunk changes nothing
    assert jobs.claim_chunk(inst, completed, 0, 3) is ClaimOutcome.RUN
    assert jobs.complete_chunk(inst, completed, 0, 1, b"[]") is CompleteOutcome.JOB_COMPLETED
    assert jobs.complete_chunk(inst, completed, 0, 1, b"[]") is not CompleteOutcome.COUNTED
    assert jobs.backlog(inst) == (14, 4)
    # failed and canceled (JobStore.finish), twice each
    for job_id, status in ((failed, JobStatus.FAILED), (canceled, JobStatus.CANCELED)):
        jobs.finish(inst, job_id, status)
        jobs.finish(inst, job_id, status)
    assert jobs.backlog(inst) == (9, 2)
    # the claim script's failure: attempts exhausted (one start allowed, the second fails it)
    assert jobs.claim_chunk(inst, lost, 0, 1) is ClaimOutcome.RUN
    assert jobs.claim_chunk(inst, lost, 0, 1) is ClaimOutcome.ATTEMPTS_EXHAUSTED
    assert jobs.claim_chunk(inst, lost, 0, 1) is ClaimOutcome.JOB_FINISHED
    assert jobs.get(inst, lost).status == JobStatus.FAILED
    assert jobs.backlog(inst) == (5, 1)
    # the reconciler forgets a job that expired unfinished; forgetting again is a no-op
    redis_client.delete(keys.job(inst, expired))
    jobs.forget_active(inst, expired)
    jobs.forget_active(inst, expired)
    jobs.forget_active(inst, completed)
    assert jobs.backlog(inst) == (0, 0)
    # limits are checked in the creating script
    create(3)
    with pytest.raises(Exception) as refused:
        jobs.create(
            inst,
            kind="batch",
            deployment_id=str(uuid.uuid4()),
            model_id="m",
            model_sha256="0" * 64,
            model_filename="m.h5",
            rows_total=1,
            chunk_rows=1,
            input_chunks=[b"x"],
            fields=["prediction"],
            output_names=["y"],
            retention_s=60.0,
            max_queued_jobs=1,
        )
    assert getattr(refused.value, "code", None) == "queued_jobs_limit"
    assert jobs.backlog(inst) == (3, 1)


# -- the burst ------------------------------------------------------------------------------


@pytest.fixture
def live_api(app: Flask) -> Iterator[str]:
    """``app`` served over HTTP on a free loopback port, in a thread."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.fixture
def settings(base_settings: Settings) -> Settings:
    # The session worker's prefix, a fresh instance, and low limits.
    return base_settings.replace(
        default_instance=f"t{uuid.uuid4().hex[:12]}",
        max_queued_jobs=12,
        max_queued_rows=20,
        rate_limit="100/second",
    )


@pytest.mark.slow
@pytest.mark.usefixtures("worker")
def test_a_burst_past_the_limits_is_202_or_429_and_every_accepted_job_ends(
    app: Flask, live_api: str, settings: Settings, redis_client: redis.Redis, dense_h5: Path
) -> None:
    client = authorized_client(app)
    model = store_model(client, dense_h5)
    created = client.post("/api/v1/deployments", json={"model_id": model["id"], "name": "b"})
    href = f"/api/v1/deployments/{created.get_json()['id']}"
    wait_for(lambda: client.get(href).get_json()["status"] == "DEPLOY_SUCCESS", 120, "deploy")
    api_key = client.environ_base["HTTP_AUTHORIZATION"]

    submissions, concurrency = 2000, 32
    statuses: Counter[int] = Counter()
    codes: Counter[str] = Counter()
    accepted: list[str] = []
    lock = threading.Lock()
    local = threading.local()

    def submit(n: int) -> None:
        if not hasattr(local, "http"):
            local.http = httpx.Client(
                base_url=live_api, headers={"Authorization": api_key}, timeout=60
            )
        response = local.http.post(f"{href}/jobs", json={"values": [ROW] * (1 + n % 3)})
        with lock:
            statuses[response.status_code] += 1
            if response.status_code == 202:
                accepted.append(response.json()["id"])
            elif response.status_code == 429:
                assert int(response.headers["Retry-After"]) >= 1
                codes[response.json()["error"]["code"]] += 1

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for future in [pool.submit(submit, n) for n in range(submissions)]:
            future.result(timeout=300)
    seconds = time.monotonic() - started

    svc = app.extensions["kscore"]
    inst = settings.default_instance
    print(f"burst: {dict(statuses)} {dict(codes)} in {seconds:.1f} s")
    assert set(statuses) <= {202, 429}, statuses
    assert statuses[202] > 0 and statuses[429] > 0
    assert sum(statuses.values()) == submissions
    assert set(codes) <= {"queued_jobs_limit", "queued_rows_limit", "rate_limited"}

    def all_ended() -> bool:
        return all(svc.jobs.get(inst, job_id).finished for job_id in accepted)

    wait_for(all_ended, 180, "every accepted job to end", 0.2)
    ended = Counter(svc.jobs.get(inst, job_id).status for job_id in accepted)
    assert ended == {JobStatus.COMPLETED: len(accepted)}, ended
    assert svc.jobs.backlog(inst) == (0, 0)
    assert redis_client.hlen(Keys(settings.key_prefix).backlog(inst)) == 0


def test_limit_settings_are_read_and_checked_at_start() -> None:
    from shared.errors import SettingsError

    settings = Settings.from_env(
        {
            "KSCORE_MAX_QUEUED_ROWS": "0",
            "KSCORE_MAX_QUEUED_JOBS": "20",
            "KSCORE_RATE_LIMIT": "10/second;100/minute",
        }
    )
    assert (settings.max_queued_rows, settings.max_queued_jobs) == (0, 20)
    assert settings.rate_limit == "10/second;100/minute"
    assert Settings.from_env({"KSCORE_RATE_LIMIT": "OFF"}).rate_limit == "off"
    defaults = Settings.from_env({})
    assert (defaults.max_queued_rows, defaults.max_queued_jobs) == (5_000_000, 1_000)
    assert defaults.rate_limit == "50/second;2000/minute"
    for var, bad in (("KSCORE_RATE_LIMIT", "lots"), ("KSCORE_MAX_QUEUED_JOBS", "-1")):
        with pytest.raises(SettingsError, match=var):
            Settings.from_env({var: bad})

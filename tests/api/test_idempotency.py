"""Idempotency-Key on job submission and online scoring, against a real worker and Redis."""

from __future__ import annotations

import io
import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from shared.instance_store import NewInstance
from shared.keys import Keys
from shared.settings import Settings
from tests import keras_files as kf
from tests.helpers import deployed, wait_for

pytestmark = pytest.mark.usefixtures("worker")

DUPLICATES = 10


@pytest.fixture(scope="module")
def dense_h5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kf.tf_keras_h5_file(tmp_path_factory.mktemp("dense"))


@pytest.fixture
def deployment(client: FlaskClient, dense_h5: Path) -> dict[str, Any]:
    return deployed(client, dense_h5)


def rows(n: int, seed: int = 0) -> list[list[float]]:
    return np.random.default_rng(seed).normal(size=(n, 4)).astype(np.float32).tolist()  # type: ignore[no-any-return]


def finished_job(client: FlaskClient, job_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job = client.get(f"/api/v1/jobs/{job_id}").get_json()
        return job if job["status"] in {"completed", "failed", "canceled"} else None

    return wait_for(done, 120, "job to finish")  # type: ignore[no-any-return]


def claims_per_chunk(redis_client: redis.Redis, settings: Settings, job_id: str) -> list[int]:
    """How many times each chunk of the job was claimed by a worker (``job_claim.lua``)."""
    key = Keys(settings.key_prefix).job_attempts(settings.default_instance, job_id)
    raw: dict[bytes, bytes] = redis_client.hgetall(key)  # type: ignore[assignment]
    return [int(raw[n]) for n in sorted(raw, key=int)]


def concurrently(
    app: Flask, instance: NewInstance, send: Any, n: int = DUPLICATES
) -> list[TestResponse]:
    """``send(client)`` from ``n`` threads released together; their responses."""
    barrier = threading.Barrier(n)
    responses: list[TestResponse | BaseException] = [RuntimeError("not run")] * n

    def run(i: int) -> None:
        client = app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {instance.key.api_key}"
        barrier.wait(timeout=30)
        try:
            responses[i] = send(client)
        except BaseException as exc:  # reported by the assertion below
            responses[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(isinstance(r, TestResponse) for r in responses), responses
    return responses  # type: ignore[return-value]


def test_concurrent_duplicate_jobs_create_one_job_scored_once(
    app: Flask,
    instance: NewInstance,
    client: FlaskClient,
    deployment: dict[str, Any],
    redis_client: redis.Redis,
    settings: Settings,
) -> None:
    body = {"values": rows(120)}  # three chunks of 50
    key = str(uuid.uuid4())
    responses = concurrently(
        app,
        instance,
        lambda c: c.post(
            f"/api/v1/deployments/{deployment['id']}/jobs",
            json=body,
            headers={"Idempotency-Key": key},
        ),
    )
    assert [r.status_code for r in responses] == [202] * DUPLICATES, [
        r.get_json() for r in responses
    ]
    job_ids = {r.get_json()["id"] for r in responses}
    assert len(job_ids) == 1
    replayed = [r.headers.get("Idempotency-Replayed") for r in responses]
    assert replayed.count(None) == 1 and replayed.count("true") == DUPLICATES - 1
    job_id = job_ids.pop()
    assert finished_job(client, job_id)["status"] == "completed"
    assert client.get("/api/v1/jobs").get_json()["total"] == 1
    assert claims_per_chunk(redis_client, settings, job_id) == [1, 1, 1]


def test_concurrent_duplicate_online_requests_score_once(
    app: Flask,
    instance: NewInstance,
    client: FlaskClient,
    deployment: dict[str, Any],
    redis_client: redis.Redis,
    settings: Settings,
) -> None:
    x = rows(3, seed=1)
    key = str(uuid.uuid4())
    responses = concurrently(
        app,
        instance,
        lambda c: c.post(
            f"/api/v1/deployments/{deployment['id']}/online",
            json={"values": x},
            headers={"Idempotency-Key": key},
        ),
    )
    assert [r.status_code for r in responses] == [200] * DUPLICATES
    assert len({r.get_data() for r in responses}) == 1
    expected = kf.expected_dense_softmax(np.asarray(x, dtype=np.float32))
    np.testing.assert_allclose(
        [v[0] for v in responses[0].get_json()["values"]], expected, rtol=1e-5, atol=1e-6
    )
    jobs = client.get("/api/v1/jobs").get_json()
    assert jobs["total"] == 1  # kept for replays, unlike an online job without a key
    assert claims_per_chunk(redis_client, settings, jobs["resources"][0]["id"]) == [1]


def test_same_key_with_another_body_is_422(client: FlaskClient, deployment: dict[str, Any]) -> None:
    url = f"/api/v1/deployments/{deployment['id']}/jobs"
    key = {"Idempotency-Key": "order-42"}
    assert client.post(url, json={"values": rows(2)}, headers=key).status_code == 202
    other = client.post(url, json={"values": rows(2, seed=9)}, headers=key)
    assert other.status_code == 422
    assert other.get_json()["error"]["code"] == "idempotency_key_reused"
    # The same rows under another query (another retention) are another request too.
    again = client.post(url + "?retention_days=2", json={"values": rows(2)}, headers=key)
    assert again.status_code == 422


def test_a_dataset_job_key_covers_the_rows_not_the_dataset_id(
    client: FlaskClient, deployment: dict[str, Any]
) -> None:
    def upload(values: list[list[float]], fmt: str) -> str:
        if fmt == "npy":
            buf = io.BytesIO()
            np.save(buf, np.asarray(values, dtype=np.float32))
            body, mimetype = buf.getvalue(), "application/x-npy"
        else:
            body = "".join(",".join(repr(v) for v in row) + "\n" for row in values).encode()
            mimetype = "text/csv"
        answer = client.post(
            f"/api/v1/datasets?deployment_id={deployment['id']}&header=false",
            data=body,
            content_type=mimetype,
        )
        assert answer.status_code == 201, answer.get_json()
        return str(answer.get_json()["id"])

    url = f"/api/v1/deployments/{deployment['id']}/jobs"
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = client.post(url, json={"dataset_id": upload(rows(5), "npy")}, headers=key)
    assert first.status_code == 202
    # The same rows uploaded again, as another file format: the same request.
    for fmt in ("npy", "csv"):
        again = client.post(url, json={"dataset_id": upload(rows(5), fmt)}, headers=key)
        assert again.status_code == 202, (fmt, again.get_json())
        assert again.headers["Idempotency-Replayed"] == "true"
        assert again.get_json()["id"] == first.get_json()["id"]
    other = client.post(url, json={"dataset_id": upload(rows(5, seed=3), "npy")}, headers=key)
    assert other.status_code == 422
    assert other.get_json()["error"]["code"] == "idempotency_key_reused"
    missing = client.post(url, json={"dataset_id": "no-such-dataset"}, headers=key)
    assert missing.status_code == 404  # refused before the key is looked at
    assert finished_job(client, first.get_json()["id"])["status"] == "completed"


def test_replay_after_completion_answers_the_finished_job(
    client: FlaskClient, deployment: dict[str, Any]
) -> None:
    url = f"/api/v1/deployments/{deployment['id']}/jobs"
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = client.post(url, json={"values": rows(60)}, headers=key)
    assert first.status_code == 202
    assert "Idempotency-Replayed" not in first.headers
    finished = finished_job(client, first.get_json()["id"])
    replay = client.post(url, json={"values": rows(60)}, headers=key)
    assert replay.status_code == 202
    assert replay.headers["Idempotency-Replayed"] == "true"
    assert replay.headers["Location"] == first.headers["Location"]
    assert replay.get_json()["id"] == finished["id"]
    assert replay.get_json()["status"] == "completed"
    assert client.get("/api/v1/jobs").get_json()["total"] == 1


def test_online_replay_after_completion_answers_the_same_predictions(
    client: FlaskClient, deployment: dict[str, Any]
) -> None:
    url = f"/api/v1/deployments/{deployment['id']}/online"
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = client.post(url, json={"values": rows(2)}, headers=key)
    assert first.status_code == 200
    # A retry may wait for another time: `timeout` is not part of the request's identity.
    replay = client.post(url + "?timeout=5", json={"values": rows(2)}, headers=key)
    assert replay.status_code == 200
    assert replay.headers["Idempotency-Replayed"] == "true"
    assert replay.get_data() == first.get_data()


def test_a_refused_request_leaves_the_key_unused(
    client: FlaskClient, deployment: dict[str, Any]
) -> None:
    url = f"/api/v1/deployments/{deployment['id']}/jobs"
    key = {"Idempotency-Key": str(uuid.uuid4())}
    refused = client.post(url, json={"values": [[1.0, 2.0]]}, headers=key)  # 2 of 4 columns
    assert refused.status_code == 422
    assert refused.get_json()["error"]["code"] == "invalid_scoring_input"
    accepted = client.post(url, json={"values": rows(2)}, headers=key)
    assert accepted.status_code == 202
    assert "Idempotency-Replayed" not in accepted.headers


def test_a_key_is_per_instance_and_checked(
    app: Flask, client: FlaskClient, deployment: dict[str, Any]
) -> None:
    url = f"/api/v1/deployments/{deployment['id']}/jobs"
    bad = client.post(url, json={"values": rows(1)}, headers={"Idempotency-Key": "é" * 3})
    assert bad.status_code == 422
    assert "Idempotency-Key" in str(bad.get_json()["error"]["details"])
    # Without a key, the same body twice makes two jobs.
    ids = {client.post(url, json={"values": rows(1)}).get_json()["id"] for _ in range(2)}
    assert len(ids) == 2


def test_the_header_is_documented(client: FlaskClient) -> None:
    spec = client.get("/api/v1/openapi.json").get_json()
    for path in (
        "/api/v1/deployments/{deployment_id}/jobs",
        "/api/v1/deployments/{deployment_id}/online",
    ):
        operation = spec["paths"][path]["post"]
        names = {(p["in"], p["name"]) for p in operation["parameters"]}
        assert ("header", "Idempotency-Key") in names
        assert "Idempotency-Replayed" in operation["responses"]["202"]["headers"]

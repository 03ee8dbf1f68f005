"""Deployments that move: PATCH a new model behind the same scoring URL, against a real worker.

Models A and B are the same Dense(3, softmax) with different known weights, so every answer
says by its numbers, and by its X-Kscore-Model-Sha256 header, which model scored it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from api.app import create_app
from api.services import DEPLOYMENT_READS
from shared.deployment_store import DeploymentStore
from shared.job_record import JobRecord
from shared.job_store import DeploymentChanged, JobStore
from shared.keys import Keys
from shared.settings import Settings
from shared.status import DeploymentStatus
from tests import keras_files as kf
from tests.helpers import deploy, store_model, wait_for
from workers.model_cache import ModelCache

pytestmark = pytest.mark.usefixtures("worker")

HEADER = "X-Kscore-Model-Sha256"
NO_SUCH_ID = "00000000-0000-4000-8000-000000000000"
ROWS = np.random.default_rng(7).normal(size=(3, 4)).astype(np.float32)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("move")
    return {
        "a": kf.tf_keras_h5_file(directory),
        "b": kf.tf_keras_h5_b_file(directory),
        "other_inputs": kf.sigmoid_binary_h5_file(directory),
    }


@pytest.fixture
def models(client: FlaskClient, files: dict[str, Path]) -> dict[str, dict[str, Any]]:
    return {name: store_model(client, path, name) for name, path in files.items()}


@pytest.fixture
def deployment_a(client: FlaskClient, models: dict[str, dict[str, Any]]) -> dict[str, Any]:
    final = deploy(client, models["a"]["id"])
    assert final["status"] == "DEPLOY_SUCCESS", final
    return final


def href(deployment: dict[str, Any]) -> str:
    return f"/api/v1/deployments/{deployment['id']}"


def predictions(body: dict[str, Any]) -> np.ndarray:
    return np.array([row[0] for row in body["values"]], dtype=np.float64)


def assert_scored_by(body: dict[str, Any], expected: np.ndarray) -> None:
    np.testing.assert_allclose(predictions(body), expected, rtol=1e-5, atol=1e-6)


def settled_on(client: FlaskClient, deployment: dict[str, Any], model_id: str) -> dict[str, Any]:
    """The deployment once its move ended with ``model_id`` current."""

    def moved() -> dict[str, Any] | None:
        body = client.get(href(deployment)).get_json()
        return body if body["pending_model"] is None and body["model_id"] == model_id else None

    return wait_for(moved, what="the move to end")  # type: ignore[no-any-return]


def test_online_answers_switch_from_a_to_b_and_none_fails(
    app: Flask,
    client: FlaskClient,
    models: dict[str, dict[str, Any]],
    deployment_a: dict[str, Any],
) -> None:
    a, b = models["a"], models["b"]
    expected = {
        a["sha256"]: kf.expected_dense_softmax(ROWS),
        b["sha256"]: kf.expected_dense_b_softmax(ROWS),
    }
    url = href(deployment_a) + "/online"
    answers: list[tuple[float, int, str | None, Any]] = []  # (sent, status, sha256, body)
    lock = threading.Lock()
    stop = threading.Event()
    switched = threading.Event()
    after_switch = 0

    def loop() -> None:
        nonlocal after_switch
        # One test client per thread, sending the same key.
        own = app.test_client()
        own.environ_base.update(client.environ_base)
        deadline = time.monotonic() + 60
        for _ in range(300):  # bounded in count and in time
            if stop.is_set() or time.monotonic() > deadline:
                return
            sent_after_switch = switched.is_set()
            sent = time.monotonic()
            response = own.post(url, json={"values": ROWS.tolist()})
            with lock:
                answers.append(
                    (sent, response.status_code, response.headers.get(HEADER), response.get_json())
                )
                after_switch += sent_after_switch

    threads = [threading.Thread(target=loop) for _ in range(3)]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(answers) >= 6, what="answers before the switch")
    patched_at = time.monotonic()
    patch = client.patch(href(deployment_a), json={"model_id": b["id"], "name": "moved"})
    assert patch.status_code == 202, patch.get_json()
    assert patch.get_json()["pending_model"]["model_id"] == b["id"]
    final = settled_on(client, deployment_a, b["id"])
    switched_at = time.monotonic()
    switched.set()
    wait_for(lambda: after_switch >= 9, what="answers after the switch")
    stop.set()
    for thread in threads:
        thread.join(timeout=60)

    assert [status for _, status, _, _ in answers] == [200] * len(answers)
    for _, _, sha256, body in answers:
        assert sha256 in expected, sha256
        assert_scored_by(body, expected[sha256])
    # Sent once GET showed B current: scored by B.
    later = [sha256 for sent, _, sha256, _ in answers if sent > switched_at]
    assert later and set(later) == {b["sha256"]}
    earlier = [sha256 for sent, _, sha256, _ in answers if sent < patched_at]
    assert earlier and set(earlier) == {a["sha256"]}
    during = [sha256 for sent, _, sha256, _ in answers if patched_at <= sent <= switched_at]
    print(  # figures for the record (pytest -s)
        f"\nmove: answers={len(answers)} during_switch={len(during)} "
        f"(by A {during.count(a['sha256'])}, by B {during.count(b['sha256'])}) "
        f"switch_seconds={switched_at - patched_at:.2f} failures=0"
    )

    assert final["name"] == "moved"
    assert final["model_sha256"] == b["sha256"]
    assert final["status"] == "DEPLOY_SUCCESS"
    assert final["previous_model"]["model_id"] == a["id"]
    assert final["previous_model"]["model_sha256"] == a["sha256"]
    assert final["previous_model"]["switched_at"]
    assert final["pending_error"] is None
    # A is no longer held by the deployment, B is.
    assert client.delete(f"/api/v1/models/{b['id']}").status_code == 409
    assert client.delete(f"/api/v1/models/{a['id']}").status_code == 204


def test_a_model_that_fails_to_load_leaves_a_serving(
    client: FlaskClient,
    models: dict[str, dict[str, Any]],
    deployment_a: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b = models["a"], models["b"]
    loading = threading.Event()
    release = threading.Event()
    real_get = ModelCache.get

    def failing_get(self: ModelCache, sha256: str, filename: str) -> Any:
        if sha256 == b["sha256"]:  # the fault: B never loads
            loading.set()
            release.wait(30)
            raise RuntimeError("injected load failure")
        return real_get(self, sha256, filename)

    monkeypatch.setattr(ModelCache, "get", failing_get)
    patch = client.patch(href(deployment_a), json={"model_id": b["id"]})
    assert patch.status_code == 202, patch.get_json()
    assert loading.wait(30)

    # While B loads: A answers, and another PATCH is refused.
    online = client.post(href(deployment_a) + "/online", json={"values": ROWS.tolist()})
    assert online.status_code == 200
    assert online.headers[HEADER] == a["sha256"]
    assert_scored_by(online.get_json(), kf.expected_dense_softmax(ROWS))
    again = client.patch(href(deployment_a), json={"model_id": b["id"]})
    assert again.status_code == 409
    assert again.get_json()["error"]["code"] == "deployment_move_pending"
    release.set()

    final = settled_on(client, deployment_a, a["id"])
    assert final["status"] == "DEPLOY_SUCCESS"
    assert final["model_sha256"] == a["sha256"]
    assert final["pending_error"]["code"] == "model_load_failed"
    assert "injected load failure" in final["pending_error"]["message"]
    assert final["previous_model"] is None
    online = client.post(href(deployment_a) + "/online", json={"values": ROWS.tolist()})
    assert online.status_code == 200 and online.headers[HEADER] == a["sha256"]
    # The failed move released B.
    assert client.delete(f"/api/v1/models/{b['id']}").status_code == 204


def test_a_job_submitted_before_the_switch_is_scored_by_a(
    client: FlaskClient,
    settings: Settings,
    models: dict[str, dict[str, Any]],
    deployment_a: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b = models["a"], models["b"]
    held = threading.Event()
    release = threading.Event()
    real_claim = JobStore.claim_chunk

    def delayed_claim(self: JobStore, instance: str, job_id: str, *args: Any) -> Any:
        if instance == settings.default_instance:  # the fault: the job waits for the switch
            held.set()
            release.wait(30)
        return real_claim(self, instance, job_id, *args)

    monkeypatch.setattr(JobStore, "claim_chunk", delayed_claim)
    submitted = client.post(href(deployment_a) + "/jobs", json={"values": ROWS.tolist()})
    assert submitted.status_code == 202, submitted.get_json()
    job = submitted.get_json()
    assert job["model_sha256"] == a["sha256"]
    assert held.wait(30)

    assert client.patch(href(deployment_a), json={"model_id": b["id"]}).status_code == 202
    settled_on(client, deployment_a, b["id"])
    release.set()

    def finished() -> dict[str, Any] | None:
        body = client.get(f"/api/v1/jobs/{job['id']}").get_json()
        return body if body["status"] in {"completed", "failed", "canceled"} else None

    done = wait_for(finished, what="the job to finish")
    assert done["status"] == "completed", done
    assert done["model_sha256"] == a["sha256"]
    result = client.get(f"/api/v1/jobs/{job['id']}/result")
    assert result.status_code == 200
    assert_scored_by(result.get_json(), kf.expected_dense_softmax(ROWS))


def test_patch_refusals(
    client: FlaskClient, models: dict[str, dict[str, Any]], deployment_a: dict[str, Any]
) -> None:
    unknown_model = client.patch(href(deployment_a), json={"model_id": NO_SUCH_ID})
    assert unknown_model.status_code == 404
    assert unknown_model.get_json()["error"]["code"] == "model_not_found"
    unknown_field = client.patch(href(deployment_a), json={"model_id": models["b"]["id"], "x": 1})
    assert unknown_field.status_code == 422
    assert "x" in unknown_field.get_json()["error"]["details"]["fields"]
    other_inputs = client.patch(href(deployment_a), json={"model_id": models["other_inputs"]["id"]})
    assert other_inputs.status_code == 422
    error = other_inputs.get_json()["error"]
    assert error["code"] == "model_inputs_mismatch"
    assert error["details"]["mismatches"]
    unknown_deployment = client.patch(
        "/api/v1/deployments/" + NO_SUCH_ID, json={"model_id": models["b"]["id"]}
    )
    assert unknown_deployment.status_code == 404
    # Nothing moved.
    body = client.get(href(deployment_a)).get_json()
    assert body["model_id"] == models["a"]["id"] and body["pending_model"] is None


def test_a_deployment_changed_by_another_api_process_is_read_again(
    app: Flask,
    client: FlaskClient,
    settings: Settings,
    redis_client: redis.Redis,
    models: dict[str, dict[str, Any]],
    deployment_a: dict[str, Any],
) -> None:
    # Each API process keeps the deployments it scored; the job's creation checks the record.
    url = href(deployment_a) + "/online"
    assert client.post(url, json={"values": ROWS.tolist()}).status_code == 200
    other = create_app(settings, redis_client).test_client()
    other.environ_base.update(client.environ_base)
    renamed = other.patch(href(deployment_a), json={"name": "renamed"})
    assert renamed.status_code == 202, renamed.get_json()
    answer = client.post(url, json={"values": ROWS.tolist()})
    assert answer.status_code == 200 and answer.headers[HEADER] == models["a"]["sha256"]
    assert_scored_by(answer.get_json(), kf.expected_dense_softmax(ROWS))
    # Not ready, then ready again: the record this process keeps never answers for the store.
    store = DeploymentStore(redis_client, Keys(settings.key_prefix))
    error = {"code": "model_load_failed", "message": "injected"}
    store.set_status(
        settings.default_instance, deployment_a["id"], DeploymentStatus.DEPLOY_FAILED, error
    )
    refused = client.post(url, json={"values": ROWS.tolist()})
    assert refused.status_code == 409, refused.get_json()
    assert refused.get_json()["error"]["code"] == "deployment_not_ready"
    store.set_status(settings.default_instance, deployment_a["id"], DeploymentStatus.DEPLOY_SUCCESS)
    assert client.post(url, json={"values": ROWS.tolist()}).status_code == 200

    assert other.delete(href(deployment_a)).status_code == 204
    gone = client.post(url, json={"values": ROWS.tolist()})
    assert gone.status_code == 404, gone.get_json()
    assert gone.get_json()["error"]["code"] == "deployment_not_found"
    batch = client.post(href(deployment_a) + "/jobs", json={"values": ROWS.tolist()})
    assert batch.status_code == 404
    assert client.get("/api/v1/jobs").get_json()["total"] == 0


def test_a_deployment_that_changes_under_every_read_is_a_conflict(
    client: FlaskClient,
    deployment_a: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = []

    def always_changed(self: JobStore, instance: str, **kwargs: Any) -> JobRecord:
        calls.append(kwargs["deployment_sha1"])  # the fault: a change before every create
        raise DeploymentChanged(kwargs["deployment_id"])

    monkeypatch.setattr(JobStore, "create", always_changed)
    answer = client.post(href(deployment_a) + "/online", json={"values": ROWS.tolist()})
    assert answer.status_code == 409, answer.get_json()
    error = answer.get_json()["error"]
    assert error["code"] == "conflict" and "send it again" in error["message"]
    assert len(calls) == DEPLOYMENT_READS and all(calls)
    monkeypatch.undo()
    assert client.get("/api/v1/jobs").get_json()["total"] == 0
    assert (
        client.post(href(deployment_a) + "/online", json={"values": ROWS.tolist()}).status_code
        == 200
    )

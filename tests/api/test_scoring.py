"""End to end: deploy and score through the API against a real Celery worker and real models."""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from celery import Celery
from flask import Flask
from flask.testing import FlaskClient

from shared.keys import Keys
from shared.settings import Settings
from tests import keras_files as kf
from tests.conftest import authorized_client
from tests.helpers import store_model, wait_for

pytestmark = pytest.mark.usefixtures("worker")


def path_of(url: str) -> str:
    return url.split("localhost", 1)[-1]


def deploy(client: FlaskClient, model_id: str, *, expect: str = "DEPLOY_SUCCESS") -> dict[str, Any]:
    response = client.post("/api/v1/deployments", json={"model_id": model_id, "name": "dep"})
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert body["status"] == "DEPLOY_IN_PROGRESS"
    assert response.headers["Location"] == body["href"]

    def settled() -> dict[str, Any] | None:
        current = client.get(path_of(body["href"])).get_json()
        return None if current["status"] == "DEPLOY_IN_PROGRESS" else current

    final = wait_for(settled, what="deployment to settle")
    assert final["status"] == expect, final
    return final  # type: ignore[no-any-return]


def wait_job(client: FlaskClient, job_url: str, timeout: float = 120.0) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        job = client.get(path_of(job_url)).get_json()
        return job if job["status"] in {"completed", "failed", "canceled"} else None

    return wait_for(finished, timeout, "job to finish")  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def dense_h5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kf.tf_keras_h5_file(tmp_path_factory.mktemp("dense"))


@pytest.fixture
def dense_deployment(client: FlaskClient, dense_h5: Path) -> dict[str, Any]:
    return deploy(client, store_model(client, dense_h5)["id"])


def rows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 4)).astype(np.float32)


def assert_dense_rows(values: list[Any], x: np.ndarray) -> None:
    expected = kf.expected_dense_softmax(x)
    assert len(values) == len(x)
    np.testing.assert_allclose([v[0] for v in values], expected, rtol=1e-5, atol=1e-6)
    assert [v[1] for v in values] == expected.argmax(axis=1).tolist()
    np.testing.assert_allclose([v[2] for v in values], expected, rtol=1e-5, atol=1e-6)


def test_online_scoring_matches_numpy(
    client: FlaskClient, dense_deployment: dict[str, Any]
) -> None:
    x = rows(5)
    response = client.post(path_of(dense_deployment["scoring_url"]), json={"values": x.tolist()})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["fields"] == ["prediction", "prediction_classes", "probability"]
    assert_dense_rows(body["values"], x)


def test_deployment_document(client: FlaskClient, dense_deployment: dict[str, Any]) -> None:
    d = dense_deployment
    assert d["scoring_url"].startswith("http://") and d["scoring_url"].endswith(
        f"/api/v1/deployments/{d['id']}/online"
    )
    assert d["jobs_url"].endswith(f"/api/v1/deployments/{d['id']}/jobs")
    assert d["error"] is None and d["type"] == "online"
    assert d["updated_at"] >= d["created_at"]
    listing = client.get("/api/v1/deployments").get_json()
    assert [r["id"] for r in listing["resources"]] == [d["id"]]
    assert client.get(f"/api/v1/deployments?model_id={d['model_id']}").get_json()["total"] == 1


def test_batch_job_runs_in_chunks_and_matches_numpy(
    client: FlaskClient, dense_deployment: dict[str, Any], settings: Settings
) -> None:
    x = rows(3 * settings.chunk_rows + 7, seed=1)
    response = client.post(path_of(dense_deployment["jobs_url"]), json={"values": x.tolist()})
    assert response.status_code == 202, response.get_json()
    job = response.get_json()
    assert response.headers["Location"].endswith(f"/api/v1/jobs/{job['id']}")
    assert job["status"] in {"queued", "running", "completed"}
    assert job["progress"]["rows_total"] == len(x)
    done = wait_job(client, job["href"])
    assert done["status"] == "completed", done
    assert done["progress"] == {"rows_done": len(x), "rows_total": len(x)}
    assert (
        done["model_sha256"]
        == client.get(f"/api/v1/models/{dense_deployment['model_id']}").get_json()["sha256"]
    )
    assert done["deployment_id"] == dense_deployment["id"]
    assert done["started_at"] and done["finished_at"] and done["expires_at"] > done["finished_at"]
    result = client.get(path_of(done["result_url"]))
    assert result.status_code == 200
    assert_dense_rows(result.get_json()["values"], x)
    listed = client.get(
        f"/api/v1/jobs?deployment_id={dense_deployment['id']}&status=completed"
    ).get_json()
    assert job["id"] in [j["id"] for j in listed["resources"]]


def test_job_retention_days_sets_expiry(
    client: FlaskClient,
    dense_deployment: dict[str, Any],
    redis_client: redis.Redis,
    settings: Settings,
) -> None:
    response = client.post(
        path_of(dense_deployment["jobs_url"]),
        json={"values": rows(2).tolist(), "retention_days": 1},
    )
    job = response.get_json()
    ttl = redis_client.ttl(Keys(settings.key_prefix).job(settings.default_instance, job["id"]))
    assert 86000 < ttl <= 86400


def test_failed_job_says_why(
    client: FlaskClient, dense_deployment: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers import model_loader

    def broken(self: Any, inputs: Any) -> Any:
        raise RuntimeError("injected fault: the model blew up")

    monkeypatch.setattr(model_loader.LoadedModel, "predict", broken)
    job = client.post(
        path_of(dense_deployment["jobs_url"]), json={"values": rows(3).tolist()}
    ).get_json()
    done = wait_job(client, job["href"])
    assert done["status"] == "failed"
    assert done["error"]["code"] == "scoring_failed"
    assert "injected fault" in done["error"]["message"]
    online = client.post(
        path_of(dense_deployment["scoring_url"]), json={"values": rows(1).tolist()}
    )
    assert online.status_code == 500
    assert online.get_json()["error"]["code"] == "scoring_failed"
    assert "injected fault" in online.get_json()["error"]["message"]


def test_online_past_timeout_answers_202_with_the_job(
    client: FlaskClient, dense_deployment: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers import model_loader

    real = model_loader.LoadedModel.predict

    def slow(self: Any, inputs: Any) -> Any:
        time.sleep(1.0)
        return real(self, inputs)

    monkeypatch.setattr(model_loader.LoadedModel, "predict", slow)
    x = rows(2)
    response = client.post(
        path_of(dense_deployment["scoring_url"]) + "?timeout=0.2", json={"values": x.tolist()}
    )
    assert response.status_code == 202
    job = response.get_json()
    assert response.headers["Location"].endswith(f"/api/v1/jobs/{job['id']}")
    assert job["kind"] == "online"
    done = wait_job(client, job["href"])
    assert done["status"] == "completed"
    assert_dense_rows(client.get(path_of(done["result_url"])).get_json()["values"], x)


def test_corrupt_model_blob_fails_the_deployment(
    client: FlaskClient, tmp_path: Path, redis_client: redis.Redis, settings: Settings
) -> None:
    model = store_model(client, kf.sigmoid_binary_h5_file(tmp_path))
    # Inject the fault: the stored bytes rot in Redis after upload.
    redis_client.set(Keys(settings.key_prefix).blob_chunk(model["sha256"], 0), b"garbage")
    failed = deploy(client, model["id"], expect="DEPLOY_FAILED")
    assert failed["error"]["code"] == "model_load_failed"
    assert "corrupt" in failed["error"]["message"]
    refused = client.post(path_of(failed["scoring_url"]), json={"values": [[1.0]]})
    assert refused.status_code == 409
    assert refused.get_json()["error"]["code"] == "deployment_not_ready"


def test_bad_rows_are_refused_at_submit_and_store_nothing(
    client: FlaskClient, dense_deployment: dict[str, Any]
) -> None:
    url = path_of(dense_deployment["jobs_url"])
    cases = [
        ({"values": [[1, 2, 3, 4], [1, 2, 3]]}, 422, "invalid_scoring_input"),
        ({"values": [[1, 2, "x", 4]]}, 422, "invalid_scoring_input"),
        ({"values": []}, 422, "invalid_scoring_input"),
        ({"values": "nope"}, 422, "validation_failed"),
    ]
    for payload, status, code in cases:
        response = client.post(url, json=payload)
        assert response.status_code == status, (payload, response.get_json())
        assert response.get_json()["error"]["code"] == code
    shaped = client.post(url, json={"values": [[1, 2, 3, 4], [1, 2, 3]]}).get_json()["error"]
    assert shaped["details"] == {"row": 1, "expected_shape": [4], "received_shape": [3]}
    not_json = client.post(url, data="values=1", content_type="text/plain")
    assert not_json.status_code == 400 and not_json.get_json()["error"]["code"] == "bad_request"
    assert client.get("/api/v1/jobs").get_json()["total"] == 0


def test_too_many_rows_is_413(
    client: FlaskClient, settings: Settings, redis_client: redis.Redis, dense_h5: Path
) -> None:
    from api.app import create_app

    small = authorized_client(
        create_app(settings.replace(max_rows_online=3, max_rows_job=4), redis_client)
    )
    deployment = deploy(small, store_model(small, dense_h5)["id"])
    online = small.post(path_of(deployment["scoring_url"]), json={"values": rows(4).tolist()})
    assert online.status_code == 413 and online.get_json()["error"]["details"] == {
        "rows": 4,
        "limit": 3,
    }
    batch = small.post(path_of(deployment["jobs_url"]), json={"values": rows(5).tolist()})
    assert batch.status_code == 413
    tiny_body = authorized_client(create_app(settings.replace(max_request_bytes=100), redis_client))
    big = tiny_body.post(path_of(deployment["jobs_url"]), json={"values": rows(20).tolist()})
    assert big.status_code == 413
    assert "KSCORE_MAX_REQUEST_BYTES" in big.get_json()["error"]["message"]


def test_unknown_ids_are_404(client: FlaskClient) -> None:
    for method, path, code in [
        ("get", "/api/v1/deployments/nope", "deployment_not_found"),
        ("delete", "/api/v1/deployments/nope", "deployment_not_found"),
        ("post", "/api/v1/deployments/nope/online", "deployment_not_found"),
        ("get", "/api/v1/jobs/nope", "job_not_found"),
        ("get", "/api/v1/jobs/nope/result", "job_not_found"),
        ("delete", "/api/v1/jobs/nope", "job_not_found"),
    ]:
        kwargs = {"json": {"values": [[1, 2, 3, 4]]}} if method == "post" else {}
        response = getattr(client, method)(path, **kwargs)
        assert response.status_code == 404, path
        assert response.get_json()["error"]["code"] == code
    missing_model = client.post("/api/v1/deployments", json={"model_id": "nope", "name": "d"})
    assert missing_model.status_code == 404
    assert missing_model.get_json()["error"]["code"] == "model_not_found"
    assert client.get("/api/v1/deployments").get_json()["total"] == 0


def test_model_in_use_cannot_be_deleted(
    client: FlaskClient, dense_deployment: dict[str, Any]
) -> None:
    model_url = f"/api/v1/models/{dense_deployment['model_id']}"
    refused = client.delete(model_url)
    assert refused.status_code == 409
    assert refused.get_json()["error"]["details"]["deployment_ids"] == [dense_deployment["id"]]
    assert client.delete(path_of(dense_deployment["href"])).status_code == 204
    assert client.get(path_of(dense_deployment["href"])).status_code == 404
    assert client.delete(model_url).status_code == 204


def test_multi_input_multi_output_model(client: FlaskClient, tmp_path: Path) -> None:
    path = kf.multi_io_keras_file(tmp_path)
    deployment = deploy(client, store_model(client, path)["id"])
    a = np.random.default_rng(3).normal(size=(4, 3)).astype(np.float32)
    b = np.random.default_rng(4).normal(size=(4, 2)).astype(np.float32)
    expected = kf.expected_multi_io(a, b)
    score, kind = expected["score"], expected["kind"]
    url = path_of(deployment["scoring_url"])
    by_row = client.post(
        url, json={"values": [[ai, bi] for ai, bi in zip(a.tolist(), b.tolist(), strict=True)]}
    )
    by_name = client.post(url, json={"inputs": {"a": a.tolist(), "b": b.tolist()}})
    assert by_row.status_code == 200, by_row.get_json()
    assert by_row.get_json() == by_name.get_json()
    values = by_row.get_json()["values"]
    np.testing.assert_allclose([v[0]["score"] for v in values], score, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([v[2]["kind"] for v in values], kind, rtol=1e-5, atol=1e-6)
    assert [v[1]["kind"] for v in values] == kind.argmax(axis=1).tolist()
    assert [v[1]["score"] for v in values] == (score[:, 0] > 0.5).astype(int).tolist()


def test_text_model_scores_wml_string_payload(client: FlaskClient, tmp_path: Path) -> None:
    path = kf.text_vectorization_keras_file(tmp_path)
    deployment = deploy(client, store_model(client, path)["id"])
    texts = ["this is a simple text input data", "a great movie, not an awful one"]
    response = client.post(
        path_of(deployment["scoring_url"]), json={"values": [[t] for t in texts]}
    )
    assert response.status_code == 200, response.get_json()
    values = response.get_json()["values"]
    expected = kf.expected_text_softmax(texts)
    np.testing.assert_allclose([v[0] for v in values], expected, rtol=1e-5, atol=1e-6)
    assert [v[1] for v in values] == expected.argmax(axis=1).tolist()


def test_readyz_sees_the_worker_and_metrics_count(
    client: FlaskClient, dense_deployment: dict[str, Any], worker: Celery
) -> None:
    ready = wait_for(lambda: client.get("/readyz").status_code == 200, 30, "worker heartbeat")
    assert ready
    assert client.get("/readyz").get_json()["workers"]
    client.post(path_of(dense_deployment["scoring_url"]), json={"values": rows(2).tolist()})
    text = client.get("/metrics").get_data(as_text=True)
    assert 'kscore_queue_depth{queue="online"}' in text
    assert "kscore_online_latency_seconds_count" in text
    assert 'kscore_jobs_total{status="completed"}' in text
    scored = [line for line in text.splitlines() if line.startswith("kscore_rows_scored_total")]
    assert scored and float(scored[0].split()[-1]) >= 2


def test_unreachable_broker_is_503_and_leaves_nothing_pending(
    app: Any, client: FlaskClient, dense_deployment: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from kombu.exceptions import OperationalError

    def down(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("Error 111 connecting to broker")  # injected fault

    monkeypatch.setattr(app.extensions["kscore"].celery, "send_task", down)
    deploying = client.post(
        "/api/v1/deployments", json={"model_id": dense_deployment["model_id"], "name": "x"}
    )
    assert deploying.status_code == 503
    assert deploying.get_json()["error"]["code"] == "service_unavailable"
    assert [d["id"] for d in client.get("/api/v1/deployments").get_json()["resources"]] == [
        dense_deployment["id"]
    ]
    submitting = client.post(
        path_of(dense_deployment["jobs_url"]), json={"values": rows(2).tolist()}
    )
    assert submitting.status_code == 503
    jobs = client.get("/api/v1/jobs").get_json()["resources"]
    assert [(j["status"], j["error"]["code"]) for j in jobs] == [("failed", "enqueue_failed")]


def npy(*arrays: np.ndarray, **named: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    if named:
        np.savez(buffer, **named)
    else:
        np.save(buffer, arrays[0])
    return buffer.getvalue()


def test_npy_body_scores_like_json(client: FlaskClient, dense_deployment: dict[str, Any]) -> None:
    x = rows(130, seed=9)
    online = client.post(
        path_of(dense_deployment["scoring_url"]), data=npy(x[:3]), content_type="application/x-npy"
    )
    assert online.status_code == 200, online.get_json()
    assert_dense_rows(online.get_json()["values"], x[:3])
    submitted = client.post(
        path_of(dense_deployment["jobs_url"]) + "?retention_days=2",
        data=npy(x),
        content_type="application/x-npy",
    )
    assert submitted.status_code == 202, submitted.get_json()
    done = wait_job(client, submitted.get_json()["href"])
    assert done["progress"]["rows_done"] == 130
    assert_dense_rows(client.get(path_of(done["result_url"])).get_json()["values"], x)


def test_bad_array_bodies_are_422(client: FlaskClient, dense_deployment: dict[str, Any]) -> None:
    url = path_of(dense_deployment["jobs_url"])
    cases = [
        (npy(rows(3)[:, :3]), "expects [4]"),
        (npy(np.array([["a", "b", "c", "d"]])), "not numbers"),
        (npy(np.zeros((0, 4), np.float32)), "no rows"),
        (b"\x93NUMPY-garbage", "cannot be read"),
        (b"plain text", "neither a .npy nor a .npz"),
        (npy(x=rows(2), y=rows(2)), "exactly the model's inputs"),
    ]
    for body, phrase in cases:
        response = client.post(url, data=body, content_type="application/x-npy")
        assert response.status_code == 422, (phrase, response.get_json())
        error = response.get_json()["error"]
        assert error["code"] == "invalid_scoring_input" and phrase in error["message"], error
    pickled = io.BytesIO()
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    refused = client.post(url, data=pickled.getvalue(), content_type="application/x-npy")
    assert refused.status_code == 422 and "allow_pickle" in refused.get_json()["error"]["message"]
    assert client.get("/api/v1/jobs").get_json()["total"] == 0


def test_npz_members_that_are_not_arrays_or_inflate_past_the_limit_are_refused(
    client: FlaskClient, app: Flask, dense_deployment: dict[str, Any]
) -> None:
    # Found by schemathesis: a zip holding a text file was a 500 (numpy returns its bytes).
    not_arrays = io.BytesIO()
    with zipfile.ZipFile(not_arrays, "w") as archive:
        archive.writestr("a.txt", "a")
    # 4 MiB of zeros deflate to a few KiB: the limit counts what the arrays take unpacked.
    bomb = io.BytesIO()
    np.savez_compressed(bomb, x=np.zeros((1 << 17, 4), np.float64))
    svc = app.extensions["kscore"]
    svc.settings = svc.settings.replace(max_request_bytes=1 << 20)  # this test's app only
    for path in ("scoring_url", "jobs_url"):
        url = path_of(dense_deployment[path])
        response = client.post(url, data=not_arrays.getvalue(), content_type="application/x-npz")
        assert response.status_code == 422, response.get_json()
        assert "not a .npy array" in response.get_json()["error"]["message"]
        response = client.post(url, data=bomb.getvalue(), content_type="application/x-npz")
        assert response.status_code == 413, response.get_json()
        assert response.get_json()["error"]["details"]["limit_bytes"] == 1 << 20
    assert client.get("/api/v1/jobs").get_json()["total"] == 0


def test_npz_names_the_inputs_of_a_multi_input_model(client: FlaskClient, tmp_path: Path) -> None:
    deployment = deploy(client, store_model(client, kf.multi_io_keras_file(tmp_path))["id"])
    a = np.random.default_rng(10).normal(size=(5, 3)).astype(np.float32)
    b = np.random.default_rng(11).normal(size=(5, 2)).astype(np.float32)
    response = client.post(
        path_of(deployment["scoring_url"]), data=npy(b=b, a=a), content_type="application/x-npz"
    )
    assert response.status_code == 200, response.get_json()
    expected = kf.expected_multi_io(a, b)
    values = response.get_json()["values"]
    np.testing.assert_allclose(
        [v[0]["kind"] for v in values], expected["kind"], rtol=1e-5, atol=1e-6
    )
    one = client.post(
        path_of(deployment["scoring_url"]), data=npy(a), content_type="application/x-npy"
    )
    assert one.status_code == 422 and "send a .npz" in one.get_json()["error"]["message"]


def test_a_redis_blip_inside_a_task_is_retried(
    client: FlaskClient, dense_deployment: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.job_store import JobStore

    real = JobStore.read_input
    blips: list[str] = []

    def flaky(self: JobStore, instance: str, job_id: str, chunk: int) -> bytes | None:
        if not blips:
            blips.append(job_id)
            raise redis.ConnectionError("injected fault: connection reset by peer")
        return real(self, instance, job_id, chunk)

    monkeypatch.setattr(JobStore, "read_input", flaky)
    x = rows(3, seed=12)
    job = client.post(path_of(dense_deployment["jobs_url"]), json={"values": x.tolist()}).get_json()
    done = wait_job(client, job["href"])
    assert blips == [job["id"]]
    assert done["status"] == "completed", done
    assert_dense_rows(client.get(path_of(done["result_url"])).get_json()["values"], x)


def test_an_answered_online_request_leaves_nothing_in_redis(
    client: FlaskClient,
    dense_deployment: dict[str, Any],
    redis_client: redis.Redis,
    settings: Settings,
) -> None:
    pattern = f"{settings.key_prefix}:i:{settings.default_instance}:job:*"
    before = set(redis_client.scan_iter(pattern))
    response = client.post(
        path_of(dense_deployment["scoring_url"]), json={"values": rows(2).tolist()}
    )
    assert response.status_code == 200
    assert set(redis_client.scan_iter(pattern)) == before
    assert client.get("/api/v1/jobs").get_json()["total"] == 0
    assert (
        client.get(f"/api/v1/jobs?deployment_id={dense_deployment['id']}").get_json()["total"] == 0
    )


def test_wml_payload_with_fields_is_accepted(
    client: FlaskClient, dense_deployment: dict[str, Any]
) -> None:
    x = rows(2, seed=13)
    payload = {"fields": ["a", "b", "c", "d"], "values": x.tolist()}
    response = client.post(path_of(dense_deployment["scoring_url"]), json=payload)
    assert response.status_code == 200, response.get_json()
    assert_dense_rows(response.get_json()["values"], x)
    typo = client.post(path_of(dense_deployment["scoring_url"]), json={"value": x.tolist()})
    assert typo.status_code == 422
    assert "value" in typo.get_json()["error"]["details"]["fields"]


def test_a_deployment_lists_its_jobs(client: FlaskClient, dense_deployment: dict[str, Any]) -> None:
    jobs_url = path_of(dense_deployment["jobs_url"])
    ids = [
        client.post(jobs_url, json={"values": rows(1).tolist()}).get_json()["id"] for _ in range(3)
    ]
    listing = client.get(jobs_url + "?limit=2").get_json()
    assert listing["total"] == 3
    assert [j["id"] for j in listing["resources"]] == ids[::-1][:2]
    assert "deployment_id=" not in listing["next"]["href"]
    assert client.get("/api/v1/deployments/nope/jobs").status_code == 404


def test_rows_the_model_itself_refuses_are_422_online(
    client: FlaskClient, dense_deployment: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.errors import ScoringInputInvalid
    from workers import model_loader

    def refuses(self: Any, inputs: Any) -> Any:
        raise ScoringInputInvalid("injected fault: input 'x' needs 4 columns")

    monkeypatch.setattr(model_loader.LoadedModel, "predict", refuses)
    response = client.post(
        path_of(dense_deployment["scoring_url"]), json={"values": rows(1).tolist()}
    )
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "invalid_scoring_input"
    assert "injected fault" in response.get_json()["error"]["message"]


def test_batch_results_are_stored_as_typed_arrays(
    client: FlaskClient,
    dense_deployment: dict[str, Any],
    redis_client: redis.Redis,
    settings: Settings,
) -> None:
    from shared.results import decode_outputs

    x = rows(settings.chunk_rows, seed=14)
    job = client.post(path_of(dense_deployment["jobs_url"]), json={"values": x.tolist()}).get_json()
    done = wait_job(client, job["href"])
    stored = redis_client.get(
        Keys(settings.key_prefix).job_output(settings.default_instance, job["id"], 0)
    )
    body = client.get(path_of(done["result_url"])).data
    assert stored is not None and stored[:1] == b"A"
    (outputs,) = decode_outputs(stored)
    assert outputs.dtype == np.float32 and outputs.shape == (len(x), 3)
    # 4 bytes a number against JSON's ~20 per number, printed three times (WML's fields).
    assert len(stored) < len(body) / 5
    assert_dense_rows(json.loads(body)["values"], x)
    np.testing.assert_array_equal(outputs, np.float32([v[0] for v in json.loads(body)["values"]]))


def test_many_clients_at_once_each_get_their_own_rows(
    app: Any, dense_deployment: dict[str, Any]
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def online(seed: int) -> None:
        x = rows(3, seed=100 + seed)
        response = authorized_client(app).post(
            path_of(dense_deployment["scoring_url"]), json={"values": x.tolist()}
        )
        assert response.status_code == 200, response.get_json()
        assert_dense_rows(response.get_json()["values"], x)

    def batch(seed: int) -> None:
        client = authorized_client(app)
        x = rows(120, seed=200 + seed)
        job = client.post(
            path_of(dense_deployment["jobs_url"]), json={"values": x.tolist()}
        ).get_json()
        done = wait_job(client, job["href"])
        assert done["status"] == "completed" and done["progress"]["rows_done"] == 120
        assert_dense_rows(client.get(path_of(done["result_url"])).get_json()["values"], x)

    with ThreadPoolExecutor(max_workers=12) as pool:
        futures = [pool.submit(online, i) for i in range(24)] + [
            pool.submit(batch, i) for i in range(6)
        ]
        for future in futures:
            future.result(timeout=180)  # re-raises any thread's assertion

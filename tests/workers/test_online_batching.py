"""Dynamic batching of online requests, end to end: the API, the online stream, the session's
worker (its batcher thread) and real Keras models, compared with Keras called directly."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from shared.keys import Keys
from shared.settings import Settings
from tests.conftest import authorized_client
from tests.helpers import store_model, wait_for

pytestmark = pytest.mark.usefixtures("worker")

# Requests wait this long for batch-mates: long enough that concurrent ones always merge.
WAIT_MS = 200.0


def _keras() -> Any:
    import keras

    return keras


@pytest.fixture(scope="module")
def dense_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Keras 3 .keras: x (6,) -> Dense(16, relu) -> Dense(3, softmax), seeded weights."""
    keras = _keras()
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input(shape=(6,), name="x"),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    path = tmp_path_factory.mktemp("batch-dense") / "dense.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def embedding_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Keras 3 .keras: ids int32 (3,) -> Embedding(10, 4) -> Flatten -> Dense(2, softmax).
    An id of 10 or more makes the model itself raise (TensorFlow's gather on CPU)."""
    keras = _keras()
    keras.utils.set_random_seed(4)
    ids = keras.Input(shape=(3,), dtype="int32", name="ids")
    x = keras.layers.Embedding(10, 4)(ids)
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(2, activation="softmax")(x)
    path = tmp_path_factory.mktemp("batch-embedding") / "embedding.keras"
    keras.Model(ids, out).save(path)
    return path


def direct(path: Path, x: np.ndarray) -> np.ndarray:
    """The model's output for ``x``, from Keras in this process."""
    return np.asarray(_keras().models.load_model(path)(x, training=False))


def deploy(client: FlaskClient, path: Path, batching: dict[str, Any] | None = None) -> str:
    model = store_model(client, path)
    body: dict[str, Any] = {"model_id": model["id"], "name": "batched"}
    if batching is not None:
        body["batching"] = batching
    created = client.post("/api/v1/deployments", json=body)
    assert created.status_code == 202, created.get_json()
    href = f"/api/v1/deployments/{created.get_json()['id']}"
    wait_for(
        lambda: client.get(href).get_json()["status"] != "DEPLOY_IN_PROGRESS", 120, "deploy", 0.1
    )
    assert client.get(href).get_json()["status"] == "DEPLOY_SUCCESS"
    return href


def fire(app: Flask, href: str, bodies: list[dict[str, Any]]) -> list[Any]:
    """POST every body to the online endpoint at once, one thread each; the responses in
    the order of ``bodies``."""
    answers: list[Any] = [None] * len(bodies)
    barrier = threading.Barrier(len(bodies))

    def send(index: int) -> None:
        client = authorized_client(app)
        barrier.wait()
        answers[index] = client.post(f"{href}/online", json=bodies[index])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return answers


def batch_counters(settings: Settings) -> tuple[int, int]:
    store = redis.Redis.from_url(settings.redis_url)
    raw = store.hmget(
        Keys(settings.key_prefix).metrics(), "online_batches", "online_batched_requests"
    )
    return int(raw[0] or 0), int(raw[1] or 0)


def test_batched_answers_equal_keras_row_for_row(
    app: Flask, client: FlaskClient, settings: Settings, dense_file: Path
) -> None:
    href = deploy(client, dense_file, {"max_batch_size": 64, "max_wait_ms": WAIT_MS})
    rng = np.random.default_rng(11)
    # Requests of 1 to 4 rows each, all different.
    xs = [rng.normal(size=(1 + i % 4, 6)).astype(np.float32) for i in range(24)]
    batches_before, requests_before = batch_counters(settings)
    answers = fire(app, href, [{"values": x.tolist()} for x in xs])
    batches_after, requests_after = batch_counters(settings)
    for x, response in zip(xs, answers, strict=True):
        assert response.status_code == 200, response.get_json()
        values = response.get_json()["values"]
        expected = direct(dense_file, x)
        assert len(values) == len(x)
        np.testing.assert_allclose([v[0] for v in values], expected, rtol=1e-5, atol=1e-6)
        assert [v[1] for v in values] == expected.argmax(axis=1).tolist()
    # The 24 requests were answered in fewer model calls than requests.
    assert requests_after - requests_before >= 24
    assert batches_after - batches_before < requests_after - requests_before


def test_a_request_whose_rows_make_the_model_fail_fails_alone(
    app: Flask, client: FlaskClient, settings: Settings, embedding_file: Path
) -> None:
    href = deploy(client, embedding_file, {"max_wait_ms": WAIT_MS})
    rng = np.random.default_rng(12)
    xs = [rng.integers(0, 10, size=(2, 3)).astype(np.int32) for _ in range(12)]
    bad = 5
    xs[bad] = np.array([[1, 2, 3], [4, 99, 6]], dtype=np.int32)  # id 99: past the vocabulary
    batches_before, requests_before = batch_counters(settings)
    answers = fire(app, href, [{"values": x.tolist()} for x in xs])
    batches_after, requests_after = batch_counters(settings)
    for index, (x, response) in enumerate(zip(xs, answers, strict=True)):
        if index == bad:
            assert response.status_code == 500, response.get_json()
            assert response.get_json()["error"]["code"] == "scoring_failed"
            continue
        assert response.status_code == 200, (index, response.get_json())
        np.testing.assert_allclose(
            [v[0] for v in response.get_json()["values"]],
            direct(embedding_file, x),
            rtol=1e-5,
            atol=1e-6,
        )
    assert batches_after - batches_before < requests_after - requests_before  # merged


def test_a_lone_request_is_answered_without_waiting(client: FlaskClient, dense_file: Path) -> None:
    # A second of wait allowed: a lone request must not spend it.
    href = deploy(client, dense_file, {"max_wait_ms": 1000})
    x = np.ones((1, 6), dtype=np.float32)
    client.post(f"{href}/online", json={"values": x.tolist()})  # the model is loaded
    import time

    started = time.perf_counter()
    response = client.post(f"{href}/online", json={"values": x.tolist()})
    assert response.status_code == 200
    assert time.perf_counter() - started < 0.5


def test_batching_settings_on_create_get_and_patch(
    client: FlaskClient, settings: Settings, dense_file: Path
) -> None:
    href = deploy(client, dense_file, {"max_batch_size": 8})
    shown = client.get(href).get_json()["batching"]
    assert shown == {"max_batch_size": 8, "max_wait_ms": settings.max_batch_wait_ms}
    patched = client.patch(href, json={"batching": {"max_wait_ms": 0}})
    assert patched.status_code == 202, patched.get_json()
    assert patched.get_json()["batching"] == {"max_batch_size": 8, "max_wait_ms": 0.0}
    assert client.get(href).get_json()["batching"] == {"max_batch_size": 8, "max_wait_ms": 0.0}
    # Scoring still works with the new values.
    x = np.zeros((3, 6), dtype=np.float32)
    assert client.post(f"{href}/online", json={"values": x.tolist()}).status_code == 200


def test_batching_defaults_come_from_settings(client: FlaskClient, dense_file: Path) -> None:
    href = deploy(client, dense_file)
    assert client.get(href).get_json()["batching"] == {"max_batch_size": 64, "max_wait_ms": 2.0}


@pytest.mark.parametrize(
    "batching",
    [
        {"max_batch_size": 0},
        {"max_batch_size": 10_001},
        {"max_batch_size": 2.5},
        {"max_batch_size": "8"},
        {"max_wait_ms": -1},
        {"max_wait_ms": 1001},
        {"max_wait_ms": "2"},
        {"unknown": 1},
    ],
)
def test_bad_batching_values_are_refused(
    client: FlaskClient, dense_file: Path, batching: dict[str, Any]
) -> None:
    model = store_model(client, dense_file)
    created = client.post(
        "/api/v1/deployments", json={"model_id": model["id"], "name": "b", "batching": batching}
    )
    assert created.status_code == 422, created.get_json()
    assert created.get_json()["error"]["code"] == "validation_failed"

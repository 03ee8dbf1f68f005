"""Job callbacks: signed deliveries from a real worker to a receiver on loopback."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from celery import Celery
from flask.testing import FlaskClient

from shared.settings import Settings
from tests import keras_files as kf
from tests.conftest import instance_store
from tests.helpers import Receiver, deployed, wait_for
from workers.reconciler import Reconciler

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture(scope="module")
def dense_h5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kf.tf_keras_h5_file(tmp_path_factory.mktemp("dense"))


@pytest.fixture
def deployment(client: FlaskClient, dense_h5: Path) -> dict[str, Any]:
    return deployed(client, dense_h5)


def rows(n: int) -> list[list[float]]:
    return np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32).tolist()  # type: ignore[no-any-return]


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Standard Webhooks' verification, as a receiver writes it."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(
        hmac.compare_digest(part.split(",", 1)[1], expected)
        for part in headers["webhook-signature"].split()
    )


def test_completed_job_is_delivered_signed(
    client: FlaskClient,
    deployment: dict[str, Any],
    receiver: Receiver,
    settings: Settings,
    redis_client: redis.Redis,
) -> None:
    submitted = client.post(
        f"/api/v1/deployments/{deployment['id']}/jobs",
        json={"values": rows(120), "callback_url": receiver.url},
    )
    assert submitted.status_code == 202, submitted.get_json()
    job_id = submitted.get_json()["id"]
    assert submitted.get_json()["callback_url"] == receiver.url
    wait_for(lambda: receiver.requests, 30, "the callback")
    headers, body = receiver.requests[0]
    secret = instance_store(settings, redis_client).webhook_secret(settings.default_instance)
    assert verify(secret, headers, body)
    assert headers["webhook-id"] == job_id
    assert not verify("whsec_" + base64.b64encode(b"x" * 32).decode(), headers, body)
    sent = json.loads(body)
    shown = client.get(f"/api/v1/jobs/{job_id}").get_json()
    assert sent["status"] == "completed"
    assert {k: v for k, v in sent.items() if k != "webhook_deliveries"} == {
        k: v for k, v in shown.items() if k != "webhook_deliveries"
    }
    log = wait_for(lambda: client.get(f"/api/v1/jobs/{job_id}").get_json()["webhook_deliveries"])
    assert [(d["attempt"], d["status_code"]) for d in log] == [(1, 204)]
    assert len(receiver.requests) == 1  # once, though three chunks ran


def test_a_failing_receiver_gets_the_third_attempt(
    client: FlaskClient, deployment: dict[str, Any], receiver: Receiver
) -> None:
    receiver.failures = 2
    submitted = client.post(
        f"/api/v1/deployments/{deployment['id']}/jobs",
        json={"values": rows(3), "callback_url": receiver.url},
    )
    job_id = submitted.get_json()["id"]
    wait_for(lambda: len(receiver.requests) >= 3, 60, "three attempts")
    assert receiver.answered == [500, 500, 204]

    def logged() -> list[dict[str, Any]] | None:
        log = client.get(f"/api/v1/jobs/{job_id}").get_json()["webhook_deliveries"]
        return log if len(log) == 3 else None

    log = wait_for(logged, 30, "the delivery log")
    assert [(d["attempt"], d["status_code"]) for d in log] == [(1, 500), (2, 500), (3, 204)]
    assert log[0]["error"] and log[2]["error"] is None
    assert all(d["at"] for d in log)
    # The same message each time: receivers drop repeats by webhook-id.
    assert len({headers["webhook-id"] for headers, _ in receiver.requests}) == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/hook",
        "file:///etc/passwd",
        "http://user:pw@127.0.0.1/hook",
    ],
)
def test_a_disallowed_callback_is_422_at_submit(
    client: FlaskClient, deployment: dict[str, Any], url: str
) -> None:
    refused = client.post(
        f"/api/v1/deployments/{deployment['id']}/jobs",
        json={"values": rows(1), "callback_url": url},
    )
    assert refused.status_code == 422
    assert refused.get_json()["error"]["code"] == "callback_not_allowed"
    assert client.get("/api/v1/jobs").get_json()["total"] == 0


def test_an_array_body_names_its_callback_in_the_query(
    client: FlaskClient, deployment: dict[str, Any], receiver: Receiver
) -> None:
    import io

    buffer = io.BytesIO()
    np.save(buffer, np.asarray(rows(2), dtype=np.float32))
    submitted = client.post(
        f"/api/v1/deployments/{deployment['id']}/jobs",
        query_string={"callback_url": receiver.url},
        data=buffer.getvalue(),
        content_type="application/x-npy",
    )
    assert submitted.status_code == 202, submitted.get_json()
    wait_for(lambda: receiver.requests, 30, "the callback")
    assert json.loads(receiver.requests[0][1])["id"] == submitted.get_json()["id"]


def test_a_job_canceled_through_the_api_is_delivered_by_the_reconciler(
    client: FlaskClient,
    deployment: dict[str, Any],
    receiver: Receiver,
    settings: Settings,
    redis_client: redis.Redis,
    worker: Celery,
) -> None:
    # Written and canceled without any chunk sent: no worker task ends it.
    services = client.application.extensions["kscore"]
    job = services.jobs.create(
        settings.default_instance,
        kind="batch",
        deployment_id=deployment["id"],
        model_id=deployment["model_id"],
        model_sha256="0" * 64,
        model_filename="m.h5",
        rows_total=1,
        chunk_rows=1,
        input_chunks=[b"x"],
        fields=["prediction"],
        output_names=["out"],
        retention_s=3600,
        callback_url=receiver.url,
        base_url="http://kscore.example",
    )
    assert client.delete(f"/api/v1/jobs/{job.id}").status_code in (200, 202, 204)
    reconciler = Reconciler(settings, redis_client, worker, "test-reconciler")
    reconciler.run_once()
    reconciler.run_once()  # a second pass sends nothing more
    wait_for(lambda: receiver.requests, 30, "the callback")
    sent = json.loads(receiver.requests[0][1])
    assert sent["status"] == "canceled"
    assert sent["href"] == f"http://kscore.example/api/v1/jobs/{job.id}"
    time.sleep(1)
    assert len(receiver.requests) == 1

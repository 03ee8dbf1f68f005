"""Datasets through the real API, Redis and an in-process Celery worker: every format uploads
and scores row for row as Keras does, errors name the row and column, and a dataset read by a
job is neither lost nor deleted under it."""

from __future__ import annotations

import hashlib
import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from api.app import create_app
from shared.instance_store import NewInstance
from shared.keys import Keys
from shared.settings import Settings
from shared.status import JobStatus
from tests import keras_files as kf
from tests.helpers import deployed, wait_for

pytestmark = pytest.mark.usefixtures("worker")

ROWS = 130  # the tests' chunk_rows is 50: three chunks, the last one short


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dataset-models")


@pytest.fixture(scope="module")
def dense_h5(model_dir: Path) -> Path:
    return kf.tf_keras_h5_file(model_dir)


@pytest.fixture(scope="module")
def keras_dense(dense_h5: Path) -> Any:
    """The model file loaded by tf_keras in this process: "scored by Keras directly"."""
    import tf_keras

    return tf_keras.models.load_model(dense_h5, compile=False)


@pytest.fixture
def dense(client: FlaskClient, dense_h5: Path) -> dict[str, Any]:
    return deployed(client, dense_h5, "dense")


def rows(seed: int = 1, n: int = ROWS) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 4)).astype(np.float32)


def encode(fmt: str, x: np.ndarray) -> bytes:
    """``x`` (rows of the dense model's 4 features) as a file of ``fmt``."""
    buffer = io.BytesIO()
    if fmt == "npy":
        np.save(buffer, x)
    elif fmt == "npz":
        np.savez_compressed(buffer, x=x)
    elif fmt == "csv":
        lines = ["f0,f1,f2,f3"] + [",".join(repr(float(v)) for v in row) for row in x]
        buffer.write(("\n".join(lines) + "\n").encode())
    elif fmt == "jsonl":
        buffer.write(b"".join(json.dumps([float(v) for v in row]).encode() + b"\n" for row in x))
    elif fmt == "parquet":
        pd.DataFrame(x, columns=["f0", "f1", "f2", "f3"]).to_parquet(buffer)
    return buffer.getvalue()


def upload(client: FlaskClient, fmt: str, body: bytes, **query: Any) -> Any:
    return client.post(
        "/api/v1/datasets",
        query_string={"format": fmt, **query},
        data=body,
        content_type="application/octet-stream",
    )


def score_dataset(client: FlaskClient, deployment: dict[str, Any], dataset_id: str) -> Any:
    """Submit a job over the dataset and wait for it to end; its final document."""
    submitted = client.post(
        f"/api/v1/deployments/{deployment['id']}/jobs", json={"dataset_id": dataset_id}
    )
    assert submitted.status_code == 202, submitted.get_json()
    href = submitted.headers["Location"]
    return wait_for(
        lambda: (
            (doc := client.get(href).get_json())["status"] in {"completed", "failed", "canceled"}
            and doc
        ),
        60,
        "job to end",
    )


def predictions(client: FlaskClient, job_id: str) -> np.ndarray:
    body = client.get(f"/api/v1/jobs/{job_id}/result").get_json()
    return np.array([row[0] for row in body["values"]])


def stored_rows_sha256(x: np.ndarray, chunk_rows: int) -> str:
    """The dataset document's rows_sha256 for rows ``x`` of one input stored in chunks of
    ``chunk_rows``: each chunk's dtype and shape, then its bytes, as the API states it."""
    digest = hashlib.sha256()
    for start in range(0, len(x), chunk_rows):
        chunk = np.ascontiguousarray(x[start : start + chunk_rows])
        digest.update(f"{chunk.dtype.str}{chunk.shape}".encode())
        digest.update(chunk.tobytes())
    return digest.hexdigest()


def chunk_keys(redis_client: redis.Redis, settings: Settings) -> list[bytes]:
    pattern = f"{settings.key_prefix}:i:{settings.default_instance}:dataset:*"
    return list(redis_client.scan_iter(pattern))


@pytest.mark.parametrize("fmt", ["npy", "npz", "csv", "jsonl", "parquet"])
def test_every_format_uploads_and_scores_as_keras_does(
    client: FlaskClient, dense: dict[str, Any], keras_dense: Any, fmt: str
) -> None:
    x = rows()
    created = upload(client, fmt, encode(fmt, x), name=f"rows.{fmt}")
    assert created.status_code == 201, created.get_json()
    doc = created.get_json()
    assert created.headers["Location"] == doc["href"]
    assert doc["rows"] == ROWS and doc["chunks"] == 3 and doc["chunk_rows"] == 50
    assert doc["format"] == fmt and doc["name"] == f"rows.{fmt}"
    assert doc["inputs"][0]["shape"] == [4]
    assert doc["validated_for"] is None and doc["bytes"] > 0
    assert doc["rows_sha256"] == stored_rows_sha256(x.astype(doc["inputs"][0]["dtype"]), 50)
    if fmt in {"csv", "parquet"}:
        assert doc["columns"] == ["f0", "f1", "f2", "f3"]
    assert client.get(doc["href"]).get_json() == doc
    job = score_dataset(client, dense, doc["id"])
    assert job["status"] == "completed", job
    assert job["dataset_id"] == doc["id"]
    assert job["progress"] == {"rows_done": ROWS, "rows_total": ROWS}
    got = predictions(client, job["id"])
    np.testing.assert_allclose(got, keras_dense(x).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got, kf.expected_dense_softmax(x), rtol=1e-5, atol=1e-6)


def test_content_type_names_the_format(client: FlaskClient, dense: dict[str, Any]) -> None:
    x = rows(2, 7)
    created = client.post(
        "/api/v1/datasets", data=encode("jsonl", x), content_type="application/x-ndjson"
    )
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["format"] == "jsonl"
    unknown = client.post("/api/v1/datasets", data=b"1,2\n", content_type="text/plain")
    assert unknown.status_code == 400
    assert unknown.get_json()["error"]["code"] == "unsupported_dataset_format"


def test_multi_input_datasets_match_inputs_by_name(client: FlaskClient, model_dir: Path) -> None:
    deployment = deployed(client, kf.multi_io_keras_file(model_dir), "multi")
    rng = np.random.default_rng(4)
    a = rng.normal(size=(60, 3)).astype(np.float32)
    b = rng.normal(size=(60, 2)).astype(np.float32)
    npz = io.BytesIO()
    np.savez(npz, b=b, a=a)  # member order differs from the model's: names decide
    jsonl = b"".join(
        json.dumps({"a": ra.tolist(), "b": rb.tolist()}).encode() + b"\n"
        for ra, rb in zip(a, b, strict=True)
    )
    parquet = io.BytesIO()
    pd.DataFrame({"a": list(a), "b": list(b)}).to_parquet(parquet)
    expected = kf.expected_multi_io(a, b)
    for fmt, body in (("npz", npz.getvalue()), ("jsonl", jsonl), ("parquet", parquet.getvalue())):
        created = upload(client, fmt, body)
        assert created.status_code == 201, created.get_json()
        assert sorted(i["name"] for i in created.get_json()["inputs"]) == ["a", "b"]
        job = score_dataset(client, deployment, created.get_json()["id"])
        assert job["status"] == "completed", job
        values = client.get(f"/api/v1/jobs/{job['id']}/result").get_json()["values"]
        for name in ("score", "kind"):
            got = np.array([row[0][name] for row in values])
            np.testing.assert_allclose(got, expected[name], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("fmt", "body", "message"),
    [
        ("csv", b"a,b\n1,2\n3,x\n", "Row 1, column 'b': 'x' is not a number."),
        ("csv", b"a,b\n1,2\n3,4\n5,\n", "Row 2, column 'b': an empty cell is not a number."),
        ("csv", b"a,b\n1,2\n3,4,5\n", "Row 1: 3 columns where the first line has 2."),
        ("csv", b"1,2\n3,nan\n", "Row 1, column 1: nan is not a finite number"),
        ("jsonl", b'[1,2]\n[3,"4"]\n', "Row 1, column 1: '4' is not a number."),
        ("jsonl", b"[1,2]\n[3,4]\n[5]\n", "Row 2: the row has shape [1]"),
        ("jsonl", b"[1,2]\n[3,true]\n", "Row 1, column 1: true is not a number."),
        ("jsonl", b"[1,2]\n{oops\n", "Row 1: the line is not valid JSON"),
        ("jsonl", b'{"a":[1],"b":[2]}\n{"a":[1]}\n', "Row 1: the row names ['a']"),
    ],
)
def test_text_format_errors_name_the_row_and_column(
    client: FlaskClient,
    redis_client: redis.Redis,
    settings: Settings,
    fmt: str,
    body: bytes,
    message: str,
) -> None:
    refused = upload(client, fmt, body)
    assert refused.status_code == 422, refused.get_json()
    error = refused.get_json()["error"]
    assert error["code"] == "invalid_dataset"
    assert message in error["message"]
    assert "row" in error["details"]
    assert chunk_keys(redis_client, settings) == []  # nothing of it is kept
    assert client.get("/api/v1/datasets").get_json()["total"] == 0


def test_parquet_errors_name_the_row_and_column(client: FlaskClient) -> None:
    nulls = io.BytesIO()
    pd.DataFrame({"a": [1.0, 2.0, None], "b": [1.0, 2.0, 3.0]}).to_parquet(nulls)
    refused = upload(client, "parquet", nulls.getvalue())
    assert refused.status_code == 422
    assert "Row 2, column 'a': a null is not a number." in refused.get_json()["error"]["message"]
    text = io.BytesIO()
    pd.DataFrame({"a": [1.0], "s": ["x"]}).to_parquet(text)
    refused = upload(client, "parquet", text.getvalue())
    assert refused.status_code == 422
    assert "Column 's'" in refused.get_json()["error"]["message"]
    refused = upload(client, "parquet", b"not parquet at all")
    assert refused.get_json()["error"]["code"] == "invalid_dataset"


def test_a_failure_after_some_chunks_leaves_nothing(
    client: FlaskClient, redis_client: redis.Redis, settings: Settings
) -> None:
    body = b"a\n" + b"".join(f"{i}\n".encode() for i in range(170)) + b"oops\n"
    refused = upload(client, "csv", body)
    assert refused.status_code == 422
    assert refused.get_json()["error"]["details"]["row"] == 170
    assert chunk_keys(redis_client, settings) == []


def test_upload_checked_against_a_deployment_names_the_row(
    client: FlaskClient, dense: dict[str, Any]
) -> None:
    x = rows(3, 80).astype(np.float64)
    x[67, 2] = 1e39  # finite, but past float32's range
    refused = upload(client, "npy", encode("npy", x), deployment_id=dense["id"])
    assert refused.status_code == 422
    error = refused.get_json()["error"]
    assert error["code"] == "invalid_scoring_input"
    assert error["message"].startswith("Row 67, column 2: the value 1e+39 does not fit input 'x'")
    assert error["details"]["row"] == 67 and error["details"]["column"] == 2
    x[67, 2] = 0.5
    created = upload(client, "npy", encode("npy", x), deployment_id=dense["id"])
    assert created.status_code == 201
    doc = created.get_json()
    assert doc["validated_for"] == dense["id"]
    assert doc["inputs"] == [{"name": "x", "shape": [4], "dtype": "float32"}]
    wrong = upload(client, "npy", encode("npy", x[:, :3]), deployment_id=dense["id"])
    assert wrong.status_code == 422
    assert wrong.get_json()["error"]["code"] == "dataset_mismatch"
    missing = upload(client, "npy", encode("npy", x), deployment_id="nope")
    assert missing.status_code == 404


def test_a_bad_value_fails_the_job_naming_the_global_row(
    client: FlaskClient, dense: dict[str, Any]
) -> None:
    x = rows(5).astype(np.float64)
    x[121, 3] = -3e38 * 10  # only float32 refuses it: the upload, unchecked, keeps it
    created = upload(client, "csv", encode("csv", x))
    assert created.status_code == 201
    job = score_dataset(client, dense, created.get_json()["id"])
    assert job["status"] == "failed"
    assert job["error"]["code"] == "invalid_scoring_input"
    assert job["error"]["message"].startswith("Row 121, column 'f3': the value -3e+39")


def test_job_refuses_a_dataset_that_does_not_fit(
    client: FlaskClient, dense: dict[str, Any]
) -> None:
    created = upload(client, "npy", encode("npy", np.ones((5, 5), np.float32)))
    url = f"/api/v1/deployments/{dense['id']}/jobs"
    refused = client.post(url, json={"dataset_id": created.get_json()["id"]})
    assert refused.status_code == 422
    assert refused.get_json()["error"]["code"] == "dataset_mismatch"
    assert (
        "takes rows of shape [4], the dataset's rows are [5]"
        in refused.get_json()["error"]["message"]
    )
    both = client.post(url, json={"dataset_id": created.get_json()["id"], "values": [[1] * 4]})
    assert both.status_code == 422
    unknown = client.post(url, json={"dataset_id": "00000000-0000-0000-0000-000000000000"})
    assert unknown.status_code == 404
    assert unknown.get_json()["error"]["code"] == "dataset_not_found"


def test_rows_reshape_to_the_input_when_their_count_agrees(
    client: FlaskClient, model_dir: Path
) -> None:
    deployment = deployed(client, kf.small_cnn_keras_file(model_dir), "cnn")
    shape = deployment["inputs"][0]["shape"][1:]
    n = int(np.prod(shape))
    x = np.random.default_rng(6).uniform(size=(55, n)).astype(np.float32)
    created = upload(client, "npy", encode("npy", x))
    job = score_dataset(client, deployment, created.get_json()["id"])
    assert job["status"] == "completed", job
    got = predictions(client, job["id"])
    expected = kf.expected_small_cnn(x.reshape((55, *shape)))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_list_get_delete(
    client: FlaskClient, redis_client: redis.Redis, settings: Settings
) -> None:
    ids = [upload(client, "npy", encode("npy", rows(i, 3))).get_json()["id"] for i in range(3)]
    page = client.get("/api/v1/datasets", query_string={"limit": 2}).get_json()
    assert page["total"] == 3 and [d["id"] for d in page["resources"]] == ids[::-1][:2]
    assert "next" in page
    assert client.delete(f"/api/v1/datasets/{ids[0]}").status_code == 204
    assert client.get(f"/api/v1/datasets/{ids[0]}").status_code == 404
    assert client.delete(f"/api/v1/datasets/{ids[0]}").status_code == 404
    assert client.get("/api/v1/datasets").get_json()["total"] == 2
    for dataset_id in ids[1:]:
        client.delete(f"/api/v1/datasets/{dataset_id}")
    assert chunk_keys(redis_client, settings) == []


def test_a_dataset_expires_and_a_job_keeps_it_alive(
    settings: Settings, redis_client: redis.Redis, instance: NewInstance, dense: dict[str, Any]
) -> None:
    # KSCORE_DATASET_RETENTION of 2 s (retention_days cannot go below 0.001).
    short_lived = create_app(settings.replace(dataset_retention_s=2.0), redis_client)
    client = short_lived.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {instance.key.api_key}"
    short = upload(client, "npy", encode("npy", rows(7, 3)))
    assert short.status_code == 201
    kept_id = upload(client, "npy", encode("npy", rows(8, 3))).get_json()["id"]
    job = score_dataset(client, dense, kept_id)  # retention of the job: the default, 7 days
    assert job["status"] == "completed"
    extended = client.get(f"/api/v1/datasets/{kept_id}").get_json()
    assert extended["expires_at"] >= job["expires_at"]
    time.sleep(2.5)
    assert client.get(f"/api/v1/datasets/{short.get_json()['id']}").status_code == 404
    listed = client.get("/api/v1/datasets").get_json()
    assert [d["id"] for d in listed["resources"]] == [kept_id] and listed["total"] == 1


def test_a_finished_job_gives_its_dataset_back_its_own_retention(
    client: FlaskClient, app: Flask, dense: dict[str, Any], instance: NewInstance, worker: Any
) -> None:
    from workers.reconciler import Reconciler

    svc = app.extensions["kscore"]
    dataset_id = upload(client, "npy", encode("npy", rows(12, 3)), retention_days=0.001).get_json()[
        "id"
    ]
    job = score_dataset(client, dense, dataset_id)
    assert job["status"] == "completed"
    held = client.get(f"/api/v1/datasets/{dataset_id}").get_json()
    assert held["expires_at"] >= job["expires_at"]  # held by the job, a week
    Reconciler(svc.settings, svc.redis_client, worker, "test").run_once()
    released = client.get(f"/api/v1/datasets/{dataset_id}").get_json()
    # Its own retention (86 s) from the upload: the job no longer keeps it.
    assert released["expires_at"] < job["expires_at"]
    ttl_ms = svc.redis_client.pttl(svc.keys.dataset_chunk(instance.instance.id, dataset_id, 0))
    assert 0 < ttl_ms <= 90_000


def test_delete_is_refused_while_an_unfinished_job_reads_it(
    client: FlaskClient, app: Flask, dense: dict[str, Any], instance: NewInstance
) -> None:
    dataset_id = upload(client, "npy", encode("npy", rows(9, 3))).get_json()["id"]
    svc = app.extensions["kscore"]
    job = score_dataset(client, dense, dataset_id)  # finished: it keeps nothing
    assert job["status"] == "completed"
    # A job that stays queued (its chunk never sent), holding the dataset as the API does.
    twin = svc.jobs.create(
        instance.instance.id,
        kind="batch",
        deployment_id=dense["id"],
        model_id=dense["model_id"],
        model_sha256=dense["model_sha256"],
        model_filename="tf_keras_dense.h5",
        rows_total=3,
        chunk_rows=50,
        input_chunks=[],
        fields=["prediction", "prediction_classes", "probability"],
        output_names=["probs"],
        retention_s=3600,
        job_id="11111111-1111-1111-1111-111111111111",
        dataset_id=dataset_id,
        chunks=1,
    )
    svc.datasets.hold(instance.instance.id, dataset_id, twin.id, twin.expires_at)
    refused = client.delete(f"/api/v1/datasets/{dataset_id}")
    assert refused.status_code == 409
    error = refused.get_json()["error"]
    assert error["code"] == "dataset_in_use" and twin.id in error["details"]["job_ids"]
    assert client.delete(f"/api/v1/jobs/{twin.id}").status_code == 200  # canceled
    assert client.delete(f"/api/v1/datasets/{dataset_id}").status_code == 204


def test_over_the_size_limit_is_413_and_keeps_nothing(
    settings: Settings, redis_client: redis.Redis, instance: NewInstance
) -> None:
    small = create_app(settings.replace(max_dataset_bytes=4096), redis_client)
    client = small.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {instance.key.api_key}"
    body = encode("npy", np.ones((2000, 4), np.float32))
    refused = upload(client, "npy", body)
    assert refused.status_code == 413
    assert refused.get_json()["error"]["code"] == "payload_too_large"
    assert "KSCORE_MAX_DATASET_BYTES" in refused.get_json()["error"]["message"]
    # Without a Content-Length the count stops the stream itself.
    chunked = client.post(
        "/api/v1/datasets?format=jsonl",
        input_stream=io.BytesIO(b"[1,2,3,4]\n" * 2000),
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert chunked.status_code == 413, chunked.get_json()
    keys = Keys(settings.key_prefix)
    assert not list(redis_client.scan_iter(keys.datasets_index(settings.default_instance) + "*"))


def test_the_reconciler_resends_lost_chunks_of_a_dataset_job(
    client: FlaskClient, app: Flask, dense: dict[str, Any], instance: NewInstance, worker: Any
) -> None:
    from workers.reconciler import Reconciler

    svc = app.extensions["kscore"]
    x = rows(11)
    dataset_id = upload(client, "npy", encode("npy", x)).get_json()["id"]
    inst = instance.instance.id
    job_id = "22222222-2222-2222-2222-222222222222"
    record = svc.datasets.get(inst, dataset_id)
    svc.datasets.hold(inst, dataset_id, job_id, time.time() + 3600)
    deployment = svc.deployments.get(inst, dense["id"])
    svc.jobs.create(  # written, its messages never sent: what a Redis crash can leave
        inst,
        kind="batch",
        deployment_id=deployment.id,
        model_id=deployment.model_id,
        model_sha256=deployment.model_sha256,
        model_filename=deployment.model_filename,
        rows_total=record.rows,
        chunk_rows=record.chunk_rows,
        input_chunks=[],
        fields=["prediction", "prediction_classes", "probability"],
        output_names=[str(o["name"]) for o in deployment.outputs],
        retention_s=3600,
        job_id=job_id,
        dataset_id=dataset_id,
        chunks=record.chunks,
    )
    reconciler = Reconciler(svc.settings, svc.redis_client, worker, "test")
    reconciler.run_once()
    resent = sorted(c for j, c in reconciler.run_once().resent_chunks if j == job_id)
    assert resent == [0, 1, 2]
    done = wait_for(lambda: (j := svc.jobs.get(inst, job_id)).finished and j, 60, "job")
    assert done.status is JobStatus.COMPLETED
    np.testing.assert_allclose(
        predictions(client, job_id), kf.expected_dense_softmax(x), rtol=1e-5, atol=1e-6
    )


def test_a_csv_that_is_not_utf8_says_where(client: FlaskClient) -> None:
    refused = upload(client, "csv", b"a,b\n1,2\n3,\xff4\n")
    assert refused.status_code == 422
    error = refused.get_json()["error"]
    assert error["code"] == "invalid_dataset" and error["details"] == {"byte": 10}

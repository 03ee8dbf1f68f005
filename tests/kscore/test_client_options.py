"""The client's and the CLI's deployment changes (batching, PATCH moves) and job options
(Idempotency-Key, callback_url), against the real API and a real worker."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kscore import Client, DeploymentMoveFailedError, UnprocessableError
from tests import keras_files as kf
from tests.helpers import Receiver, wait_for
from tests.kscore.conftest import Cli
from workers.model_cache import ModelCache

pytestmark = pytest.mark.usefixtures("worker")

ROWS = np.random.default_rng(41).normal(size=(5, 4)).astype(np.float32)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("options")
    return {"a": kf.tf_keras_h5_file(directory), "b": kf.tf_keras_h5_b_file(directory)}


@pytest.fixture
def models(api_client: Client, files: dict[str, Path]) -> dict[str, dict[str, Any]]:
    return {name: api_client.repository.store_model(path, name) for name, path in files.items()}


def assert_scores(result: dict[str, Any], expected: np.ndarray) -> None:
    """The result's predictions (its first column) equal Keras's own, ``expected``."""
    got = [row[0] for row in result["values"]]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def assert_jobs_score_rows(api_client: Client, job_ids: list[str]) -> None:
    """Each job completes with Keras's own predictions for ``ROWS`` (model A)."""
    for job_id in job_ids:
        assert api_client.jobs.wait(job_id, timeout=60)["status"] == "completed"
        assert_scores(api_client.jobs.result(job_id), kf.expected_dense_softmax(ROWS))


def test_the_client_sets_batching_and_moves_a_deployment_to_another_model(
    api_client: Client,
    models: dict[str, dict[str, Any]],
) -> None:
    a, b = models["a"], models["b"]
    deployment = api_client.deployments.create(
        a["id"], "d", batching={"max_batch_size": 8, "max_wait_ms": 1.5}
    )
    assert deployment["batching"] == {"max_batch_size": 8, "max_wait_ms": 1.5}
    changed = api_client.deployments.update(
        deployment["id"], name="renamed", batching={"max_wait_ms": 0}
    )
    assert changed["name"] == "renamed"
    assert changed["batching"] == {"max_batch_size": 8, "max_wait_ms": 0}
    assert changed["model_id"] == a["id"]

    moved = api_client.deployments.update(deployment["id"], model_id=b["id"], timeout=60)
    assert moved["model_id"] == b["id"] and moved["pending_model"] is None
    assert moved["previous_model"]["model_id"] == a["id"]
    assert moved["scoring_url"] == deployment["scoring_url"]
    result = api_client.deployments.score(moved["scoring_url"], {"values": ROWS.tolist()})
    assert_scores(result, kf.expected_dense_b_softmax(ROWS))


def test_a_move_whose_model_does_not_load_raises_and_the_current_model_keeps_serving(
    api_client: Client,
    models: dict[str, dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b = models["a"], models["b"]
    deployment = api_client.deployments.create(a["id"], "d")
    real_get = ModelCache.get

    def failing_get(self: ModelCache, sha256: str, filename: str) -> Any:
        if sha256 == b["sha256"]:  # the fault: B never loads
            raise RuntimeError("injected load failure")
        return real_get(self, sha256, filename)

    monkeypatch.setattr(ModelCache, "get", failing_get)
    with pytest.raises(DeploymentMoveFailedError) as failed:
        api_client.deployments.update(deployment["id"], model_id=b["id"], timeout=60)
    assert failed.value.code == "model_load_failed"
    assert "injected load failure" in str(failed.value)
    assert "current model still serves" in str(failed.value)
    now = api_client.deployments.get_details(deployment["id"])
    assert now["model_id"] == a["id"] and now["status"] == "DEPLOY_SUCCESS"
    result = api_client.deployments.score(now["scoring_url"], {"values": ROWS.tolist()})
    assert_scores(result, kf.expected_dense_softmax(ROWS))


def test_a_job_submitted_again_with_its_idempotency_key_is_the_first_job(
    api_client: Client,
    models: dict[str, dict[str, Any]],
) -> None:
    deployment = api_client.deployments.create(models["a"]["id"], "d")["id"]
    dataset = api_client.datasets.upload(ROWS, deployment_id=deployment)
    fewer = api_client.datasets.upload(ROWS[:2], deployment_id=deployment)
    submits = {
        "json": lambda rows, key: api_client.jobs.submit(
            deployment, rows.tolist(), idempotency_key=key
        ),
        "npy": lambda rows, key: api_client.jobs.submit(deployment, rows, idempotency_key=key),
        "dataset": lambda rows, key: api_client.jobs.submit_dataset(
            deployment, (dataset if len(rows) == len(ROWS) else fewer)["id"], idempotency_key=key
        ),
    }
    first_ids = []
    for how, submit in submits.items():
        key = f"{how}-{uuid.uuid4()}"
        first = submit(ROWS, key)
        assert submit(ROWS, key)["id"] == first["id"], how
        with pytest.raises(UnprocessableError) as reused:
            submit(ROWS[:2], key)  # the same key for another request
        assert reused.value.code == "idempotency_key_reused", how
        first_ids.append(first["id"])
    assert sorted(j["id"] for j in api_client.jobs.list(deployment)) == sorted(first_ids)
    assert_jobs_score_rows(api_client, first_ids)


def test_a_job_with_a_callback_url_posts_its_document_there_when_it_ends(
    api_client: Client,
    models: dict[str, dict[str, Any]],
    receiver: Receiver,
) -> None:
    deployment = api_client.deployments.create(models["a"]["id"], "d")["id"]
    as_npy = api_client.jobs.submit(deployment, ROWS, callback_url=receiver.url)
    as_json = api_client.jobs.submit(deployment, ROWS.tolist(), callback_url=receiver.url)
    assert as_npy["callback_url"] == as_json["callback_url"] == receiver.url
    wait_for(lambda: len(receiver.requests) >= 2, 60, "both callbacks")
    posted = {json.loads(body)["id"]: json.loads(body) for _, body in receiver.requests}
    assert set(posted) == {as_npy["id"], as_json["id"]}
    assert {doc["status"] for doc in posted.values()} == {"completed"}
    with pytest.raises(UnprocessableError) as refused:  # not in KSCORE_WEBHOOK_ALLOW
        api_client.jobs.submit(deployment, ROWS, callback_url="http://192.0.2.1/hook")
    assert refused.value.code == "callback_not_allowed"


def test_the_cli_updates_a_deployment_and_submits_a_job_once_per_key(
    cli: Cli,
    api_client: Client,
    models: dict[str, dict[str, Any]],
    tmp_path: Path,
) -> None:
    deployment = api_client.deployments.create(models["a"]["id"], "d")["id"]
    nothing = cli.invoke(["deployments", "update", deployment])
    assert nothing.exit_code == 1 and "Nothing to change" in nothing.output
    batching = cli.invoke(
        ["deployments", "update", deployment, "--max-batch-size", "16", "--max-wait-ms", "0"]
    )
    assert batching.exit_code == 0, batching.output
    lines = batching.output.splitlines()
    assert any(line.split() == ["Max", "batch", "size", "16"] for line in lines), lines
    assert any(line.split() == ["Max", "wait", "ms", "0.0"] for line in lines), lines
    moved = cli.invoke(["deployments", "update", deployment, "--model-id", models["b"]["id"]])
    assert moved.exit_code == 0, moved.output
    assert any(line.split() == ["Model", models["b"]["id"]] for line in moved.output.splitlines())
    assert api_client.deployments.get_details(deployment)["model_id"] == models["b"]["id"]

    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps({"values": ROWS.tolist()}))
    submit = ["jobs", "submit", deployment, str(rows), "--idempotency-key", "nightly-1", "-q"]
    ids = [cli.invoke(submit).output.strip() for _ in range(2)]
    assert ids[0] and ids[0] == ids[1]
    assert [j["id"] for j in api_client.jobs.list(deployment)] == [ids[0]]


def test_a_retry_that_uploads_the_same_rows_again_is_the_first_job_and_drops_its_upload(
    cli: Cli,
    api_client: Client,
    models: dict[str, dict[str, Any]],
    tmp_path: Path,
) -> None:
    deployment = api_client.deployments.create(models["a"]["id"], "d")["id"]
    rows = tmp_path / "rows.npy"
    np.save(rows, ROWS)
    submit = ["jobs", "submit", deployment, "--input", str(rows), "--idempotency-key", "n-1"]
    ids = [cli.invoke([*submit, "-q"]).output.strip().splitlines()[-1] for _ in range(2)]
    assert ids[0] and ids[0] == ids[1]
    job = api_client.jobs.get(ids[0])
    # The second run's upload of the same rows is gone; the first job's dataset stays.
    assert [d["id"] for d in api_client.datasets.list()] == [job["dataset_id"]]
    other = tmp_path / "other.npy"
    np.save(other, ROWS[:2])
    refused = cli.invoke(
        ["jobs", "submit", deployment, "--input", str(other), "--idempotency-key", "n-1"]
    )
    assert refused.exit_code == 1 and "idempotency_key_reused" in refused.output
    # A refused submission deletes the upload it made.
    assert [d["id"] for d in api_client.datasets.list()] == [job["dataset_id"]]

    # The client: a DataFrame goes as a dataset; a retry with its key answers the first job.
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame(ROWS, columns=["a", "b", "c", "d"])
    first = api_client.jobs.submit(deployment, frame, idempotency_key="frame-1")
    again = api_client.jobs.submit(deployment, frame, idempotency_key="frame-1")
    assert again["id"] == first["id"] and again["dataset_id"] == first["dataset_id"]
    kept = {d["id"] for d in api_client.datasets.list()}
    assert kept == {job["dataset_id"], first["dataset_id"]}
    assert_jobs_score_rows(api_client, [ids[0], first["id"]])

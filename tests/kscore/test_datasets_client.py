"""``client.datasets``, ``jobs.submit`` of DataFrames and big arrays, and ``kscore datasets`` /
``kscore jobs submit --input``, against the real API and an in-process worker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import kscore.datasets
from kscore import Client, KscoreError, UnprocessableError
from tests import keras_files as kf
from tests.kscore.conftest import Cli

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture(scope="module")
def dense_h5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kf.tf_keras_h5_file(tmp_path_factory.mktemp("datasets-client"))


@pytest.fixture
def deployment(api_client: Client, dense_h5: Path) -> dict[str, Any]:
    model = api_client.repository.store_model(dense_h5, "dense")
    return api_client.deployments.create(model["id"], name="dense")


def x_rows(n: int = 120, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 4)).astype(np.float32)


def predictions(client: Client, job: dict[str, Any]) -> np.ndarray:
    final = client.jobs.wait(job["id"], timeout=60)
    assert final["status"] == "completed"
    return np.array([row[0] for row in client.jobs.result(job["id"])["values"]])


def test_upload_every_kind_of_source(
    api_client: Client, deployment: dict[str, Any], tmp_path: Path
) -> None:
    x = x_rows()
    csv = tmp_path / "rows.csv"
    pd.DataFrame(x, columns=["a", "b", "c", "d"]).to_csv(csv, index=False)
    sources: list[Any] = [csv, x, {"x": x}, pd.DataFrame(x, columns=["a", "b", "c", "d"])]
    formats = ["csv", "npy", "npz", "parquet"]
    ids = []
    for source, fmt in zip(sources, formats, strict=True):
        dataset = api_client.datasets.upload(source, name=fmt, deployment_id=deployment["id"])
        assert dataset["format"] == fmt and dataset["rows"] == 120
        assert dataset["validated_for"] == deployment["id"]
        ids.append(dataset["id"])
        job = api_client.jobs.submit_dataset(deployment["id"], dataset["id"])
        np.testing.assert_allclose(
            predictions(api_client, job), kf.expected_dense_softmax(x), rtol=1e-5, atol=1e-6
        )
    assert [d["id"] for d in api_client.datasets.list()] == ids[::-1]
    assert api_client.datasets.get(ids[0])["columns"] == ["a", "b", "c", "d"]
    api_client.datasets.delete(ids[0])
    assert len(api_client.datasets.list()) == 3
    with pytest.raises(KscoreError):
        api_client.datasets.upload(tmp_path / "rows.txt")
    with pytest.raises(KscoreError):
        api_client.datasets.upload(["not", "an", "array"])


def test_upload_errors_name_the_row_and_column(api_client: Client, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("a,b\n1,2\n3,four\n")
    with pytest.raises(UnprocessableError) as refused:
        api_client.datasets.upload(path)
    assert refused.value.code == "invalid_dataset"
    assert "Row 1, column 'b': 'four' is not a number." in str(refused.value)


def test_submit_sends_dataframes_and_big_arrays_as_datasets(
    api_client: Client, deployment: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    x = x_rows(90, seed=1)
    frame = pd.DataFrame(x, columns=["a", "b", "c", "d"])
    job = api_client.jobs.submit(deployment["id"], frame)
    assert job["dataset_id"]
    np.testing.assert_allclose(
        predictions(api_client, job), kf.expected_dense_softmax(x), rtol=1e-5, atol=1e-6
    )
    small = api_client.jobs.submit(deployment["id"], x)  # under 8 MiB: a .npy body
    assert small["dataset_id"] is None
    monkeypatch.setattr(kscore.datasets, "AUTO_DATASET_BYTES", 1000)
    big = api_client.jobs.submit(deployment["id"], x)
    assert big["dataset_id"]
    np.testing.assert_allclose(
        predictions(api_client, big), kf.expected_dense_softmax(x), rtol=1e-5, atol=1e-6
    )
    # The auto-uploaded dataset lives as long as its job.
    dataset = api_client.datasets.get(big["dataset_id"])
    assert dataset["expires_at"] >= big["expires_at"]


def test_cli_datasets_and_jobs_submit_input(
    cli: Cli, api_client: Client, deployment: dict[str, Any], tmp_path: Path
) -> None:
    x = x_rows(75, seed=2)
    parquet = tmp_path / "data.parquet"
    pd.DataFrame(x, columns=["a", "b", "c", "d"]).to_parquet(parquet)
    submitted = cli.invoke(
        ["jobs", "submit", deployment["id"], "--input", str(parquet), "--wait", "-q"]
    )
    assert submitted.exit_code == 0, submitted.output
    job_id = submitted.output.strip().splitlines()[-1]
    np.testing.assert_allclose(
        predictions(api_client, {"id": job_id}),
        kf.expected_dense_softmax(x),
        rtol=1e-5,
        atol=1e-6,
    )
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in x.tolist()))
    uploaded = cli.invoke(
        ["datasets", "upload", str(jsonl), "--deployment", deployment["id"], "-q"]
    )
    assert uploaded.exit_code == 0, uploaded.output
    dataset_id = uploaded.output.strip()
    shown = cli.invoke(["datasets", "get", dataset_id])
    document = json.loads(shown.output)
    assert document["rows"] == 75 and len(document["rows_sha256"]) == 64
    listed = cli.invoke(["datasets", "list"])
    assert dataset_id in listed.output and "rows.jsonl" in listed.output
    scored = cli.invoke(["jobs", "submit", deployment["id"], "--dataset", dataset_id, "-q"])
    assert scored.exit_code == 0, scored.output
    api_client.jobs.wait(scored.output.strip(), timeout=60)
    deleted = cli.invoke(["datasets", "delete", dataset_id])
    assert deleted.exit_code == 0 and "Deleted dataset" in deleted.output
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2,3,4\n5,6,x,8\n")
    refused = cli.invoke(["datasets", "upload", str(bad)])
    assert refused.exit_code == 1
    assert "Row 1, column 2: 'x' is not a number." in refused.output
    both = cli.invoke(["jobs", "submit", deployment["id"], str(bad), "--input", str(bad)])
    assert both.exit_code != 0 and "Give the rows once" in both.output

"""Job results through the Python client and the CLI, against the real API and worker."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from flask import Flask

import kscore.cli
from kscore import Client
from kscore.errors import ApiError
from kscore.result_files import decode, format_for_path
from shared.instance_store import NewInstance
from tests import keras_files as kf

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture(scope="module")
def dense_h5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kf.tf_keras_h5_file(tmp_path_factory.mktemp("results-client"))


@pytest.fixture
def done_job(api_client: Client, dense_h5: Path) -> tuple[str, np.ndarray]:
    """A completed job of 3 chunks and more; its id and the predictions as JSON gave them."""
    model = api_client.repository.store_model(dense_h5, "dense")
    deployment = api_client.deployments.create(model["id"], name="dense")
    x = np.random.default_rng(31).normal(size=(123, 4)).astype(np.float32)
    job = api_client.jobs.submit(deployment["id"], x.tolist())
    assert api_client.jobs.wait(job["id"], timeout=60)["status"] == "completed"
    values = api_client.jobs.result(job["id"])["values"]
    expected = np.float32([v[0] for v in values])
    np.testing.assert_allclose(expected, kf.expected_dense_softmax(x), rtol=1e-5, atol=1e-6)
    return job["id"], expected


def test_client_result_in_each_format(api_client: Client, done_job: tuple[str, Any]) -> None:
    job_id, expected = done_job
    npy = api_client.jobs.result(job_id, format="npy")
    assert isinstance(npy, np.ndarray) and npy.dtype == np.float32
    np.testing.assert_array_equal(npy, expected)
    npz = api_client.jobs.result(job_id, format="npz")
    assert set(npz) == {"prediction_classes", "probs"}
    np.testing.assert_array_equal(npz["probs"], expected)
    frame = api_client.jobs.result(job_id, format="parquet")
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == [
        "prediction_classes",
        "probability",
    ]
    np.testing.assert_array_equal(np.stack(frame["probability"].to_numpy()), expected)
    csv = api_client.jobs.result(job_id, format="csv")
    assert isinstance(csv, pd.DataFrame) and len(csv) == len(expected)
    assert csv["prediction_classes"].tolist() == expected.argmax(axis=1).tolist()
    rows = api_client.jobs.result(job_id, format="jsonl")
    assert [r["prediction_classes"] for r in rows] == expected.argmax(axis=1).tolist()
    with pytest.raises(ValueError, match="parquet"):
        api_client.jobs.result(job_id, format="xlsx")


def test_download_result_takes_the_format_from_the_suffix(
    api_client: Client, done_job: tuple[str, Any], tmp_path: Path
) -> None:
    job_id, expected = done_job
    path = api_client.jobs.download_result(job_id, tmp_path / "preds.npy")
    np.testing.assert_array_equal(np.load(path), expected)
    csv = api_client.jobs.download_result(job_id, tmp_path / "preds.csv")
    assert csv.read_text().splitlines()[0].startswith("prediction_classes,probability_0")
    into_dir = api_client.jobs.download_result(job_id, tmp_path, format="parquet")
    assert into_dir == tmp_path / f"{job_id}.parquet"
    assert len(pd.read_parquet(into_dir)) == len(expected)
    default = api_client.jobs.download_result(job_id, tmp_path / "out")
    assert json.loads(default.read_text())["fields"][0] == "prediction"
    assert format_for_path("a/b.NDJSON") == "jsonl" and format_for_path("x.pq") == "parquet"


def test_without_pandas_or_numpy_the_bytes_come_back(monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"a,b\n1,2\n"
    monkeypatch.setitem(sys.modules, "pandas", None)
    assert decode(data, "csv") == data
    monkeypatch.setitem(sys.modules, "numpy", None)
    buffer = io.BytesIO()
    assert decode(buffer.getvalue() or b"\x93NUMPY", "npy") == b"\x93NUMPY"


def test_cli_result_to_a_file_or_stdout(
    app: Flask, instance: NewInstance, done_job: tuple[str, Any], tmp_path: Path
) -> None:
    job_id, expected = done_job
    context = kscore.cli.CliContext(
        transport=httpx.WSGITransport(app=app), api_key=instance.key.api_key
    )

    def run(*args: str) -> Any:
        return CliRunner().invoke(kscore.cli.cli, list(args), obj=context)

    target = tmp_path / "preds.csv"
    written = run("jobs", "result", job_id, "-o", str(target))
    assert written.exit_code == 0, written.output
    assert f"to {target}" in written.output
    frame = pd.read_csv(target)
    np.testing.assert_array_equal(frame.iloc[:, 1:].to_numpy().astype(np.float32), expected)
    npz_target = tmp_path / "preds.bin"
    assert run("jobs", "result", job_id, "-o", str(npz_target), "--format", "npz").exit_code == 0
    with np.load(npz_target) as npz:
        np.testing.assert_array_equal(npz["probs"], expected)
    printed = run("jobs", "result", job_id, "--format", "jsonl")
    assert printed.exit_code == 0, printed.output
    assert len(printed.output.splitlines()) == len(expected)
    binary = run("jobs", "result", job_id, "--format", "npy")
    assert binary.exit_code != 0 and "-o" in binary.output
    helped = run("jobs", "result", "--help")
    assert "--format" in helped.output and "parquet" in helped.output


def test_npy_of_a_multi_output_model_is_406(api_client: Client, tmp_path: Path) -> None:
    model = api_client.repository.store_model(kf.multi_io_keras_file(tmp_path), "multi")
    deployment = api_client.deployments.create(model["id"], name="multi")
    job = api_client.jobs.submit(
        deployment["id"], {"inputs": {"a": [[0.0, 1.0, 2.0]], "b": [[1.0, 0.0]]}}
    )
    api_client.jobs.wait(job["id"], timeout=60)
    with pytest.raises(ApiError) as refused:
        api_client.jobs.result(job["id"], format="npy")
    assert refused.value.status == 406 and "npz" in refused.value.message
    arrays = api_client.jobs.result(job["id"], format="npz")
    assert set(arrays) == {"score", "kind", "prediction_classes_score", "prediction_classes_kind"}

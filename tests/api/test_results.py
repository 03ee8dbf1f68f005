"""Job results in every format, through the API, against a real worker and real Keras models.

Jobs run in several chunks (the suite's chunk_rows is 50), so row order across chunks is
proven; the values are compared with the same Keras model called in this process on the same
chunks (float32 exact for the typed formats).
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from flask.testing import FlaskClient

from shared.scoring import format_rows, rows_fragment
from shared.settings import Settings
from tests import keras_files as kf
from tests.helpers import deployed, wait_for
from workers.model_loader import load_model

pytestmark = pytest.mark.usefixtures("worker")

FORMATS = ["json", "jsonl", "csv", "npy", "npz", "parquet"]


@pytest.fixture(scope="module")
def dense_h5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kf.tf_keras_h5_file(tmp_path_factory.mktemp("results-dense"))


@pytest.fixture(scope="module")
def multi_keras(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kf.multi_io_keras_file(tmp_path_factory.mktemp("results-multi"))


def keras_outputs(path: Path, inputs: list[np.ndarray], chunk_rows: int) -> list[np.ndarray]:
    """What the model gives for ``inputs``, called chunk by chunk as the workers call it."""
    model = load_model(path, path.name)
    rows = len(inputs[0])
    pieces = [
        model.predict([a[i : i + chunk_rows] for a in inputs]) for i in range(0, rows, chunk_rows)
    ]
    return [np.concatenate([p[k] for p in pieces]) for k in range(len(pieces[0]))]


def run_job(client: FlaskClient, deployment: dict[str, Any], body: dict[str, Any]) -> str:
    created = client.post(f"/api/v1/deployments/{deployment['id']}/jobs", json=body)
    assert created.status_code == 202, created.get_json()
    job_id: str = created.get_json()["id"]

    def finished() -> dict[str, Any] | None:
        job = client.get(f"/api/v1/jobs/{job_id}").get_json()
        return job if job["status"] in {"completed", "failed", "canceled"} else None

    done = wait_for(finished, 120, "job to finish")
    assert done["status"] == "completed", done
    return job_id


def old_json(
    outputs: list[np.ndarray], names: list[str], chunk_rows: int, v4: bool = False
) -> bytes:
    """The result body as the worker wrote it before results were stored as arrays: a JSON
    fragment per chunk, joined by the API with ", "."""
    fragments = [
        rows_fragment(format_rows([o[i : i + chunk_rows] for o in outputs], names))
        for i in range(0, len(outputs[0]), chunk_rows)
    ]
    head = b'{"fields": ["prediction", "prediction_classes", "probability"], "values": ['
    body = head + b", ".join(fragments) + b"]}"
    return (b'{"predictions": [' + body + b"]}\n") if v4 else body + b"\n"


def fetch(client: FlaskClient, job_id: str, fmt: str) -> bytes:
    response = client.get(f"/api/v1/jobs/{job_id}/result?format={fmt}")
    assert response.status_code == 200, response.data[:500]
    ext = fmt
    disposition = "inline" if fmt == "json" else "attachment"
    assert response.headers["Content-Disposition"] == f'{disposition}; filename="{job_id}.{ext}"'
    assert response.is_streamed
    return response.data


def test_every_format_of_a_single_output_job(
    client: FlaskClient, dense_h5: Path, settings: Settings
) -> None:
    deployment = deployed(client, dense_h5)
    x = np.random.default_rng(21).normal(size=(3 * settings.chunk_rows + 7, 4)).astype(np.float32)
    job_id = run_job(client, deployment, {"values": x.tolist()})
    (expected,) = keras_outputs(dense_h5, [x], settings.chunk_rows)
    classes = expected.argmax(axis=1)
    np.testing.assert_allclose(expected, kf.expected_dense_softmax(x), rtol=1e-5, atol=1e-6)

    # json: byte for byte the body the worker used to write, rows in input order.
    body = fetch(client, job_id, "json")
    assert body == old_json([expected], ["dense"], settings.chunk_rows)

    npy_bytes = fetch(client, job_id, "npy")
    npy_length = client.get(f"/api/v1/jobs/{job_id}/result?format=npy").headers["Content-Length"]
    assert int(npy_length) == len(npy_bytes)
    npy = np.load(io.BytesIO(npy_bytes), allow_pickle=False)
    assert npy.dtype == np.float32 and npy.shape == expected.shape
    np.testing.assert_array_equal(npy, expected)

    npz_bytes = fetch(client, job_id, "npz")
    with np.load(io.BytesIO(npz_bytes), allow_pickle=False) as npz:
        output_name = deployment["outputs"][0]["name"]
        assert sorted(npz.files) == sorted(["prediction_classes", output_name])
        np.testing.assert_array_equal(npz[output_name], expected)
        np.testing.assert_array_equal(npz["prediction_classes"], classes)
    assert all(
        i.compress_type == zipfile.ZIP_STORED
        for i in zipfile.ZipFile(io.BytesIO(npz_bytes)).infolist()
    )

    parquet = fetch(client, job_id, "parquet")
    table = pq.read_table(io.BytesIO(parquet))
    assert table.column_names == ["prediction_classes", "probability"]
    assert pq.ParquetFile(io.BytesIO(parquet)).num_row_groups == 4  # one per chunk
    np.testing.assert_array_equal(table.column("prediction_classes").to_numpy(), classes)
    probability = np.stack(table.column("probability").to_numpy(zero_copy_only=False))
    assert probability.dtype == np.float32
    np.testing.assert_array_equal(probability, expected)

    frame = pd.read_csv(io.BytesIO(fetch(client, job_id, "csv")))
    assert list(frame.columns) == ["prediction_classes"] + [f"probability_{i}" for i in range(3)]
    assert frame["prediction_classes"].tolist() == classes.tolist()
    # Written in float32's shortest form, so read back as float32 they are the same numbers.
    np.testing.assert_array_equal(frame.iloc[:, 1:].to_numpy().astype(np.float32), expected)

    lines = fetch(client, job_id, "jsonl").decode().splitlines()
    assert len(lines) == len(x)
    for line, row, cls in zip(lines, expected, classes, strict=True):
        obj = json.loads(line)
        assert list(obj) == ["prediction", "prediction_classes", "probability"]
        assert obj["prediction_classes"] == cls
        np.testing.assert_array_equal(np.float32(obj["prediction"]), row)
        assert obj["probability"] == obj["prediction"]


def test_format_negotiation_and_refusals(
    client: FlaskClient, dense_h5: Path, settings: Settings
) -> None:
    deployment = deployed(client, dense_h5)
    x = np.random.default_rng(22).normal(size=(5, 4)).astype(np.float32)
    job_id = run_job(client, deployment, {"values": x.tolist()})
    url = f"/api/v1/jobs/{job_id}/result"
    for accept, mimetype in [
        ("text/csv", "text/csv"),
        ("application/x-ndjson", "application/x-ndjson"),
        ("application/jsonl", "application/x-ndjson"),
        ("application/x-npy", "application/x-npy"),
        ("application/x-npz", "application/x-npz"),
        ("application/vnd.apache.parquet", "application/vnd.apache.parquet"),
        ("application/json", "application/json"),
        ("*/*", "application/json"),
        ("text/html,application/xhtml+xml,*/*;q=0.8", "application/json"),
        ("application/x-npy;q=0.5, text/csv", "text/csv"),
    ]:
        response = client.get(url, headers={"Accept": accept})
        assert response.status_code == 200, (accept, response.get_json())
        assert response.mimetype == mimetype, accept
        assert response.headers["Vary"] == "Accept"
    assert client.get(url).mimetype == "application/json"  # no Accept: json
    # The query parameter wins over Accept.
    assert client.get(url + "?format=npy", headers={"Accept": "text/csv"}).mimetype == (
        "application/x-npy"
    )
    refused = client.get(url, headers={"Accept": "application/xml"})
    assert refused.status_code == 406
    error = refused.get_json()["error"]
    assert error["code"] == "result_format_not_acceptable"
    assert "text/csv" in error["message"] and "parquet" in error["message"]
    unknown = client.get(url + "?format=xml")
    assert unknown.status_code == 422
    message = json.dumps(unknown.get_json()["error"])
    assert "format" in message and "parquet" in message and "npz" in message


def test_a_job_not_completed_has_no_result_in_any_format(
    client: FlaskClient, dense_h5: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers import model_loader

    real = model_loader.LoadedModel.predict

    def slow(self: Any, inputs: Any) -> Any:
        time.sleep(1.0)
        return real(self, inputs)

    deployment = deployed(client, dense_h5)
    monkeypatch.setattr(model_loader.LoadedModel, "predict", slow)
    created = client.post(
        f"/api/v1/deployments/{deployment['id']}/jobs", json={"values": [[0, 0, 0, 0]]}
    ).get_json()
    for fmt in FORMATS:
        response = client.get(f"/api/v1/jobs/{created['id']}/result?format={fmt}")
        assert response.status_code == 409, fmt
        assert response.get_json()["error"]["code"] == "job_not_finished"


def test_every_format_of_a_multi_output_job(
    client: FlaskClient, multi_keras: Path, settings: Settings
) -> None:
    deployment = deployed(client, multi_keras)
    n = 2 * settings.chunk_rows + 3
    rng = np.random.default_rng(23)
    a = rng.normal(size=(n, 3)).astype(np.float32)
    b = rng.normal(size=(n, 2)).astype(np.float32)
    job_id = run_job(client, deployment, {"inputs": {"a": a.tolist(), "b": b.tolist()}})
    names = [o["name"] for o in deployment["outputs"]]
    assert names == ["score", "kind"]
    score, kind = keras_outputs(multi_keras, [a, b], settings.chunk_rows)
    score_classes = (score[:, 0] > 0.5).astype(np.int64)
    kind_classes = kind.argmax(axis=1)

    assert fetch(client, job_id, "json") == old_json([score, kind], names, settings.chunk_rows)
    npy = client.get(f"/api/v1/jobs/{job_id}/result?format=npy")
    assert npy.status_code == 406
    assert "npz" in npy.get_json()["error"]["message"]

    with np.load(io.BytesIO(fetch(client, job_id, "npz")), allow_pickle=False) as npz:
        assert npz.files == ["prediction_classes_score", "prediction_classes_kind", "score", "kind"]
        np.testing.assert_array_equal(npz["score"], score)
        np.testing.assert_array_equal(npz["kind"], kind)
        np.testing.assert_array_equal(npz["prediction_classes_score"], score_classes)
        np.testing.assert_array_equal(npz["prediction_classes_kind"], kind_classes)

    table = pq.read_table(io.BytesIO(fetch(client, job_id, "parquet")))
    assert table.column_names == [
        "prediction_classes_score",
        "prediction_classes_kind",
        "score",
        "kind",
    ]
    np.testing.assert_array_equal(
        np.stack(table.column("kind").to_numpy(zero_copy_only=False)), kind
    )
    np.testing.assert_array_equal(
        np.stack(table.column("score").to_numpy(zero_copy_only=False)), score
    )

    frame = pd.read_csv(io.BytesIO(fetch(client, job_id, "csv")))
    assert list(frame.columns) == [
        "prediction_classes_score",
        "prediction_classes_kind",
        "score_0",
        "kind_0",
        "kind_1",
        "kind_2",
    ]
    np.testing.assert_array_equal(
        frame[["kind_0", "kind_1", "kind_2"]].to_numpy().astype(np.float32), kind
    )
    assert frame["prediction_classes_kind"].tolist() == kind_classes.tolist()

    lines = [json.loads(line) for line in fetch(client, job_id, "jsonl").splitlines()]
    assert len(lines) == n
    assert lines[-1]["prediction_classes"] == {
        "score": int(score_classes[-1]),
        "kind": int(kind_classes[-1]),
    }
    np.testing.assert_array_equal(np.float32([line["probability"]["kind"] for line in lines]), kind)


def test_wml_v4_jobs_keep_their_shape_in_json_and_give_the_same_arrays(
    client: FlaskClient, dense_h5: Path, settings: Settings
) -> None:
    deployment = deployed(client, dense_h5)
    x = np.random.default_rng(24).normal(size=(settings.chunk_rows + 9, 4)).astype(np.float32)
    body = {"input_data": [{"fields": ["a", "b", "c", "d"], "values": x.tolist()}]}
    job_id = run_job(client, deployment, body)
    (expected,) = keras_outputs(dense_h5, [x], settings.chunk_rows)
    assert fetch(client, job_id, "json") == old_json(
        [expected], ["dense"], settings.chunk_rows, v4=True
    )
    npy = np.load(io.BytesIO(fetch(client, job_id, "npy")), allow_pickle=False)
    np.testing.assert_array_equal(npy, expected)
    frame = pd.read_csv(io.BytesIO(fetch(client, job_id, "csv")))
    assert frame.shape == (len(x), 4)


def test_an_online_job_answered_later_gives_every_format(
    client: FlaskClient, dense_h5: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An online job keeps its JSON answer; read in another format it is parsed back."""
    from workers import model_loader

    real = model_loader.LoadedModel.predict

    def slow(self: Any, inputs: Any) -> Any:
        time.sleep(0.5)
        return real(self, inputs)

    deployment = deployed(client, dense_h5)
    monkeypatch.setattr(model_loader.LoadedModel, "predict", slow)
    x = np.random.default_rng(25).normal(size=(3, 4)).astype(np.float32)
    response = client.post(
        f"/api/v1/deployments/{deployment['id']}/online?timeout=0.05", json={"values": x.tolist()}
    )
    assert response.status_code == 202
    job_id = response.get_json()["id"]
    wait_for(
        lambda: client.get(f"/api/v1/jobs/{job_id}").get_json()["status"] == "completed",
        60,
        "online job",
    )
    values = json.loads(fetch(client, job_id, "json"))["values"]
    as_json = np.float32([v[0] for v in values])
    npy = np.load(io.BytesIO(fetch(client, job_id, "npy")), allow_pickle=False)
    # In the model's dtype, as a batch job's: the JSON numbers read back exactly.
    assert npy.dtype == np.float32
    np.testing.assert_array_equal(npy, as_json)
    np.testing.assert_allclose(npy, kf.expected_dense_softmax(x), rtol=1e-5, atol=1e-6)
    frame = pd.read_csv(io.BytesIO(fetch(client, job_id, "csv")))
    assert frame["prediction_classes"].tolist() == [v[1] for v in values]
    table = pq.read_table(io.BytesIO(fetch(client, job_id, "parquet")))
    assert table.num_rows == 3

"""The Python client and the CLI against the real API and a real worker (HTTP over WSGI)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from click.testing import CliRunner
from flask import Flask

import kscore.cli
from kscore import Client, ConflictError, NotFoundError, UnauthorizedError, UnprocessableError
from shared.instance_store import NewInstance
from tests import keras_files as kf
from tests.kscore.conftest import Cli

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture(scope="module")
def dense_h5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kf.tf_keras_h5_file(tmp_path_factory.mktemp("client"))


def test_client_flow_matches_numpy(api_client: Client, dense_h5: Path) -> None:
    model = api_client.repository.store_model(dense_h5, "dense")
    assert [m["id"] for m in api_client.repository.list_models()] == [model["id"]]
    deployment = api_client.deployments.create(model["id"], name="dense online")
    assert deployment["status"] == "DEPLOY_SUCCESS"
    x = np.random.default_rng(5).normal(size=(6, 4)).astype(np.float32)
    result = api_client.deployments.score(
        api_client.deployments.get_scoring_url(deployment), {"values": x.tolist()}
    )
    np.testing.assert_allclose(
        [r[0] for r in result["values"]], kf.expected_dense_softmax(x), rtol=1e-5, atol=1e-6
    )
    as_array = api_client.jobs.submit(deployment["id"], x, retention_days=1)  # sent as .npy
    array_result = api_client.jobs.wait(as_array["id"], timeout=60)
    assert array_result["status"] == "completed"
    assert api_client.jobs.result(as_array["id"]) == result
    job = api_client.jobs.submit(deployment["id"], x.tolist() * 30)
    seen: list[tuple[int, int]] = []
    done = api_client.jobs.wait(job["id"], timeout=60, on_progress=lambda d, t: seen.append((d, t)))
    assert done["status"] == "completed"
    assert seen[-1] == (180, 180)
    assert len(api_client.jobs.result(job["id"])["values"]) == 180
    with pytest.raises(ConflictError) as conflict:
        api_client.repository.delete(model["id"])
    assert conflict.value.code == "model_in_use"
    with pytest.raises(UnprocessableError) as invalid:
        api_client.jobs.submit(deployment["id"], [[1, 2, 3]])
    assert invalid.value.details["row"] == 0
    with pytest.raises(NotFoundError):
        api_client.jobs.get("nope")


def test_cli_store_list_deploy_score(cli: Cli, dense_h5: Path, tmp_path: Path) -> None:
    stored = cli.invoke(["models", "store", str(dense_h5), "--name", "cli model", "--quiet"])
    assert stored.exit_code == 0, stored.output
    model_id = stored.output.strip()
    listing = cli.invoke(["list", "models"])
    assert listing.exit_code == 0, listing.output
    lines = listing.output.splitlines()
    assert lines[0] == "Fetching the list of models ..."
    assert lines[1].split() == ["SI", "No", "Model", "Id", "Model", "Type", "Model", "Name"]
    assert lines[2].split()[:2] == ["1", model_id]
    assert "1 records found." in listing.output
    deployed = cli.invoke(["deploy", model_id, "cli deployment"])
    assert deployed.exit_code == 0, deployed.output
    assert f"Deploying the model with MODEL-ID '{model_id}'..." in deployed.output
    assert "DEPLOY_SUCCESS" in deployed.output and "Deploy model successful" in deployed.output
    deployment_id = next(
        line.split()[1] for line in deployed.output.splitlines() if line.startswith("DeploymentId")
    )
    payload = tmp_path / "payload.json"
    x = [[0.5, -1.0, 2.0, 0.0]]
    payload.write_text(
        json.dumps({"modelId": model_id, "deploymentId": deployment_id, "payload": {"values": x}})
    )
    scored = cli.invoke(["score", str(payload)])
    assert scored.exit_code == 0, scored.output
    body = scored.output.split("...\n", 1)[1].rsplit("OK", 1)[0]
    result = json.loads(body)
    np.testing.assert_allclose(
        result["values"][0][0], kf.expected_dense_softmax(np.array(x))[0], rtol=1e-5
    )
    assert scored.output.rstrip().endswith("Score request successful")


def test_cli_reports_server_errors(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "model.pkl"
    bad.write_bytes(b"not a model")
    result = cli.invoke(["models", "store", str(bad), "--name", "x"])
    assert result.exit_code == 1
    assert "unsupported_model_file" in result.output
    missing = cli.invoke(["jobs", "status", "nope"])
    assert missing.exit_code == 1 and "job_not_found" in missing.output


def test_cli_submits_a_npy_file(
    cli: Cli, api_client: Client, dense_h5: Path, tmp_path: Path
) -> None:
    model = api_client.repository.store_model(dense_h5, "npy")
    deployment = api_client.deployments.create(model["id"], name="npy")
    x = np.random.default_rng(6).normal(size=(40, 4)).astype(np.float32)
    np.save(tmp_path / "rows.npy", x)
    submitted = cli.invoke(
        ["jobs", "submit", deployment["id"], str(tmp_path / "rows.npy"), "--quiet", "--wait"],
    )
    assert submitted.exit_code == 0, submitted.output
    job_id = submitted.output.strip()
    fetched = cli.invoke(["jobs", "result", job_id, "-o", str(tmp_path / "out.json")])
    assert fetched.exit_code == 0, fetched.output
    values = json.loads((tmp_path / "out.json").read_text())["values"]
    np.testing.assert_allclose(
        [v[0] for v in values], kf.expected_dense_softmax(x), rtol=1e-5, atol=1e-6
    )


def test_results_stream_to_a_file(api_client: Client, dense_h5: Path, tmp_path: Path) -> None:
    model = api_client.repository.store_model(dense_h5, "stream")
    deployment = api_client.deployments.create(model["id"], name="stream")
    x = np.random.default_rng(8).normal(size=(120, 4)).astype(np.float32)
    job = api_client.jobs.wait(api_client.jobs.submit(deployment["id"], x)["id"], timeout=60)
    written = api_client.jobs.download_result(job["id"], tmp_path / "out")
    assert written == tmp_path / "out"
    assert json.loads(written.read_text()) == api_client.jobs.result(job["id"])
    named = api_client.jobs.download_result(job["id"], f"{tmp_path}/results/")
    assert named == tmp_path / "results" / f"{job['id']}.json"


def test_without_a_key_the_server_says_unauthorized(app: Flask, instance: NewInstance) -> None:
    transport = httpx.WSGITransport(app=app)
    with (
        Client("http://kscore.test", transport=transport) as anonymous,
        pytest.raises(UnauthorizedError) as caught,
    ):
        anonymous.repository.list_models()
    assert caught.value.status == 401 and caught.value.code == "unauthorized"
    result = CliRunner().invoke(
        kscore.cli.cli,
        ["--url", "http://kscore.test", "list", "models"],
        obj=kscore.cli.CliContext(transport=transport),
    )
    assert result.exit_code == 1 and "Bearer" in result.output
    keyed = CliRunner().invoke(
        kscore.cli.cli,
        ["--url", "http://kscore.test", "--api-key", instance.key.api_key, "list", "models"],
        obj=kscore.cli.CliContext(transport=transport),
    )
    assert keyed.exit_code == 0, keyed.output

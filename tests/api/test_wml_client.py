"""IBM's own Python client (watson-machine-learning-client 1.0.391), unchanged, against kscore.

A session fixture installs the client into a venv of its own; kscore runs live on a loopback
port (werkzeug's server in a thread) with the real in-process worker and Redis; the client
runs tests/api/wml_client_flow.py in its venv and the results are checked against numpy.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from flask import Flask
from werkzeug.serving import make_server

from shared.settings import Settings
from tests import keras_files as kf
from tests import keras_kinds as kk
from tests.api.test_wml import tgz_of
from tests.conftest import instance_store

CLIENT = "watson-machine-learning-client==1.0.391"
FLOW = Path(__file__).with_name("wml_client_flow.py")
README = Path(__file__).parents[2] / "README.md"
# What pip prints when it cannot reach an index that has the client.
UNREACHABLE = (
    "No matching distribution found",
    "Could not find a version that satisfies",
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "ConnectTimeoutError",
    "ReadTimeoutError",
)


@pytest.fixture(scope="session")
def wml_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Python of a venv holding IBM's client (with a setuptools that has pkg_resources)."""
    venv = tmp_path_factory.mktemp("wml-client") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", CLIENT, "setuptools<70"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if installed.returncode != 0:
        output = installed.stdout + installed.stderr
        if any(sign in output for sign in UNREACHABLE):
            last = output.strip().splitlines()[-1]
            pytest.skip(f"pip cannot reach a package index that has {CLIENT}: {last}")
        pytest.fail(f"pip install {CLIENT} failed:\n{output}")
    return python


@pytest.fixture
def live_url(app: Flask) -> Iterator[str]:
    """kscore's API served on a loopback port, as a user's URL (no trailing slash)."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def credentials(settings: Settings, client: redis.Redis, url: str, name: str) -> dict[str, str]:
    """A new instance's WML credentials, as a user puts them in the client."""
    new = instance_store(settings, client).create(name)
    return {
        "url": url,
        "username": new.instance.username,
        "password": new.password,
        "instance_id": new.instance.id,
    }


def assert_keras_rows(result: dict[str, Any], x: np.ndarray) -> None:
    expected = kf.expected_dense_softmax(x)
    assert result["fields"] == ["prediction", "prediction_classes", "probability"]
    values = result["values"]
    assert len(values) == len(x)
    np.testing.assert_allclose([v[0] for v in values], expected, rtol=1e-5, atol=1e-6)
    assert [v[1] for v in values] == expected.argmax(axis=1).tolist()
    np.testing.assert_allclose([v[2] for v in values], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.usefixtures("worker")
def test_ibm_client_stores_deploys_scores_and_deletes(
    wml_python: Path,
    live_url: str,
    settings: Settings,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    x = np.random.default_rng(11).normal(size=(5, 4)).astype(np.float32)
    model_tgz = tmp_path / "dense_keras.tgz"
    model_tgz.write_bytes(tgz_of(kf.tf_keras_sequential_h5_file(tmp_path)))
    broken_tgz = tmp_path / "broken.tgz"
    broken_tgz.write_bytes(tgz_of(kk.unknown_argument_h5(tmp_path)))
    args = {
        "credentials": credentials(settings, redis_client, live_url, "wml client"),
        "other_credentials": credentials(settings, redis_client, live_url, "someone else"),
        "tgz": str(model_tgz),
        "keras": str(kf.keras3_keras_file(tmp_path)),
        "broken_tgz": str(broken_tgz),
        "rows": x.tolist(),
    }
    args_file, out_file = tmp_path / "args.json", tmp_path / "out.json"
    args_file.write_text(json.dumps(args))
    ran = subprocess.run(
        [str(wml_python), "-W", "ignore", str(FLOW), str(args_file), str(out_file)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    out = json.loads(out_file.read_text())
    assert "crash" not in out, out.get("crash", "") + "\n" + ran.stdout[-4000:]

    assert_keras_rows(out["predictions"], x)
    assert out["model_type"] == "tensorflow-1.5"
    assert out["model_details"]["metadata"]["guid"] == out["model_uid"]
    assert out["status"] == "DEPLOY_SUCCESS"
    assert out["deployment_details"]["entity"]["status"] == "DEPLOY_SUCCESS"
    assert out["scoring_url"].startswith(live_url + "/v3/wml_instances/")
    listed = out["all_details"]
    assert out["model_uid"] in [m["metadata"]["guid"] for m in listed["models"]["resources"]]
    assert out["deployment_uid"] in [
        d["metadata"]["guid"] for d in listed["deployments"]["resources"]
    ]

    assert out["async_first_status"] == "DEPLOY_IN_PROGRESS"
    assert out["async_statuses"][-1] == "DEPLOY_SUCCESS", out["async_statuses"]
    assert_keras_rows(out["keras_predictions"], x)

    broken = out["broken_error"]
    assert broken is not None and broken.startswith("WMLClientError: Deployment creation failed")
    assert "units_v2" in broken and "written by Keras 2.2.4" in broken, broken
    assert out["broken_statuses"] == ["DEPLOY_FAILED"]

    assert "not found" in out["other_get_model"]
    assert "deployment_not_found" in out["other_get_deployment"]
    assert "instance_not_found" in out["other_score"]
    assert out["other_delete_deployment"] == "FAILED"
    assert "does not exist" in out["other_delete_model"]
    assert out["other_models"] == []

    assert out["deleted"] == ["SUCCESS"] * 6
    assert out["models_left"] == []


def test_the_readme_shows_the_snippet_the_client_runs() -> None:
    source = FLOW.read_text()
    start = source.index("# --- README start\n") + len("# --- README start\n")
    snippet = textwrap.dedent(source[start : source.index("    # --- README end")])
    assert snippet in README.read_text()

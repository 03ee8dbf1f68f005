"""`kscore up` for real: Redis, a Celery worker and gunicorn, driven by the CLI over HTTP,
and everything stored still there after a restart (what `make run` promises)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kscore.localredis import free_port
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "iris_dense.h5"
KSCORE = str(Path(sys.executable).with_name("kscore"))  # the console script, as users run it


class Up:
    """One `kscore up` process on a data directory."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = (data_dir.parent / "up.log").open("ab")
        self.process = subprocess.Popen(
            [
                KSCORE,
                "up",
                "--port",
                str(port),
                "--data-dir",
                str(data_dir),
            ],
            cwd=ROOT,
            env={k: v for k, v in os.environ.items() if not k.startswith("KSCORE_")},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self) -> None:
        def ready() -> bool:
            assert self.process.poll() is None, "kscore up exited early"
            try:
                return httpx.get(self.url + "/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 180, "kscore up to be ready", 0.5)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(60)
        finally:
            self.log.close()


@pytest.fixture
def up_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "data"
    # Nothing may outlive the test, whatever it asserted.
    subprocess.run(["pkill", "-f", str(tmp_path)], check=False)


def cli(url: str, *args: str) -> str:
    result = subprocess.run(
        [KSCORE, "--url", url, *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_make_run_stack_stores_deploys_scores_and_survives_a_restart(
    up_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    first = Up(up_dir, port)
    first.wait_ready()
    model_id = cli(first.url, "models", "store", str(EXAMPLE), "--name", "iris", "--quiet").strip()
    assert model_id in cli(first.url, "list", "models")
    deployment_id = cli(first.url, "deploy", model_id, "iris online", "--quiet").strip()
    payload = tmp_path / "payload.json"
    payload.write_text(
        json.dumps(
            {
                "modelId": model_id,
                "deploymentId": deployment_id,
                "payload": {"values": [[5.1, 3.5, 1.4, 0.2]]},
            }
        )
    )
    before = cli(first.url, "score", str(payload))
    assert "Score request successful" in before
    assert first.stop() == 0

    second = Up(up_dir, port)
    try:
        second.wait_ready()
        listing = cli(second.url, "list", "models")
        assert model_id in listing and "1 records found." in listing
        model = httpx.get(f"{second.url}/api/v1/models/{model_id}").json()
        assert model["name"] == "iris" and model["inputs"][0]["shape"] == [None, 4]
        deployment = httpx.get(f"{second.url}/api/v1/deployments/{deployment_id}").json()
        assert deployment["status"] == "DEPLOY_SUCCESS"
        # The new worker loads the model on first use and answers exactly as before.
        assert cli(second.url, "score", str(payload)) == before
    finally:
        assert second.stop() == 0

"""`kscore up` for real, as a subprocess: first with stand-in API and worker apps (the supervisor
is under test: banner, logs, Ctrl-C, a dying child), then with Redis, a Celery worker and
gunicorn driven by the CLI over HTTP, and everything stored still there after a restart (what
`make run` promises). Every test here starts a process stack: all are marked slow."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import redis

from kscore.localredis import free_port
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "iris_dense.h5"
# `python -m kscore` rather than the venv's console script, which may belong to another
# checkout; PYTHONPATH (or cwd) decides which kscore runs.
KSCORE = [sys.executable, "-m", "kscore"]


def _kill_tree(process: subprocess.Popen[str] | subprocess.Popen[bytes]) -> None:
    """Nothing may outlive a test, whatever it asserted: kill `kscore up` and every process
    under it (its children have process groups of their own, so its group would miss them)."""
    if process.poll() is not None:
        return
    try:
        family = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    process.kill()
    process.wait()
    for child in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


# `kscore up` end to end, with a stand-in API and worker app so it runs without the real server:
# the supervisor, not the server, is what is under test here.
FAKE_WSGI = """
from flask import Flask

app = Flask(__name__)


@app.get("/healthz")
def healthz():
    return {"status": "ok"}


@app.get("/readyz")
def readyz():
    return {"status": "ready", "workers": {"fake@host": "online,deploy,batch"}}
"""

FAKE_WORKER = """
import os

from celery import Celery

app = Celery("fake", broker=os.environ["KSCORE_REDIS_URL"])
"""


def _fake_project(root: Path, worker_source: str) -> None:
    for package, module, source in (("api", "wsgi", FAKE_WSGI), ("workers", "main", worker_source)):
        (root / package).mkdir()
        (root / package / "__init__.py").write_text("")
        (root / package / f"{module}.py").write_text(source)


def _start_up(root: Path, port: int) -> tuple[subprocess.Popen[str], queue.Queue[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KSCORE_")}
    process = subprocess.Popen(
        [*KSCORE, "up", "--port", str(port)],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        process_group=0,  # as a shell runs a foreground job: Ctrl-C goes to this group
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return process, lines


def _read_until(lines: queue.Queue[str], marker: str, timeout: float) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        seen.append(line)
        if marker in line:
            return seen
    raise AssertionError(f"{marker!r} not printed within {timeout} s; got:\n{''.join(seen)}")


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_up_starts_the_stack_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    _fake_project(tmp_path, FAKE_WORKER)
    port = free_port()
    process, lines = _start_up(tmp_path, port)
    try:
        banner = _read_until(lines, "kscore is up at", timeout=90)
        assert f"kscore is up at http://127.0.0.1:{port}  (API docs: " in banner[-1]
        output = _read_until(lines, "Press Ctrl-C", timeout=5)
        redis_line = next(line for line in output if "redis:" in line)
        redis_port = int(redis_line.split("redis://127.0.0.1:")[1].split("/")[0])
        assert redis.Redis(port=redis_port).ping()
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok"}
        assert (tmp_path / ".kscore" / "logs" / "api.log").exists()
        assert (tmp_path / ".kscore" / "logs" / "worker1.log").exists()
        credentials = tmp_path / ".kscore" / "credentials.json"
        assert any(str(credentials) in line for line in output)
        assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
        assert (tmp_path / ".kscore" / "stack.json").exists()

        os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        assert process.wait(timeout=30) == 0
        assert not _port_open(port)
        assert not _port_open(redis_port)
        assert (tmp_path / ".kscore" / "redis" / "appendonly.aof").exists()
        assert not (tmp_path / ".kscore" / "stack.json").exists()  # no stack runs any more
    finally:
        _kill_tree(process)


@pytest.mark.slow
def test_up_reports_a_child_that_dies_and_stops_the_rest(tmp_path: Path) -> None:
    _fake_project(tmp_path, 'raise RuntimeError("broker misconfigured")\n')
    port = free_port()
    process, lines = _start_up(tmp_path, port)
    try:
        assert process.wait(timeout=90) == 1
        output = "".join(_read_until(lines, "stopping the others", timeout=5))
        assert "worker1 exited with code" in output
        assert "broker misconfigured" in output
        assert not _port_open(port)
    finally:
        _kill_tree(process)


class Up:
    """One `kscore up` process on a data directory."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.url = f"http://127.0.0.1:{port}"
        self.log = (data_dir.parent / "up.log").open("ab")
        self.process = subprocess.Popen(
            [*KSCORE, "up", "--port", str(port), "--data-dir", str(data_dir)],
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

    def kill(self) -> None:
        _kill_tree(self.process)
        self.log.close()


@pytest.fixture
def ups() -> Iterator[list[Up]]:
    """The `kscore up` processes a test starts; killed (with their children) after it."""
    started: list[Up] = []
    yield started
    for up in started:
        up.kill()


def cli(up: Up, *args: str, url: str | None = None) -> str:
    """``kscore --url ... ARGS`` with no key given: it takes the one `kscore up` wrote."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KSCORE_")}
    env["KSCORE_DATA_DIR"] = str(up.data_dir)
    result = subprocess.run(
        [*KSCORE, "--url", url or up.url, *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.slow
def test_make_run_stack_stores_deploys_scores_and_survives_a_restart(
    ups: list[Up], tmp_path: Path
) -> None:
    up_dir = tmp_path / "data"
    port = free_port()
    first = Up(up_dir, port)
    ups.append(first)
    first.wait_ready()
    credentials_file = up_dir / "credentials.json"
    assert stat.S_IMODE(credentials_file.stat().st_mode) == 0o600
    credentials = json.loads(credentials_file.read_text())
    assert set(credentials) == {"url", "instance_id", "username", "password", "api_key"}
    assert credentials["url"] == first.url and credentials["instance_id"] == "default"
    headers = {"Authorization": f"Bearer {credentials['api_key']}"}
    refused = httpx.get(f"{first.url}/api/v1/models")
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")

    model_id = cli(first, "models", "store", str(EXAMPLE), "--name", "iris", "--quiet").strip()
    assert model_id in cli(first, "list", "models")
    deployment_id = cli(first, "deploy", model_id, "iris online", "--quiet").strip()
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
    before = cli(first, "score", str(payload))
    assert "Score request successful" in before

    # An instance made beside the running stack, through its Redis, sees none of default's.
    team = json.loads(
        cli(
            first,
            "admin",
            "create-instance",
            "--name",
            "team-a",
            "--data-dir",
            str(up_dir),
            "--json",
        )
    )
    assert team["url"] == first.url
    team_headers = {"Authorization": f"Bearer {team['api_key']}"}
    assert httpx.get(f"{first.url}/api/v1/models", headers=team_headers).json()["total"] == 0
    stolen = httpx.get(f"{first.url}/api/v1/models/{model_id}", headers=team_headers)
    assert stolen.status_code == 404
    assert first.stop() == 0

    second = Up(up_dir, port)
    ups.append(second)
    try:
        second.wait_ready()
        # The first start's credentials still hold.
        assert json.loads(credentials_file.read_text()) == credentials
        listing = cli(second, "list", "models")
        assert model_id in listing and "1 records found." in listing
        model = httpx.get(f"{second.url}/api/v1/models/{model_id}", headers=headers).json()
        assert model["name"] == "iris" and model["inputs"][0]["shape"] == [None, 4]
        deployment = httpx.get(
            f"{second.url}/api/v1/deployments/{deployment_id}", headers=headers
        ).json()
        assert deployment["status"] == "DEPLOY_SUCCESS"
        # The new worker loads the model on first use and answers exactly as before.
        assert cli(second, "score", str(payload)) == before
    finally:
        assert second.stop() == 0


def _family(process: subprocess.Popen[str]) -> list[psutil.Process]:
    return psutil.Process(process.pid).children(recursive=True)


def _gone(processes: list[psutil.Process]) -> bool:
    return not [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.slow
def test_closing_the_terminal_stops_every_process_of_up(tmp_path: Path) -> None:
    _fake_project(tmp_path, FAKE_WORKER)
    port = free_port()
    process, lines = _start_up(tmp_path, port)
    try:
        _read_until(lines, "Press Ctrl-C", timeout=90)
        family = _family(process)
        commands = " ".join(" ".join(p.cmdline()) for p in family)
        assert all(name in commands for name in ("redis-server", "celery", "gunicorn"))
        groups = {os.getpgid(p.pid) for p in family}
        os.killpg(process.pid, signal.SIGHUP)  # what closing the terminal sends
        assert process.wait(timeout=30) == 0
        wait_for(lambda: _gone(family), 15, "every child of kscore up to exit")
        for group in groups:  # nothing left in any of the children's process groups
            with pytest.raises(ProcessLookupError):
                os.killpg(group, 0)
        assert not _port_open(port)
    finally:
        _kill_tree(process)


@pytest.mark.slow
def test_children_exit_when_up_itself_is_killed(tmp_path: Path) -> None:
    _fake_project(tmp_path, FAKE_WORKER)
    port = free_port()
    process, lines = _start_up(tmp_path, port)
    try:
        _read_until(lines, "Press Ctrl-C", timeout=90)
        family = _family(process)
        process.kill()  # no handler runs: only the kernel can tell the children
        process.wait(10)
        wait_for(lambda: _gone(family), 30, "the children of a killed kscore up to exit")
        assert not _port_open(port)
    finally:
        _kill_tree(process)


@pytest.mark.slow
def test_a_second_up_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    _fake_project(tmp_path, FAKE_WORKER)
    first, lines = _start_up(tmp_path, free_port())
    try:
        _read_until(lines, "Press Ctrl-C", timeout=90)
        env = {k: v for k, v in os.environ.items() if not k.startswith("KSCORE_")}
        second = subprocess.run(
            [*KSCORE, "up", "--port", str(free_port())],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode != 0
        assert f"in use by another kscore up (pid {first.pid})" in second.stderr
        assert first.poll() is None  # the first one is untouched
    finally:
        _kill_tree(first)


# A stand-in worker app with one task, configured as shared.queueing configures kscore's: task
# events on, so Flower sees what the worker does.
FAKE_WORKER_WITH_TASK = """
import os

from celery import Celery

app = Celery("fake", broker=os.environ["KSCORE_REDIS_URL"])
app.conf.update(worker_send_task_events=True, task_send_sent_event=True, task_ignore_result=True)


@app.task(name="fake.add")
def add(a, b):
    return a + b
"""


@pytest.mark.slow
def test_up_flower_answers_with_auth_only_and_shows_a_task(tmp_path: Path) -> None:
    _fake_project(tmp_path, FAKE_WORKER_WITH_TASK)
    port, flower_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KSCORE_")}
    env["KSCORE_FLOWER_BASIC_AUTH"] = "ops:s3cret-flower"
    process = subprocess.Popen(
        [*KSCORE, "up", "--port", str(port), "--flower", "--flower-port", str(flower_port)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        process_group=0,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        output = _read_until(lines, "Press Ctrl-C", timeout=90)
        assert any(f"flower: http://127.0.0.1:{flower_port}" in line for line in output)
        redis_line = next(line for line in output if "redis:" in line)
        redis_url = redis_line.split("redis:", 1)[1].split()[0]
        base = f"http://127.0.0.1:{flower_port}"

        def answers() -> bool:
            try:
                return httpx.get(f"{base}/api/workers", timeout=2).status_code == 401
            except httpx.HTTPError:
                return False

        wait_for(answers, 60, "Flower to answer")
        assert httpx.get(f"{base}/api/tasks", auth=("ops", "wrong")).status_code == 401
        auth = ("ops", "s3cret-flower")
        assert httpx.get(f"{base}/api/tasks", auth=auth).status_code == 200

        from celery import Celery

        sender = Celery("sender", broker=redis_url, set_as_current=False)
        sender.conf.task_send_sent_event = True
        sender.send_task("fake.add", args=(2, 3), queue="batch")

        def task_seen() -> bool:
            tasks = httpx.get(f"{base}/api/tasks", auth=auth, timeout=5).json()
            return any(
                t.get("name") == "fake.add" and t.get("state") == "SUCCESS" for t in tasks.values()
            )

        wait_for(task_seen, 60, "the task to show up in Flower as SUCCESS", 0.5)
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=30) == 0
        assert not _port_open(flower_port)
    finally:
        _kill_tree(process)

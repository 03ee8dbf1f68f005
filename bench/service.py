"""The processes the benchmark measures and the HTTP calls it times.

kscore (a throwaway Redis, the API under gunicorn, Celery workers) and the synchronous peer
(:mod:`bench.peer`) all run under the supervisor ``kscore up`` uses, with their logs in the
run's temporary directory; :class:`RssSampler` watches their memory while a job runs. The
routes that issue 10 adds (datasets, ``?format=npy`` results) may not be on this branch yet:
each caller learns that as :class:`RouteMissing` and reports the row as skipped.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

from bench.peer import MODELS_ENV, peer_command
from kscore import Client
from kscore.devstack import DevStackError, Supervisor, free_port, public_url
from kscore.errors import ApiError
from kscore.processes import Child, stop_children
from shared.instance_store import open_instance_store

KEY_PREFIX = "bench"
API_PROCESSES = 2  # as `kscore up` runs it
START_TIMEOUT = 180.0
DEPLOY_TIMEOUT = 180.0
JOB_TIMEOUT = 1800.0
STOP_TIMEOUT = 20.0
POLL_SECONDS = 0.1
NPY_TYPE = "application/x-npy"
# A route a branch without it answers with: unknown path, method, or query/body field.
MISSING_STATUSES = {400, 404, 405, 406, 415, 422}


class BenchError(RuntimeError):
    """The service answered, but not as its API promises."""


class RouteMissing(Exception):
    """A route of the contract is not on this server (yet); the message names it."""


class BenchClient(Client):
    """A kscore client that remembers its API key (the load generator sends it too)."""

    def __init__(self, url: str, api_key: str, timeout: float) -> None:
        super().__init__(url, api_key=api_key, timeout=timeout)
        self.api_key = api_key


class BenchSupervisor(Supervisor):
    """kscore's supervisor, which also starts the peer (stopped first, with the API) and can
    retire workers (stopped, their logs kept for the failure report)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retired: list[Child] = []

    def start_peer(self, port: int, models_dir: Path) -> Child:
        """Start the peer under gunicorn on 127.0.0.1:``port`` serving ``models_dir``."""
        env = {MODELS_ENV: str(models_dir)}
        return self._start("peer", "api", peer_command("127.0.0.1", port), env)

    def workers(self) -> list[Child]:
        """The worker children still running."""
        return [c for c in self.children if c.role == "worker" and c.running()]

    def retire(self, children: list[Child]) -> None:
        """Stop ``children`` and stop watching them (their logs stay in the failure report)."""
        stop_children(children, STOP_TIMEOUT, warn=self.warn)
        self.retired.extend(children)
        self.children = [c for c in self.children if c not in children]

    def log_tails(self, lines: int = 40) -> str:
        """The end of every child's log, retired workers' included, for a failure report."""
        retired = [
            f"--- {c.name} ({c.log_path}, stopped) ---\n{c.log_tail(lines)}" for c in self.retired
        ]
        return "\n".join([*retired, super().log_tails(lines)])


def start_service(stack: BenchSupervisor, tmp: Path, env: dict[str, str]) -> BenchClient:
    """Start Redis, the API (API_PROCESSES gunicorn processes) and one worker under ``stack``
    with all state in ``tmp``; a client of the API once ``/readyz`` lists the worker.

    Raises DevStackError (ChildExited with its log tail) if a process dies or the service is
    not ready within START_TIMEOUT seconds.
    """
    stack.env.update(env)
    stack.env["KSCORE_DATA_DIR"] = str(tmp)
    stack.env["KSCORE_KEY_PREFIX"] = KEY_PREFIX
    # The bench measures speed: 64 clients pass KSCORE_RATE_LIMIT's default per instance.
    stack.env["KSCORE_RATE_LIMIT"] = "off"
    stack.env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    redis_url = stack.start_redis(tmp / "redis", persist=False)
    api_key = open_instance_store(redis_url, KEY_PREFIX).create("bench").key.api_key
    port = free_port()
    stack.start_api(port=port, workers=API_PROCESSES)
    stack.start_worker()
    url = public_url("127.0.0.1", port)
    stack.wait_ready(url, timeout=START_TIMEOUT, workers=1)
    return BenchClient(url, api_key, timeout=600.0)


def start_peer(stack: BenchSupervisor, models_dir: Path) -> str:
    """Start the peer and wait for its ``/healthz``; its base URL.

    Raises ChildExited if it dies, DevStackError if it does not answer in START_TIMEOUT s.
    """
    port = free_port()
    stack.start_peer(port, models_dir)
    url = public_url("127.0.0.1", port)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        stack.check_alive()
        try:
            if httpx.get(f"{url}/healthz", timeout=2.0).status_code == 200:
                return url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise DevStackError(f"The peer at {url} did not answer within {START_TIMEOUT:g} s.")
        time.sleep(0.25)


def replace_workers(stack: BenchSupervisor, client: Client, count: int, tf_threads: int) -> None:
    """Stop the running workers and start ``count`` fresh ones with ``tf_threads`` TensorFlow
    threads each (as ``count`` machines of that size would have); waits until ``/readyz``
    lists all of the new ones."""
    stack.retire(stack.workers())
    first = len(stack.retired) + 1
    names = [f"worker{first + n}" for n in range(count)]
    for name in names:
        stack.start_worker(name, env={"KSCORE_TF_THREADS": str(tf_threads)})
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        stack.check_alive()
        try:
            live = client.ready().get("workers") or {}
        except ApiError:  # 503 until one of them is consuming
            live = {}
        if all(any(key.startswith(f"{name}@") for key in live) for name in names):
            return
        if time.monotonic() > deadline:
            raise DevStackError(f"/readyz did not list {names} within {START_TIMEOUT:g} s.")
        time.sleep(0.25)


def deploy(client: Client, path: Path, name: str) -> dict[str, Any]:
    """Upload a model file, deploy it and wait for DEPLOY_SUCCESS; the deployment's details.

    Raises DeploymentFailedError (with the server's reason) or WaitTimeoutError.
    """
    model = client.repository.store_model(path, name)
    return client.deployments.create(model["id"], name, timeout=DEPLOY_TIMEOUT)


# --- memory --------------------------------------------------------------------------------


@dataclass
class RolePeak:
    """One role's resident memory in bytes: at the start, and the peaks while sampled."""

    baseline_tree: int = 0
    peak_tree: int = 0
    peak_process: int = 0


class RssSampler:
    """Samples the RSS of each role's process trees (API, worker, redis) every ``interval``
    seconds in a thread, while used as a context manager.

    The trees are listed again every ``tree_interval`` seconds only: listing a tree walks every
    process on the machine (psutil reads /proc for each), about 3 ms of CPU, where reading
    the known processes' RSS costs a few tens of microseconds; sampled every 50 ms, the walk
    took a tenth of a core from the job it measured.
    """

    def __init__(
        self, stack: Supervisor, interval: float = 0.05, tree_interval: float = 1.0
    ) -> None:
        self.stack = stack
        self.interval = interval
        self.tree_interval = tree_interval
        self.peaks: dict[str, RolePeak] = {}
        self.samples = 0
        self._trees: dict[tuple[str, str], list[psutil.Process]] = {}
        self._listed_at = -math.inf
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _list_trees(self) -> None:
        trees: dict[tuple[str, str], list[psutil.Process]] = {}
        for child in self.stack.children:
            if child.name == "peer" or not child.running():
                continue
            try:
                root = psutil.Process(child.pid)
                trees[(child.role, child.name)] = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
        self._trees = trees
        self._listed_at = time.monotonic()

    def _sample(self) -> dict[str, tuple[int, int]]:
        if time.monotonic() - self._listed_at >= self.tree_interval:
            self._list_trees()
        totals: dict[str, tuple[int, int]] = {}
        for (role, _), processes in self._trees.items():
            sizes = []
            for process in processes:
                with contextlib.suppress(psutil.Error):
                    sizes.append(process.memory_info().rss)
            tree, biggest = totals.get(role, (0, 0))
            totals[role] = (tree + sum(sizes), max([biggest, *sizes]))
        return totals

    def _record(self, totals: dict[str, tuple[int, int]]) -> None:
        for role, (tree, biggest) in totals.items():
            peak = self.peaks.setdefault(role, RolePeak(baseline_tree=tree))
            peak.peak_tree = max(peak.peak_tree, tree)
            peak.peak_process = max(peak.peak_process, biggest)
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._record(self._sample())

    def __enter__(self) -> RssSampler:
        self._record(self._sample())
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._record(self._sample())

    def as_dict(self) -> dict[str, dict[str, int]]:
        """Per role: baseline_tree, peak_tree, peak_process (bytes)."""
        return {role: vars(peak).copy() for role, peak in self.peaks.items()}


# --- jobs ----------------------------------------------------------------------------------


@dataclass
class JobTiming:
    """One job timed from the client, in seconds: upload (dataset or body), submit, the wait
    until it completed, the download of its result; with the server's own run time."""

    job_id: str
    rows: int
    upload_s: float = 0.0
    submit_s: float = 0.0
    wait_s: float = 0.0
    download_s: float = 0.0
    server_run_s: float | None = None
    input_bytes: int = 0
    result_bytes: int = 0
    result_format: str = "json"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total_s(self) -> float:
        """Upload to result downloaded."""
        return self.upload_s + self.submit_s + self.wait_s + self.download_s

    @property
    def rows_per_s(self) -> float:
        """End-to-end throughput."""
        return self.rows / self.total_s if self.total_s > 0 else 0.0

    def split(self) -> str:
        """``upload 1.2 s, run 3.4 s, download 0.5 s`` (run = submit + wait)."""
        return (
            f"upload {self.upload_s:.1f} s, run {self.submit_s + self.wait_s:.1f} s, "
            f"download {self.download_s:.1f} s"
        )


def _missing(exc: ApiError, what: str) -> RouteMissing | None:
    return RouteMissing(f"{what} not available") if exc.status in MISSING_STATUSES else None


def datasets_available(client: Client) -> bool:
    """Whether the server has ``/api/v1/datasets`` (a 404/405 says it has not)."""
    try:
        client.request("GET", "/api/v1/datasets", params={"limit": 1})
    except ApiError as exc:
        if exc.status in {404, 405}:
            return False
        raise
    return True


def upload_dataset(client: Client, path: Path, deployment_id: str) -> tuple[dict[str, Any], float]:
    """Stream the .npy file at ``path`` to ``POST /api/v1/datasets`` (validated for the
    deployment); the dataset document and the seconds it took.

    Raises RouteMissing if the server has no such route, ApiError for another refusal.
    """
    started = time.perf_counter()
    params = {"format": "npy", "deployment_id": deployment_id, "name": path.stem}
    try:
        with path.open("rb") as body:
            response = client.request(
                "POST",
                "/api/v1/datasets",
                content=body,
                params=params,
                headers={"Content-Type": NPY_TYPE},
            )
    except ApiError as exc:
        raise _missing(exc, "POST /api/v1/datasets") or exc from exc
    return response.json(), time.perf_counter() - started


def delete_dataset(client: Client, dataset_id: str) -> None:
    """``DELETE /api/v1/datasets/{id}`` so Redis does not keep every copy; a refusal (the
    job still holds it, or no DELETE on this server) is left alone: Redis is thrown away."""
    with contextlib.suppress(ApiError):
        client.request("DELETE", f"/api/v1/datasets/{dataset_id}")


def wait_job(client: Client, job: dict[str, Any], timing: JobTiming) -> dict[str, Any]:
    """Poll until the job completes, recording the wait and the server's run time."""
    started = time.perf_counter()
    done = client.jobs.wait(job["id"], timeout=JOB_TIMEOUT, interval=POLL_SECONDS)
    timing.wait_s = time.perf_counter() - started
    timing.server_run_s = seconds_between(done.get("started_at"), done.get("finished_at"))
    return done


def run_dataset_job(
    client: Client, deployment_id: str, dataset_id: str, rows: int, dest: Path
) -> tuple[JobTiming, np.ndarray | None]:
    """Submit ``{"dataset_id"}``, wait, download the result as .npy into ``dest``; the timing
    and the predictions (None when ``?format=npy`` is not available: then the JSON result is
    downloaded and timed instead, and ``timing.result_format`` says so).

    Raises RouteMissing if jobs do not take a dataset_id, JobFailedError if the job fails.
    """
    timing = JobTiming(job_id="", rows=rows)
    started = time.perf_counter()
    try:
        job = client.send_json(
            "POST", f"/api/v1/deployments/{deployment_id}/jobs", {"dataset_id": dataset_id}
        ).json()
    except ApiError as exc:
        raise _missing(exc, 'jobs with {"dataset_id"}') or exc from exc
    timing.job_id = job["id"]
    timing.submit_s = time.perf_counter() - started
    done = wait_job(client, job, timing)
    started = time.perf_counter()
    predictions = None
    try:
        predictions = download_npy(client, done["result_url"], dest)
        timing.result_format = "npy"
        timing.result_bytes = dest.stat().st_size
    except RouteMissing as exc:
        timing.extra["npy"] = str(exc)
        response = client.request("GET", done["result_url"])
        timing.result_bytes = len(response.content)
        predictions = np.asarray([row[0] for row in response.json()["values"]], np.float32)
        timing.result_format = "json"
    timing.download_s = time.perf_counter() - started
    return timing, predictions


def download_npy(client: Client, result_url: str, dest: Path) -> np.ndarray:
    """Download ``result_url?format=npy`` into ``dest``; the array (memory-mapped).

    Raises RouteMissing if the server answers anything but an .npy body.
    """
    what = "GET /api/v1/jobs/{id}/result?format=npy"
    try:
        response = client.request("GET", result_url, params={"format": "npy"})
    except ApiError as exc:
        raise _missing(exc, what) or exc from exc
    if NPY_TYPE not in response.headers.get("content-type", ""):
        raise RouteMissing(
            f"{what} not available (answered {response.headers.get('content-type')})"
        )
    dest.write_bytes(response.content)
    return np.load(dest, mmap_mode="r")


def run_json_job(
    client: Client, deployment_id: str, body: bytes, rows: int
) -> tuple[JobTiming, np.ndarray]:
    """Submit rows as a JSON body ``{"values": ...}``, wait, download the JSON result; the
    timing and the ``prediction`` column as an array.

    Raises JobFailedError if the job fails, BenchError if the result has the wrong row count.
    """
    timing = JobTiming(job_id="", rows=rows, input_bytes=len(body))
    started = time.perf_counter()
    job = client.jobs.submit_file(deployment_id, body, "application/json")
    timing.job_id = job["id"]
    timing.upload_s = time.perf_counter() - started  # the body is the upload
    done = wait_job(client, job, timing)
    started = time.perf_counter()
    response = client.request("GET", done["result_url"])
    values = response.json()["values"]
    timing.download_s = time.perf_counter() - started
    timing.result_bytes = len(response.content)
    if len(values) != rows:
        raise BenchError(f"Job {job['id']} result has {len(values)} rows for {rows} input rows.")
    return timing, np.asarray([row[0] for row in values], dtype=np.float32)


def seconds_between(start: str | None, end: str | None) -> float | None:
    """Seconds between two of the server's ISO timestamps (None if either is missing)."""
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()

"""`make bench`: the real service (Redis, Celery workers, gunicorn) next to the same model called directly.

    python -m bench.run                # 200 online requests per size, a 10,000-row job
    python -m bench.run --quick        # a smoke test in about a minute
    python -m bench.run --workers 2    # also run the job on 2 workers and print the speed-up

Every service number is printed next to a baseline measured in the same run on the same
machine (the model loaded from the same .keras file, called in this process), as a ratio.
Nothing here asserts a threshold: the numbers are for reading. The table also goes to
``bench/results/latest.json``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.direct import (
    DIRECT_SLICES,
    build_model,
    direct_throughput,
    load_model,
    make_rows,
    score_sliced,
    time_direct_calls,
)
from kscore import Client, KscoreError
from kscore.devstack import DevStackError, Supervisor, free_port, public_url
from shared.instance_store import open_instance_store

ROOT = Path(__file__).resolve().parents[1]
RESULTS_PATH = Path(__file__).resolve().parent / "results" / "latest.json"
KEY_PREFIX = "bench"
JSON_TYPE = "application/json"
NPY_TYPE = "application/x-npy"
ONLINE_SIZES = (1, 32)
START_TIMEOUT = 120.0
DEPLOY_TIMEOUT = 180.0
JOB_TIMEOUT = 1800.0
STOP_TIMEOUT = 20.0
POLL_SECONDS = 0.02
# float32 round-off between two TF processes is ~1e-7; more than this means different answers.
PREDICTION_TOLERANCE = 1e-4


class BenchError(RuntimeError):
    """The service answered, but not as its API promises."""


@dataclass(frozen=True)
class Plan:
    """What one run measures."""

    quick: bool
    workers: int
    requests: int
    warmup: int
    job_rows: int
    npy_rows: int
    chunk_rows: int | None
    direct_repeats: int
    keep_tmp: bool
    tf_threads: int | None = None


def say(message: str = "") -> None:
    """Print a progress line now, even when stdout is a pipe."""
    print(message, flush=True)


# --- the service ---------------------------------------------------------------------------


def start_service(plan: Plan, tmp: Path, stack: Supervisor, workers: int) -> Client:
    """Start Redis, the API and ``workers`` workers under ``stack`` with all state in ``tmp``;
    a client of the API once ``/readyz`` lists every worker.

    Raises DevStackError (ChildExited with its log tail) if a process dies or the service is
    not ready within START_TIMEOUT seconds.
    """
    stack.env["KSCORE_DATA_DIR"] = str(tmp)
    stack.env["KSCORE_KEY_PREFIX"] = KEY_PREFIX
    # It measures the service's speed: sequential online requests pass KSCORE_RATE_LIMIT's
    # default of 50 per second per instance.
    stack.env["KSCORE_RATE_LIMIT"] = "off"
    stack.env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if plan.chunk_rows is not None:
        stack.env["KSCORE_CHUNK_ROWS"] = str(plan.chunk_rows)
    if plan.tf_threads is not None:
        stack.env["KSCORE_TF_THREADS"] = str(plan.tf_threads)
    redis_url = stack.start_redis(tmp / "redis", persist=False)
    api_key = open_instance_store(redis_url, KEY_PREFIX).create("bench").key.api_key
    port = free_port()
    stack.start_api(port=port, workers=1)
    for _ in range(workers):
        stack.start_worker()
    url = public_url("127.0.0.1", port)
    stack.wait_ready(url, timeout=START_TIMEOUT, workers=workers)
    return Client(url, api_key=api_key, timeout=300.0)


def add_workers(stack: Supervisor, client: Client, count: int) -> None:
    """Start ``count`` more workers and wait until ``/readyz`` lists all of them."""
    for _ in range(count):
        stack.start_worker()
    workers = sum(c.role == "worker" for c in stack.children)
    stack.wait_ready(client.url, timeout=START_TIMEOUT, workers=workers)


def upload_and_deploy(client: Client, model_path: Path) -> dict[str, Any]:
    """Upload the model file, deploy it and wait for DEPLOY_SUCCESS; the deployment's details.

    Raises DeploymentFailedError (with the server's reason) or WaitTimeoutError after
    DEPLOY_TIMEOUT seconds.
    """
    model = client.repository.store_model(model_path, "bench-cnn")
    say(f"uploaded model {model['id']}")
    deployment = client.deployments.create(model["id"], "bench-cnn", timeout=DEPLOY_TIMEOUT)
    say(f"deployed {deployment['id']}")
    return deployment


@dataclass
class JobRun:
    """One batch job, timed from the client: submit, wait for completion, download."""

    job_id: str
    body_format: str
    rows: int
    workers: int
    request_bytes: int
    result_bytes: int
    submit_s: float
    wait_s: float
    download_s: float
    scoring_s: float | None
    values: list[Any] = field(repr=False)

    @property
    def total_s(self) -> float:
        """Submit to result downloaded."""
        return self.submit_s + self.wait_s + self.download_s

    @property
    def rows_per_s(self) -> float:
        """End-to-end throughput."""
        return self.rows / self.total_s


def run_job(
    client: Client, deployment_id: str, body: bytes, body_format: str, rows: int, workers: int
) -> JobRun:
    """Submit one job, poll it until it completes, download its result; time each phase.

    Raises JobFailedError if the job fails, WaitTimeoutError after JOB_TIMEOUT seconds,
    BenchError if the result does not have one row per input row.
    """
    content_type = NPY_TYPE if body_format == "npy" else JSON_TYPE
    started = time.perf_counter()
    job = client.jobs.submit_file(deployment_id, body, content_type)
    submitted = time.perf_counter()
    job = client.jobs.wait(job["id"], timeout=JOB_TIMEOUT, interval=POLL_SECONDS)
    completed = time.perf_counter()
    response = client.request("GET", job["result_url"])
    downloaded = time.perf_counter()
    values = response.json().get("values", [])
    if len(values) != rows:
        raise BenchError(f"Job {job['id']} result has {len(values)} rows for {rows} input rows.")
    return JobRun(
        job_id=job["id"],
        body_format=body_format,
        rows=rows,
        workers=workers,
        request_bytes=len(body),
        result_bytes=len(response.content),
        submit_s=submitted - started,
        wait_s=completed - submitted,
        download_s=downloaded - completed,
        scoring_s=seconds_between(job.get("started_at"), job.get("finished_at")),
        values=values,
    )


def seconds_between(start: str | None, end: str | None) -> float | None:
    """Seconds between two of the server's ISO timestamps (None if either is missing)."""
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def time_online(
    client: Client, scoring_url: str, body: bytes, requests: int, warmup: int
) -> tuple[list[float], Any]:
    """Seconds per sequential online request (after ``warmup``), and one answer's JSON.

    The body is sent as it is (encoded before the clock starts); an answer other than 2xx
    raises the client's ApiError.
    """
    answer = None
    headers = {"Content-Type": JSON_TYPE}
    for _ in range(warmup):
        answer = client.request("POST", scoring_url, content=body, headers=headers).json()
    seconds = []
    for _ in range(requests):
        started = time.perf_counter()
        client.request("POST", scoring_url, content=body, headers=headers)
        seconds.append(time.perf_counter() - started)
    if answer is None:
        answer = client.request("POST", scoring_url, content=body, headers=headers).json()
    return seconds, answer


# --- measuring and reporting ---------------------------------------------------------------


def to_body(x: np.ndarray) -> bytes:
    """The scoring payload ``{"values": [row, ...]}`` as JSON bytes."""
    return json.dumps({"values": x.tolist()}, separators=(",", ":")).encode()


def to_npy(x: np.ndarray) -> bytes:
    """The same rows as a .npy body (float32, as the model takes them)."""
    buffer = io.BytesIO()
    np.save(buffer, x.astype(np.float32))
    return buffer.getvalue()


def percentiles_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50, p99 and mean in milliseconds."""
    ms = np.asarray(seconds) * 1000.0
    return {
        "p50": float(np.percentile(ms, 50)),
        "p99": float(np.percentile(ms, 99)),
        "mean": float(ms.mean()),
    }


def max_abs_diff(values: list[Any], expected: np.ndarray) -> float:
    """Largest difference between the service's ``prediction`` column and direct outputs."""
    predictions = np.asarray([row[0] for row in values], dtype=np.float64)
    return float(np.max(np.abs(predictions - expected)))


def note_diff(what: str, diff: float) -> None:
    """Print how far the service's predictions are from the direct ones."""
    flag = "" if diff <= PREDICTION_TOLERANCE else "   <-- WARNING: service differs from direct"
    say(f"{what}: max |service - direct| = {diff:.2e}{flag}")


def measure(plan: Plan, tmp: Path, stack: Supervisor) -> dict[str, Any]:
    """Run every measurement, starting the service under ``stack``; the report as a JSON-ready
    dict. Raises DevStackError or KscoreError when the service fails (see main)."""
    model_path = tmp / "bench-cnn.keras"
    build_model(model_path)
    model = load_model(model_path)
    # JSON bodies come from the 3-decimal float64 rows (short text); the model gets float32.
    rows = make_rows(max(plan.job_rows, plan.npy_rows, *ONLINE_SIZES))
    x = rows.astype(np.float32)
    x_job = x[: plan.job_rows]
    say(f"model saved to {model_path} ({model_path.stat().st_size} bytes)")

    # Baselines first, while no service process competes for the 2 cores.
    direct_online: dict[int, list[float]] = {}
    for size in ONLINE_SIZES:
        say(f"direct: {plan.requests} calls with {size} row(s)")
        direct_online[size] = time_direct_calls(model, x[:size], plan.requests, plan.warmup)
    say(f"direct: {plan.job_rows} rows, best of {plan.direct_repeats} per method")
    direct_rates = direct_throughput(model, x_job, plan.direct_repeats)
    for name, rate in direct_rates.items():
        say(f"  {name:32} {rate:10.0f} rows/s")
    best_method = max(direct_rates, key=lambda name: direct_rates[name])
    expected = score_sliced(model, x[: max(plan.job_rows, plan.npy_rows)], DIRECT_SLICES[-1])
    expected = expected.astype(np.float64)
    bodies = {size: to_body(rows[:size]) for size in ONLINE_SIZES}
    job_body = to_body(rows[: plan.job_rows])
    npy_body = to_npy(rows[: plan.npy_rows])
    say(f"job request body: {len(job_body) / 1e6:.1f} MB of JSON for {plan.job_rows} rows")
    say(f"job request body: {len(npy_body) / 1e6:.1f} MB of .npy for {plan.npy_rows} rows")

    say(f"starting Redis, API and 1 worker in {tmp}")
    with start_service(plan, tmp, stack, workers=1) as client:
        deployment = upload_and_deploy(client, model_path)

        online = []
        for size in ONLINE_SIZES:
            say(f"service: {plan.requests} online requests with {size} row(s)")
            seconds, answer = time_online(
                client, deployment["scoring_url"], bodies[size], plan.requests, plan.warmup
            )
            diff = max_abs_diff(answer["values"], expected[:size])
            note_diff(f"online {size} row(s)", diff)
            svc, direct = percentiles_ms(seconds), percentiles_ms(direct_online[size])
            online.append(
                {
                    "rows": size,
                    "requests": plan.requests,
                    "service_ms": svc,
                    "direct_ms": direct,
                    "ratio_p50": svc["p50"] / direct["p50"],
                    "ratio_p99": svc["p99"] / direct["p99"],
                    "max_abs_diff": diff,
                }
            )

        runs = [
            measure_job(deployment, client, job_body, "json", plan.job_rows, expected, 1),
            measure_job(deployment, client, npy_body, "npy", plan.npy_rows, expected, 1),
        ]
        if plan.workers > 1:
            say(f"starting {plan.workers - 1} more worker(s)")
            add_workers(stack, client, plan.workers - 1)
            say("warm-up job, so every new worker has loaded the model")
            run_job(client, deployment["id"], npy_body, "npy", plan.npy_rows, plan.workers)
            runs.append(
                measure_job(
                    deployment, client, npy_body, "npy", plan.npy_rows, expected, plan.workers
                )
            )
        stack.check_alive()

    direct_rate = direct_rates[best_method]
    batch = [
        {
            "rows": run.rows,
            "body": run.body_format,
            "workers": run.workers,
            "seconds": run.total_s,
            "submit_s": run.submit_s,
            "wait_s": run.wait_s,
            "download_s": run.download_s,
            "server_scoring_s": run.scoring_s,
            "request_mb": run.request_bytes / 1e6,
            "result_mb": run.result_bytes / 1e6,
            "rows_per_s": run.rows_per_s,
            "direct_rows_per_s": direct_rate,
            "direct_method": best_method,
            "ratio": run.rows_per_s / direct_rate,
            "speedup_vs_1_worker": run.rows_per_s / runs[1].rows_per_s,
            "scoring_speedup_vs_1_worker": (
                runs[1].scoring_s / run.scoring_s if runs[1].scoring_s and run.scoring_s else None
            ),
        }
        for run in runs
    ]
    return {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "config": {
            "quick": plan.quick,
            "workers": plan.workers,
            "requests": plan.requests,
            "warmup": plan.warmup,
            "job_rows": plan.job_rows,
            "chunk_rows": plan.chunk_rows or "server default",
            "tf_threads_per_worker": plan.tf_threads or "server default",
            "model": "28x28x1 -> Conv2D(8,3) -> MaxPool -> Conv2D(16,3) -> Flatten -> Dense(10)",
        },
        "online": online,
        "batch": batch,
        "direct_batch_rows_per_s": direct_rates,
    }


def measure_job(
    deployment: dict[str, Any],
    client: Client,
    body: bytes,
    body_format: str,
    rows: int,
    expected: np.ndarray,
    workers: int,
) -> JobRun:
    """One timed batch job on ``workers`` workers, its result checked against direct outputs."""
    say(f"service: one {rows}-row job sent as {body_format} on {workers} worker(s)")
    run = run_job(client, deployment["id"], body, body_format, rows, workers)
    scoring = "?" if run.scoring_s is None else f"{run.scoring_s:.2f}"
    say(
        f"  job {run.job_id}: POST {run.submit_s:.2f} s, then completed after "
        f"{run.wait_s:.2f} s, result download {run.download_s:.2f} s "
        f"({run.result_bytes / 1e6:.1f} MB); server started_at -> finished_at {scoring} s"
    )
    note_diff(f"batch {rows} rows", max_abs_diff(run.values, expected[:rows]))
    return run


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""

    def version(package: str) -> str:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": version("tensorflow"),
        "keras": version("keras"),
    }


def table(report: dict[str, Any]) -> list[str]:
    """The report as aligned lines, service next to direct."""
    lines = []
    for row in report["online"]:
        label = f"online {row['rows']} row" + ("s" if row["rows"] > 1 else "")
        svc, direct = row["service_ms"], row["direct_ms"]
        lines.append(
            f"{label:26} p50 {svc['p50']:7.1f} ms  p99 {svc['p99']:7.1f} ms   "
            f"direct p50 {direct['p50']:6.1f} ms  p99 {direct['p99']:6.1f} ms   "
            f"ratio {row['ratio_p50']:6.1f}x"
        )
    for row in report["batch"]:
        label = f"batch {row['rows']} {row['body']}, {row['workers']} worker" + (
            "s" if row["workers"] > 1 else ""
        )
        scoring = row["server_scoring_s"]
        parts = f"POST {row['submit_s']:.1f} s" + (
            "" if scoring is None else f", scoring {scoring:.2f} s"
        )
        line = (
            f"{label:26} {row['rows_per_s']:7.0f} rows/s ({row['seconds']:.1f} s: {parts})   "
            f"direct {row['direct_rows_per_s']:8.0f} rows/s   ratio {row['ratio']:6.3f}x"
        )
        if row["workers"] > 1:
            line += f"   vs 1 worker {row['speedup_vs_1_worker']:.2f}x"
            if row["scoring_speedup_vs_1_worker"] is not None:
                line += f" (scoring alone {row['scoring_speedup_vs_1_worker']:.2f}x)"
        lines.append(line)
    return lines


def parse_args(argv: Sequence[str] | None) -> Plan:
    """The command line as a Plan."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="30 requests, a 2,000-row job")
    parser.add_argument(
        "--workers", type=int, default=1, help="also run the job on N workers (default 1)"
    )
    parser.add_argument("--requests", type=int, help="online requests per size (default 200)")
    parser.add_argument("--job-rows", type=int, help="rows in the JSON batch job (default 10000)")
    parser.add_argument(
        "--npy-rows",
        type=int,
        help="rows in the .npy batch jobs (default: --job-rows; 50000 with --workers N, so "
        "scoring, not the upload, dominates the 1 vs N comparison)",
    )
    parser.add_argument(
        "--chunk-rows",
        type=int,
        help="KSCORE_CHUNK_ROWS for the service (default: the server's; 500 with --quick or "
        "--workers N, so the job has chunks enough to share)",
    )
    parser.add_argument(
        "--tf-threads",
        type=int,
        help="KSCORE_TF_THREADS for every worker (default: the server's; with --workers N, "
        "CPUs // N, so N workers on one machine behave like N machines of that size)",
    )
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    for name in ("workers", "requests", "job_rows", "npy_rows", "chunk_rows", "tf_threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return Plan(
        quick=args.quick,
        workers=args.workers,
        requests=args.requests or (30 if args.quick else 200),
        warmup=5 if args.quick else 20,
        job_rows=args.job_rows or (2_000 if args.quick else 10_000),
        npy_rows=args.npy_rows
        or (10_000 if args.quick and args.workers > 1 else 50_000 if args.workers > 1 else 0)
        or args.job_rows
        or (2_000 if args.quick else 10_000),
        # With --quick the job is one server-default chunk; smaller ones let N workers share it.
        chunk_rows=args.chunk_rows or (500 if args.quick or args.workers > 1 else None),
        direct_repeats=3,
        keep_tmp=args.keep_tmp,
        tf_threads=args.tf_threads
        or (max(1, (os.cpu_count() or 1) // args.workers) if args.workers > 1 else None),
    )


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 on success, 1 (with log tails) when the service failed."""
    plan = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # A SIGTERM (like Ctrl-C) unwinds through the finally below, which stops the children.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    tmp = Path(tempfile.mkdtemp(prefix="kscore-bench-"))
    stack = Supervisor(tmp, cwd=ROOT, warn=say)
    report: dict[str, Any] | None = None
    try:
        report = measure(plan, tmp, stack)
    except (BenchError, DevStackError, KscoreError) as exc:
        say(f"\nBENCHMARK FAILED: {type(exc).__name__}: {exc}\n")
        say(stack.log_tails())
        return 1
    finally:
        stack.stop(grace=STOP_TIMEOUT)
        if report is not None and not plan.keep_tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            say(f"kept {tmp}")

    lines = table(report)
    report["table"] = lines
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(json.dumps(report, indent=2) + "\n")
    machine = report["machine"]
    say(
        f"\nkscore bench: {machine['cpus']} CPUs, Python {machine['python']}, "
        f"TensorFlow {machine['tensorflow']}, Keras {machine['keras']}"
    )
    say("\n".join(lines))
    say(f"(written to {RESULTS_PATH.relative_to(ROOT)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`make bench`: kscore next to its limit and a synchronous peer, in one table from one run.

    python -m bench.run                    # about 10 minutes on a 2-core machine
    python -m bench.run --quick            # a smoke run in about 2 minutes
    python -m bench.run --parts online,peer --models cnn

For two models (the CNN of issue 10 and a small dense model) it measures, on this machine:
(1) the limit: the model called in this process; (2) the peer: a plain Flask app under
gunicorn calling the model per request (bench/peer.py); (3) kscore's online endpoint and the
peer under the same load generator (bench/load.py), 1 and 64 concurrent 1-row clients;
(4) dataset jobs (.npy in, .npy out) on 1 and 2 workers; (5) a JSON job; (6) the peak RSS of
the API and the workers during the dataset job. Every kscore figure is printed as a ratio to
(1) and, online, to (2). Nothing asserts a threshold: the numbers are for reading. The table
also goes to bench/results/latest.{json,txt,md,png} (bench/report.py).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench import service
from bench.direct import (
    CNN,
    DENSE_FEATURES,
    LIMIT_BATCH,
    ModelSpec,
    build_model,
    dense_spec,
    expected_for,
    load_model,
    measure_limit,
    sample_indices,
)
from bench.load import LoadSpec, run_load_process
from bench.measure import (
    OnlinePlan,
    Prepared,
    auth,
    json_values,
    measure_dataset_job,
    measure_json_job,
    measure_online,
    say,
    skipped,
    write_dataset,
)
from bench.peer import PEER_PROCESSES
from bench.report import Row, add_ratios, header_lines, save, text_table
from bench.service import BenchClient, BenchError, BenchSupervisor, RouteMissing
from kscore import KscoreError
from kscore.devstack import API_THREADS, DevStackError

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
PARTS = ("peer", "online", "jobs", "json")
ONLINE_BODIES = 64  # distinct 1-row bodies the clients cycle through


@dataclass(frozen=True)
class Plan:
    """What one run measures; counts in rows, times in seconds."""

    quick: bool
    parts: frozenset[str]
    models: tuple[str, ...]
    clients: tuple[int, ...]
    duration: float
    warmup: float
    limit_calls: int
    limit_rows: int
    cnn_rows: int
    dense_rows: int
    json_rows: int
    dense_features: int
    two_workers: bool
    keep_tmp: bool

    def job_rows(self, spec: ModelSpec) -> int:
        """Rows of ``spec``'s dataset job."""
        return self.cnn_rows if spec.name == "cnn" else self.dense_rows


def prepare(plan: Plan, spec: ModelSpec, tmp: Path) -> Prepared:
    """Build and load ``spec``'s model, measure its limit, and encode every body before any
    service process runs (so the clock never includes the client's encoding)."""
    path = tmp / "models" / f"{spec.name}.keras"
    path.parent.mkdir(parents=True, exist_ok=True)
    build_model(spec, path)
    model = load_model(path)
    say(
        f"{spec.name}: limit: {plan.limit_calls} 1-row calls, {plan.limit_rows} rows in calls of {LIMIT_BATCH}"
    )
    limit = measure_limit(model, spec, plan.limit_calls, plan.limit_rows)
    say(
        f"  p50 {limit.p50_ms:.2f} ms; "
        + ", ".join(f"{k} {v:,.0f} rows/s" for k, v in limit.methods.items())
    )
    x = spec.make_rows(ONLINE_BODIES)
    bodies = [json.dumps({"values": json_values(x[i : i + 1])}) for i in range(ONLINE_BODIES)]
    prepared = Prepared(
        spec, path, limit, bodies, expected_for(model, spec, np.arange(ONLINE_BODIES))
    )
    if "jobs" in plan.parts:
        rows = plan.job_rows(spec)
        prepared.dataset_path = tmp / "data" / f"{spec.name}-{rows}.npy"
        prepared.dataset_path.parent.mkdir(parents=True, exist_ok=True)
        write_dataset(spec, rows, prepared.dataset_path)
        indices = sample_indices(rows)
        prepared.dataset_check = (indices, expected_for(model, spec, indices))
        say(f"  dataset: {rows:,} rows, {prepared.dataset_path.stat().st_size / 1e6:,.1f} MB .npy")
    if "json" in plan.parts:
        x = spec.make_rows(plan.json_rows)
        prepared.json_rows = plan.json_rows
        prepared.json_body = json.dumps({"values": json_values(x)}, separators=(",", ":")).encode()
        indices = sample_indices(plan.json_rows)
        prepared.json_check = (indices, expected_for(model, spec, indices))
        say(f"  JSON job body: {plan.json_rows:,} rows, {len(prepared.json_body) / 1e6:,.1f} MB")
    return prepared


def measure(plan: Plan, tmp: Path, stack: BenchSupervisor) -> tuple[dict[str, Any], list[Row]]:
    """Run every measurement; the report's head and its rows.

    Raises DevStackError, KscoreError, BenchError or RuntimeError (the load generator) when
    something fails; main prints them with the processes' log tails.
    """
    specs = [s for s in (CNN, dense_spec(plan.dense_features)) if s.name in plan.models]
    # The limits first, while no service process competes for the cores.
    prepared = [prepare(plan, spec, tmp) for spec in specs]
    rows: dict[str, list[Row]] = {m.spec.name: [] for m in prepared}
    for m in prepared:
        limit = m.limit
        rows[m.spec.name].append(
            Row(
                m.spec.name,
                "limit",
                f"limit: the model in-process (1 row; {LIMIT_BATCH}-row calls)",
                rows=LIMIT_BATCH,
                p50_ms=limit.p50_ms,
                p99_ms=limit.p99_ms,
                throughput=limit.rows_per_s,
                notes=[f"best: {limit.method}", f"{limit.calls} calls, {limit.rows:,} rows"],
                data={"methods": limit.methods},
            )
        )

    say(f"starting Redis, the API ({service.API_PROCESSES} processes) and 1 worker in {tmp}")
    client = service.start_service(stack, tmp, {})
    with client:
        for m in prepared:
            m.deployment = service.deploy(client, m.path, f"bench-{m.spec.name}")
            say(f"deployed {m.spec.name}: {m.deployment['id']}")
        peer_url = None
        if "peer" in plan.parts:
            peer_url = service.start_peer(stack, tmp / "models")
            say(f"peer: {peer_url}")
        online = OnlinePlan(
            plan.clients, plan.duration, plan.warmup, plan.warmup + 1, "online" in plan.parts
        )
        for m in prepared:
            if plan.parts & {"online", "peer"}:
                rows[m.spec.name] += measure_online(online, m, client, peer_url, tmp)
        have_datasets = "jobs" in plan.parts and service.datasets_available(client)
        for m in prepared:
            if "json" in plan.parts:
                rows[m.spec.name].append(measure_json_job(m, client))
            if "jobs" not in plan.parts:
                continue
            label = f"dataset job {plan.job_rows(m.spec):,} rows, 1 worker"
            if not have_datasets:
                rows[m.spec.name].append(
                    skipped(m, "job", label, "POST /api/v1/datasets not available")
                )
                continue
            try:
                rows[m.spec.name] += measure_dataset_job(m, client, stack, 1, tmp)
            except RouteMissing as exc:
                rows[m.spec.name].append(skipped(m, "job", label, str(exc)))
        if "jobs" in plan.parts and plan.two_workers:
            two_worker_jobs(plan, prepared, rows, client, stack, tmp)
        stack.check_alive()

    flat = [row for m in prepared for row in rows[m.spec.name]]
    add_ratios(flat)
    head = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "config": {
            "quick": plan.quick,
            "models": {m.spec.name: m.spec.description for m in prepared},
            "online": f"{', '.join(map(str, plan.clients))} clients of 1-row requests, {plan.warmup:g} s warm-up then {plan.duration:g} s; peer: Flask under gunicorn, {PEER_PROCESSES} sync processes",
            "service": f"API under gunicorn ({service.API_PROCESSES} processes x {API_THREADS} threads), 1 Celery worker (TF threads: server default); 2-worker rows: 2 workers x {two_worker_threads()} TF thread(s)",
            "plan": {
                k: (sorted(v) if isinstance(v, frozenset) else v) for k, v in vars(plan).items()
            },
        },
    }
    return head, flat


def two_worker_threads() -> int:
    """TensorFlow threads per worker when two share this machine."""
    return max(1, (os.cpu_count() or 1) // 2)


def two_worker_jobs(
    plan: Plan,
    prepared: list[Prepared],
    rows: dict[str, list[Row]],
    client: BenchClient,
    stack: BenchSupervisor,
    tmp: Path,
) -> None:
    """The dataset jobs again on two fresh workers, each with half the cores."""
    measurable = [m for m in prepared if m.datasets_work]
    for m in prepared:
        if not m.datasets_work:
            label = f"dataset job {plan.job_rows(m.spec):,} rows, 2 workers"
            earlier = (r.skipped for r in rows[m.spec.name] if r.part == "job" and r.skipped)
            why = next(earlier, "the 1-worker job did not run")
            rows[m.spec.name].append(skipped(m, "job", label, why))
    if not measurable:
        return
    say(f"replacing the worker by 2 workers with {two_worker_threads()} TF thread(s) each")
    service.replace_workers(stack, client, 2, two_worker_threads())
    for m in measurable:
        assert m.deployment is not None
        # Unmeasured: so that both workers have loaded the model before the clock starts.
        url = f"{client.url}/api/v1/deployments/{m.deployment['id']}/online"
        run_load_process(
            LoadSpec(url, m.online_bodies, 16, 3.0, 0.0, auth(client)), tmp / "load", cwd=ROOT
        )
    for m in measurable:
        rows_1w = next(r for r in rows[m.spec.name] if r.part == "job" and not r.skipped)
        (row,) = measure_dataset_job(m, client, stack, 2, tmp)
        if rows_1w.throughput and row.throughput:
            row.notes.append(f"{row.throughput / rows_1w.throughput:.2f}x 1 worker")
        rows[m.spec.name].append(row)


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


def parse_args(argv: Sequence[str] | None) -> Plan:
    """The command line as a Plan."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=(__doc__ or "").split("\n")[0]
    )
    add = parser.add_argument
    add(
        "--quick",
        action="store_true",
        help="a smoke run in about 2 minutes: 4 s load runs, small jobs",
    )
    add(
        "--parts",
        default=",".join(PARTS),
        help=f"comma-separated, of {', '.join(PARTS)} (the limit is always measured; default: all)",
    )
    add("--models", default="cnn,dense", help="comma-separated, of cnn, dense (default: both)")
    add("--clients", default="1,64", help="concurrent clients per load run (default: 1,64)")
    add("--duration", type=float, help="measured seconds per load run (default 15; --quick 4)")
    add(
        "--warmup",
        type=float,
        help="unmeasured seconds before each load run (default 3; --quick 1)",
    )
    add("--cnn-rows", type=int, help="rows of the CNN dataset job (default 100000; --quick 5000)")
    add(
        "--dense-rows",
        type=int,
        help="rows of the dense dataset job, the memory row's job (default 1000000; --quick 100000)",
    )
    add("--json-rows", type=int, help="rows of the JSON job (default 10000; --quick 1000)")
    add(
        "--dense-features",
        type=int,
        default=DENSE_FEATURES,
        help=f"inputs of the dense model (default {DENSE_FEATURES}: 1M rows are 1 GB)",
    )
    add("--one-worker", action="store_true", help="skip the 2-worker dataset jobs")
    add("--keep-tmp", action="store_true", help="keep the temporary directory (logs, files)")
    args = parser.parse_args(argv)
    parts = frozenset(p for p in args.parts.split(",") if p)
    models = tuple(m for m in args.models.split(",") if m)
    if not parts <= set(PARTS):
        parser.error(f"--parts: unknown {sorted(parts - set(PARTS))}")
    if not models or not set(models) <= {"cnn", "dense"}:
        parser.error("--models: cnn, dense or both")
    try:
        clients = tuple(int(c) for c in args.clients.split(","))
    except ValueError:
        parser.error("--clients: comma-separated numbers")
    for name in ("duration", "warmup", "cnn_rows", "dense_rows", "json_rows", "dense_features"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "warmup" else 1):
            parser.error(f"--{name.replace('_', '-')} is too small")
    if min(clients) < 1:
        parser.error("--clients must be at least 1")
    quick = args.quick
    return Plan(
        quick=quick,
        parts=parts,
        models=models,
        clients=clients,
        duration=args.duration or (4.0 if quick else 15.0),
        warmup=args.warmup if args.warmup is not None else (1.0 if quick else 3.0),
        limit_calls=50 if quick else 200,
        limit_rows=2048 if quick else 8192,
        cnn_rows=args.cnn_rows or (5_000 if quick else 100_000),
        dense_rows=args.dense_rows or (100_000 if quick else 1_000_000),
        json_rows=args.json_rows or (1_000 if quick else 10_000),
        dense_features=args.dense_features,
        two_workers=not args.one_worker,
        keep_tmp=args.keep_tmp,
    )


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 on success, 1 (with log tails) when something failed."""
    plan = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # A SIGTERM (like Ctrl-C) unwinds through the finally below, which stops the children.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    tmp = Path(tempfile.mkdtemp(prefix="kscore-bench-"))
    stack = BenchSupervisor(tmp / "logs", cwd=ROOT, warn=say)
    result: tuple[dict[str, Any], list[Row]] | None = None
    try:
        result = measure(plan, tmp, stack)
    except (BenchError, DevStackError, KscoreError, RuntimeError) as exc:
        say(f"\nBENCHMARK FAILED: {type(exc).__name__}: {exc}\n")
        say(stack.log_tails())
        return 1
    finally:
        stack.stop(grace=service.STOP_TIMEOUT)
        if result is not None and not plan.keep_tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            say(f"kept {tmp}")

    head, rows = result
    paths = save(head, rows, RESULTS_DIR)
    say("")
    say("\n".join([*header_lines(head), "", *text_table(rows)]))
    say("written: " + ", ".join(str(p.relative_to(ROOT)) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

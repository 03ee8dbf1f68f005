"""The benchmark's measurements, each turned into table rows (bench/report.py's Row).

:mod:`bench.run` prepares the models and bodies and starts the processes; the functions here
run the load generator and the jobs against them, check the predictions against the direct
ones, and describe each result as a :class:`~bench.report.Row`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench import service
from bench.direct import Limit, ModelSpec
from bench.load import LoadResult, LoadSpec, run_load_process
from bench.peer import PEER_PROCESSES
from bench.report import Row
from bench.service import BenchClient, BenchError, BenchSupervisor, JobTiming, RssSampler

ROOT = Path(__file__).resolve().parents[1]
# float32 round-off between two TF processes is ~1e-7; more than this means different answers.
PREDICTION_TOLERANCE = 1e-4


def say(message: str = "") -> None:
    """Print a progress line now, even when stdout is a pipe."""
    print(message, flush=True)


@dataclass(eq=False)
class Prepared:
    """One model, ready to measure: file, limit, bodies and the answers they must get."""

    spec: ModelSpec
    path: Path
    limit: Limit
    online_bodies: list[str]
    online_expected: np.ndarray
    dataset_path: Path | None = None
    dataset_check: tuple[np.ndarray, np.ndarray] | None = None
    json_body: bytes | None = None
    json_rows: int = 0
    json_check: tuple[np.ndarray, np.ndarray] | None = None
    deployment: dict[str, Any] | None = None
    datasets_work: bool = False


def json_values(x: np.ndarray) -> list[Any]:
    """Rows as nested lists of 3-decimal floats (short JSON, the same numbers as float32)."""
    return np.round(x.astype(np.float64), 3).tolist()


def write_dataset(spec: ModelSpec, rows: int, path: Path) -> None:
    """Write ``spec``'s first ``rows`` seeded rows as a float32 .npy file, block by block."""
    out = np.lib.format.open_memmap(
        path, mode="w+", dtype=np.float32, shape=(rows, *spec.row_shape)
    )
    step = 65_536
    for start in range(0, rows, step):
        out[start : start + step] = spec.make_rows(min(step, rows - start), start)
    out.flush()
    del out


def diff_note(diff: float | None) -> str:
    """``max |diff| 1.2e-07`` with a warning past PREDICTION_TOLERANCE."""
    if diff is None:
        return "predictions not checked"
    flag = " WARNING: differs from direct" if diff > PREDICTION_TOLERANCE else ""
    return f"max |diff| {diff:.1e}{flag}"


def answers_diff(result: LoadResult, expected: np.ndarray) -> float | None:
    """Largest difference between the kept answers' predictions and the direct ones."""
    diffs = []
    for index, text in result.answers:
        prediction = np.asarray(json.loads(text)["values"][0][0], dtype=np.float64)
        diffs.append(float(np.max(np.abs(prediction - expected[index]))))
    return max(diffs) if diffs else None


def load_row(m: Prepared, part: str, label: str, clients: int, result: LoadResult) -> Row:
    """A table row from one load run."""
    notes = []
    if result.errors:
        notes.append("non-200: " + ", ".join(f"{k} x{v}" for k, v in result.errors.items()))
    notes.append(f"{result.requests} req in {result.duration:g} s")
    notes.append(f"generator {result.cpu_share:.2f} core")
    diff = answers_diff(result, m.online_expected)
    notes.append(diff_note(diff))
    return Row(
        m.spec.name,
        part,
        label,
        clients=clients,
        rows=1,
        p50_ms=result.percentile_ms(50),
        p99_ms=result.percentile_ms(99),
        throughput=result.req_per_s,
        unit="req/s",
        notes=notes,
        data={"errors": result.errors, "generator_cpu_s": result.cpu_s, "max_abs_diff": diff},
    )


@dataclass(frozen=True)
class OnlinePlan:
    """The load runs: client counts, seconds of warm-up and of measurement per run, and the
    seconds of unmeasured load each target gets first (every process loads the model)."""

    clients: tuple[int, ...]
    duration: float
    warmup: float
    prime: float
    kscore: bool


def measure_online(
    plan: OnlinePlan, m: Prepared, client: BenchClient, peer_url: str | None, tmp: Path
) -> list[Row]:
    """kscore online and the peer (if ``peer_url``) under the same load, per client count."""
    assert m.deployment is not None
    targets = []
    if plan.kscore:
        url = f"{client.url}/api/v1/deployments/{m.deployment['id']}/online"
        targets.append(("online", "kscore online", url, auth(client)))
    if peer_url is not None:
        peer = f"peer (gunicorn sync x{PEER_PROCESSES})"
        targets.append(("peer", peer, f"{peer_url}/score/{m.spec.name}", {}))
    for _, name, url, headers in targets:
        say(f"{m.spec.name}: {name}: {plan.prime:g} s of unmeasured load, 8 clients")
        prime = LoadSpec(url, m.online_bodies, 8, plan.prime, 0.0, headers, keep=0)
        run_load_process(prime, tmp / "load", cwd=ROOT)
    rows = []
    for clients in plan.clients:
        for part, name, url, headers in targets:
            label = f"{name}, {clients} client{'s' if clients > 1 else ''}"
            say(f"{m.spec.name}: {label}: {plan.warmup:g} s warm-up, {plan.duration:g} s measured")
            spec = LoadSpec(url, m.online_bodies, clients, plan.duration, plan.warmup, headers)
            result = run_load_process(spec, tmp / "load", cwd=ROOT)
            row = load_row(m, part, label, clients, result)
            say(
                f"  {result.req_per_s:,.1f} req/s, p50 {row.p50_ms or 0:.1f} ms, "
                f"p99 {row.p99_ms or 0:.1f} ms; {'; '.join(row.notes)}"
            )
            rows.append(row)
    return rows


def auth(client: BenchClient) -> dict[str, str]:
    """The bench instance's API key as a header, for the load generator's requests."""
    return {"Authorization": f"Bearer {client.api_key}"}


def check(predictions: np.ndarray | None, expected: tuple[np.ndarray, np.ndarray]) -> float | None:
    """Largest difference at the sampled rows (a row count mismatch raises BenchError)."""
    if predictions is None:
        return None
    indices, wanted = expected
    if len(predictions) <= int(indices[-1]):
        raise BenchError(f"The result has {len(predictions)} rows; row {indices[-1]} was sent.")
    got = np.asarray(predictions[indices], dtype=np.float64)
    return float(np.max(np.abs(got - wanted)))


def job_row(
    m: Prepared, part: str, label: str, timing: JobTiming, diff: float | None, workers: int
) -> Row:
    """A table row from one timed job.

    A dataset job's throughput is the job's (submit to result downloaded): the dataset is a
    resource of its own, uploaded once, that may feed many jobs; the figure with the upload
    is in the notes. A JSON job's rows travel in its request, so its figure includes them.
    """
    notes = [timing.split()]
    throughput = timing.rows_per_s
    if timing.server_run_s is not None:
        notes.append(f"server {timing.server_run_s:.1f} s")
    if part == "job":
        notes.append(
            f"results as {timing.result_format}"
            + (f" ({timing.extra['npy']})" if "npy" in timing.extra else "")
        )
        job_s = timing.submit_s + timing.wait_s + timing.download_s
        if job_s > 0:
            throughput = timing.rows / job_s
        notes.append(
            f"with the upload {timing.rows_per_s:,.0f} rows/s, "
            f"{timing.rows_per_s / m.limit.rows_per_s:.2f}x limit"
        )
    notes.append(diff_note(diff))
    return Row(
        m.spec.name,
        part,
        label,
        rows=timing.rows,
        throughput=throughput,
        notes=notes,
        data={
            "job_id": timing.job_id,
            "workers": workers,
            "upload_s": timing.upload_s,
            "submit_s": timing.submit_s,
            "wait_s": timing.wait_s,
            "download_s": timing.download_s,
            "server_run_s": timing.server_run_s,
            "input_bytes": timing.input_bytes,
            "result_bytes": timing.result_bytes,
            "result_format": timing.result_format,
            "max_abs_diff": diff,
        },
    )


WARMUP_JSON_ROWS = 64


def json_warmup_body(body: bytes) -> bytes:
    """The first ``WARMUP_JSON_ROWS`` rows of a JSON body ``{"values": [...]}`` as a body."""
    rows = json.loads(body)["values"][:WARMUP_JSON_ROWS]
    return json.dumps({"values": rows}, separators=(",", ":")).encode()


def measure_json_job(m: Prepared, client: BenchClient) -> Row:
    """One JSON job (values in the body) on the running worker(s)."""
    assert m.deployment is not None and m.json_body is not None and m.json_check is not None
    say(f"{m.spec.name}: JSON job, {m.json_rows:,} rows")
    # Unmeasured first: a small job per API process, so each has loaded what its large-body
    # path imports once (pyarrow), as the online rows warm up before they are measured.
    warm = json_warmup_body(m.json_body)
    for _ in range(service.API_PROCESSES * 2):
        service.run_json_job(client, m.deployment["id"], warm, WARMUP_JSON_ROWS)
    timing, predictions = service.run_json_job(client, m.deployment["id"], m.json_body, m.json_rows)
    row = job_row(
        m,
        "json_job",
        f"JSON job {m.json_rows:,} rows, values in body",
        timing,
        check(predictions, m.json_check),
        1,
    )
    row.notes.insert(1, f"{len(m.json_body) / 1e6:,.1f} MB JSON")
    say(f"  {timing.rows_per_s:,.0f} rows/s; {'; '.join(row.notes)}")
    return row


def measure_dataset_job(
    m: Prepared, client: BenchClient, stack: BenchSupervisor, workers: int, tmp: Path
) -> list[Row]:
    """Upload the dataset, run one job from it on ``workers`` workers with .npy results, delete
    it, sampling the RSS of every kscore process from upload to download; the job's row and,
    on 1 worker, a memory row. Raises RouteMissing when the server lacks datasets."""
    assert m.deployment is not None and m.dataset_path is not None and m.dataset_check is not None
    rows = int(np.load(m.dataset_path, mmap_mode="r").shape[0])
    label = f"dataset job {rows:,} rows, {workers} worker{'s' if workers > 1 else ''}"
    say(f"{m.spec.name}: {label}")
    with RssSampler(stack) as sampler:
        dataset, upload_s = service.upload_dataset(client, m.dataset_path, m.deployment["id"])
        timing, predictions = service.run_dataset_job(
            client, m.deployment["id"], dataset["id"], rows, tmp / f"{m.spec.name}-result.npy"
        )
    m.datasets_work = True
    service.delete_dataset(client, dataset["id"])
    timing.upload_s = upload_s
    timing.input_bytes = m.dataset_path.stat().st_size
    row = job_row(m, "job", label, timing, check(predictions, m.dataset_check), workers)
    say(f"  {row.throughput or 0:,.0f} rows/s; {'; '.join(row.notes)}")
    result = [row]
    if workers == 1:
        result.append(memory_row(m, rows, timing, sampler))
    return result


def memory_row(m: Prepared, rows: int, timing: JobTiming, sampler: RssSampler) -> Row:
    """The peak RSS of the API and worker process trees during one dataset job."""
    peaks = sampler.as_dict()
    mb = 1e6
    notes = [
        f"data {timing.input_bytes:,} bytes ({timing.input_bytes / mb:,.0f} MB .npy), "
        f"result {timing.result_bytes / mb:,.1f} MB"
    ]
    for role in ("api", "worker", "redis"):
        if role in peaks:
            p = peaks[role]
            notes.append(
                f"{role} peak {p['peak_tree'] / mb:,.0f} MB (+{(p['peak_tree'] - p['baseline_tree']) / mb:,.0f} over its start; largest process {p['peak_process'] / mb:,.0f} MB)"
            )
    notes.append(f"{sampler.samples} samples / {sampler.interval * 1000:.0f} ms")
    say("  " + "; ".join(notes))
    return Row(
        m.spec.name,
        "memory",
        f"peak RSS, {rows:,}-row dataset job",
        rows=rows,
        notes=notes,
        data={"data_bytes": timing.input_bytes, "rss": peaks, "samples": sampler.samples},
    )


def skipped(m: Prepared, part: str, label: str, why: str) -> Row:
    """A row that could not be measured, and why."""
    say(f"{m.spec.name}: {label}: skipped: {why}")
    return Row(m.spec.name, part, label, skipped=why)

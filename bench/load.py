"""The load generator: N concurrent clients, each sending its next request when the last answered.

It runs in a process of its own (``python -m bench.load SPEC.json OUT.json``), so the
benchmark's TensorFlow and bookkeeping never share its interpreter, with one asyncio loop and
one aiohttp connection pool (keep-alive, up to one connection per client). Bodies are encoded
before the clock starts and sent as bytes; nothing is parsed while it measures. aiohttp, not
httpx: on this 2-core machine httpx's AsyncClient cost ~500 us of CPU per request, aiohttp's
~80 us, and the generator shares the cores with what it measures. It reports the CPU seconds it
used, so the table shows whether it came near a core's limit.

A run: ``warmup`` seconds whose requests are not counted, then ``duration`` seconds; a request
counts when it started and answered inside the measured window. Clients stop sending at its end
and the run waits for the requests still in flight.
"""

from __future__ import annotations

import asyncio
import json
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np


@dataclass(frozen=True)
class LoadSpec:
    """One load run: where, what, how many clients, for how long (seconds)."""

    url: str
    bodies: list[str]
    concurrency: int
    duration: float
    warmup: float
    headers: dict[str, str] = field(default_factory=dict)
    keep: int = 64  # answers kept (with their body's index) to check predictions afterwards
    timeout: float = 120.0


@dataclass
class LoadResult:
    """What one run measured. Latencies in ms of the counted (status 200) requests."""

    concurrency: int
    duration: float
    requests: int
    errors: dict[str, int]
    latencies_ms: list[float]
    cpu_s: float
    wall_s: float
    answers: list[tuple[int, str]]

    @property
    def req_per_s(self) -> float:
        """Answered 200s per second of the measured window."""
        return self.requests / self.duration if self.duration > 0 else 0.0

    def percentile_ms(self, q: float) -> float | None:
        """The ``q``-th percentile latency in ms (None without a counted request)."""
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else None

    @property
    def cpu_share(self) -> float:
        """The generator's CPU time over its run's wall time, in cores (0.5 = half a core)."""
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (what the generator process writes)."""
        return asdict(self)


async def _client(
    http: aiohttp.ClientSession,
    spec: LoadSpec,
    number: int,
    window: tuple[float, float],
    result: LoadResult,
) -> None:
    start, end = window
    index = number
    content = [body.encode() for body in spec.bodies]
    headers = {"Content-Type": "application/json", **spec.headers}
    while True:
        sent = time.perf_counter()
        if sent >= end:
            return
        which = index % len(content)
        index += spec.concurrency
        try:
            async with http.post(spec.url, data=content[which], headers=headers) as response:
                status, text = str(response.status), await response.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            status, text = type(exc).__name__, ""
        answered = time.perf_counter()
        if sent < start or answered > end:
            continue
        if status != "200":
            result.errors[status] = result.errors.get(status, 0) + 1
            continue
        result.requests += 1
        result.latencies_ms.append((answered - sent) * 1000.0)
        if len(result.answers) < spec.keep:
            result.answers.append((which, text))


async def _run(spec: LoadSpec) -> LoadResult:
    result = LoadResult(spec.concurrency, spec.duration, 0, {}, [], 0.0, 0.0, [])
    connector = aiohttp.TCPConnector(limit=spec.concurrency)
    timeout = aiohttp.ClientTimeout(total=spec.timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        began = time.perf_counter()
        window = (began + spec.warmup, began + spec.warmup + spec.duration)
        await asyncio.gather(
            *(_client(http, spec, n, window, result) for n in range(spec.concurrency))
        )
    return result


def run_load(spec: LoadSpec) -> LoadResult:
    """Run ``spec`` in this process (a test, or the generator process); what it measured."""
    if spec.concurrency < 1 or not spec.bodies:
        raise ValueError("a load run needs at least one client and one body")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before, began = usage.ru_utime + usage.ru_stime, time.perf_counter()
    result = asyncio.run(_run(spec))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result.cpu_s = usage.ru_utime + usage.ru_stime - cpu_before
    result.wall_s = time.perf_counter() - began
    return result


def run_load_process(spec: LoadSpec, work_dir: Path, cwd: Path | None = None) -> LoadResult:
    """Run ``spec`` in a separate Python process (files in ``work_dir``); what it measured.

    Raises RuntimeError with the generator's stderr if it fails or outlives its run by a minute.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    spec_path, out_path = work_dir / "load-spec.json", work_dir / "load-result.json"
    spec_path.write_text(json.dumps(asdict(spec)))
    out_path.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "bench.load", str(spec_path), str(out_path)]
    limit = spec.warmup + spec.duration + spec.timeout + 60.0
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"the load generator ran over {limit:.0f} s") from exc
    if done.returncode != 0 or not out_path.exists():
        raise RuntimeError(f"the load generator failed ({done.returncode}): {done.stderr[-2000:]}")
    data = json.loads(out_path.read_text())
    data["answers"] = [tuple(pair) for pair in data["answers"]]
    return LoadResult(**data)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.load SPEC.json OUT.json``: run the spec, write the result."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m bench.load SPEC.json OUT.json", file=sys.stderr)
        return 2
    spec = LoadSpec(**json.loads(Path(args[0]).read_text()))
    result = run_load(spec)
    Path(args[1]).write_text(json.dumps(result.to_json()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

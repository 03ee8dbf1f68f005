"""The API's CPU time per online request, measured in one thread: a profiling aid.

    python -m bench.api_cpu                  # 3 runs of 2,000 requests, CPU microseconds each
    python -m bench.api_cpu --profile        # then a cProfile of one more run

At 64 concurrent clients the two cores are full and the API is most of what uses them, so an
online request's cost in the API decides kscore's throughput; but req/s from the load generator
moves 5-10% from run to run. Here a real stack runs behind (Redis, the API processes, one
worker, the CNN of ``make bench``) while the API's Flask app is called in this process through
Flask's test client, one request at a time, and ``time.thread_time()`` counts only this
thread's CPU: waiting on the worker costs nothing, and runs of the same code back to back
agree within a few percent (the machine's own speed drifts more over an hour: compare two trees
alternately, as the session that added this did with ``PYTHONPATH=<tree>``). The test client
adds ~150 us of its own per request, the same for any change.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench import service
from bench.direct import CNN, build_model
from bench.measure import json_values, say
from bench.service import BenchSupervisor

ROOT = Path(__file__).resolve().parents[1]
BODIES = 64  # distinct 1-row bodies, cycled
WARMUP_REQUESTS = 300


def main(argv: Sequence[str] | None = None) -> int:
    """Measure and print ``cpu_us_per_request`` for each run; 0 on success, 1 if a request
    was not answered 200 (its body printed)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.api_cpu", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--requests", type=int, default=2000, help="per run (default 2000)")
    parser.add_argument("--runs", type=int, default=3, help="runs (default 3)")
    parser.add_argument("--profile", action="store_true", help="then cProfile one more run")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tmp = Path(tempfile.mkdtemp(prefix="kscore-api-cpu-"))
    stack = BenchSupervisor(tmp / "logs", cwd=ROOT, warn=say)
    try:
        client = service.start_service(stack, tmp, {})
        path = tmp / "cnn.keras"
        build_model(CNN, path)
        deployment = service.deploy(client, path, "bench-api-cpu")
        # The app reads the same settings as the API processes the supervisor started.
        os.environ.update({k: v for k, v in stack.env.items() if k.startswith("KSCORE_")})
        from api.app import create_app
        from shared.settings import Settings

        test_client = create_app(Settings.from_env()).test_client()
        x = CNN.make_rows(BODIES)
        bodies = [json.dumps({"values": json_values(x[i : i + 1])}).encode() for i in range(BODIES)]
        headers = {
            "Authorization": f"Bearer {client.api_key}",
            "Content-Type": "application/json",
        }
        url = f"/api/v1/deployments/{deployment['id']}/online"

        def run(count: int) -> float:
            """CPU microseconds of this thread per request over ``count`` requests."""
            started = time.thread_time()
            for i in range(count):
                response = test_client.post(url, data=bodies[i % BODIES], headers=headers)
                if response.status_code != 200:
                    raise RuntimeError(f"{response.status_code}: {response.get_data(as_text=True)}")
            return (time.thread_time() - started) / count * 1e6

        run(WARMUP_REQUESTS)
        figures = [run(args.requests) for _ in range(args.runs)]
        say("cpu_us_per_request " + " ".join(f"{f:.0f}" for f in figures))
        if args.profile:
            profile = cProfile.Profile(time.thread_time)
            profile.runcall(run, args.requests)
            pstats.Stats(profile).sort_stats("cumulative").print_stats(60)
    except RuntimeError as exc:
        say(f"a request failed: {exc}")
        return 1
    finally:
        stack.stop(grace=service.STOP_TIMEOUT)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

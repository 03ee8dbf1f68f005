"""Load test of online scoring: kscore's online endpoint and a synchronous Flask peer, side by
side, with the same load generator (threads, one keep-alive httpx client each).

    python scripts/online_load.py --clients 1,64 --seconds 15 [--hold]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

HERE = Path(__file__).resolve().parents[1]
# The tree whose service is measured (another checkout, to measure before/after).
ROOT = Path(os.environ.get("KSCORE_ROOT", HERE)).resolve()
sys.path.insert(0, str(ROOT))

from kscore import Client  # noqa: E402
from kscore.devstack import Supervisor, free_port, public_url  # noqa: E402
from shared.instance_store import open_instance_store  # noqa: E402


def build_cnn(path: Path) -> None:
    import keras

    keras.utils.set_random_seed(7)
    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.Conv2D(64, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.save(path)


def run_load(url: str, headers: dict[str, str], bodies: list[bytes], clients: int, seconds: float):
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client_loop(k: int) -> None:
        mine: list[float] = []
        with httpx.Client(timeout=60.0, headers=headers) as http:
            i = k
            while time.perf_counter() < stop_at:
                body = bodies[i % len(bodies)]
                i += clients
                t0 = time.perf_counter()
                r = http.post(url, content=body)
                dt = time.perf_counter() - t0
                if r.status_code != 200:
                    with lock:
                        errors[0] += 1
                    continue
                mine.append(dt)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client_loop, args=(k,)) for k in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    latencies.sort()
    n = len(latencies)
    return {
        "clients": clients,
        "n": n,
        "errors": errors[0],
        "rps": n / wall,
        "p50_ms": 1000 * latencies[n // 2] if n else None,
        "p99_ms": 1000 * latencies[min(n - 1, int(n * 0.99))] if n else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", default="1,64")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--hold", action="store_true", help="keep the stack up after measuring")
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--worker-concurrency", type=int, default=1)
    ap.add_argument("--json-job", type=int, default=0, help="also time a JSON job of N rows")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="online-load-"))
    model_path = tmp / "cnn.keras"
    build_cnn(model_path)
    stack = Supervisor(tmp / "logs", cwd=ROOT)
    stack.env.update(
        KSCORE_DATA_DIR=str(tmp), KSCORE_KEY_PREFIX="load", KSCORE_RATE_LIMIT="off",
        TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT),
    )
    peer = None
    try:
        redis_url = stack.start_redis(tmp / "redis", persist=False)
        key = open_instance_store(redis_url, "load").create("load").key.api_key
        port = free_port()
        stack.start_api(port=port, workers=2)
        stack.start_worker(concurrency=args.worker_concurrency)
        url = public_url("127.0.0.1", port)
        stack.wait_ready(url, timeout=120, workers=1)
        client = Client(url, api_key=key, timeout=300.0)
        model = client.repository.store_model(model_path, "cnn")
        dep = client.deployments.create(model["id"], "cnn", timeout=180)
        online = f"{url}/api/v1/deployments/{dep['id']}/online"
        rng = np.random.default_rng(0)
        bodies = [
            json.dumps({"values": np.round(rng.random((1, 28, 28, 1)), 3).tolist()}).encode()
            for _ in range(256)
        ]
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        peer_url = None
        if not args.no_peer:
            peer_port = free_port()
            env = {**os.environ, "MODEL_PATH": str(model_path), "PYTHONPATH": str(HERE),
                   "TF_CPP_MIN_LOG_LEVEL": "2"}
            peer = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{peer_port}",
                 "--timeout", "120", "scripts.peer_app:app"],
                env=env, cwd=HERE, stdout=open(tmp / "logs" / "peer.log", "w"), stderr=subprocess.STDOUT,
            )
            peer_url = f"http://127.0.0.1:{peer_port}/predict"
            for _ in range(200):
                try:
                    if httpx.post(peer_url, content=bodies[0], headers=headers, timeout=60).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.5)
            for _ in range(4):
                httpx.post(peer_url, content=bodies[0], headers=headers, timeout=60)
        for _ in range(20):  # warm up kscore
            httpx.post(online, content=bodies[0], headers=headers, timeout=60)
        print(f"stack in {tmp}; api {url}; online {online}; peer {peer_url}; key {key}", flush=True)
        for c in [int(x) for x in args.clients.split(",")]:
            for _ in range(args.rounds):
                r = run_load(online, headers, bodies, c, args.seconds)
                print("kscore", json.dumps(r), flush=True)
                if peer_url:
                    r = run_load(peer_url, headers, bodies, c, args.seconds)
                    print("peer  ", json.dumps(r), flush=True)
        if args.json_job:
            x = np.round(rng.random((args.json_job, 28, 28, 1)), 3)
            body = json.dumps({"values": x.tolist()}).encode()
            jobs_url = f"{url}/api/v1/deployments/{dep['id']}/jobs"
            t0 = time.perf_counter()
            job = httpx.post(jobs_url, content=body, headers=headers, timeout=600).json()
            accepted = time.perf_counter() - t0
            while job["status"] not in ("completed", "failed"):
                time.sleep(0.05)
                job = httpx.get(f"{url}/api/v1/jobs/{job['id']}", headers=headers).json()
            total = time.perf_counter() - t0
            model = __import__("keras").models.load_model(model_path)
            t1 = time.perf_counter()
            for i in range(0, len(x), 1024):
                model(x[i : i + 1024].astype("float32"), training=False)
            limit = len(x) / (time.perf_counter() - t1)
            print("json-job", json.dumps({"rows": len(x), "status": job["status"],
                  "accepted_s": accepted, "total_s": total, "rows_per_s": len(x) / total,
                  "limit_rows_per_s": limit, "ratio": len(x) / total / limit}), flush=True)
        if args.hold:
            print("holding; pids:", [(ch.name, ch.pid) for ch in stack.children], flush=True)
            while True:
                time.sleep(5)
    finally:
        if peer is not None:
            peer.terminate()
            peer.wait()
        stack.stop()


if __name__ == "__main__":
    main()

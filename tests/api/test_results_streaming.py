"""A result far larger than the API's memory growth: the real server (gunicorn) streams it.

The job's result chunks are written to Redis by the store directly (what workers write, without
spending minutes of model time on 256 MB of outputs); the API under gunicorn then serves it in
every format; for each download this test resets the worker process's peak RSS (VmHWM) and
reads how far it rose.
"""

from __future__ import annotations

import os
import socket
import uuid
import zipfile
from pathlib import Path

import httpx
import numpy as np
import psutil
import pyarrow.parquet as pq
import pytest
import redis

from kscore.devstack import Supervisor
from shared.job_record import JobRecord
from shared.job_store import JobStore
from shared.keys import Keys
from shared.results import render
from shared.scoring import FIELDS, ResultShape
from shared.settings import Settings
from shared.status import ClaimOutcome
from tests.conftest import instance_store
from tests.workers.processes import ROOT

pytestmark = pytest.mark.slow

CHUNKS = 128
CHUNK_ROWS = 1024
WIDTH = 512  # float32: 2 MiB a chunk, 256 MiB in all
MIB = 1024 * 1024
TEXT_CHUNKS, TEXT_WIDTH = 64, 128  # 8.4M numbers: 75-210 MiB of csv, jsonl, json
# What serving one of these results may add to the API worker's peak RSS, far below each
# result's size: a few chunks (2 MiB each) and their renderings, plus allocator slack.
BUDGET = 32 * MIB


def chunk_outputs(n: int, width: int = WIDTH) -> np.ndarray:
    """Chunk ``n``'s outputs: row r of the job is 0..width-1 rotated by 7r, plus (r mod 1024)
    / 1024 in every column (all exact in float32, and too many distinct values for parquet's
    dictionaries): its argmax is (width - 1 - 7r) mod width."""
    rows = np.arange(n * CHUNK_ROWS, (n + 1) * CHUNK_ROWS)[:, None]
    whole = (rows * 7 + np.arange(width)[None, :]) % width
    return (whole + (rows % 1024) / 1024).astype(np.float32)


def completed_job(jobs: JobStore, instance: str, chunks: int, width: int) -> JobRecord:
    """A completed job of ``chunks`` chunks of :func:`chunk_outputs`, stored as workers do."""
    record = jobs.create(
        instance,
        kind="batch",
        deployment_id=str(uuid.uuid4()),
        model_id=str(uuid.uuid4()),
        model_sha256="0" * 64,
        model_filename="m.h5",
        rows_total=chunks * CHUNK_ROWS,
        chunk_rows=CHUNK_ROWS,
        input_chunks=[b"-"] * chunks,
        fields=FIELDS,
        output_names=["wide"],
        retention_s=3600,
    )
    for n in range(chunks):
        assert jobs.claim_chunk(instance, record.id, n, 3) is ClaimOutcome.RUN
        payload = render([chunk_outputs(n, width)], "batch", ResultShape.WML_V3, ["wide"])
        jobs.complete_chunk(instance, record.id, n, CHUNK_ROWS, payload)
    done = jobs.get(instance, record.id)
    assert done.status == "completed"
    return done


def download(http: httpx.Client, url: str, fmt: str, path: Path) -> None:
    with http.stream("GET", url, params={"format": fmt}) as response:
        assert response.status_code == 200
        with path.open("wb") as out:
            for piece in response.iter_bytes():
                out.write(piece)


def reset_peak_rss(pid: int) -> int:
    """Reset a process's peak RSS to its current RSS (``5`` to clear_refs); that RSS."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return peak_rss(pid)


def peak_rss(pid: int) -> int:
    """A process's peak resident set size in bytes (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_large_result_streams_through_the_real_server(redis_url: str, tmp_path: Path) -> None:
    settings = Settings(redis_url=redis_url, key_prefix=f"ksstream-{uuid.uuid4().hex[:8]}")
    client = redis.Redis.from_url(redis_url)
    inst = instance_store(settings, client).create("stream", "stream")
    inst_id = inst.instance.id
    jobs = JobStore(client, Keys(settings.key_prefix))
    record = completed_job(jobs, inst_id, CHUNKS, WIDTH)
    # The text formats print every number: a smaller job keeps the test's time down.
    text_record = completed_job(jobs, inst_id, TEXT_CHUNKS, TEXT_WIDTH)
    small = completed_job(jobs, inst_id, 1, WIDTH)

    env = {
        "KSCORE_REDIS_URL": redis_url,
        "KSCORE_KEY_PREFIX": settings.key_prefix,
        "KSCORE_DATA_DIR": str(tmp_path / "data"),
        "KSCORE_RATE_LIMIT": "off",
        # Each of gunicorn's threads would otherwise get a malloc arena of its own that keeps
        # the chunk-sized blocks it freed: tens of MiB of slack unrelated to a result's size.
        "MALLOC_ARENA_MAX": "2",
    }
    stack = Supervisor(tmp_path, {**os.environ, **env}, cwd=ROOT)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    try:
        api = stack.start_api(port=port, workers=1)
        stack.wait_ready(url, timeout=120)
        (worker,) = psutil.Process(api.process.pid).children()
        headers = {"Authorization": f"Bearer {inst.key.api_key}"}
        result_url = f"{url}/api/v1/jobs/{record.id}/result"
        with httpx.Client(headers=headers, timeout=120) as http:
            # Warm up: every renderer's imports (pyarrow, zipfile) loaded on a small result.
            for fmt in ("json", "jsonl", "npy", "npz", "parquet", "csv"):
                warm = http.get(f"{url}/api/v1/jobs/{small.id}/result", params={"format": fmt})
                assert warm.status_code == 200, warm.text
            for fmt in ("npy", "npz", "parquet"):
                path = tmp_path / f"result.{fmt}"
                baseline = reset_peak_rss(worker.pid)
                download(http, result_url, fmt, path)
                grown = peak_rss(worker.pid) - baseline
                print(
                    f"{fmt}: {path.stat().st_size / MIB:.0f} MiB served; API worker peak RSS "
                    f"grew {grown / MIB:.1f} MiB (baseline {baseline / MIB:.0f} MiB)"
                )
                assert grown < BUDGET, f"{fmt}: the API's peak RSS grew {grown / MIB:.0f} MiB"
                check_file(path, fmt)
                path.unlink()
            text_url = f"{url}/api/v1/jobs/{text_record.id}/result"
            for fmt in ("json", "jsonl", "csv"):
                path = tmp_path / f"result.{fmt}"
                baseline = reset_peak_rss(worker.pid)
                download(http, text_url, fmt, path)
                size = path.stat().st_size
                grown = peak_rss(worker.pid) - baseline
                print(
                    f"{fmt}: {size / MIB:.0f} MiB served; API worker peak RSS grew "
                    f"{grown / MIB:.1f} MiB"
                )
                assert size > BUDGET
                assert grown < BUDGET, f"{fmt}: the API's peak RSS grew {grown / MIB:.0f} MiB"
                rows = sum(1 for _ in path.open("rb"))
                assert (
                    rows
                    == {
                        "json": 1,
                        "jsonl": TEXT_CHUNKS * CHUNK_ROWS,
                        "csv": TEXT_CHUNKS * CHUNK_ROWS + 1,
                    }[fmt]
                )
                path.unlink()
    finally:
        stack.stop(grace=10)
        client.close()


def check_file(path: Path, fmt: str) -> None:
    """The file holds every row in order (spot checks at chunk boundaries)."""
    picks = [0, CHUNK_ROWS - 1, CHUNK_ROWS, CHUNKS * CHUNK_ROWS - 1]
    if fmt == "npy":
        array = np.load(path, mmap_mode="r")
        assert array.shape == (CHUNKS * CHUNK_ROWS, WIDTH) and array.dtype == np.float32
        for r in picks:
            np.testing.assert_array_equal(array[r], chunk_outputs(r // CHUNK_ROWS)[r % CHUNK_ROWS])
    elif fmt == "npz":
        with zipfile.ZipFile(path) as archive:
            assert sorted(archive.namelist()) == ["prediction_classes.npy", "wide.npy"]
        with np.load(path) as npz:
            classes = npz["prediction_classes"]
        rows = np.arange(CHUNKS * CHUNK_ROWS)
        np.testing.assert_array_equal(classes, (WIDTH - 1 - 7 * rows) % WIDTH)
    else:
        parquet = pq.ParquetFile(path)
        assert parquet.metadata.num_rows == CHUNKS * CHUNK_ROWS
        assert parquet.num_row_groups == CHUNKS
        last = (
            parquet.read_row_group(CHUNKS - 1).column("probability").to_numpy(zero_copy_only=False)
        )
        np.testing.assert_array_equal(last[-1], chunk_outputs(CHUNKS - 1)[-1])

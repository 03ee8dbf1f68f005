"""A dataset far larger than a chunk goes through the real API process (gunicorn) without ever
being whole in its memory: the process's peak RSS grows by a small fraction of the data.

A parquet file is read a row group at a time, so its reader's memory follows the row group
(25 MB here), not the file: after a warm-up upload with the same row groups, the 200 MB file
adds little to the peak."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import psutil
import pytest
import redis

from kscore import Client
from kscore.devstack import Supervisor
from kscore.localredis import free_port
from shared.settings import Settings
from tests.conftest import instance_store

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ROWS, FEATURES = 64_000, 784  # float32: 200 MB, 32 chunks of 2,000 rows


def peak_rss_bytes(pid: int) -> int:
    """The process's peak resident set size so far (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def write_parquet(rows: np.ndarray, path: Path, group_rows: int = 8000) -> Path:
    """``rows`` as scalar float columns, one row group per ``group_rows`` rows (25 MB)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = [f"f{i}" for i in range(rows.shape[1])]
    writer = None
    for start in range(0, len(rows), group_rows):
        part = np.asarray(rows[start : start + group_rows])
        table = pa.table([pa.array(part[:, i]) for i in range(part.shape[1])], names=names)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()
    return path


@pytest.mark.parametrize("fmt", ["npy", "parquet"])
def test_a_200_mb_upload_keeps_the_api_process_small(
    redis_url: str, tmp_path: Path, fmt: str
) -> None:
    settings = Settings(
        redis_url=redis_url,
        key_prefix=f"ksmem-{uuid.uuid4().hex[:8]}",
        data_dir=tmp_path / "data",
        default_instance=f"m{uuid.uuid4().hex[:12]}",
    )
    client = redis.Redis.from_url(redis_url)
    key = instance_store(settings, client).create(settings.default_instance, "mem").key.api_key
    data = tmp_path / "rows.npy"
    rows = np.lib.format.open_memmap(data, mode="w+", dtype=np.float32, shape=(ROWS, FEATURES))
    for start in range(0, ROWS, 8000):
        rows[start : start + 8000] = np.random.default_rng(start).random((8000, FEATURES))
    rows.flush()
    if fmt == "parquet":
        data = write_parquet(rows, tmp_path / "rows.parquet")
    del rows
    port = free_port()
    env = {
        **os.environ,
        "KSCORE_REDIS_URL": redis_url,
        "KSCORE_KEY_PREFIX": settings.key_prefix,
        "KSCORE_DATA_DIR": str(settings.data_dir),
        "KSCORE_RATE_LIMIT": "off",
    }
    url = f"http://127.0.0.1:{port}"
    with Supervisor(tmp_path / "logs", env, cwd=ROOT) as stack:
        master = stack.start_api(port=port, workers=1)
        stack.wait_ready(url, timeout=120)
        worker = psutil.Process(master.process.pid).children()[0]
        with Client(url, api_key=key, timeout=600) as api:
            # Warm up: the first upload imports what the upload path needs, and a parquet
            # file's reader holds a row group (its size, not the file's, bounds the memory).
            warm = np.ones((16_000, FEATURES), np.float32)
            if fmt == "parquet":
                api.datasets.upload(write_parquet(warm, tmp_path / "warm.parquet"))
            else:
                api.datasets.upload(warm[:10])
            before = peak_rss_bytes(worker.pid)
            dataset = api.datasets.upload(data)
            growth = peak_rss_bytes(worker.pid) - before
            assert dataset["rows"] == ROWS and dataset["chunks"] == 32
            api.datasets.delete(dataset["id"])
    size = data.stat().st_size
    print(f"{fmt}: dataset {size / 1e6:.0f} MB, API peak RSS growth {growth / 1e6:.1f} MB")
    # parquet: pyarrow decodes a row group's column chunks (784 of them here) in the thread
    # that reads; gunicorn's gthread worker may run this request in another thread than the
    # warm-up, whose allocator heap is then new. Bounded by the row group, not the file.
    bound = size / 5 if fmt == "npy" else size / 2
    assert growth < bound, f"peak RSS grew by {growth / 1e6:.0f} MB for {size / 1e6:.0f} MB"

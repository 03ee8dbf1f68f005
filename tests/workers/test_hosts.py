"""Workers on several hosts: a job shared by two worker hosts completes on one when the other's
link is cut mid-job.

The hosts are the test's own: Linux network namespaces (one for Redis, one per worker host)
joined by veth pairs, with addresses in 10.213.0.0/16 that exist only inside them. The API
side (this process) reaches Redis through its Unix socket, as a process on the Redis host
would. Skipped where the kernel or the machine refuses namespaces.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from api.services import Services
from kscore.devstack import worker_command
from kscore.localredis import find_redis_server
from kscore.processes import Child, stop_children
from shared.keys import Keys
from shared.redis_client import connect
from shared.settings import Settings
from shared.status import JobStatus
from tests import keras_files as kf
from tests.helpers import wait_for
from tests.workers.redis_hosts import Hosts, netns_unavailable
from tests.workers.test_reconciler import deployed, result_rows, stored_dense

pytestmark = pytest.mark.slow

REDIS_PORT = 6379  # inside the Redis namespace: nothing else listens there
VISIBILITY_TIMEOUT = "5s"  # chunks the cut host held come back this long after it took them


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    """A Redis host and two worker hosts, deleted afterwards whatever happens."""
    reason = netns_unavailable()
    if reason is not None:
        pytest.skip(f"no namespace hosts on this machine: {reason}")
    topology = Hosts(workers=2)
    try:
        yield topology.build()
    finally:
        topology.destroy()


def test_a_job_completes_on_one_host_after_the_others_link_is_cut(
    hosts: Hosts, tmp_path: Path
) -> None:
    # A short directory: a Unix socket's path must fit in 108 bytes.
    socket_dir = Path(tempfile.mkdtemp(prefix="ks-redis-"))
    socket = socket_dir / "redis.sock"
    children: list[Child] = []
    try:
        listen = [hosts.redis_address(n) for n in (1, 2)]
        redis_server = hosts.spawn(
            hosts.redis_ns,
            "redis",
            [find_redis_server(), "--bind", *listen, "--port", str(REDIS_PORT),
             "--unixsocket", str(socket), "--unixsocketperm", "700", "--save", "",
             "--appendonly", "no", "--protected-mode", "no", "--dir", str(socket_dir)],
            {},
            tmp_path,
            role="redis",
        )  # fmt: skip
        children.append(redis_server)
        wait_for(socket.exists, 10, "redis-server in its namespace")
        settings = Settings(
            redis_url=f"unix://{socket}?db=0",
            key_prefix="hosts",
            data_dir=tmp_path / "data",
            chunk_rows=200,
        )
        client = connect(settings)
        wait_for(client.ping, 10, "redis-server to answer")
        services = Services.build(settings, client)
        instance = "hosts-test"
        caches = [tmp_path / f"host{n}-model-cache" for n in (1, 2)]
        for n, (ns, cache) in enumerate(zip(hosts.worker_ns, caches, strict=True), start=1):
            env = {
                **os.environ,
                "KSCORE_REDIS_URL": f"redis://{hosts.redis_address(n)}:{REDIS_PORT}/0",
                "KSCORE_KEY_PREFIX": settings.key_prefix,
                "KSCORE_DATA_DIR": str(tmp_path / f"host{n}-data"),
                "KSCORE_MODEL_CACHE_DIR": str(cache),
                "KSCORE_VISIBILITY_TIMEOUT": VISIBILITY_TIMEOUT,
                "KSCORE_RECONCILE_INTERVAL": "1s",
                "KSCORE_TF_THREADS": "1",
                # Small direct calls: a chunk takes long enough to be caught on a host.
                "KSCORE_DIRECT_CALL_MAX_ROWS": "2",
                "PYTHONUNBUFFERED": "1",
            }
            command = worker_command(concurrency=1, node_name=f"host{n}@%h")
            children.append(hosts.spawn(ns, f"host{n}", command, env, tmp_path))

        model_id = stored_dense(services, instance, tmp_path)
        deployment_id = deployed(services, instance, model_id)
        x = np.random.default_rng(13).normal(size=(40_000, 4)).astype(np.float32)
        job_id = services.submit_job(
            instance, deployment_id, {"values": x.tolist()}, kind="batch"
        ).id

        def scored(host: Child) -> int:
            return host.log_path.read_text(errors="replace").count("chunk scored")

        # Both hosts take part (each scored chunks, with the model file in its own cache).
        wait_for(lambda: all(scored(h) >= 10 for h in children[1:]), 120, "both hosts", 0.05)
        assert all(any(cache.glob("*/*")) for cache in caches)
        keys = Keys(settings.key_prefix)
        before = services.jobs.get(instance, job_id)
        assert before.status is JobStatus.RUNNING and before.rows_done < len(x), before
        hosts.cut(1)
        cut_at = time.monotonic()
        in_flight = set(client.hkeys(keys.job_attempts(instance, job_id))) - set(
            client.smembers(keys.job_done(instance, job_id))
        )

        wait_for(lambda: services.jobs.get(instance, job_id).finished, 180, "the job to end", 0.2)
        print(
            f"\nhost cut: the job ended on the other host {time.monotonic() - cut_at:.1f} s "
            f"after the cut (visibility timeout {VISIBILITY_TIMEOUT}; {len(in_flight)} chunk(s) "
            f"in flight at the cut; chunks scored: host1 {scored(children[1])}, "
            f"host2 {scored(children[2])})"
        )
        record = services.jobs.get(instance, job_id)
        assert record.status is JobStatus.COMPLETED, (record.status, record.error)
        assert record.rows_done == record.rows_total == len(x)  # every row counted once
        got = [row[0] for row in result_rows(services, instance, job_id)]
        assert len(got) == len(x)
        np.testing.assert_allclose(got, kf.expected_dense_softmax(x), rtol=1e-5, atol=1e-6)
        assert children[1].running() and children[2].running()  # host 1 was cut, not killed
        client.close()
    except BaseException:
        for child in children:
            print(f"--- {child.name} ---\n{child.log_tail(40)}")
        raise
    finally:
        # The cut host cannot finish its chunk: no warm shutdown to wait for.
        stop_children(children, grace=5)
        for leftover in socket_dir.iterdir():
            leftover.unlink()
        socket_dir.rmdir()

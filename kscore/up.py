"""The commands that run the server: ``kscore up`` (the whole stack, for development),
``kscore worker`` and ``kscore api`` (one part each, as production runs them).

``kscore up`` keeps Redis, the worker(s) and the API running under :mod:`kscore.devstack`'s
supervisor until Ctrl-C; the other two replace this process with the part they run.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any, NoReturn

import click

from kscore.client import DEFAULT_URL
from kscore.credentials import STACK_FILE, is_loopback_host, write_private_json
from kscore.devstack import (
    API_ENV,
    DEFAULT_QUEUES,
    SERVER_EXTRAS_HINT,
    ChildExited,
    DevStackError,
    Supervisor,
    api_command,
    child_env,
    missing_server_modules,
    port_in_use,
    public_url,
    worker_command,
)

__all__ = ["UpOptions", "api", "run_up", "up", "worker"]

API_PROCESSES = 2  # gunicorn processes `kscore up` runs; each has 8 threads


@dataclass(frozen=True)
class UpOptions:
    """What ``kscore up`` was asked to run."""

    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    redis_url: str | None = None
    data_dir: Path = Path(".kscore")
    startup_timeout: float = 120.0
    flower: bool = False
    flower_port: int = 5555


class _Signals:
    """Counts Ctrl-C / SIGTERM / SIGHUP (the terminal closed) while installed: the first asks
    to stop, the next to hurry."""

    def __init__(self) -> None:
        self.count = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1


LOCK_NAME = "kscore-up.lock"


def hold_data_dir(data_dir: Path) -> IO[str]:
    """Lock ``data_dir`` for this process (an exclusive ``flock`` on ``kscore-up.lock``, which
    also records the pid); the open lock file, to keep open while the stack runs.

    Two stacks on one data directory would start two Redis servers on one append-only file.
    Raises DevStackError naming the other process when the directory is taken.
    """
    import fcntl

    path = data_dir / LOCK_NAME
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        handle.close()
        raise DevStackError(
            f"{data_dir} is in use by another kscore up (pid {owner}); stop that one first, or "
            "give this one its own --data-dir."
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def _warn(message: str) -> None:
    click.echo(message, err=True)


def run_up(
    options: UpOptions,
    say: Callable[[str], None] = click.echo,
    warn: Callable[[str], None] = _warn,
) -> int:
    """Run Redis (unless given one), the workers and the API until Ctrl-C or SIGTERM.

    Returns the exit code: 0 after a requested stop, 1 when a child died (its log tail is
    shown through ``warn``). Raises DevStackError when the stack cannot start (server extras
    missing, port in use, no redis-server, API not healthy within the startup timeout).
    """
    missing = missing_server_modules("celery", "gunicorn", "flask", "redis")
    if missing:
        raise DevStackError(f"kscore up needs {', '.join(missing)}. {SERVER_EXTRAS_HINT}")
    if options.workers < 1:
        raise DevStackError("--workers must be at least 1.")
    if port_in_use(options.host, options.port):
        raise DevStackError(
            f"Port {options.port} on {options.host} is already in use (is kscore already "
            "running?). Stop it or pick another port with --port."
        )
    if options.flower:
        if missing_server_modules("flower"):
            raise DevStackError(f"kscore up --flower needs flower. {SERVER_EXTRAS_HINT}")
        if port_in_use(FLOWER_HOST, options.flower_port):
            raise DevStackError(
                f"Port {options.flower_port} on {FLOWER_HOST} is already in use; pick another "
                "port for Flower with --flower-port."
            )
    data_dir = options.data_dir.resolve()
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    lock = hold_data_dir(data_dir)  # released when this process ends, however it ends
    url = public_url(options.host, options.port)
    env = child_env(options.redis_url, data_dir, url, workers=options.workers)
    stack = Supervisor(logs, env, warn=lambda line: warn(f"kscore up: {line}"))

    def report(exc: ChildExited) -> int:
        warn(f"kscore up: {exc}")
        warn("kscore up: stopping the others.")
        return 1

    warn_auth_disabled(options.host, warn)
    stack_file = data_dir / STACK_FILE
    with _Signals() as signals:
        try:
            redis_url = options.redis_url or stack.start_redis(data_dir / "redis", persist=True)
            # For `kscore admin --data-dir`: which Redis this stack uses (removed at stop).
            write_private_json(stack_file, {"redis_url": redis_url, "url": url, "pid": os.getpid()})
            credentials, fresh = _local_credentials(redis_url, data_dir, url)
            for _ in range(options.workers):
                stack.start_worker()
            flower_auth = None
            if options.flower:
                flower_auth = flower_basic_auth(data_dir, os.environ)
                stack.start_flower(options.flower_port, basic_auth=flower_auth[0], host=FLOWER_HOST)
            stack.start_api(options.host, options.port, workers=API_PROCESSES)
            try:
                # Ready means a worker consumes (/readyz), not just that the API answers.
                ready = stack.wait_ready(
                    url,
                    timeout=options.startup_timeout,
                    workers=options.workers,
                    interrupted=lambda: signals.count > 0,
                )
            except ChildExited as exc:
                return report(exc)
            if not ready:
                say("kscore up: stopping.")
                return 0
            say(f"kscore is up at {url}  (API docs: {url}/api/v1/docs)")
            say(f"  data:  {data_dir}")
            if stack.redis is not None:
                say(f"  redis: {redis_url} (local, files in {stack.redis.data_dir})")
            else:
                say(f"  redis: {redis_url}")
            if flower_auth is not None:
                say(
                    f"  flower: http://{FLOWER_HOST}:{options.flower_port} (basic auth: "
                    f"{flower_auth[1]})"
                )
            names = ", ".join(f"{c.name}.log" for c in stack.children if c.role != "redis")
            say(f"  logs:  {logs}/ ({names}; redis.log beside the Redis files)")
            say(
                f"  credentials: {credentials} ({'new; ' if fresh else ''}API key, WML "
                "username and password of the default instance; kscore and kscore.Client "
                "read it for this URL)"
            )
            exports = []
            if url != DEFAULT_URL:
                exports.append(f"KSCORE_URL={url}")
            if data_dir != Path(".kscore").resolve():
                exports.append(f"KSCORE_DATA_DIR={data_dir}")
            if exports:
                # Without these, `kscore` in another shell talks to :8080 with ./.kscore's key.
                say(f"  for the CLI in another shell: export {' '.join(exports)}")
            say("Press Ctrl-C to stop.")

            while not signals.count:
                try:
                    stack.check_alive()
                except ChildExited as exc:
                    return report(exc)
                time.sleep(0.25)
            say("kscore up: stopping (API, then workers, then Redis) ...")
            return 0
        finally:
            asked = signals.count
            # A second Ctrl-C while stopping means "now".
            stack.stop(hurry=lambda: signals.count > max(asked, 1))
            stack_file.unlink(missing_ok=True)
            lock.close()


FLOWER_HOST = "127.0.0.1"  # kscore up's Flower listens on loopback only
FLOWER_FILE = "flower.json"
FLOWER_AUTH_ENV = "KSCORE_FLOWER_BASIC_AUTH"


def flower_basic_auth(data_dir: Path, environ: Mapping[str, str]) -> tuple[str, str]:
    """Flower's ``user:password`` for ``kscore up --flower`` and where it comes from:
    ``KSCORE_FLOWER_BASIC_AUTH`` when set, else the one kept in ``<data_dir>/flower.json``
    (made on first use: user ``kscore``, a random password; the file is private)."""
    given = environ.get(FLOWER_AUTH_ENV, "").strip()
    if given:
        user, sep, password = given.partition(":")
        if not (user and sep and password):
            raise DevStackError(f"{FLOWER_AUTH_ENV} must be user:password.")
        return given, f"from {FLOWER_AUTH_ENV}"
    path = data_dir / FLOWER_FILE
    try:
        stored = json.loads(path.read_text())
        auth = f"{stored['username']}:{stored['password']}"
    except (OSError, ValueError, KeyError, TypeError):
        auth = f"kscore:{secrets.token_urlsafe(18)}"
        user, _, password = auth.partition(":")
        write_private_json(path, {"username": user, "password": password})
    return auth, f"user and password in {path}"


def _local_credentials(redis_url: str, data_dir: Path, url: str) -> tuple[Path, bool]:
    """The default instance's credentials file (see :func:`kscore.admin.ensure_local_credentials`).

    Raises DevStackError when Redis refuses or the settings are bad.
    """
    from kscore.admin import ensure_local_credentials

    try:
        return ensure_local_credentials(redis_url, data_dir, url)
    except click.ClickException as exc:
        raise DevStackError(exc.message) from exc


def warn_auth_disabled(host: str, warn: Callable[[str], None] = _warn) -> None:
    """Say at start what KSCORE_AUTH=disabled does for an API bound to ``host``."""
    if os.environ.get("KSCORE_AUTH", "").strip().lower() != "disabled":
        return
    if is_loopback_host(host):
        warn(
            f"kscore: KSCORE_AUTH=disabled: the API on {host} serves every request without a "
            "key, as the default instance. Use it only on a machine you alone use."
        )
    else:
        warn(
            f"kscore: KSCORE_AUTH=disabled is ignored: the API binds {host}, not a loopback "
            "address, so every request still needs an API key."
        )


# -- the click commands --------------------------------------------------------------------


def _fail(message: str) -> NoReturn:
    raise click.ClickException(message)


def _exec(command: list[str], env: dict[str, str]) -> NoReturn:
    """Replace this process with ``command`` (so signals go straight to it)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], command, env)


def _require(*modules: str) -> None:
    missing = missing_server_modules(*modules)
    if missing:
        _fail(f"{', '.join(missing)} is not installed. {SERVER_EXTRAS_HINT}")


def _server_env(redis_url: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if redis_url:
        env["KSCORE_REDIS_URL"] = redis_url
    return env


_redis_option: Callable[[Callable[..., Any]], Callable[..., Any]] = click.option(
    "--redis-url",
    envvar="KSCORE_REDIS_URL",
    default=None,
    metavar="URL",
    help="Redis to use (env KSCORE_REDIS_URL).",
)


@click.command()
@click.option(
    "--queues",
    default=DEFAULT_QUEUES,
    show_default=True,
    help="Comma-separated queues to consume, the first one first when several have work.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes (each keeps its own model cache).",
)
@_redis_option
def worker(queues: str, concurrency: int, redis_url: str | None) -> None:
    """Run a Celery worker (needs kscore[server]).

    The worker deploys models and scores rows for the API; start more of them, on this or other
    machines pointed at the same Redis, to scale out.
    """
    _require("celery")
    _exec(worker_command(queues, concurrency), _server_env(redis_url))


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=8080, show_default=True, help="Port to bind."
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="gunicorn worker processes.",
)
@_redis_option
def api(host: str, port: int, workers: int, redis_url: str | None) -> None:
    """Run the HTTP API under gunicorn (needs kscore[server])."""
    _require("gunicorn", "flask")
    warn_auth_disabled(host)
    env = _server_env(redis_url)
    for name, value in API_ENV.items():
        env.setdefault(name, value)
    _exec(api_command(host, port, workers), env)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the API binds.")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=8080,
    show_default=True,
    help="Port the API binds.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Celery worker processes to start (with more than one, each gets an equal share of the CPU cores for TensorFlow unless KSCORE_TF_THREADS is set).",
)
@click.option(
    "--redis-url",
    envvar="KSCORE_REDIS_URL",
    default=None,
    metavar="URL",
    help="Use this Redis (env KSCORE_REDIS_URL) instead of starting a local one.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".kscore"),
    show_default=True,
    help="Where the local Redis files, logs and model cache live.",
)
@click.option(
    "--startup-timeout",
    type=click.FloatRange(min=1),
    default=120.0,
    show_default=True,
    help="Seconds to wait until the API answers and a worker consumes (/readyz).",
)
@click.option(
    "--flower",
    is_flag=True,
    help="Also run Flower (Celery's dashboard) on 127.0.0.1, with basic auth from "
    "KSCORE_FLOWER_BASIC_AUTH (user:password) or a password kept in DATA_DIR/flower.json.",
)
@click.option(
    "--flower-port",
    type=click.IntRange(1, 65535),
    default=5555,
    show_default=True,
    help="Port Flower binds (with --flower).",
)
def up(
    host: str,
    port: int,
    workers: int,
    redis_url: str | None,
    data_dir: Path,
    startup_timeout: float,
    flower: bool,
    flower_port: int,
) -> None:
    """Run Redis, workers and the API together (development).

    Without --redis-url a local redis-server keeps its data (AOF) in DATA_DIR/redis. With --flower,
    Flower runs on 127.0.0.1:--flower-port with basic auth. Output of
    the workers and the API goes to log files in DATA_DIR/logs. Ctrl-C stops the API, then the
    workers, then Redis.
    """
    options = UpOptions(
        host, port, workers, redis_url, data_dir, startup_timeout, flower, flower_port
    )
    try:
        code = run_up(options)
    except DevStackError as exc:
        _fail(str(exc))
    sys.exit(code)

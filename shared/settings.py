"""One frozen settings object, read from ``KSCORE_*`` environment variables.

Only entry points call :meth:`Settings.from_env`; tests build ``Settings(...)`` directly.
Every field is documented in the README's settings table with its default.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from shared.errors import SettingsError
from shared.keys import INSTANCE_ID

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds from '30', '30s', '15m', '12h' or '7d'."""
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a duration such as 30s, 15m, 12h or 7d")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_size(text: str) -> int:
    """Bytes from '1048576', '512KiB', '64MiB' or '1GiB' (powers of 1024)."""
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a size such as 1048576, 64MiB or 1GiB")
    unit = (m.group(2) or "b").lower()[:1]
    return int(m.group(1)) * {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}[unit]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"{text!r} must be a whole number of at least 1")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"{text!r} must be a whole number of at least 0")
    return value


# The bounds of a deployment's "batching" (and of the settings giving its defaults).
MAX_BATCH_SIZE_LIMIT = 10_000
MAX_BATCH_WAIT_MS_LIMIT = 1_000.0


def _batch_size(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_BATCH_SIZE_LIMIT:
        raise ValueError(f"{text!r} must be at most {MAX_BATCH_SIZE_LIMIT}")
    return value


def _batch_wait_ms(text: str) -> float:
    value = float(text)
    if not 0 <= value <= MAX_BATCH_WAIT_MS_LIMIT:
        raise ValueError(f"{text!r} must be between 0 and {MAX_BATCH_WAIT_MS_LIMIT:g} (ms)")
    return value


@dataclass(frozen=True)
class Settings:
    """kscore's configuration. Field ``x`` is read from ``KSCORE_X``; durations (fields
    ending in ``_s``, in seconds) from the variable without the suffix, e.g.
    ``online_timeout_s`` from ``KSCORE_ONLINE_TIMEOUT=30s``."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "kscore"
    data_dir: Path = Path(".kscore")
    model_cache_dir: Path | None = None
    public_url: str | None = None
    max_model_bytes: int = 1024**3
    blob_chunk_bytes: int = 4 * 1024**2
    model_cache_size: int = 4
    job_retention_s: float = 7 * 86400.0
    online_timeout_s: float = 30.0
    max_online_timeout_s: float = 300.0
    max_rows_online: int = 10_000
    max_rows_job: int = 1_000_000
    max_request_bytes: int = 256 * 1024**2
    chunk_rows: int = 2_000
    direct_call_max_rows: int = 1_024
    # Dynamic batching of online requests (defaults of a deployment's "batching"): at most
    # this many rows per model call, and how long a worker waits for more rows once requests
    # are arriving together (milliseconds; 0 never waits).
    max_batch_size: int = 64
    max_batch_wait_ms: float = 2.0
    # An online request held this long by a worker that stopped answering goes to another.
    online_reclaim_s: float = 30.0
    tf_threads: int = 0
    chunk_max_attempts: int = 3
    visibility_timeout_s: float = 3600.0
    reconcile_interval_s: float = 30.0
    default_instance: str = "default"
    auth: str = "required"
    # repr=False: a secret never appears in a log line or a traceback that prints settings.
    token_secret: str | None = dataclasses.field(default=None, repr=False)
    token_ttl_s: float = 12 * 3600.0
    metrics_access: str = "loopback"
    log_level: str = "INFO"
    # Per instance: work accepted and not finished (0: no limit), and requests per window.
    max_queued_rows: int = 5_000_000
    max_queued_jobs: int = 1_000
    rate_limit: str = "50/second;2000/minute"
    # How long an Idempotency-Key returns the job it created (at most the job's retention).
    idempotency_window_s: float = 86400.0
    # Where job callbacks may go: host patterns and CIDRs (none: no callback is accepted).
    webhook_allow: tuple[str, ...] = ()
    webhook_max_attempts: int = 5
    webhook_backoff_s: float = 30.0
    # Uploaded datasets: the largest body accepted, and how long one is kept by default.
    max_dataset_bytes: int = 4 * 1024**3
    dataset_retention_s: float = 7 * 86400.0

    @property
    def local_model_dir(self) -> Path:
        """Where a worker machine keeps model files fetched from Redis."""
        return self.model_cache_dir or (self.data_dir / "model-cache")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``KSCORE_*`` variables; a bad value raises SettingsError."""
        env = os.environ if environ is None else environ
        parsers: dict[str, Callable[[str], Any]] = {
            "redis_url": check_redis_url,
            "key_prefix": _key_prefix,
            "data_dir": Path,
            "model_cache_dir": Path,
            "public_url": lambda s: s.rstrip("/"),
            "max_model_bytes": parse_size,
            "blob_chunk_bytes": parse_size,
            "model_cache_size": _positive_int,
            "job_retention_s": parse_duration,
            "online_timeout_s": parse_duration,
            "max_online_timeout_s": parse_duration,
            "max_rows_online": _positive_int,
            "max_rows_job": _positive_int,
            "max_request_bytes": parse_size,
            "chunk_rows": _positive_int,
            "direct_call_max_rows": _positive_int,
            "max_batch_size": _batch_size,
            "max_batch_wait_ms": _batch_wait_ms,
            "online_reclaim_s": parse_duration,
            "tf_threads": _non_negative_int,
            "chunk_max_attempts": _positive_int,
            "visibility_timeout_s": parse_duration,
            "reconcile_interval_s": parse_duration,
            "default_instance": _instance_id,
            "auth": _choice("required", "disabled"),
            "token_secret": _token_secret,
            "token_ttl_s": _token_ttl,
            "metrics_access": _choice("loopback", "open"),
            "log_level": _log_level,
            "max_queued_rows": _non_negative_int,
            "max_queued_jobs": _non_negative_int,
            "rate_limit": _rate_limit,
            "idempotency_window_s": parse_duration,
            "webhook_allow": _webhook_allow,
            "webhook_max_attempts": _positive_int,
            "webhook_backoff_s": parse_duration,
            "max_dataset_bytes": parse_size,
            "dataset_retention_s": parse_duration,
        }
        values: dict[str, Any] = {}
        for name, parse in parsers.items():
            # Durations carry their unit in the value ("30s", "7d"), not in the variable's name.
            var = f"KSCORE_{name.removesuffix('_s').upper()}"
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            try:
                values[name] = parse(raw)
            except ValueError as exc:
                raise SettingsError(f"{var}: {exc}") from None
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


SENTINEL_DEFAULT_PORT = 26379
_MASTER_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_HOST_PORT = re.compile(
    r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9_.-]+))(?::(?P<port>\d{1,5}))?$"
)


@dataclass(frozen=True)
class SentinelTarget:
    """The Redis a ``sentinel://`` URL names: whichever server its sentinels call the master
    of ``master_name`` now."""

    sentinels: tuple[tuple[str, int], ...]
    master_name: str
    db: int = 0
    username: str | None = dataclasses.field(default=None, repr=False)
    password: str | None = dataclasses.field(default=None, repr=False)


def sentinel_target(url: str) -> SentinelTarget | None:
    """What ``sentinel://[[user]:password@]host[:port][,host[:port]...]/master[/db]`` names
    (port 26379 by default; the password is the master's and its replicas'); None for a
    URL of another scheme. Raises ValueError for a malformed one."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme != "sentinel":
        return None
    syntax = "sentinel://[[user]:password@]host[:port][,host[:port]...]/master_name[/db]"
    userinfo, at, location = rest.rpartition("@")
    hosts, _, path = location.partition("/")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels: list[tuple[str, int]] = []
    for part in hosts.split(","):
        m = _HOST_PORT.match(part.strip())
        port = int(m.group("port") or SENTINEL_DEFAULT_PORT) if m else 0
        if not m or not 0 < port < 65536:
            raise ValueError(f"{part!r} is not a sentinel host[:port] in {syntax}")
        sentinels.append((m.group("v6") or m.group("host"), port))
    name, _, db = path.partition("/")
    if not _MASTER_NAME.fullmatch(name):
        raise ValueError(f"the master name is missing or not 1-64 of [A-Za-z0-9_.-]: {syntax}")
    if db and not db.isdigit():
        raise ValueError(f"the database {db!r} is not a number: {syntax}")
    return SentinelTarget(tuple(sentinels), name, int(db or 0), username, password)


def check_redis_url(text: str) -> str:
    """``text`` if it is a URL ``KSCORE_REDIS_URL`` takes; ValueError saying what is wrong."""
    if not text.startswith(("redis://", "rediss://", "unix://", "sentinel://")):
        raise ValueError(f"{text!r} must start with redis://, rediss://, unix:// or sentinel://")
    try:
        sentinel_target(text)
    except ValueError as exc:
        # The URL may hold a password: name the part that is wrong, not the whole value.
        raise ValueError(f"a Redis Sentinel URL: {exc}") from None
    return text


def _key_prefix(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", text):
        raise ValueError(f"{text!r} must be 1-64 characters of letters, digits, '_', '.', '-'")
    return text


def _instance_id(text: str) -> str:
    if not INSTANCE_ID.fullmatch(text):
        raise ValueError(f"{text!r} must be 1-64 characters of lowercase letters, digits and '-'")
    return text


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in allowed:
            raise ValueError(f"{text!r} is not one of {', '.join(allowed)}")
        return value

    return parse


MIN_TOKEN_SECRET_CHARS = 32


def _token_secret(text: str) -> str:
    if len(text) < MIN_TOKEN_SECRET_CHARS:
        raise ValueError(
            f"the secret must be at least {MIN_TOKEN_SECRET_CHARS} characters "
            "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
        )
    return text


def _token_ttl(text: str) -> float:
    seconds = parse_duration(text)
    # IBM's client refreshes a token 30 min before it expires, and crashes in its
    # constructor if a fresh token is already that close.
    if seconds < 3600:
        raise ValueError(f"{text!r} is under 1h; WML clients need tokens valid well past 30m")
    return seconds


def _webhook_allow(text: str) -> tuple[str, ...]:
    from shared.webhooks import parse_allow_list  # the rule's one parser

    return parse_allow_list(text)


def _rate_limit(text: str) -> str:
    value = text.strip()
    if value.lower() == "off":
        return "off"
    # The parser of the library that applies the limit (Flask-Limiter's), so what passes
    # here is exactly what the API enforces. Imported here: only this setting needs it.
    from limits import parse_many

    try:
        parse_many(value)
    except ValueError:
        raise ValueError(f"{text!r} is not a rate such as 50/second;2000/minute (or off)") from None
    return value


def _log_level(text: str) -> str:
    level = text.strip().upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ValueError(f"{text!r} is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
    return level

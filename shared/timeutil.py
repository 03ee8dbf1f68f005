"""Timestamps as kscore stores and shows them."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> float:
    """Seconds since the epoch."""
    return datetime.now(UTC).timestamp()


def iso(ts: float | None) -> str | None:
    """ISO 8601 in UTC with millisecond precision and a Z, as WML wrote it."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{int((ts % 1) * 1000):03d}Z"
    )

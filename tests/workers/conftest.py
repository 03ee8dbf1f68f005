"""Fixtures for tests that run workers as subprocesses."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.settings import Settings
from tests.workers.processes import Workers


@pytest.fixture
def proc_settings(redis_url: str, tmp_path: Path) -> Settings:
    """Settings with a prefix of their own: the session's in-process worker never sees them."""
    return Settings(
        redis_url=redis_url,
        key_prefix=f"ksproc-{uuid.uuid4().hex[:8]}",
        data_dir=tmp_path / "data",
        chunk_rows=200,
    )


@pytest.fixture
def workers(proc_settings: Settings, tmp_path: Path) -> Iterator[Workers]:
    """Starts worker subprocesses on demand and stops them after the test."""
    pool = Workers(proc_settings, tmp_path)
    try:
        yield pool
    finally:
        pool.stop()

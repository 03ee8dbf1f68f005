"""Fixtures of the shared.keras_file tests."""

from __future__ import annotations

import pytest

from tests.shared.keras_file.helpers import Built


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """Model files from tests/keras_files.py, each built once per test module."""
    return Built(tmp_path_factory.mktemp("keras_files"))

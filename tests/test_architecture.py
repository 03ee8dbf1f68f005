"""The rules of docs/architecture.md, checked: who imports whom, and what importing costs."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_packages(package: str) -> set[str]:
    """Top-level names every module of ``package`` imports."""
    names: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("api", {"workers", "tensorflow", "keras", "tf_keras", "kscore"}),
        ("workers", {"api", "flask", "kscore"}),
        ("shared", {"api", "workers", "flask", "tensorflow", "keras", "tf_keras", "kscore"}),
        (
            "kscore",
            {"api", "workers", "shared", "flask", "celery", "redis", "tensorflow", "keras", "h5py"},
        ),
    ],
)
def test_packages_import_only_what_the_design_allows(package: str, forbidden: set[str]) -> None:
    assert imported_packages(package) & forbidden == set()


def loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return set(out.stdout.split())


def test_the_api_never_loads_tensorflow() -> None:
    loaded = loaded_after(
        "from api.app import create_app; from shared.settings import Settings; create_app(Settings())"
    )
    assert not loaded & {"tensorflow", "keras", "tf_keras", "workers"}


def test_the_worker_loads_tensorflow_only_when_a_task_needs_it() -> None:
    # workers.main builds the Celery app at import; TensorFlow must wait until after fork.
    loaded = loaded_after("import workers.main")
    assert "celery" in loaded
    assert not loaded & {"tensorflow", "keras", "tf_keras", "api", "flask"}


def test_the_client_is_http_only() -> None:
    loaded = loaded_after("import kscore, kscore.cli, kscore.client")
    assert "httpx" in loaded
    assert not loaded & {"flask", "celery", "redis", "tensorflow", "numpy", "shared"}

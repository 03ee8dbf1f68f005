"""What importing costs, checked at run time (who may import whom is `lint-imports`' job:
the contracts live in pyproject.toml and `make lint` checks them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def loaded_after(statement: str) -> set[str]:
    """Every module (dotted names) loaded in a fresh interpreter after ``statement``."""
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return set(out.stdout.split())


def top_level(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def test_the_api_never_loads_tensorflow() -> None:
    loaded = top_level(
        loaded_after(
            "from api.app import create_app; from shared.settings import Settings; "
            "create_app(Settings())"
        )
    )
    assert not loaded & {"tensorflow", "keras", "tf_keras", "workers"}


def test_the_worker_loads_tensorflow_only_when_a_task_needs_it() -> None:
    # workers.main builds the Celery app at import; TensorFlow must wait until after fork.
    loaded = top_level(loaded_after("import workers.main"))
    assert "celery" in loaded
    assert not loaded & {"tensorflow", "keras", "tf_keras", "api", "flask"}


def test_the_client_is_http_only() -> None:
    modules = loaded_after("import kscore, kscore.cli, kscore.client")
    assert "httpx" in top_level(modules)
    assert not top_level(modules) & {"flask", "celery", "redis", "tensorflow", "numpy", "api"}
    # Of the server's code, the client reads only the status vocabulary (stdlib-only).
    assert {m for m in modules if m.split(".")[0] == "shared"} <= {"shared", "shared.status"}


def test_pyarrow_loads_only_when_a_result_is_written_as_csv_or_parquet() -> None:
    # pyarrow costs a process tens of MB; only those two result renderers need it.
    loaded = top_level(
        loaded_after(
            "from api.app import create_app; from shared.settings import Settings; "
            "create_app(Settings()); import workers.main, workers.tasks"
        )
    )
    assert "pyarrow" not in loaded and "pandas" not in loaded

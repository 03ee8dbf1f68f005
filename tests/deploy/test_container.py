"""The Dockerfile and docker-compose.yml, checked as files (no Docker engine needed): what the
image installs and runs as, and how the compose services depend on each other."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("api", "workers", "shared", "kscore")


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def test_the_image_copies_each_package_and_installs_only_the_server_extras() -> None:
    instructions = _instructions()
    copies = [shlex.split(args) for kw, args in instructions if kw == "COPY"]
    sources = {src.rstrip("/") for args in copies for src in args[:-1]}
    assert set(PACKAGES) | {"pyproject.toml"} <= sources
    assert "." not in sources  # only the project's own files, never the whole context
    runs = " ".join(args for kw, args in instructions if kw == "RUN")
    assert "'.[server]'" in runs
    assert "dev" not in re.findall(r"\.\[([^\]]*)\]", runs)[0].split(",")
    assert not re.search(r"\b(pytest|ruff|mypy|curl)\b", runs)


def test_the_image_runs_as_a_user_that_is_not_root() -> None:
    users = [args for kw, args in _instructions() if kw == "USER"]
    assert users, "no USER instruction: the image would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}


def test_the_image_has_a_healthcheck_on_healthz_and_the_api_as_its_command() -> None:
    instructions = _instructions()
    checks = [args for kw, args in instructions if kw == "HEALTHCHECK"]
    assert len(checks) == 1 and "/healthz" in checks[0] and "python" in checks[0]
    assert "curl" not in checks[0]
    command = json.loads(next(args for kw, args in reversed(instructions) if kw == "CMD"))
    assert command[0] == "gunicorn" and command[-1] == "api.wsgi:app"
    # The worker and Flower commands are documented at the top of the file.
    text = (ROOT / "Dockerfile").read_text()
    assert "celery -A workers.main worker" in text and "celery -A workers.main flower" in text


def test_the_dockerignore_keeps_the_context_to_the_project_files() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".kscore", "tests"} <= ignored
    assert not set(PACKAGES) & ignored


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_services_healthchecks_and_start_order() -> None:
    services = _compose()["services"]
    assert set(services) >= {"redis", "api", "worker", "flower"}
    for name in ("redis", "api", "worker", "flower"):
        assert services[name]["healthcheck"]["test"], name
    assert "/healthz" in " ".join(services["api"]["healthcheck"]["test"])
    for name in ("api", "worker", "flower"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy", name
        assert services[name]["environment"]["KSCORE_REDIS_URL"].startswith("redis://redis:")


def test_compose_redis_keeps_its_append_only_file_fsynced_every_second() -> None:
    command = _compose()["services"]["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "everysec"


def test_compose_flower_demands_basic_auth_and_publishes_on_loopback_only() -> None:
    flower = _compose()["services"]["flower"]
    auth = flower["environment"]["FLOWER_BASIC_AUTH"]
    assert auth.startswith("${KSCORE_FLOWER_BASIC_AUTH:?")  # compose refuses to start without it
    assert all(str(port).startswith("127.0.0.1:") for port in flower["ports"])

"""Which API key the client sends: explicit, then KSCORE_API_KEY, then the local file."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx
import pytest

from kscore import Client
from kscore.credentials import CREDENTIALS_FILE, api_key_for, write_private_json


def saved(tmp_path: Path, url: str = "http://127.0.0.1:8080") -> Path:
    write_private_json(tmp_path / CREDENTIALS_FILE, {"url": url, "api_key": "ksk_file"})
    return tmp_path


def test_order_explicit_environment_file(tmp_path: Path) -> None:
    data = saved(tmp_path)
    url = "http://127.0.0.1:8080"
    env = {"KSCORE_API_KEY": "ksk_env", "KSCORE_DATA_DIR": str(data)}
    assert api_key_for(url, "ksk_given", env) == "ksk_given"
    assert api_key_for(url, None, env) == "ksk_env"
    assert api_key_for(url, None, {"KSCORE_DATA_DIR": str(data)}) == "ksk_file"


def test_the_file_is_only_for_the_local_server_that_wrote_it(tmp_path: Path) -> None:
    env = {"KSCORE_DATA_DIR": str(saved(tmp_path))}
    assert api_key_for("http://localhost:8080", None, env) == "ksk_file"
    assert api_key_for("http://127.0.0.1:8080/", None, env) == "ksk_file"
    assert api_key_for("http://127.0.0.1:9000", None, env) is None
    assert api_key_for("https://127.0.0.1:8080", None, env) is None
    assert api_key_for("http://scoring.example:8080", None, env) is None
    assert (
        api_key_for("http://127.0.0.1:8080", None, {"KSCORE_DATA_DIR": str(tmp_path / "x")}) is None
    )


def test_the_file_is_private(tmp_path: Path) -> None:
    path = saved(tmp_path) / CREDENTIALS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)
    write_private_json(path, {"url": "u", "api_key": "k"})  # rewritten: private again
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [CREDENTIALS_FILE]  # no temp file left


def test_the_client_sends_the_key_as_bearer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Authorization"))
        return httpx.Response(200, json={"status": "ok"})

    monkeypatch.delenv("KSCORE_API_KEY", raising=False)
    monkeypatch.setenv("KSCORE_DATA_DIR", str(saved(tmp_path)))
    transport = httpx.MockTransport(handler)
    Client("http://127.0.0.1:8080", transport=transport).health()
    Client("http://127.0.0.1:8080", api_key="ksk_mine", transport=transport).health()
    Client("http://remote:8080", transport=transport).health()
    assert seen == ["Bearer ksk_file", "Bearer ksk_mine", None]

"""`kscore admin` end to end against a real Redis, and the credentials `kscore up` keeps."""

from __future__ import annotations

import json
import stat
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner, Result
from flask import Flask

import kscore.cli
from api.app import create_app
from kscore.admin import ensure_local_credentials
from kscore.credentials import CREDENTIALS_FILE, STACK_FILE, write_private_json
from shared.instance_store import InstanceStore
from shared.keys import Keys
from shared.settings import Settings
from tests import keras_files as kf
from tests.helpers import store_model


@pytest.fixture
def settings(base_settings: Settings) -> Settings:
    """Each test its own installation (key prefix): instance names are unique per
    installation, and these tests name their instances freely."""
    return base_settings.replace(
        key_prefix=f"inst-{uuid.uuid4().hex[:8]}", default_instance=f"t{uuid.uuid4().hex[:12]}"
    )


SECRETS = {"url", "instance_id", "username", "password", "api_key"}


class Admin:
    """``kscore admin ...`` in this process, on the test's Redis and key prefix."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def run(self, *args: str, redis_url: bool = True, ok: bool = True) -> Result:
        extra = ["--redis-url", self.settings.redis_url] if redis_url else []
        env = {"KSCORE_KEY_PREFIX": self.settings.key_prefix, "KSCORE_REDIS_URL": None}
        result = CliRunner().invoke(
            kscore.cli.cli, ["admin", *args, *extra], env=env, catch_exceptions=False
        )
        if ok:
            assert result.exit_code == 0, result.output
        return result

    def json(self, *args: str, **kwargs: Any) -> Any:
        return json.loads(self.run(*args, "--json", **kwargs).output)


@pytest.fixture
def admin(settings: Settings) -> Admin:
    return Admin(settings)


def status(app: Flask, api_key: str, path: str = "/api/v1/models") -> int:
    return app.test_client().get(path, headers={"Authorization": f"Bearer {api_key}"}).status_code


def test_create_instance_prints_its_secrets_once_and_they_work(
    admin: Admin, app: Flask, tmp_path: Path
) -> None:
    created = admin.json("create-instance", "--name", "team-a")
    assert set(created) == SECRETS
    assert status(app, created["api_key"]) == 200
    svc = app.extensions["kscore"]
    assert (
        svc.instances.instance_for_password(created["username"], created["password"])
        == created["instance_id"]
    )
    listed = admin.json("list-instances")
    mine = next(i for i in listed if i["instance_id"] == created["instance_id"])
    assert mine["name"] == "team-a" and mine["models"] == 0 and mine["api_keys"] == 1
    assert "password" not in json.dumps(listed) and created["password"] not in json.dumps(listed)
    text = admin.run("create-instance", "--name", "team-b").output
    assert "api_key:" in text and "password:" in text


def test_an_instance_can_adopt_data_stored_under_its_id(
    admin: Admin, settings: Settings, app: Flask, tmp_path: Path
) -> None:
    # Data stored before instances had credentials lives under KSCORE_DEFAULT_INSTANCE.
    svc = app.extensions["kscore"]
    model_file = kf.tf_keras_h5_file(tmp_path)
    with model_file.open("rb") as stream:
        svc.models.store_upload(
            settings.default_instance, stream, model_file.name, "old", None,
            max_bytes=10**8, workdir=tmp_path,
        )  # fmt: skip
    created = admin.json(
        "create-instance", "--name", "old", "--instance-id", settings.default_instance
    )
    assert created["instance_id"] == settings.default_instance
    listing = app.test_client().get(
        "/api/v1/models", headers={"Authorization": f"Bearer {created['api_key']}"}
    )
    assert [m["name"] for m in listing.get_json()["resources"]] == ["old"]
    taken = admin.run(
        "create-instance", "--name", "x", "--instance-id", settings.default_instance, ok=False
    )
    assert taken.exit_code == 1 and "instance_exists" in taken.output
    bad = admin.run("create-instance", "--name", "x", "--instance-id", "Bad_Id", ok=False)
    assert bad.exit_code == 1 and "lowercase" in bad.output


def test_keys_are_created_listed_and_revoked(admin: Admin, app: Flask) -> None:
    created = admin.json("create-instance", "--name", "team-a")
    iid = created["instance_id"]
    ci = admin.json("create-key", iid, "--name", "ci")
    assert set(ci) == {"instance_id", "key_id", "name", "api_key"}
    assert status(app, ci["api_key"]) == 200
    keys = admin.json("list-keys", iid)
    assert [k["name"] for k in keys] == ["default", "ci"]
    assert next(k for k in keys if k["name"] == "ci")["last_used_at"] != "never"
    assert ci["api_key"] not in json.dumps(keys)
    admin.run("revoke-key", iid, ci["key_id"])
    assert status(app, ci["api_key"]) == 401
    assert status(app, created["api_key"]) == 200
    again = admin.run("revoke-key", iid, ci["key_id"], ok=False)
    assert again.exit_code == 1 and "api_key_not_found" in again.output


def test_delete_instance_is_refused_while_it_holds_models(
    admin: Admin, app: Flask, tmp_path: Path
) -> None:
    created = admin.json("create-instance", "--name", "team-a")
    iid, key = created["instance_id"], created["api_key"]
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    model = store_model(client, kf.tf_keras_h5_file(tmp_path))
    refused = admin.run("delete-instance", iid, ok=False)
    assert refused.exit_code == 1 and "instance_not_empty" in refused.output
    assert client.get(f"/api/v1/models/{model['id']}").status_code == 200
    admin.run("delete-instance", iid, "--force")
    assert status(app, key) == 401
    assert iid not in {i["instance_id"] for i in admin.json("list-instances")}


def test_the_redis_of_a_running_kscore_up_is_found_by_data_dir(
    admin: Admin, settings: Settings, tmp_path: Path
) -> None:
    write_private_json(
        tmp_path / STACK_FILE, {"redis_url": settings.redis_url, "url": "http://127.0.0.1:9"}
    )
    created = admin.json(
        "create-instance", "--name", "x", "--data-dir", str(tmp_path), redis_url=False
    )
    assert created["url"] == "http://127.0.0.1:9"
    missing = admin.run(
        "list-instances", "--data-dir", str(tmp_path / "none"), redis_url=False, ok=False
    )
    assert missing.exit_code == 1 and "--redis-url" in missing.output


def test_unreachable_redis_is_one_line(admin: Admin) -> None:
    result = CliRunner().invoke(
        kscore.cli.cli,
        ["admin", "list-instances", "--redis-url", "redis://127.0.0.1:1/0"],
        env={"KSCORE_KEY_PREFIX": admin.settings.key_prefix},
    )
    assert result.exit_code == 1 and "Cannot reach Redis" in result.output


def test_local_credentials_are_made_once_private_and_repaired(
    settings: Settings, redis_client: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KSCORE_KEY_PREFIX", settings.key_prefix)
    monkeypatch.setenv("KSCORE_DEFAULT_INSTANCE", settings.default_instance)
    url = "http://127.0.0.1:8080"
    path, fresh = ensure_local_credentials(settings.redis_url, tmp_path, url)
    assert fresh and path == tmp_path / CREDENTIALS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    saved = json.loads(path.read_text())
    assert set(saved) == SECRETS and saved["instance_id"] == settings.default_instance
    app = create_app(settings, redis_client)
    assert status(app, saved["api_key"]) == 200

    # Started again: the same secrets, the URL brought up to date.
    _, fresh = ensure_local_credentials(settings.redis_url, tmp_path, "http://127.0.0.1:9000")
    again = json.loads(path.read_text())
    assert not fresh and again == {**saved, "url": "http://127.0.0.1:9000"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    # The key was revoked (or the file lost): new working secrets for the same instance.
    store = InstanceStore(redis_client, Keys(settings.key_prefix))
    store.revoke_key(settings.default_instance, store.keys_of(settings.default_instance)[0].id)
    _, fresh = ensure_local_credentials(settings.redis_url, tmp_path, url)
    repaired = json.loads(path.read_text())
    assert fresh and repaired["api_key"] != saved["api_key"]
    assert repaired["instance_id"] == settings.default_instance
    assert status(app, repaired["api_key"]) == 200
    assert store.instance_for_password(repaired["username"], repaired["password"]) == (
        settings.default_instance
    )


def test_webhook_secret_is_made_once_and_read_again(admin: Admin) -> None:
    iid = admin.json("create-instance", "--name", "hooks")["instance_id"]
    first = admin.json("webhook-secret", iid)
    assert first["instance_id"] == iid and first["webhook_secret"].startswith("whsec_")
    assert admin.run("webhook-secret", iid).output.strip() == first["webhook_secret"]
    missing = admin.run("webhook-secret", "nosuch", ok=False)
    assert missing.exit_code == 1 and "instance_not_found" in missing.output

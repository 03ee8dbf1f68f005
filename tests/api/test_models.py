"""The model repository over HTTP, against a real Redis."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from api.app import create_app
from shared.keys import Keys
from shared.settings import Settings
from tests import keras_files as kf
from tests.conftest import authorized_client


def upload(
    client: FlaskClient,
    path: Path,
    name: str | None = "m",
    filename: str | None = None,
    **extra: Any,
) -> Any:
    data: dict[str, Any] = {"file": (io.BytesIO(path.read_bytes()), filename or path.name), **extra}
    if name is not None:
        data["name"] = name
    return client.post("/api/v1/models", data=data, content_type="multipart/form-data")


def stored_nothing(client: FlaskClient, redis_client: redis.Redis, settings: Settings) -> bool:
    listing = client.get("/api/v1/models").get_json()
    blobs = list(redis_client.scan_iter(f"{settings.key_prefix}:blob:*", count=1000))
    keys = redis_client.scan_iter(f"{settings.key_prefix}:i:{settings.default_instance}:*")
    # The instance's own record and key index are not something a refused upload stored.
    models = [k for k in keys if not k.endswith((b":instance", b":api_keys"))]
    return listing["total"] == 0 and not models and not _new_blobs(blobs)


_KNOWN_BLOBS: set[bytes] = set()


def _new_blobs(blobs: list[bytes]) -> list[bytes]:
    # Blobs are shared across instances; a refusal must not add any blob key.
    return [b for b in blobs if b not in _KNOWN_BLOBS]


@pytest.fixture
def blob_snapshot(redis_client: redis.Redis, settings: Settings) -> None:
    _KNOWN_BLOBS.clear()
    _KNOWN_BLOBS.update(redis_client.scan_iter(f"{settings.key_prefix}:blob:*", count=1000))


@pytest.fixture(scope="module")
def h5_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kf.tf_keras_h5_file(tmp_path_factory.mktemp("h5"))


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kf.keras3_keras_file(tmp_path_factory.mktemp("keras"))


def test_store_h5_returns_the_inspected_model(client: FlaskClient, h5_file: Path) -> None:
    response = upload(client, h5_file, name="iris dense", description="four features")
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert response.headers["Location"] == body["href"]
    assert body["href"].endswith(f"/api/v1/models/{body['id']}")
    assert body["name"] == "iris dense"
    assert body["description"] == "four features"
    assert body["framework"] == "keras"
    assert body["format"] == "h5"
    assert body["keras_version"].startswith("2.")
    assert body["model_type"] == f"keras-{body['keras_version']}"
    assert body["backend"] == "tensorflow"
    assert body["size_bytes"] == h5_file.stat().st_size
    assert body["sha256"] == hashlib.sha256(h5_file.read_bytes()).hexdigest()
    assert body["created_at"].endswith("Z")
    assert [i["shape"] for i in body["inputs"]] == [[None, 4]]
    assert body["inputs"][0]["dtype"] == "float32"
    assert body["outputs"][0]["shape"] is None  # known once a worker has loaded the model
    assert body["outputs"][0]["activation"] == "softmax"
    assert client.get(f"/api/v1/models/{body['id']}").get_json() == body


def test_store_keras_zip_and_download_original_bytes(client: FlaskClient, keras_file: Path) -> None:
    body = upload(client, keras_file).get_json()
    assert body["format"] == "keras"
    assert body["keras_version"].startswith("3.")
    content = client.get(body["content_url"].split("localhost", 1)[-1])
    assert content.status_code == 200
    assert content.data == keras_file.read_bytes()
    assert keras_file.name in content.headers["Content-Disposition"]


def test_tarball_holding_one_model_is_stored_whole(
    client: FlaskClient, h5_file: Path, tmp_path: Path
) -> None:
    archive = kf.tar_gz_of(h5_file, tmp_path)
    body = upload(client, archive).get_json()
    assert body["format"] == "h5"
    assert body["filename"] == archive.name
    assert body["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    data = client.get(f"/api/v1/models/{body['id']}/content").data
    assert data == archive.read_bytes()


def test_same_bytes_share_one_blob_until_the_last_model_goes(
    client: FlaskClient, h5_file: Path, redis_client: redis.Redis, settings: Settings
) -> None:
    first = upload(client, h5_file, name="a").get_json()
    second = upload(client, h5_file, name="b").get_json()
    assert first["id"] != second["id"]
    assert first["sha256"] == second["sha256"]
    keys = Keys(settings.key_prefix)
    refs = keys.blob_refs(first["sha256"])
    assert redis_client.scard(refs) >= 2
    chunks = list(redis_client.scan_iter(keys.blob_meta(first["sha256"]) + ":chunk:*"))
    assert len(chunks) == 1  # one copy of the bytes, however many models
    assert client.delete(f"/api/v1/models/{first['id']}").status_code == 204
    assert redis_client.exists(keys.blob_meta(first["sha256"]))
    assert client.get(f"/api/v1/models/{second['id']}/content").data == h5_file.read_bytes()


def test_blob_is_chunked_and_deleted_with_its_last_model(
    settings: Settings, redis_client: redis.Redis, h5_file: Path, tmp_path: Path
) -> None:
    small_chunks = create_app(
        settings.replace(blob_chunk_bytes=1024, key_prefix=settings.key_prefix + "c"), redis_client
    )
    client = authorized_client(small_chunks)
    body = upload(client, h5_file).get_json()
    keys = Keys(settings.key_prefix + "c")
    chunks = list(redis_client.scan_iter(keys.blob_meta(body["sha256"]) + ":chunk:*"))
    assert len(chunks) == -(-h5_file.stat().st_size // 1024)
    assert client.get(f"/api/v1/models/{body['id']}/content").data == h5_file.read_bytes()
    assert client.delete(f"/api/v1/models/{body['id']}").status_code == 204
    assert not list(redis_client.scan_iter(keys.blob_meta(body["sha256"]) + "*"))
    assert client.get(f"/api/v1/models/{body['id']}").status_code == 404


def test_list_is_newest_first_and_paginated(client: FlaskClient, h5_file: Path) -> None:
    ids = [upload(client, h5_file, name=f"m{i}").get_json()["id"] for i in range(3)]
    first = client.get("/api/v1/models?limit=2").get_json()
    assert first["total"] == 3
    assert [m["id"] for m in first["resources"]] == ids[::-1][:2]
    nxt = first["next"]["href"]
    assert "offset=2" in nxt
    second = client.get(nxt.split("localhost", 1)[-1]).get_json()
    assert [m["id"] for m in second["resources"]] == [ids[0]]
    assert "next" not in second


def test_bad_paging_is_422(client: FlaskClient) -> None:
    response = client.get("/api/v1/models?limit=0")
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "validation_failed"
    assert "limit" in response.get_json()["error"]["details"]["fields"]


def test_unknown_model_is_404(client: FlaskClient) -> None:
    for method, path in [("get", ""), ("get", "/content"), ("delete", "")]:
        response = getattr(client, method)(f"/api/v1/models/nope{path}")
        assert response.status_code == 404
        assert response.get_json()["error"]["code"] == "model_not_found"


def _refused(response: Any, status: int, code: str, *phrases: str) -> None:
    assert response.status_code == status, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == code
    for phrase in phrases:
        assert phrase in error["message"], error["message"]


@pytest.mark.usefixtures("blob_snapshot")
class TestRefusalsStoreNothing:
    def test_wrong_extension(
        self, client: FlaskClient, h5_file: Path, redis_client: redis.Redis, settings: Settings
    ) -> None:
        _refused(
            upload(client, h5_file, filename="model.pkl"),
            400,
            "unsupported_model_file",
            ".h5",
            ".keras",
            ".tar.gz",
            ".zip",
        )
        assert stored_nothing(client, redis_client, settings)

    def test_not_a_model_file(
        self, client: FlaskClient, tmp_path: Path, redis_client: redis.Redis, settings: Settings
    ) -> None:
        path = kf.not_a_model_file(tmp_path)
        _refused(
            upload(client, path, filename="model.h5"),
            400,
            "unsupported_model_file",
            "not a Keras model file",
        )
        assert stored_nothing(client, redis_client, settings)

    def test_weights_only(
        self, client: FlaskClient, tmp_path: Path, redis_client: redis.Redis, settings: Settings
    ) -> None:
        _refused(
            upload(client, kf.weights_only_h5_file(tmp_path)),
            400,
            "unsupported_model_file",
            "model.save()",
        )
        assert stored_nothing(client, redis_client, settings)

    def test_empty_file(
        self, client: FlaskClient, tmp_path: Path, redis_client: redis.Redis, settings: Settings
    ) -> None:
        _refused(
            upload(client, kf.empty_file(tmp_path), filename="model.h5"),
            400,
            "unsupported_model_file",
            "empty",
        )
        assert stored_nothing(client, redis_client, settings)

    def test_archive_without_a_model(
        self, client: FlaskClient, tmp_path: Path, redis_client: redis.Redis, settings: Settings
    ) -> None:
        readme = tmp_path / "README.txt"
        readme.write_text("no model here")
        response = upload(client, kf.tar_gz_of(readme, tmp_path))
        assert response.status_code == 400
        assert response.get_json()["error"]["code"] == "unsupported_model_file"
        assert stored_nothing(client, redis_client, settings)

    def test_archive_with_two_models(
        self,
        client: FlaskClient,
        h5_file: Path,
        tmp_path: Path,
        redis_client: redis.Redis,
        settings: Settings,
    ) -> None:
        other = kf.sigmoid_binary_h5_file(tmp_path)
        response = upload(client, kf.zip_of(h5_file, tmp_path, extra_members=(other,)))
        assert response.status_code == 400
        assert response.get_json()["error"]["code"] == "unsupported_model_file"
        assert stored_nothing(client, redis_client, settings)

    def test_over_the_size_limit_is_413(
        self, settings: Settings, redis_client: redis.Redis, h5_file: Path
    ) -> None:
        small = authorized_client(create_app(settings.replace(max_model_bytes=1000), redis_client))
        _refused(upload(small, h5_file), 413, "payload_too_large", "KSCORE_MAX_MODEL_BYTES")
        assert stored_nothing(small, redis_client, settings)

    def test_missing_name_is_422(
        self, client: FlaskClient, h5_file: Path, redis_client: redis.Redis, settings: Settings
    ) -> None:
        response = upload(client, h5_file, name=None)
        _refused(response, 422, "validation_failed", "name")
        assert "name" in response.get_json()["error"]["details"]["fields"]
        assert stored_nothing(client, redis_client, settings)

    def test_name_too_long_is_422(
        self, client: FlaskClient, h5_file: Path, redis_client: redis.Redis, settings: Settings
    ) -> None:
        _refused(upload(client, h5_file, name="x" * 129), 422, "validation_failed", "name")
        assert stored_nothing(client, redis_client, settings)

    def test_missing_file_is_422(
        self, client: FlaskClient, redis_client: redis.Redis, settings: Settings
    ) -> None:
        response = client.post(
            "/api/v1/models", data={"name": "m"}, content_type="multipart/form-data"
        )
        _refused(response, 422, "validation_failed", '"file"')
        assert stored_nothing(client, redis_client, settings)

    @pytest.mark.parametrize(
        "builder", ["lambda_h5_file", "lambda_keras_file", "custom_layer_keras_file"]
    )
    def test_unsafe_model_is_422_naming_the_layer(
        self,
        builder: str,
        client: FlaskClient,
        tmp_path: Path,
        redis_client: redis.Redis,
        settings: Settings,
    ) -> None:
        response = upload(client, getattr(kf, builder)(tmp_path))
        _refused(response, 422, "unsafe_model")
        layers = response.get_json()["error"]["details"]["layers"]
        assert layers and all(
            layer["name"] in response.get_json()["error"]["message"] for layer in layers
        )
        assert stored_nothing(client, redis_client, settings)


def test_health_docs_and_unknown_routes(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok", "redis": "ok"}
    spec = client.get("/api/v1/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    assert "/api/v1/models" in spec["paths"]
    assert "Model" in spec["components"]["schemas"]
    page = client.get("/api/v1/docs")
    assert page.status_code == 200 and b"swagger-ui" in page.data
    assert client.get("/api/v1/docs/static/swagger-ui-bundle.js").status_code == 200
    missing = client.get("/api/v2/nothing")
    assert missing.status_code == 404
    assert missing.get_json()["error"]["code"] == "not_found"


def test_healthz_reports_redis_down(settings: Settings) -> None:
    down = settings.replace(redis_url="redis://127.0.0.1:1/0")
    app: Flask = create_app(down)
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "service_unavailable"


def test_fuzzed_edges_stay_in_the_envelope(client: FlaskClient) -> None:
    # Found by schemathesis: offsets beyond Redis' integer range, and 405 without Allow.
    huge = client.get("/api/v1/models?offset=17149882816019211821053658403962880")
    assert huge.status_code == 422
    assert "offset" in huge.get_json()["error"]["details"]["fields"]
    trace = client.open("/api/v1/models", method="TRACE")
    assert trace.status_code == 405
    assert trace.get_json()["error"]["code"] == "method_not_allowed"
    assert {"GET", "POST"} <= {m.strip() for m in trace.headers["Allow"].split(",")}

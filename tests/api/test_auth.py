"""The auth seam: credentials name the caller's instance; everything else is a 401 envelope."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from api import auth
from api.context import instance as context_instance
from shared.errors import Unauthorized
from shared.instance_store import NewInstance
from shared.settings import Settings
from tests.conftest import instance_store


def wml_payload(token: str) -> dict[str, object]:
    """The payload as IBM's client reads it: standard base64, padded loosely."""
    segment = token.split(".")[1]
    assert "-" not in segment and "_" not in segment
    return dict(json.loads(base64.b64decode(segment + "==")))


def test_no_credentials_is_401_in_the_envelope(anonymous: FlaskClient) -> None:
    response = anonymous.get("/api/v1/models")
    assert response.status_code == 401
    assert response.json["error"]["code"] == "unauthorized"
    assert "Bearer" in response.json["error"]["message"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_open_endpoints_need_no_credentials(anonymous: FlaskClient) -> None:
    assert anonymous.get("/healthz").status_code == 200
    assert anonymous.get("/api/v1/openapi.json").status_code == 200
    assert anonymous.get("/api/v1/docs").status_code == 200


def test_open_pages_with_a_trailing_slash_are_not_401(anonymous: FlaskClient) -> None:
    for path in ("/api/v1/docs/", "/api/v1/openapi.json/"):
        assert anonymous.get(path).status_code != 401, path


def test_a_key_sent_without_bearer_says_how_to_send_it(
    anonymous: FlaskClient, instance: NewInstance
) -> None:
    key = instance.key.api_key
    basic = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    for header, scheme in ((key, "no scheme"), (basic, "Basic")):
        response = anonymous.get("/api/v1/models", headers={"Authorization": header})
        assert response.status_code == 401
        message = response.json["error"]["message"]
        assert repr(scheme) in message and "`Bearer <api key>` is expected" in message


def test_an_unknown_or_malformed_key_is_401(anonymous: FlaskClient, instance: NewInstance) -> None:
    key = instance.key.api_key
    for bad in (key[:-2] + "xx", "ksk_nothing", "garbage", "a.b.c"):
        response = anonymous.get("/api/v1/models", headers={"Authorization": f"Bearer {bad}"})
        assert response.status_code == 401, bad
        assert response.json["error"]["code"] == "unauthorized"


def test_bearer_and_x_api_key_both_work(anonymous: FlaskClient, instance: NewInstance) -> None:
    key = instance.key.api_key
    assert (
        anonymous.get("/api/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code
        == 200
    )
    assert anonymous.get("/api/v1/models", headers={"X-API-Key": key}).status_code == 200


def test_a_revoked_key_is_refused_at_once(
    anonymous: FlaskClient, instance: NewInstance, settings: Settings, redis_client: redis.Redis
) -> None:
    store = instance_store(settings, redis_client)
    extra = store.create_key(settings.default_instance, "ci")
    headers = {"Authorization": f"Bearer {extra.api_key}"}
    assert anonymous.get("/api/v1/models", headers=headers).status_code == 200
    store.revoke_key(settings.default_instance, extra.record.id)
    assert anonymous.get("/api/v1/models", headers=headers).status_code == 401
    # The instance's other key is untouched.
    other = {"Authorization": f"Bearer {instance.key.api_key}"}
    assert anonymous.get("/api/v1/models", headers=other).status_code == 200


def test_last_used_is_recorded(
    client: FlaskClient, settings: Settings, redis_client: redis.Redis
) -> None:
    store = instance_store(settings, redis_client)
    assert store.keys_of(settings.default_instance)[0].last_used_at is None
    client.get("/api/v1/models")
    used = store.keys_of(settings.default_instance)[0].last_used_at
    assert used is not None and abs(used - time.time()) < 60


def test_the_hook_sets_the_instance_the_context_returns(
    app: Flask, instance: NewInstance, settings: Settings
) -> None:
    headers = {"Authorization": f"Bearer {instance.key.api_key}"}
    with app.test_request_context("/api/v1/models", headers=headers):
        auth.authenticate()
        assert auth.current_instance() == settings.default_instance
        assert context_instance() == settings.default_instance


def test_without_a_hook_there_is_no_instance(app: Flask) -> None:
    with app.test_request_context("/v3/anything"), pytest.raises(Unauthorized):
        auth.current_instance()


def test_set_current_instance(app: Flask) -> None:
    with app.test_request_context("/v3/anything"):
        auth.set_current_instance("abc")
        assert auth.current_instance() == "abc"
        assert context_instance() == "abc"


def test_wml_token_is_jwt_shaped_and_standard_base64(
    app: Flask, instance: NewInstance, settings: Settings
) -> None:
    with app.test_request_context("/v3/identity/token"):
        token = auth.issue_wml_token(settings.default_instance)
        assert token.count(".") == 2
        payload = wml_payload(token)
        assert payload["instance_id"] == settings.default_instance
        assert int(str(payload["exp"])) > time.time() + 11 * 3600
        assert auth.instance_for_bearer(token) == settings.default_instance


def test_token_payload_avoids_the_url_alphabet_whatever_the_instance(app: Flask) -> None:
    # '>', '?', '~' and DEL are the only ASCII bytes whose base64 can hold '-' or '_'.
    with app.test_request_context("/v3/identity/token"):
        for instance_id in ("???", ">>>~~~", "a?b>c~d\x7f", "x" * 7 + "?" * 9, "é?"):
            token = auth.issue_wml_token(instance_id)
            assert wml_payload(token)["instance_id"] == instance_id


def test_a_wml_token_works_as_bearer(
    app: Flask, anonymous: FlaskClient, instance: NewInstance, settings: Settings
) -> None:
    with app.test_request_context("/v3/identity/token"):
        token = auth.issue_wml_token(settings.default_instance)
    response = anonymous.get("/api/v1/models", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


def test_forged_expired_and_orphaned_tokens_are_refused(
    app: Flask, instance: NewInstance, settings: Settings, redis_client: redis.Redis
) -> None:
    with app.test_request_context("/v3/identity/token"):
        token = auth.issue_wml_token(settings.default_instance)
        secret = app.extensions["kscore"].token_secret()
        header, payload, signature = token.split(".")
        forged = jwt.encode(
            {**wml_payload(token), "sub": "other", "instance_id": "other"}, "x" * 32, "HS256"
        )
        expired = jwt.encode(
            {**wml_payload(token), "exp": int(time.time()) - 1}, secret, algorithm="HS256"
        )
        tampered = f"{header}.{payload[:-4]}AAAA.{signature}"
        for bad in (forged, expired, tampered, token + "x"):
            with pytest.raises(Unauthorized):
                auth.instance_for_bearer(bad)
            with pytest.raises(Unauthorized):
                auth.refresh_wml_token(bad)
        with pytest.raises(Unauthorized):
            auth.refresh_wml_token(instance.key.api_key)  # a key is not a token
        instance_store(settings, redis_client).delete(settings.default_instance)
        with pytest.raises(Unauthorized):
            auth.instance_for_bearer(token)


def test_refresh_gives_a_new_later_token(
    app: Flask, instance: NewInstance, settings: Settings
) -> None:
    with app.test_request_context("/v3/identity/token"):
        token = auth.issue_wml_token(settings.default_instance)
        time.sleep(1.1)  # exp has a resolution of one second
        fresh = auth.refresh_wml_token(token)
        assert fresh != token
        assert int(str(wml_payload(fresh)["exp"])) > int(str(wml_payload(token)["exp"]))
        assert auth.instance_for_bearer(fresh) == settings.default_instance


def test_the_secret_is_shared_through_redis_unless_set(
    settings: Settings, redis_client: redis.Redis, instance: NewInstance
) -> None:
    from api.app import create_app

    one, two = create_app(settings, redis_client), create_app(settings, redis_client)
    with one.test_request_context("/"):
        token = auth.issue_wml_token(settings.default_instance)
    with two.test_request_context("/"):
        assert auth.instance_for_bearer(token) == settings.default_instance
    configured = create_app(settings.replace(token_secret="s" * 32), redis_client)
    with configured.test_request_context("/"), pytest.raises(Unauthorized):
        auth.instance_for_bearer(token)


def test_wml_basic_credentials(app: Flask, instance: NewInstance, settings: Settings) -> None:
    username = instance.instance.username
    with app.test_request_context("/v3/identity/token"):
        assert auth.instance_for_wml_basic(username, instance.password) == settings.default_instance
        for user, password in ((username, "wrong"), ("nobody", instance.password), ("", "")):
            with pytest.raises(Unauthorized):
                auth.instance_for_wml_basic(user, password)


def test_auth_disabled_only_on_loopback(
    settings: Settings, redis_client: redis.Redis, instance: NewInstance
) -> None:
    from api.app import create_app

    app = create_app(settings.replace(auth="disabled"), redis_client)
    open_client = app.test_client()
    # The test client's server is "localhost".
    assert open_client.get("/api/v1/models").status_code == 200
    public = open_client.get("/api/v1/models", environ_overrides={"SERVER_NAME": "0.0.0.0"})
    assert public.status_code == 401
    on_ip = open_client.get("/api/v1/models", environ_overrides={"SERVER_NAME": "127.0.0.1"})
    assert on_ip.status_code == 200


def test_metrics_answer_loopback_callers_unless_opened(
    settings: Settings, redis_client: redis.Redis
) -> None:
    from api.app import create_app

    local = create_app(settings, redis_client).test_client()
    assert local.get("/metrics").status_code == 200  # the test client calls from 127.0.0.1
    remote = local.get("/metrics", environ_overrides={"REMOTE_ADDR": "10.1.2.3"})
    assert remote.status_code == 403 and remote.json["error"]["code"] == "forbidden"
    proxied = local.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert proxied.status_code == 403
    opened = create_app(settings.replace(metrics_access="open"), redis_client).test_client()
    assert opened.get("/metrics", environ_overrides={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200


def test_openapi_documents_the_bearer_scheme(anonymous: FlaskClient) -> None:
    spec = anonymous.get("/api/v1/openapi.json").json
    schemes = spec["components"]["securitySchemes"]
    assert {"type": "http", "scheme": "bearer"}.items() <= schemes["bearer"].items()
    assert schemes["api_key_header"]["name"] == "X-API-Key"
    assert spec["security"] == [{"bearer": []}, {"api_key_header": []}]
    for path in ("/healthz", "/readyz", "/metrics"):
        assert spec["paths"][path]["get"]["security"] == []
    models = spec["paths"]["/api/v1/models"]["get"]
    assert "security" not in models  # the document's default: a key
    assert models["responses"]["401"] == {"$ref": "#/components/responses/UNAUTHORIZED"}

"""The console without a browser (Flask's test client): sign-in, the cookie, CSRF, isolation,
and the pages over a real Redis (and, where they score, the session's real worker)."""

from __future__ import annotations

import html
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from shared.instance_store import NewInstance
from shared.settings import Settings
from tests import keras_files as kf
from tests.conftest import instance_store

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(client: FlaskClient, path: str = "/console/sign-in") -> str:
    """The CSRF token of the form on ``path``."""
    page = client.get(path)
    match = TOKEN.search(page.get_data(as_text=True))
    assert match, page.get_data(as_text=True)
    return match.group(1)


def sign_in(client: FlaskClient, api_key: str) -> None:
    response = client.post(
        "/console/sign-in", data={"api_key": api_key, "csrf_token": csrf_token(client)}
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    assert response.headers["Location"] == "/console/models"


@pytest.fixture
def browser(app: Flask) -> FlaskClient:
    """A test client that keeps cookies, as a browser does, and sends no Authorization."""
    return app.test_client()


@pytest.fixture(scope="module")
def dense_h5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kf.tf_keras_h5_file(tmp_path_factory.mktemp("console"))


def test_pages_need_a_session(browser: FlaskClient) -> None:
    response = browser.get("/console/models")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/console/sign-in?next=")
    polled = browser.get("/console/jobs/table", headers={"HX-Request": "true"})
    assert polled.status_code == 401
    assert polled.headers["HX-Redirect"] == "/console/sign-in"


def test_a_bad_key_is_refused_with_a_message(browser: FlaskClient, instance: NewInstance) -> None:
    response = browser.post(
        "/console/sign-in", data={"api_key": "not-a-key", "csrf_token": csrf_token(browser)}
    )
    assert response.status_code == 401
    page = response.get_data(as_text=True)
    assert 'role="alert"' in page and "That API key is unknown or revoked" in page
    assert browser.get("/console/models").status_code == 302  # still signed out


def test_the_session_cookie_is_httponly_lax_and_scoped_to_the_console(
    browser: FlaskClient, instance: NewInstance
) -> None:
    csrf = csrf_token(browser)
    response = browser.post(
        "/console/sign-in", data={"api_key": instance.key.api_key, "csrf_token": csrf}
    )
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("kscore_console=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain http here
    assert instance.key.api_key not in cookie  # the cookie holds a token, not the key
    assert browser.get("/console/models").status_code == 200


def test_secure_cookie_over_https(app: Flask, instance: NewInstance) -> None:
    browser = app.test_client()
    base = "https://kscore.test"
    page = browser.get("/console/sign-in", base_url=base)
    token = TOKEN.search(page.get_data(as_text=True)).group(1)  # type: ignore[union-attr]
    response = browser.post(
        "/console/sign-in",
        base_url=base,
        data={"api_key": instance.key.api_key, "csrf_token": token},
        headers={"Referer": base + "/console/sign-in"},
    )
    assert response.status_code == 302
    assert "Secure" in response.headers["Set-Cookie"]


def test_a_form_without_the_csrf_token_is_refused(
    browser: FlaskClient, instance: NewInstance
) -> None:
    refused = browser.post("/console/sign-in", data={"api_key": instance.key.api_key})
    assert refused.status_code == 400
    assert "security token is missing or no longer valid" in refused.get_data(as_text=True)
    sign_in(browser, instance.key.api_key)
    upload = browser.post(
        "/console/models",
        data={"file": (io.BytesIO(b"x"), "m.h5"), "name": "m"},
        content_type="multipart/form-data",
    )
    assert upload.status_code == 400
    assert browser.post("/console/sign-out").status_code == 400
    assert browser.get("/console/models").status_code == 200  # still signed in


def test_the_json_api_takes_no_csrf_token_and_no_cookie(
    browser: FlaskClient, instance: NewInstance, dense_h5: Path
) -> None:
    sign_in(browser, instance.key.api_key)
    # The console's cookie is no credential for the API...
    assert browser.get("/api/v1/models").status_code == 401
    # ...and the API's form posts need no CSRF token.
    response = browser.post(
        "/api/v1/models",
        data={"file": (io.BytesIO(dense_h5.read_bytes()), dense_h5.name), "name": "api"},
        content_type="multipart/form-data",
        headers={"Authorization": f"Bearer {instance.key.api_key}"},
    )
    assert response.status_code == 201, response.get_json()
    assert "Set-Cookie" not in response.headers


def test_sign_out_ends_the_session(browser: FlaskClient, instance: NewInstance) -> None:
    sign_in(browser, instance.key.api_key)
    token = csrf_token(browser, "/console/models")
    response = browser.post("/console/sign-out", data={"csrf_token": token})
    assert response.status_code == 302
    assert browser.get("/console/models").status_code == 302


def test_one_instance_does_not_see_another_ones_models(
    app: Flask,
    browser: FlaskClient,
    instance: NewInstance,
    settings: Settings,
    redis_client: redis.Redis,
    dense_h5: Path,
) -> None:
    sign_in(browser, instance.key.api_key)
    token = csrf_token(browser, "/console/models")
    stored = browser.post(
        "/console/models",
        data={
            "file": (io.BytesIO(dense_h5.read_bytes()), dense_h5.name),
            "name": "mine",
            "csrf_token": token,
        },
        content_type="multipart/form-data",
    )
    assert stored.status_code == 302, stored.get_data(as_text=True)
    model_path = stored.headers["Location"]
    page = browser.get(model_path).get_data(as_text=True)
    assert "Model mine" in page and "(batch, 4)" in page and "float32" in page
    other = instance_store(settings, redis_client).create(
        settings.default_instance + "-other", settings.default_instance + "-other"
    )
    stranger = app.test_client()
    sign_in(stranger, other.key.api_key)
    assert "mine" not in stranger.get("/console/models").get_data(as_text=True)
    refused = stranger.get(model_path)
    assert refused.status_code == 404
    assert "No model with id" in refused.get_data(as_text=True)


def test_upload_refusal_shows_the_envelope_message(
    browser: FlaskClient, instance: NewInstance
) -> None:
    sign_in(browser, instance.key.api_key)
    token = csrf_token(browser, "/console/models")
    response = browser.post(
        "/console/models",
        data={"file": (io.BytesIO(b"not a model"), "m.txt"), "name": "m", "csrf_token": token},
        content_type="multipart/form-data",
    )
    assert response.status_code in (400, 422)
    page = response.get_data(as_text=True)
    assert 'role="alert"' in page


def test_pages_carry_landmarks_skip_link_and_security_headers(
    browser: FlaskClient, instance: NewInstance
) -> None:
    sign_in(browser, instance.key.api_key)
    for path in ("/console/models", "/console/deployments", "/console/jobs"):
        response = browser.get(path)
        page = response.get_data(as_text=True)
        assert response.status_code == 200, path
        assert 'href="#main"' in page and '<main id="main"' in page and "<nav" in page
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    htmx = browser.get("/console/static/htmx.min.js")
    assert htmx.status_code == 200 and b"htmx 2.0.11" in htmx.data
    htmx.close()


def test_sign_in_goes_back_only_to_console_pages(
    browser: FlaskClient, instance: NewInstance
) -> None:
    for target, lands in (
        ("/console/jobs", "/console/jobs"),
        ("https://evil.test/console/jobs", "/console/models"),
        ("//evil.test/console/", "/console/models"),
        ("/api/v1/models", "/console/models"),
    ):
        browser.delete_cookie("kscore_console", path="/console")
        response = browser.post(
            "/console/sign-in",
            data={
                "api_key": instance.key.api_key,
                "next": target,
                "csrf_token": csrf_token(browser),
            },
        )
        assert response.headers["Location"] == lands, target


@pytest.mark.usefixtures("worker")
def test_deploy_score_submit_download_through_the_console(
    app: Flask, browser: FlaskClient, instance: NewInstance, dense_h5: Path
) -> None:

    from tests.helpers import wait_for

    sign_in(browser, instance.key.api_key)
    token = csrf_token(browser, "/console/models")
    stored = browser.post(
        "/console/models",
        data={
            "file": (io.BytesIO(dense_h5.read_bytes()), dense_h5.name),
            "name": "d",
            "csrf_token": token,
        },
        content_type="multipart/form-data",
    )
    model_id = stored.headers["Location"].rsplit("/", 1)[1]
    created = browser.post(
        "/console/deployments", data={"model_id": model_id, "name": "dep", "csrf_token": token}
    )
    assert created.status_code == 302, created.get_data(as_text=True)
    page = created.headers["Location"]
    deployment_id = page.rsplit("/", 1)[1]
    wait_for(
        lambda: "DEPLOY_SUCCESS" in browser.get(page + "/status").get_data(as_text=True),
        what="DEPLOY_SUCCESS",
    )
    listing = browser.get("/console/deployments").get_data(as_text=True)
    assert "DEPLOY_SUCCESS" in listing and f"/console/models/{model_id}" in listing

    # Try it, as htmx sends it: the fragment, with the numbers of the model.
    x = [[0.5, -1.0, 2.0, 0.0], [1.0, 1.0, 1.0, 1.0]]
    answer = browser.post(
        page + "/try",
        data={"rows": json.dumps(x), "csrf_token": token},
        headers={"HX-Request": "true"},
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    fragment = answer.get_data(as_text=True)
    assert "<html" not in fragment and 'id="try-table"' in fragment
    raw = json.loads(
        html.unescape(re.search(r'<pre id="try-raw">(.*?)</pre>', fragment, re.S).group(1))
    )  # type: ignore[union-attr]
    np.testing.assert_allclose(
        [r[0] for r in raw["values"]], kf.expected_dense_softmax(np.array(x)), rtol=1e-5
    )
    # Without htmx: the whole page, with the answer in it.
    whole = browser.post(
        page + "/try", data={"rows": json.dumps({"values": x}), "csrf_token": token}
    )
    assert whole.status_code == 200 and "<html" in whole.get_data(as_text=True)
    # Errors carry the API's message and status.
    for rows, status, words in (
        ("[[1, 2, 3]]", 422, "Row 0 has shape [3]"),
        ("[[1, 2", 400, "not valid JSON"),
        ("", 422, "Paste the rows"),
        ('{"rows": []}', 422, "invalid fields: rows"),
    ):
        refused = browser.post(
            page + "/try", data={"rows": rows, "csrf_token": token}, headers={"HX-Request": "true"}
        )
        assert refused.status_code == status, (rows, refused.get_data(as_text=True))
        assert words in refused.get_data(as_text=True), rows

    # A job from a file; its progress fragment polls until it is complete; then the result.
    submitted = browser.post(
        page + "/jobs",
        data={
            "rows_file": (io.BytesIO(json.dumps(x * 60).encode()), "rows.json"),
            "csrf_token": token,
        },
        content_type="multipart/form-data",
    )
    assert submitted.status_code == 302, submitted.get_data(as_text=True)
    job_page = submitted.headers["Location"]
    job_id = job_page.rsplit("/", 1)[1]
    wait_for(
        lambda: 'data-percent="100"' in browser.get(job_page + "/progress").get_data(as_text=True),
        what="the job to complete",
    )
    final = browser.get(job_page + "/progress").get_data(as_text=True)
    assert "hx-trigger" not in final  # polling stops with the job
    result = browser.get(job_page + "/result")
    assert result.headers["Content-Disposition"] == f'attachment; filename="{job_id}.json"'
    assert len(result.get_json()["values"]) == 120
    # The other formats are the API's, rows in order: the npy equals the JSON's probabilities.
    npy = browser.get(job_page + "/result?format=npy")
    assert npy.headers["Content-Disposition"] == f'attachment; filename="{job_id}.npy"'
    probabilities = np.load(io.BytesIO(npy.get_data()))
    expected = [row[2] for row in result.get_json()["values"]]
    np.testing.assert_allclose(probabilities, np.asarray(expected, dtype=np.float32), rtol=1e-6)
    assert browser.get(job_page + "/result?format=xml").status_code == 422
    jobs = browser.get("/console/jobs").get_data(as_text=True)
    assert job_id[:8] in jobs and ">dep<" in jobs
    again = browser.post(job_page + "/cancel", data={"csrf_token": token})
    assert again.status_code == 409
    assert "already finished (completed)" in again.get_data(as_text=True)

    # A running job is canceled from its page: it stops between chunks.
    many = browser.post(
        page + "/jobs",
        data={
            "rows_file": (io.BytesIO(json.dumps(x * 15_000).encode()), "many.json"),
            "csrf_token": token,
        },
        content_type="multipart/form-data",
    )
    many_page = many.headers["Location"]
    canceled = browser.post(many_page + "/cancel", data={"csrf_token": token})
    assert canceled.headers["Location"] == many_page
    after = browser.get(many_page).get_data(as_text=True)
    assert "canceled" in after and "Download the result" not in after
    assert "hx-trigger" not in after  # nothing left to poll

    # The model cannot go while it is deployed: the message, on the model's page.
    in_use = browser.post(f"/console/models/{model_id}/delete", data={"csrf_token": token})
    assert in_use.status_code == 409 and 'role="alert"' in in_use.get_data(as_text=True)
    gone = browser.post(f"/console/deployments/{deployment_id}/delete", data={"csrf_token": token})
    assert gone.status_code == 302
    deleted = browser.post(f"/console/models/{model_id}/delete", data={"csrf_token": token})
    assert deleted.headers["Location"] == "/console/models"


def test_actions_count_against_the_rate_limit_and_polling_does_not(
    settings: Settings, redis_client: redis.Redis, instance: NewInstance
) -> None:
    from api.app import create_app

    app = create_app(settings.replace(rate_limit="3/minute"), redis_client)
    browser = app.test_client()
    sign_in(browser, instance.key.api_key)
    token = csrf_token(browser, "/console/models")
    for _ in range(5):
        assert browser.get("/console/jobs/table").status_code == 200
    statuses = [
        browser.post("/console/deployments/nope/try", data={"rows": "[[1]]", "csrf_token": token})
        for _ in range(4)
    ]
    assert [r.status_code for r in statuses] == [404, 404, 404, 429]
    assert "KSCORE_RATE_LIMIT" in statuses[-1].get_data(as_text=True)
    assert int(statuses[-1].headers["Retry-After"]) > 0
    assert browser.get("/console/jobs").status_code == 200


def test_secure_cookie_when_the_public_url_is_https(
    settings: Settings, redis_client: redis.Redis, instance: NewInstance
) -> None:
    """Behind a proxy that ends TLS the request is http, but the browser's page is https."""
    from api.app import create_app

    app = create_app(settings.replace(public_url="https://kscore.example"), redis_client)
    browser = app.test_client()
    response = browser.post(
        "/console/sign-in",
        data={"api_key": instance.key.api_key, "csrf_token": csrf_token(browser)},
    )
    assert response.status_code == 302
    assert "Secure" in response.headers["Set-Cookie"]


def test_auth_disabled_on_loopback_needs_no_sign_in(
    settings: Settings, redis_client: redis.Redis
) -> None:
    from api.app import create_app

    app = create_app(settings.replace(auth="disabled"), redis_client)
    local = app.test_client()  # the test client's SERVER_NAME is localhost
    assert local.get("/console/models").status_code == 200
    remote = app.test_client()
    remote.environ_base["SERVER_NAME"] = "10.0.0.5"
    assert remote.get("/console/models", base_url="http://10.0.0.5").status_code == 302

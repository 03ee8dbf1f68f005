"""The console in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``) driven by selenium, against the API served over HTTP on a loopback port,
the session's real Redis and Celery worker, and a Keras file with known weights.

Screenshots go to tests/api/console/screenshots/ (git-ignored; KSCORE_SCREENSHOTS overrides),
each taken after the elements it should show were found in the DOM.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask import Flask
from werkzeug.serving import make_server

from shared.instance_store import NewInstance
from shared.settings import Settings
from tests import keras_files as kf

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.common.exceptions import (  # noqa: E402
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("worker")]

SCREENSHOTS = Path(os.environ.get("KSCORE_SCREENSHOTS", Path(__file__).parent / "screenshots"))
# A job of this many rows in chunks of CHUNK_ROWS: enough chunks that the bar is seen moving.
JOB_ROWS = 12_000
CHUNK_ROWS = 5


# The visible form controls that no <label> names (by for= or by nesting) and no aria-label.
_UNLABELLED = """
return [...document.querySelectorAll('input, select, textarea')]
  .filter(el => el.type !== 'hidden')
  .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
  .map(el => el.outerHTML.slice(0, 80));
"""


def _browser_paths() -> tuple[str, str] | str:
    """(chromium, chromedriver), or why they cannot be used."""
    chromium = next(
        filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None
    )
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        missing = [n for n, p in (("chromium", chromium), ("chromedriver", driver)) if p is None]
        return (
            f"{' and '.join(missing)} not found on PATH: install Debian's chromium and "
            "chromium-driver (`make test` does, as root with apt-get)"
        )
    return chromium, driver


@pytest.fixture
def settings(base_settings: Settings) -> Settings:
    """Small chunks, so a job's progress moves in many steps."""
    return base_settings.replace(
        default_instance=f"t{uuid.uuid4().hex[:12]}", chunk_rows=CHUNK_ROWS
    )


@pytest.fixture
def live_url(app: Flask) -> Iterator[str]:
    """The API (and its console) served over HTTP on a loopback port."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.fixture
def downloads(tmp_path: Path) -> Path:
    path = tmp_path / "downloads"
    path.mkdir()
    return path


@pytest.fixture
def browser(downloads: Path) -> Iterator[WebDriver]:
    """Headless Chromium at a laptop's 1366x768."""
    found = _browser_paths()
    if isinstance(found, str):
        pytest.skip(found)
    chromium, driver_path = found
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in a container has no user namespace sandbox
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1366,768",
    ):
        options.add_argument(argument)
    options.add_experimental_option(
        "prefs",
        {
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False,
            "safebrowsing.enabled": False,
        },
    )
    try:
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
    except WebDriverException as exc:
        pytest.skip(f"chromium did not start under chromedriver: {exc.msg}")
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def dense_h5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kf.tf_keras_h5_file(tmp_path_factory.mktemp("console-browser"))


def keras_predictions(path: Path, rows: np.ndarray) -> np.ndarray:
    """What Keras itself answers for ``rows`` with the model file at ``path``."""
    tf_keras = kf._tf_keras()
    model = tf_keras.models.load_model(str(path), compile=False)
    return np.asarray(model(rows, training=False))


class Console:
    """The browser on the console, with the waits and checks the steps share."""

    def __init__(self, driver: WebDriver, base: str) -> None:
        self.driver = driver
        self.base = base
        self.taken: set[str] = set()

    def wait(self, condition: Any, timeout: float = 60.0, what: str = "the page") -> Any:
        # htmx swaps polled fragments: an element found may be replaced before it is read.
        ignored = (NoSuchElementException, StaleElementReferenceException)
        return WebDriverWait(
            self.driver, timeout, poll_frequency=0.1, ignored_exceptions=ignored
        ).until(lambda d: condition(d), message=f"timed out waiting for {what}")

    def element(self, css: str) -> Any:
        return self.wait(lambda d: d.find_element(By.CSS_SELECTOR, css), what=css)

    def screenshot(self, name: str, *required: str, full_page: bool = False) -> Path:
        """Save the viewport (or the whole page) as ``name``.png once every ``required``
        selector is in the DOM."""
        for css in required:
            assert self.driver.find_elements(By.CSS_SELECTOR, css), f"{name}: no {css}"
        unlabelled = self.driver.execute_script(_UNLABELLED)
        assert unlabelled == [], f"{name}: form controls without a label: {unlabelled}"
        overflow = self.driver.execute_script(
            "return document.documentElement.scrollWidth - window.innerWidth"
        )
        assert overflow <= 0, f"{name}: {overflow}px wider than a 1366x768 laptop's window"
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        if full_page:
            size = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
            shot = self.driver.execute_cdp_cmd(
                "Page.captureScreenshot",
                {
                    "format": "png",
                    "captureBeyondViewport": True,
                    "clip": {"x": 0, "y": 0, "width": 1366, "height": size["height"], "scale": 1},
                },
            )
            path.write_bytes(base64.b64decode(shot["data"]))
        else:
            assert self.driver.save_screenshot(str(path)), path
        self.taken.add(name)
        return path


def test_console_in_chromium(
    browser: WebDriver,
    live_url: str,
    instance: NewInstance,
    dense_h5: Path,
    downloads: Path,
    tmp_path: Path,
) -> None:
    console = Console(browser, live_url)

    # Signing in: a wrong key is refused with a message, the right one opens the models.
    browser.get(live_url + "/console/")
    console.element("#api_key").send_keys("not-a-key")
    browser.find_element(By.CSS_SELECTOR, "form.stack button[type=submit]").click()
    assert "unknown or revoked" in console.element("#sign-in-error").text
    console.screenshot("01-sign-in-refused", "a.skip-link", "main#main", "#api_key")
    console.element("#api_key").send_keys(instance.key.api_key)
    browser.find_element(By.CSS_SELECTOR, "form.stack button[type=submit]").click()
    console.wait(lambda d: d.current_url.endswith("/console/models"), what="the models page")
    cookie = browser.get_cookie("kscore_console")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Lax"

    # The first Tab reaches the skip link, which moves the focus to the main content.
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    skip = browser.switch_to.active_element
    assert skip.get_attribute("class") == "skip-link" and skip.is_displayed()
    skip.send_keys(Keys.ENTER)
    assert browser.switch_to.active_element.get_attribute("id") == "main"

    # Upload the model; its page shows the signature.
    console.element("#model-file").send_keys(str(dense_h5))
    browser.find_element(By.ID, "model-name").send_keys("dense softmax")
    browser.find_element(By.CSS_SELECTOR, "#upload-form button[type=submit]").click()
    inputs = console.element("#signature-inputs")
    assert "(batch, 4)" in inputs.text and "float32" in inputs.text
    assert "softmax" in browser.find_element(By.ID, "signature-outputs").text
    console.screenshot("02-model", "nav[aria-label=Console]", "#signature-inputs", "#deploy-form")

    # Deploy it; the status is polled until DEPLOY_SUCCESS.
    browser.find_element(By.CSS_SELECTOR, "#deploy-form button[type=submit]").click()
    console.wait(
        lambda d: "DEPLOY_SUCCESS" in d.find_element(By.ID, "deployment-status").text,
        what="DEPLOY_SUCCESS",
    )
    deployment_url = browser.current_url

    # Try it: the answer equals Keras's own output for the rows.
    rows = np.random.default_rng(7).normal(size=(5, 4)).astype(np.float32)
    console.element("#try-rows").send_keys(json.dumps(rows.tolist()))
    browser.find_element(By.CSS_SELECTOR, "#try-form button[type=submit]").click()
    raw = json.loads(console.element("#try-raw").text)
    expected = keras_predictions(dense_h5, rows)
    assert raw["fields"] == ["prediction", "prediction_classes", "probability"]
    np.testing.assert_allclose([r[0] for r in raw["values"]], expected, rtol=1e-5, atol=1e-6)
    assert [r[1] for r in raw["values"]] == expected.argmax(axis=1).tolist()
    np.testing.assert_allclose(expected, kf.expected_dense_softmax(rows), rtol=1e-5, atol=1e-6)
    table_rows = browser.find_elements(By.CSS_SELECTOR, "#try-table tbody tr")
    assert len(table_rows) == 5
    assert f"{expected[0][0]:.6g}" in table_rows[0].text
    console.screenshot(
        "03-deployment-try-it",
        "#deployment-status",
        "#try-table",
        "#try-raw",
        "#job-form",
        full_page=True,
    )

    # A bad row shows the API's message, in place.
    try_rows = browser.find_element(By.ID, "try-rows")
    try_rows.clear()
    try_rows.send_keys("[[1, 2, 3]]")
    browser.find_element(By.CSS_SELECTOR, "#try-form button[type=submit]").click()
    console.wait(
        lambda d: d.find_elements(By.ID, "try-error"), what="the scoring error in the page"
    )
    assert "row 0" in browser.find_element(By.ID, "try-error").text.lower()

    # A job from a file: its progress bar moves to 100%.
    job_rows = np.random.default_rng(11).normal(size=(JOB_ROWS, 4)).astype(np.float32)
    rows_file = tmp_path / "rows.json"
    rows_file.write_text(json.dumps({"values": job_rows.tolist()}))
    browser.get(deployment_url)
    console.element("#job-file").send_keys(str(rows_file))
    browser.find_element(By.CSS_SELECTOR, "#job-form button[type=submit]").click()
    console.element("#job-progress")
    seen: list[int] = []

    def progress(driver: WebDriver) -> bool:
        try:
            text = driver.find_element(By.CSS_SELECTOR, "#job-progress .progress-text")
            seen.append(int(text.get_attribute("data-percent") or 0))
        except WebDriverException:  # swapped out between find and read
            return False
        if 0 < seen[-1] < 100 and "04-job-running" not in console.taken:
            console.screenshot("04-job-running", "#job-progress progress", "#cancel-form")
        return seen[-1] == 100 and bool(driver.find_elements(By.ID, "download-result"))

    console.wait(progress, timeout=180, what="the job's progress to reach 100%")
    assert "completed" in browser.find_element(By.ID, "job-progress").text
    assert (
        browser.find_element(By.CSS_SELECTOR, "#job-progress progress").get_attribute("value")
        == "100"
    )
    assert any(0 < p < 100 for p in seen), f"the bar never moved: {sorted(set(seen))}"
    console.screenshot("05-job-completed", "#job-progress progress", "#download-result")

    # Download the result: every row, as Keras answers it.
    browser.find_element(By.ID, "download-result").click()
    downloaded = console.wait(
        lambda d: [p for p in downloads.glob("*.json") if p.stat().st_size > 0],
        what="the downloaded result",
    )
    result = json.loads(downloaded[0].read_text())
    assert len(result["values"]) == JOB_ROWS
    assert "04-job-running" in console.taken
    np.testing.assert_allclose(
        [r[0] for r in result["values"]],
        keras_predictions(dense_h5, job_rows),
        rtol=1e-5,
        atol=1e-6,
    )

    # The jobs list shows it completed, with its bar full.
    browser.get(live_url + "/console/jobs")
    table = console.element("#jobs-table")
    assert "completed" in table.text and "100%" in table.text
    console.screenshot("06-jobs", "#jobs-table", "#jobs-table progress")

    # The deployments list names the model that serves it; signing out ends the session.
    browser.get(live_url + "/console/deployments")
    deployments = console.element("#deployments-table")
    assert "DEPLOY_SUCCESS" in deployments.text and "dense softmax" in deployments.text
    console.screenshot("07-deployments", "#deployments-table", "#deploy-form")
    browser.find_element(By.CSS_SELECTOR, "form.sign-out button").click()
    console.element("#api_key")
    browser.get(live_url + "/console/jobs")
    console.element("#api_key")  # back at the sign-in form

"""The load generator against a tiny Flask app served by werkzeug in a thread: what it counts,
what it keeps, and the same through its own process. No timing is asserted."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask, request
from werkzeug.serving import make_server

from bench.load import LoadSpec, run_load, run_load_process

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    app = Flask("tiny")

    @app.post("/echo")
    def echo() -> dict[str, object]:
        body = request.get_json()
        return {"fields": ["prediction"], "values": [[body["values"][0]]]}

    @app.post("/fail")
    def fail() -> tuple[str, int]:
        return "no", 500

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()


BODIES = ['{"values": [[0]]}', '{"values": [[1]]}', '{"values": [[2]]}']


def test_it_counts_answers_in_the_window_and_keeps_them_with_their_body(server_url: str) -> None:
    spec = LoadSpec(f"{server_url}/echo", BODIES, 4, duration=0.5, warmup=0.1, keep=5)
    result = run_load(spec)
    assert result.requests > 0 and not result.errors
    assert len(result.latencies_ms) == result.requests
    assert result.req_per_s == pytest.approx(result.requests / 0.5)
    assert result.percentile_ms(50) is not None and result.cpu_s >= 0
    assert 0 < len(result.answers) <= 5
    for index, text in result.answers:
        assert f'"values":[[[{index}]]]' in text.replace(" ", "")


def test_non_200_answers_are_errors_not_requests(server_url: str) -> None:
    result = run_load(LoadSpec(f"{server_url}/fail", BODIES, 2, duration=0.3, warmup=0.0))
    assert result.requests == 0 and result.errors["500"] > 0
    assert result.percentile_ms(99) is None


def test_the_generator_process_reports_the_same_fields(server_url: str, tmp_path: Path) -> None:
    spec = LoadSpec(f"{server_url}/echo", BODIES, 2, duration=0.3, warmup=0.0, keep=1)
    result = run_load_process(spec, tmp_path, cwd=ROOT)
    assert result.requests > 0 and result.concurrency == 2
    assert len(result.answers) == 1 and isinstance(result.answers[0], tuple)


def test_a_run_needs_a_client_and_a_body() -> None:
    with pytest.raises(ValueError):
        run_load(LoadSpec("http://127.0.0.1:9/", [], 1, duration=0.1, warmup=0.0))

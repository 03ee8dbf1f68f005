"""The benchmark's table from a fake report: ratios, the text and markdown tables, and the files
(JSON, text, markdown, PNG) it writes. No process is started, nothing is timed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.report import Row, add_ratios, markdown_table, save, text_table


def fake_rows() -> list[Row]:
    return [
        Row("cnn", "limit", "limit", rows=1024, p50_ms=2.0, p99_ms=3.0, throughput=4000.0),
        Row("cnn", "online", "kscore, 1 client", clients=1, p50_ms=6.0, p99_ms=9.0,
            throughput=150.0, unit="req/s"),
        Row("cnn", "peer", "peer, 1 client", clients=1, p50_ms=4.0, p99_ms=12.0,
            throughput=200.0, unit="req/s"),
        Row("cnn", "online", "kscore, 64 clients", clients=64, p50_ms=100.0, p99_ms=300.0,
            throughput=400.0, unit="req/s"),
        Row("cnn", "peer", "peer, 64 clients", clients=64, p50_ms=500.0, p99_ms=900.0,
            throughput=100.0, unit="req/s"),
        Row("cnn", "job", "dataset job, 1 worker", rows=100_000, throughput=3200.0,
            notes=["upload 1.0 s, run 30.0 s, download 0.2 s"]),
        Row("cnn", "job", "dataset job, 2 workers", skipped="POST /api/v1/datasets not available"),
        Row("dense", "limit", "limit", rows=1024, p50_ms=0.5, p99_ms=0.7, throughput=1e6),
        Row("dense", "json_job", "JSON job", rows=10_000, throughput=50_000.0),
        Row("dense", "memory", "peak RSS", rows=1_000_000, notes=["api peak 90 MB"]),
    ]  # fmt: skip


def test_ratios_compare_online_with_the_peer_and_jobs_with_the_limit() -> None:
    rows = fake_rows()
    add_ratios(rows)
    kscore_1, peer_1, kscore_64, _, job, skipped, _, json_job, memory = rows[1:]
    assert kscore_64.x_peer == pytest.approx(4.0)
    assert kscore_64.data["p50_x_peer"] == pytest.approx(0.2)
    assert kscore_64.data["p99_x_peer"] == pytest.approx(300 / 900)
    assert kscore_1.x_peer == pytest.approx(0.75)
    assert kscore_1.data["p50_x_limit"] == pytest.approx(3.0)
    assert peer_1.data["p50_x_limit"] == pytest.approx(2.0)
    # Online req/s against batched rows/s says nothing: no x limit there.
    assert kscore_1.x_limit is None and peer_1.x_peer is None
    assert job.x_limit == pytest.approx(0.8)
    assert json_job.x_limit == pytest.approx(0.05)  # against its own model's limit
    assert skipped.x_limit is None and memory.x_limit is None


def test_the_text_table_has_every_row_and_says_why_one_was_skipped() -> None:
    rows = fake_rows()
    add_ratios(rows)
    lines = text_table(rows)
    assert lines[0].split()[:2] == ["model", "what"]
    assert len(lines) == len(rows) + 2  # header and rule
    assert "skipped: POST /api/v1/datasets not available" in lines[8]
    assert "4.00x" in lines[5] and "vs peer: p50 0.20x, p99 0.33x" in lines[5]
    assert "0.80x" in lines[7]
    markdown = markdown_table(rows)
    assert markdown[0].startswith("| model | what |") and len(markdown) == len(rows) + 2


def test_save_writes_json_text_markdown_and_a_png(tmp_path: Path) -> None:
    rows = fake_rows()
    add_ratios(rows)
    head = {
        "created_at": "2026-01-01T00:00:00+00:00",
        "machine": {"cpus": 2, "python": "3.11", "tensorflow": "2", "keras": "3"},
        "config": {"models": {"cnn": "a CNN", "dense": "a dense model"}},
    }
    paths = save(head, rows, tmp_path / "results")
    assert sorted(paths) == ["json", "md", "png", "txt"]
    document = json.loads(paths["json"].read_text())
    assert len(document["rows"]) == len(rows)
    assert document["rows"][3]["x_peer"] == pytest.approx(4.0)
    assert document["table"] == text_table(rows)
    assert "a dense model" in paths["txt"].read_text()
    assert "| cnn | dataset job, 1 worker |" in paths["md"].read_text()
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

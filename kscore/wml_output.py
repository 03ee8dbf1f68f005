"""Output in the shapes IBM's tools printed, so scripts that read them keep working.

``wml_table`` and ``rows_block`` are the ``bx ml`` CLI's list tables and name/value blocks;
``simple_table`` is watson-machine-learning-client's ``list()``; ``format_result`` is the CLI's
scoring result, one line per row. The ``echo_*`` helpers print them as the ``kscore`` command
does, on stdout.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click

__all__ = [
    "deployment_rows",
    "echo_json",
    "echo_list",
    "echo_ok",
    "format_result",
    "job_rows",
    "model_rows",
    "progress_text",
    "rows_block",
    "simple_table",
    "wml_table",
]

Record = dict[str, Any]

_COLUMN_GAP = "   "  # bx ml pads every column, the last one included, with three spaces


def _cells(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[list[str]]:
    return [[str(h) for h in headers], *[["" if c is None else str(c) for c in r] for r in rows]]


def wml_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A table as ``bx ml list`` prints it: every column padded, then three spaces."""
    cells = _cells(headers, rows)
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=False)]
        lines.append(_COLUMN_GAP.join([*padded, row[-1]]) + _COLUMN_GAP)
    return "\n".join(lines)


def rows_block(pairs: Sequence[tuple[str, Any]]) -> str:
    """Name/value rows as ``bx ml deploy`` prints them."""
    width = max(len(name) for name, _ in pairs)
    return "\n".join(
        f"{name.ljust(width)}{_COLUMN_GAP}{'' if value is None else value}" for name, value in pairs
    )


def simple_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A table as watson-machine-learning-client prints it: dashes above and below."""
    cells = _cells(headers, rows)
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    rule = "  ".join("-" * w for w in widths)
    lines = [rule]
    lines += [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]
    lines.append(rule)
    return "\n".join(lines)


def format_result(result: Any) -> str:
    """A scoring result as the WML CLI showed it: one line for the fields, one per row."""
    if not isinstance(result, dict) or not isinstance(result.get("values"), list):
        return json.dumps(result, indent=4)
    lines = ["{", f'    "fields": {json.dumps(result.get("fields"))},', '    "values": [']
    rows = [f"        {json.dumps(row)}" for row in result["values"]]
    lines.append(",\n".join(rows))
    lines += ["    ]", "}"]
    return "\n".join(line for line in lines if line)


def _tensors(specs: Any) -> str:
    if not isinstance(specs, list) or not specs:
        return "-"
    parts = []
    for spec in specs:
        if not isinstance(spec, dict):
            continue
        text = f"{spec.get('name', '?')} {json.dumps(spec.get('shape'))} {spec.get('dtype', '')}"
        if spec.get("activation"):
            text += f" {spec['activation']}"
        parts.append(text.strip())
    return "; ".join(parts) or "-"


def progress_text(job: Record) -> str:
    """A job's progress as ``"<done>/<total> rows"``."""
    progress = job.get("progress") or {}
    return f"{progress.get('rows_done', 0)}/{progress.get('rows_total', 0)} rows"


def model_rows(model: Record) -> list[tuple[str, Any]]:
    """The name/value rows ``kscore models store`` prints for a stored model."""
    keras = f"{model.get('keras_version') or '?'} (backend {model.get('backend') or '?'})"
    return [
        ("ModelId", model.get("id")),
        ("Name", model.get("name")),
        ("Model Type", model.get("model_type")),
        ("Format", model.get("format")),
        ("Keras", keras),
        ("Model class", model.get("model_class")),
        ("Inputs", _tensors(model.get("inputs"))),
        ("Outputs", _tensors(model.get("outputs"))),
        ("Size", f"{model.get('size_bytes')} bytes"),
        ("SHA-256", model.get("sha256")),
        ("Created at", model.get("created_at")),
    ]


def job_rows(job: Record) -> list[tuple[str, Any]]:
    """The name/value rows printed for a job, its error last when it has one."""
    rows: list[tuple[str, Any]] = [
        ("JobId", job.get("id")),
        ("Deployment Id", job.get("deployment_id")),
        ("Model Id", job.get("model_id")),
        ("Kind", job.get("kind")),
        ("Status", job.get("status")),
        ("Progress", progress_text(job)),
        ("Created at", job.get("created_at")),
        ("Started at", job.get("started_at") or "-"),
        ("Finished at", job.get("finished_at") or "-"),
        ("Expires at", job.get("expires_at") or "-"),
    ]
    if job.get("dataset_id"):
        rows.insert(2, ("Dataset Id", job["dataset_id"]))
    error = job.get("error")
    if isinstance(error, dict):
        rows.append(("Error", f"{error.get('message')} ({error.get('code')})"))
    return rows


def deployment_rows(deployment: Record) -> list[tuple[str, Any]]:
    """The name/value rows ``bx ml deploy`` printed for a deployment."""
    return [
        ("DeploymentId", deployment.get("id")),
        ("Scoring endpoint", deployment.get("scoring_url")),
        ("Name", deployment.get("name")),
        ("Type", deployment.get("model_type")),
        ("Runtime", "None Provided"),
        ("Status", deployment.get("status")),
        ("Created at", deployment.get("created_at")),
    ]


def echo_list(headers: Sequence[str], rows: Sequence[Sequence[Any]], what: str) -> None:
    """Print a ``bx ml list`` table followed by its record count and success lines."""
    click.echo(wml_table(headers, rows))
    click.echo("")
    click.echo(f"{len(rows)} records found.")
    echo_ok(f"List {what} successful")


def echo_ok(message: str) -> None:
    """Print the ``OK`` line and the success sentence ``bx ml`` ends every command with."""
    click.echo("OK")
    click.echo(message)


def echo_json(data: Any, indent: int = 2) -> None:
    """Print ``data`` as indented JSON."""
    click.echo(json.dumps(data, indent=indent))

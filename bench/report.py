"""The benchmark's one table: rows, their ratios to the limit and to the peer, text, markdown, plot.

Pure functions of a list of :class:`Row`: nothing here starts a process or imports TensorFlow,
so the tests build a fake report and check what is written.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Each part of the run, in table order.
PARTS = ("limit", "peer", "online", "job", "json_job", "memory")


@dataclass
class Row:
    """One line of the table. ``throughput`` is in ``unit`` (``rows/s`` or ``req/s``; a 1-row
    request is one row); latencies in ms; ``skipped`` says why a row has no figures."""

    model: str
    part: str
    label: str
    clients: int | None = None
    rows: int | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    throughput: float | None = None
    unit: str = "rows/s"
    x_limit: float | None = None
    x_peer: float | None = None
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def add_ratios(rows: Sequence[Row]) -> None:
    """Set ``x_limit`` (throughput over the limit's rows/s) on job rows, and ``x_peer`` (over
    the peer's req/s with as many clients) on kscore's online rows, with the p50 and p99 ratios
    to the peer in ``data``; the 1-client online rows (kscore's and the peer's) also get their
    p50 over the limit's 1-row p50. Online req/s over batched rows/s would say nothing."""
    for row in rows:
        if row.skipped or row.part == "limit":
            continue
        limit = _find(rows, row.model, "limit")
        if limit is not None:
            if row.part not in ("online", "peer"):
                row.x_limit = _ratio(row.throughput, limit.throughput)
            elif row.clients == 1:
                row.data["p50_x_limit"] = _ratio(row.p50_ms, limit.p50_ms)
        if row.part != "online":
            continue
        peer = _find(rows, row.model, "peer", row.clients)
        if peer is not None:
            row.x_peer = _ratio(row.throughput, peer.throughput)
            row.data["p50_x_peer"] = _ratio(row.p50_ms, peer.p50_ms)
            row.data["p99_x_peer"] = _ratio(row.p99_ms, peer.p99_ms)


def _find(rows: Sequence[Row], model: str, part: str, clients: int | None = None) -> Row | None:
    for row in rows:
        same = row.model == model and row.part == part and not row.skipped
        if same and (clients is None or row.clients == clients):
            return row
    return None


def _num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return ""
    return f"{value:,.{digits}f}" if value < 10_000 or digits == 0 else f"{value:,.0f}"


def _x(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.2f}x" if value < 10 else f"{value:.0f}x"


def _notes(row: Row) -> str:
    notes = list(row.notes)
    p50, p99 = row.data.get("p50_x_peer"), row.data.get("p99_x_peer")
    if p50 is not None and p99 is not None:
        notes.insert(0, f"vs peer: p50 {_x(p50)}, p99 {_x(p99)}")
    if row.data.get("p50_x_limit") is not None:
        notes.insert(0, f"p50 {_x(row.data['p50_x_limit'])} the limit's")
    return "; ".join(notes)


HEADERS = ("model", "what", "p50 ms", "p99 ms", "throughput", "x limit", "x peer", "notes")


def cells(row: Row) -> list[str]:
    """The row's table cells, in HEADERS order."""
    if row.skipped:
        return [row.model, row.label, "", "", "", "", "", f"skipped: {row.skipped}"]
    throughput = "" if row.throughput is None else f"{_num(row.throughput, 0)} {row.unit}"
    return [
        row.model,
        row.label,
        _num(row.p50_ms),
        _num(row.p99_ms),
        throughput,
        _x(row.x_limit),
        _x(row.x_peer),
        _notes(row),
    ]


def text_table(rows: Sequence[Row]) -> list[str]:
    """The table as aligned lines (numbers right-aligned), a rule under the header."""
    table = [list(HEADERS), *(cells(row) for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADERS) - 1)]
    right = {2, 3, 4, 5, 6}
    lines = []
    for number, line in enumerate(table):
        padded = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(line[:-1])
        ]
        lines.append("  ".join([*padded, line[-1]]).rstrip())
        if number == 0:
            lines.append("-" * len(lines[0]))
    return lines


def markdown_table(rows: Sequence[Row]) -> list[str]:
    """The table in GitHub markdown."""
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "|".join("---" for _ in HEADERS) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells(row)) + " |")
    return lines


def header_lines(report: dict[str, Any]) -> list[str]:
    """What the numbers were measured on and with, one line each."""
    machine, config = report.get("machine", {}), report.get("config", {})
    lines = [
        f"kscore bench {report.get('created_at', '')}: {machine.get('cpus')} CPUs, "
        f"Python {machine.get('python')}, TensorFlow {machine.get('tensorflow')}, "
        f"Keras {machine.get('keras')}"
    ]
    for name, description in config.get("models", {}).items():
        lines.append(f"  {name}: {description}")
    if config.get("online"):
        lines.append(f"  online: {config['online']}")
    if config.get("service"):
        lines.append(f"  service: {config['service']}")
    return lines


def plot(rows: Sequence[Row], path: Path, title: str = "kscore bench") -> None:
    """Horizontal bars of every measured row's throughput (log scale), one panel per model,
    each labelled with its ratios; written as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(row.model for row in rows))
    measured = {m: [r for r in rows if r.model == m and r.throughput] for m in models}
    height = sum(max(1, len(v)) for v in measured.values()) * 0.45 + 1.2 * len(models) + 0.5
    figure, axes = plt.subplots(len(models) or 1, 1, figsize=(11, height), squeeze=False)
    colors = {"limit": "#555555", "peer": "#d08c2c", "online": "#2c7fb8", "job": "#41ab5d"}
    for axis, model in zip(axes[:, 0], models or [""], strict=False):
        bars = measured.get(model, [])
        labels = [f"{r.label}" for r in bars]
        values = [float(r.throughput or 0) for r in bars]
        shades = [colors.get(r.part, "#74c476") for r in bars]
        axis.barh(range(len(bars)), values, color=shades)
        axis.set_yticks(range(len(bars)), labels, fontsize=8)
        axis.invert_yaxis()
        axis.set_xscale("log")
        axis.set_title(model, fontsize=10, loc="left")
        axis.set_xlabel("rows/s (1 row per online request, so req/s)", fontsize=8)
        for y, row in enumerate(bars):
            ratios = [f"{_num(row.throughput, 0)} {row.unit}"]
            if row.x_limit is not None:
                ratios.append(f"{_x(row.x_limit)} limit")
            if row.x_peer is not None:
                ratios.append(f"{_x(row.x_peer)} peer")
            axis.text(row.throughput or 0, y, "  " + ", ".join(ratios), va="center", fontsize=7)
        if values:
            axis.set_xlim(min(values) / 2, max(values) * 40)
    figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def save(report: dict[str, Any], rows: Sequence[Row], directory: Path) -> dict[str, Path]:
    """Write ``latest.json`` (the report with every row), ``latest.txt`` (the printed table),
    ``latest.md`` (markdown) and ``latest.png`` under ``directory``; their paths by kind."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {kind: directory / f"latest.{kind}" for kind in ("json", "txt", "md", "png")}
    head = header_lines(report)
    text = text_table(rows)
    document = {**report, "rows": [asdict(row) for row in rows], "table": text}
    paths["json"].write_text(json.dumps(document, indent=2) + "\n")
    paths["txt"].write_text("\n".join([*head, "", *text]) + "\n")
    markdown = [f"# {head[0]}", "", *(f"- {line.strip()}" for line in head[1:]), ""]
    paths["md"].write_text("\n".join([*markdown, *markdown_table(rows)]) + "\n")
    plot(rows, paths["png"], title=head[0])
    return paths

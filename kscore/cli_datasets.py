"""``kscore datasets``: upload, list, inspect and delete datasets (rows kept on the server for
jobs to score), and the ``--input`` of ``kscore jobs submit``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from kscore.cli_common import client_of
from kscore.client import Client, Record
from kscore.datasets import SUFFIX_FORMATS
from kscore.wml_output import echo_json, echo_list, echo_ok, rows_block

__all__ = ["dataset_rows", "datasets", "upload_for_job"]

_FORMATS = sorted(set(SUFFIX_FORMATS.values()))


def _shapes(dataset: Record) -> str:
    parts = []
    for spec in dataset.get("inputs") or []:
        shape = "[" + ", ".join(str(d) for d in spec.get("shape") or []) + "]"
        label = f"{spec['name']}: " if spec.get("name") else ""
        parts.append(f"{label}{shape} {spec.get('dtype')}")
    return "; ".join(parts) or "-"


def dataset_rows(dataset: Record) -> list[tuple[str, Any]]:
    """The name/value rows printed for a dataset."""
    return [
        ("Dataset Id", dataset.get("id")),
        ("Name", dataset.get("name") or "-"),
        ("Format", dataset.get("format")),
        ("Rows", dataset.get("rows")),
        ("Inputs", _shapes(dataset)),
        ("Chunks", f"{dataset.get('chunks')} of {dataset.get('chunk_rows')} rows"),
        ("Bytes", dataset.get("bytes")),
        ("Validated for", dataset.get("validated_for") or "-"),
        ("Rows SHA-256", dataset.get("rows_sha256") or "-"),
        ("Created at", dataset.get("created_at")),
        ("Expires at", dataset.get("expires_at")),
    ]


def upload_for_job(client: Client, path: Path, deployment_id: str) -> Record:
    """Upload ``path`` as a dataset checked against the deployment, kept for an hour (a job
    that reads it keeps it as long as the job); its document."""
    click.echo(f"Uploading '{path.name}' as a dataset ...", err=True)
    return client.datasets.upload(
        path, deployment_id=deployment_id, name=path.name, retention_days=1 / 24
    )


@click.group()
def datasets() -> None:
    """Upload rows once as a dataset, then score them with `kscore jobs submit`."""


@datasets.command("upload")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--deployment",
    "deployment_id",
    default=None,
    metavar="ID",
    help="Check every row against this deployment's inputs while uploading (the error names "
    "the row and column) and store them in its dtypes.",
)
@click.option("--name", default=None, help="A name for the dataset (default: the file's name).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(_FORMATS),
    default=None,
    help="The file's format (default: from its suffix: .npy, .npz, .csv, .jsonl/.ndjson, "
    ".parquet/.pq).",
)
@click.option(
    "--header/--no-header",
    default=None,
    help="Whether a CSV's first line names its columns (default: detected).",
)
@click.option(
    "--retention-days",
    type=click.FloatRange(min=0.001, max=365),
    default=None,
    help="Days to keep it (default: the server's KSCORE_DATASET_RETENTION).",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only the dataset's id.")
@click.pass_context
def datasets_upload(
    ctx: click.Context,
    file: Path,
    deployment_id: str | None,
    name: str | None,
    fmt: str | None,
    header: bool | None,
    retention_days: float | None,
    quiet: bool,
) -> None:
    """Upload FILE (.npy, .npz, .csv, .jsonl or .parquet) as a dataset, streamed.

    \b
    .npy      one array: a row per entry (one-input models)
    .npz      one array per input, named by input
    .csv      numeric columns, a row per line; header optional
    .jsonl    a row per line: a list, or {"input name": value, ...}
    .parquet  numeric columns (one input's features), or a list column per input

    Prints the dataset; score it with `kscore jobs submit DEPLOYMENT --dataset ID`.
    """
    dataset = client_of(ctx).datasets.upload(
        file,
        format=fmt,
        name=name or file.name,
        deployment_id=deployment_id,
        retention_days=retention_days,
        header=header,
    )
    if quiet:
        click.echo(dataset["id"])
        return
    click.echo(rows_block(dataset_rows(dataset)))
    echo_ok("Upload dataset successful")


@datasets.command("list")
@click.pass_context
def datasets_list(ctx: click.Context) -> None:
    """List the datasets, newest first."""
    found = client_of(ctx).datasets.list()
    rows = [
        [i, d.get("id"), d.get("name") or "-", d.get("format"), d.get("rows"), d.get("expires_at")]
        for i, d in enumerate(found, start=1)
    ]
    headers = ["SI No", "Dataset Id", "Name", "Format", "Rows", "Expires at"]
    echo_list(headers, rows, "datasets")


@datasets.command("get")
@click.argument("dataset_id")
@click.pass_context
def datasets_get(ctx: click.Context, dataset_id: str) -> None:
    """Print a dataset's document as JSON."""
    echo_json(client_of(ctx).datasets.get(dataset_id))


@datasets.command("delete")
@click.argument("dataset_id")
@click.pass_context
def datasets_delete(ctx: click.Context, dataset_id: str) -> None:
    """Delete a dataset (refused while a queued or running job reads it)."""
    client_of(ctx).datasets.delete(dataset_id)
    click.echo(f"Deleted dataset '{dataset_id}'.")
    echo_ok("Delete dataset successful")

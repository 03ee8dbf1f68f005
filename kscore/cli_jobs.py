"""``kscore jobs``: submit batch jobs (rows, files, datasets), follow them with a progress bar,
fetch their results in any format, cancel and list them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from kscore.cli_common import client_of, fail, read_bytes, rows_file_payload
from kscore.cli_datasets import upload_for_job
from kscore.client import Client, Record
from kscore.result_files import RESULT_FORMATS, TEXT_FORMATS
from kscore.wml_output import (
    echo_json,
    echo_list,
    echo_ok,
    format_result,
    job_rows,
    progress_text,
    rows_block,
)
from shared.status import JobStatus


def wait_with_progress(client: Client, job_id: str, timeout: float | None) -> Record:
    """Wait for a job, drawing a progress bar of rows on stderr."""
    client.jobs.get(job_id)  # an unknown id fails here, before a bar is drawn
    console = Console(stderr=True)
    columns = (
        TextColumn("[bold]job {task.fields[job]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task: TaskID = progress.add_task("job", total=None, job=job_id)

        def update(rows_done: int, rows_total: int) -> None:
            progress.update(task, completed=rows_done, total=rows_total or None)

        return client.jobs.wait(job_id, timeout=timeout, on_progress=update)


# jobs -------------------------------------------------------------------------------------


@click.group()
def jobs() -> None:
    """Submit, follow, fetch and cancel batch scoring jobs."""


@jobs.command("submit")
@click.argument("deployment_id")
@click.argument("file", type=click.Path(path_type=Path), required=False)
@click.option(
    "--input",
    "input_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Upload this file (.npy, .npz, .csv, .jsonl, .parquet; format from the suffix) as a "
    "dataset, streamed and checked against the deployment, and score it.",
)
@click.option("--dataset", "dataset_id", default=None, help="Score this uploaded dataset.")
@click.option(
    "--retention-days",
    type=click.IntRange(min=1),
    default=None,
    help="Days to keep the job and its result (default: the server's).",
)
@click.option(
    "--callback-url",
    default=None,
    help="POST the job's document here (signed) when it ends; the server's "
    "KSCORE_WEBHOOK_ALLOW must allow the URL.",
)
@click.option(
    "--idempotency-key",
    default=None,
    help="Send this Idempotency-Key: running the same command again answers the job the first "
    "run created instead of a second job (an --input file is uploaded again, and that second "
    "upload deleted).",
)
@click.option("--wait", is_flag=True, help="Follow the job with a progress bar until it ends.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the job's id (no progress bar).")
@click.pass_context
def jobs_submit(
    ctx: click.Context,
    deployment_id: str,
    file: Path | None,
    input_file: Path | None,
    dataset_id: str | None,
    retention_days: int | None,
    callback_url: str | None,
    idempotency_key: str | None,
    wait: bool,
    quiet: bool,
) -> None:
    """Queue a batch scoring job.

    FILE holds {"values": [...]} (or {"inputs": {...}}), or a WML scoring payload as for
    `kscore score`; or it is a .npy file of rows (one-input models) or a .npz with one array
    per input, named by input, sent as it is. Or, for any size, --input uploads a file
    (.npy, .npz, .csv, .jsonl, .parquet) as a dataset and scores it, and --dataset scores one
    uploaded before. Prints the job's id; --wait follows it to the end.
    """
    if sum(x is not None for x in (file, input_file, dataset_id)) != 1:
        fail("Give the rows once: FILE, --input FILE or --dataset ID.")
    client = client_of(ctx)
    once = {"callback_url": callback_url, "idempotency_key": idempotency_key}
    if dataset_id is not None or input_file is not None:
        uploaded = input_file is not None
        if input_file is not None:
            dataset_id = str(upload_for_job(client, input_file, deployment_id)["id"])
        job = client.jobs.submit_dataset(
            deployment_id, str(dataset_id), retention_days, uploaded=uploaded, **once
        )
    elif file is not None and file.suffix.lower() in {".npy", ".npz"}:
        suffix = file.suffix.lower()
        params = {"retention_days": retention_days} if retention_days is not None else None
        content_type = "application/x-npy" if suffix == ".npy" else "application/x-npz"
        job = client.jobs.submit_file(deployment_id, read_bytes(file), content_type, params, **once)
    else:
        rows = rows_file_payload(deployment_id, file or Path())  # file is given here
        job = client.jobs.submit(deployment_id, rows, retention_days, **once)
    if quiet:
        click.echo(job["id"])
        if wait:
            final = client.jobs.wait(str(job["id"]))
            if final.get("status") != JobStatus.COMPLETED:
                fail(f"Job '{job['id']}' ended {final.get('status')}.")
        return
    click.echo(rows_block(job_rows(job)))
    if not wait:
        echo_ok("Submit job successful")
        return
    job = wait_with_progress(client, str(job["id"]), None)
    click.echo(f"Job '{job['id']}' completed: {progress_text(job)}.")
    click.echo(f"Fetch the result with: kscore jobs result {job['id']}")
    echo_ok("Submit job successful")


@jobs.command("status")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the job record as JSON.")
@click.pass_context
def jobs_status(ctx: click.Context, job_id: str, as_json: bool) -> None:
    """Show a job's status, progress, timestamps and error."""
    job = client_of(ctx).jobs.get(job_id)
    if as_json:
        echo_json(job)
    else:
        click.echo(rows_block(job_rows(job)))


@jobs.command("wait")
@click.argument("job_id")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Give up after this many seconds (default: wait as long as it takes).",
)
@click.pass_context
def jobs_wait(ctx: click.Context, job_id: str, timeout: float | None) -> None:
    """Follow a job with a progress bar until it ends.

    Exits 0 when the job completes, 1 if it failed or was canceled (with the reason).
    """
    job = wait_with_progress(client_of(ctx), job_id, timeout)
    click.echo(f"Job '{job['id']}' completed: {progress_text(job)}.")
    echo_ok("Wait job successful")


@jobs.command("result")
@click.argument("job_id")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=True, path_type=Path),
    default=None,
    help="Stream the result into this file (or directory: <job id>.<ext> in it) instead of "
    "printing it; its suffix picks the format (.json, .jsonl/.ndjson, .csv, .npy, .npz, "
    ".parquet/.pq) unless --format says.",
)
@click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(RESULT_FORMATS),
    default=None,
    help="The result's format. Default: the -o file's suffix, else json. Printing (no -o) "
    "takes the text formats json, jsonl and csv.",
)
@click.pass_context
def jobs_result(ctx: click.Context, job_id: str, output: Path | None, fmt: str | None) -> None:
    """Print a completed job's scoring result, or stream it to a file with -o.

    \b
    Formats: json (WML fields/values, as online scoring answers), jsonl (an object per row),
    csv (flattened columns: prediction_classes, probability_0, ...), npy (the one output's
    array), npz (an array per output, plus prediction_classes), parquet (a row group per
    chunk). Rows are in input order. Examples:
      kscore jobs result JOB
      kscore jobs result JOB -o preds.csv
      kscore jobs result JOB -o preds.out --format npz
    """
    client = client_of(ctx)
    if output is None:
        fmt = fmt or "json"
        if fmt == "json":
            click.echo(format_result(client.jobs.result(job_id)))
            return
        if fmt not in TEXT_FORMATS:
            fail(f"{fmt} is a binary format: write it to a file with -o FILE.{fmt}.")
        out = sys.stdout.buffer
        try:
            for piece in client.jobs.iter_result(job_id, format=fmt):
                out.write(piece)
            out.flush()
        except BrokenPipeError:
            # A reader that stopped early (`| head`) is not an error; nothing may flush again.
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (left for the interpreter's exit)
        return
    path = client.jobs.download_result(job_id, output, format=fmt)
    rows = (client.jobs.get(job_id).get("progress") or {}).get("rows_total", "?")
    click.echo(f"Wrote the result of job '{job_id}' ({rows} rows) to {path}.")


@jobs.command("cancel")
@click.argument("job_id")
@click.pass_context
def jobs_cancel(ctx: click.Context, job_id: str) -> None:
    """Cancel a queued or running job."""
    job = client_of(ctx).jobs.cancel(job_id)
    click.echo(rows_block(job_rows(job)))
    echo_ok("Cancel job successful")


@jobs.command("list")
@click.option("--deployment-id", default=None, help="Only this deployment's jobs.")
@click.option(
    "--status",
    type=click.Choice([status.value for status in JobStatus]),
    default=None,
    help="Only jobs in this status.",
)
@click.pass_context
def jobs_list(ctx: click.Context, deployment_id: str | None, status: str | None) -> None:
    """List jobs as a table."""
    client = client_of(ctx)
    click.echo("Fetching the list of jobs ...")
    found = client.jobs.list(deployment_id=deployment_id, status=status)
    rows = [
        [
            i,
            j.get("id"),
            j.get("deployment_id"),
            j.get("kind"),
            j.get("status"),
            progress_text(j),
            j.get("created_at"),
        ]
        for i, j in enumerate(found, start=1)
    ]
    headers = ["SI No", "Job Id", "Deployment Id", "Kind", "Status", "Progress", "Created at"]
    echo_list(headers, rows, "jobs")

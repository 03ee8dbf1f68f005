"""The ``kscore`` command: store, deploy and score Keras models; run the server.

Its list, deploy and score outputs follow IBM's ``bx ml`` CLI for Keras models
(:mod:`kscore.wml_output`). Errors print ``Error: <message> (<code>)`` on stderr and exit 1.
Every command talks to the server through one :class:`kscore.Client`, built by the root
command's :class:`CliContext`; ``kscore up``, ``worker`` and ``api`` live in :mod:`kscore.up`.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

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

from kscore.admin import admin
from kscore.cli_datasets import datasets, upload_for_job
from kscore.client import DEFAULT_URL, Client, Record, __version__
from kscore.errors import DeploymentFailedError, KscoreError
from kscore.payloads import is_wml_payload, job_payload, parse_wml_payload, read_json_file
from kscore.result_files import RESULT_FORMATS, TEXT_FORMATS
from kscore.up import api, up, worker
from kscore.wml_output import (
    deployment_rows,
    echo_json,
    echo_list,
    echo_ok,
    format_result,
    job_rows,
    model_rows,
    progress_text,
    rows_block,
)
from shared.status import JobStatus

if TYPE_CHECKING:
    import httpx

__all__ = ["CliContext", "cli", "main"]


@dataclass
class CliContext:
    """The root command's object: the server's URL and how to reach it.

    ``kscore`` builds one from ``--url``; tests hand their own to ``CliRunner.invoke(cli, args,
    obj=CliContext(transport=httpx.MockTransport(handler)))`` so every command talks to it.
    """

    url: str = DEFAULT_URL
    transport: httpx.BaseTransport | None = None
    api_key: str | None = None

    def client(self) -> Client:
        """A new client of the server at ``url``, through ``transport`` when one is set."""
        return Client(self.url, api_key=self.api_key, transport=self.transport)


def _fail(message: str) -> NoReturn:
    raise click.ClickException(message)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        _fail(f"Cannot read {path}: {exc.strerror or exc}")


def _wait_with_progress(client: Client, job_id: str, timeout: float | None) -> Record:
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


# -- the command tree ----------------------------------------------------------------------


class _KscoreGroup(click.Group):
    """Turns client and file errors into ``Error: <message>`` on stderr and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KscoreError as exc:
            raise click.ClickException(str(exc)) from exc
        except OSError as exc:  # local files: unreadable model, unwritable output
            where = f": {exc.filename}" if exc.filename else ""
            raise click.ClickException(f"{exc.strerror or exc}{where}") from exc


def _client(ctx: click.Context) -> Client:
    """The one place commands get their client; closed when the command ends."""
    return ctx.with_resource(ctx.ensure_object(CliContext).client())


@click.group(cls=_KscoreGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--url",
    envvar="KSCORE_URL",
    default=DEFAULT_URL,
    show_default=True,
    metavar="URL",
    help="The kscore server to talk to (env KSCORE_URL).",
)
@click.option(
    "--api-key",
    envvar="KSCORE_API_KEY",
    default=None,
    metavar="KEY",
    help="API key to send (env KSCORE_API_KEY; for the local server, `kscore up`'s "
    "<data dir>/credentials.json is used when neither is given).",
)
@click.version_option(__version__, prog_name="kscore")
@click.pass_context
def cli(ctx: click.Context, url: str, api_key: str | None) -> None:
    """Store, deploy and score Keras models on a kscore server, and run that server.

    \b
    A typical session:
      kscore up                                  # in another terminal
      kscore models store mnist.h5 --name mnist
      kscore deploy MODEL_ID "mnist online"
      kscore score payload.json                  # online
      kscore score DEPLOYMENT_ID rows.json       # online, rows as {"values": [...]}
      kscore jobs submit DEPLOYMENT_ID rows.json --wait   # batch
      kscore jobs submit DEPLOYMENT_ID --input rows.parquet   # batch, any size
    """
    context = ctx.ensure_object(CliContext)
    context.url = url
    context.api_key = api_key or context.api_key


# models -----------------------------------------------------------------------------------


@cli.group()
def models() -> None:
    """Store, inspect, download and delete Keras models."""


@models.command("store")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="Model name, 1-128 characters.")
@click.option("--description", default=None, help="Free-text description.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the new model's id.")
@click.pass_context
def models_store(
    ctx: click.Context, file: Path, name: str, description: str | None, quiet: bool
) -> None:
    """Upload a model file (.h5, .hdf5, .keras, or a .tar.gz/.tgz/.zip holding one)."""
    client = _client(ctx)
    if quiet:
        click.echo(client.repository.store_model(file, name, description)["id"])
        return
    click.echo(f"Storing the model '{file.name}' ...")
    model = client.repository.store_model(file, name, description)
    click.echo(rows_block(model_rows(model)))
    echo_ok("Store model successful")


@models.command("get")
@click.argument("model_id")
@click.pass_context
def models_get(ctx: click.Context, model_id: str) -> None:
    """Print a model's details as JSON."""
    echo_json(_client(ctx).repository.get_details(model_id))


@models.command("delete")
@click.argument("model_id")
@click.pass_context
def models_delete(ctx: click.Context, model_id: str) -> None:
    """Delete a model (refused while a deployment uses it)."""
    _client(ctx).repository.delete(model_id)
    click.echo(f"Deleted model '{model_id}'.")
    echo_ok("Delete model successful")


@models.command("download")
@click.argument("model_id")
@click.option(
    "-o",
    "--output",
    type=click.Path(),  # a str: a trailing "/" (a directory to create) must survive
    default=None,
    help="File or directory (ending in /) to write to (default: the original filename, here).",
)
@click.pass_context
def models_download(ctx: click.Context, model_id: str, output: str | None) -> None:
    """Download a model's original file."""
    path = _client(ctx).repository.download(model_id, output)
    click.echo(f"Downloaded model '{model_id}' to {path} ({path.stat().st_size} bytes).")
    echo_ok("Download model successful")


# list -------------------------------------------------------------------------------------


@cli.group("list")
def list_group() -> None:
    """List models or deployments as tables (as `bx ml list` does)."""


@list_group.command("models")
@click.pass_context
def list_models(ctx: click.Context) -> None:
    """List the stored models, newest first."""
    client = _client(ctx)
    click.echo("Fetching the list of models ...")
    found = client.repository.list_models()
    rows = [
        [i, m.get("id"), m.get("model_type"), m.get("name")] for i, m in enumerate(found, start=1)
    ]
    echo_list(["SI No", "Model Id", "Model Type", "Model Name"], rows, "models")


@list_group.command("deployments")
@click.pass_context
def list_deployments(ctx: click.Context) -> None:
    """List the deployments with their status."""
    client = _client(ctx)
    click.echo("Fetching the list of deployments ...")
    found = client.deployments.list_deployments()
    rows = [
        [i, d.get("id"), d.get("name"), d.get("model_id"), d.get("status")]
        for i, d in enumerate(found, start=1)
    ]
    headers = ["SI No", "Deployment Id", "Deployment Name", "Model Id", "Status"]
    echo_list(headers, rows, "deployments")


# deploy / deployments ---------------------------------------------------------------------


class _WarnOnce:
    """Prints each warning of a deployment being waited for (no worker consuming...) once,
    on stderr, so a silent wait of minutes says why."""

    def __init__(self) -> None:
        self._said: set[str] = set()

    def __call__(self, details: Record) -> None:
        for warning in details.get("warnings") or []:
            message = str(warning.get("message") or warning.get("code"))
            if message not in self._said:
                self._said.add(message)
                click.echo(f"Waiting: {message}", err=True)


@cli.command()
@click.argument("model_id")
@click.argument("name")
@click.option("--description", default=None, help="Free-text description.")
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Wait until the deployment is DEPLOY_SUCCESS or DEPLOY_FAILED.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=600.0,
    show_default=True,
    help="Seconds to wait for the deployment to settle.",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only the deployment's id.")
@click.pass_context
def deploy(
    ctx: click.Context,
    model_id: str,
    name: str,
    description: str | None,
    wait: bool,
    timeout: float,
    quiet: bool,
) -> None:
    """Deploy a model for online scoring.

    Prints the deployment's id and scoring endpoint once it is DEPLOY_SUCCESS (or right away
    with --no-wait); exits 1 with the reason if it ends DEPLOY_FAILED.
    """
    client = _client(ctx)
    on_waiting = _WarnOnce()
    if quiet:
        click.echo(
            client.deployments.create(
                model_id, name, description, wait=wait, timeout=timeout, on_waiting=on_waiting
            )["id"]
        )
        return
    click.echo(f"Deploying the model with MODEL-ID '{model_id}'...")
    try:
        deployment = client.deployments.create(
            model_id, name, description, wait=wait, timeout=timeout, on_waiting=on_waiting
        )
    except DeploymentFailedError as exc:
        click.echo(rows_block(deployment_rows(exc.deployment)))
        raise
    click.echo(rows_block(deployment_rows(deployment)))
    if wait:
        echo_ok("Deploy model successful")
    else:
        echo_ok(
            f"Deploy model started; check it with: kscore deployments get {deployment.get('id')}"
        )


@cli.group()
def deployments() -> None:
    """Inspect and delete deployments."""


@deployments.command("get")
@click.argument("deployment_id")
@click.pass_context
def deployments_get(ctx: click.Context, deployment_id: str) -> None:
    """Print a deployment's details as JSON."""
    echo_json(_client(ctx).deployments.get_details(deployment_id))


@deployments.command("delete")
@click.argument("deployment_id")
@click.pass_context
def deployments_delete(ctx: click.Context, deployment_id: str) -> None:
    """Delete a deployment."""
    _client(ctx).deployments.delete(deployment_id)
    click.echo(f"Deleted deployment '{deployment_id}'.")
    echo_ok("Delete deployment successful")


# score ------------------------------------------------------------------------------------


def _rows_file_payload(deployment_id: str, file: Path) -> Record:
    """The rows body of a JSON file for DEPLOYMENT_ID: rows, {"values"|"inputs"}, or WML's
    complete payload naming the same deployment."""
    doc = read_json_file(file)
    if is_wml_payload(doc):
        wml = parse_wml_payload(doc, str(file))
        if wml.deployment_id != deployment_id:
            _fail(
                f"deploymentId '{wml.deployment_id}' in {file} differs from DEPLOYMENT_ID "
                f"'{deployment_id}'."
            )
    return job_payload(doc, str(file))


@cli.command()
@click.argument("first", metavar="PAYLOAD.json | DEPLOYMENT_ID")
@click.argument("rows_file", metavar="[ROWS.json]", required=False, type=click.Path(path_type=Path))
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Seconds the server may take to answer inline before it turns the request into a job.",
)
@click.pass_context
def score(ctx: click.Context, first: str, rows_file: Path | None, timeout: float | None) -> None:
    """Score rows online, from a WML payload file or a deployment id and a rows file.

    PAYLOAD.json is WML's complete scoring payload: {"modelId": ..., "deploymentId": ...,
    "payload": {"values": [...]}}; modelId is optional and, if given, must be the deployment's
    model. Or give DEPLOYMENT_ID and ROWS.json holding just {"values": [...]} (or
    {"inputs": {...}}). Prints the result as JSON. If the server turns the request into a job,
    waits for it.
    """
    model_id = None
    if rows_file is None:
        payload_file = Path(first)
        wml = parse_wml_payload(read_json_file(payload_file), str(payload_file))
        deployment_id, payload, model_id = wml.deployment_id, wml.payload, wml.model_id
    else:
        deployment_id, payload = first, _rows_file_payload(first, rows_file)
    client = _client(ctx)
    click.echo(f"Fetching scoring results for the deployment '{deployment_id}' ...")
    details = client.deployments.get_details(deployment_id)
    if model_id is not None and model_id != details.get("model_id"):
        _fail(
            f"modelId '{model_id}' in {first} does not match the model of deployment "
            f"'{deployment_id}' ('{details.get('model_id')}')."
        )
    scoring_url = client.deployments.get_scoring_url(details)
    result = client.deployments.score(scoring_url, payload, timeout=timeout)
    click.echo(format_result(result))
    echo_ok("Score request successful")


# jobs -------------------------------------------------------------------------------------


@cli.group()
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
        _fail("Give the rows once: FILE, --input FILE or --dataset ID.")
    client = _client(ctx)
    if input_file is not None:
        dataset_id = str(upload_for_job(client, input_file, deployment_id)["id"])
    if dataset_id is not None:
        job = client.jobs.submit_dataset(deployment_id, dataset_id, retention_days)
    elif file is not None and file.suffix.lower() in {".npy", ".npz"}:
        suffix = file.suffix.lower()
        params = {"retention_days": retention_days} if retention_days is not None else None
        content_type = "application/x-npy" if suffix == ".npy" else "application/x-npz"
        job = client.jobs.submit_file(deployment_id, _read_bytes(file), content_type, params)
    else:
        rows = _rows_file_payload(deployment_id, file or Path())  # file is given here
        job = client.jobs.submit(deployment_id, rows, retention_days)
    if quiet:
        click.echo(job["id"])
        if wait:
            final = client.jobs.wait(str(job["id"]))
            if final.get("status") != JobStatus.COMPLETED:
                _fail(f"Job '{job['id']}' ended {final.get('status')}.")
        return
    click.echo(rows_block(job_rows(job)))
    if not wait:
        echo_ok("Submit job successful")
        return
    job = _wait_with_progress(client, str(job["id"]), None)
    click.echo(f"Job '{job['id']}' completed: {progress_text(job)}.")
    click.echo(f"Fetch the result with: kscore jobs result {job['id']}")
    echo_ok("Submit job successful")


@jobs.command("status")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the job record as JSON.")
@click.pass_context
def jobs_status(ctx: click.Context, job_id: str, as_json: bool) -> None:
    """Show a job's status, progress, timestamps and error."""
    job = _client(ctx).jobs.get(job_id)
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
    job = _wait_with_progress(_client(ctx), job_id, timeout)
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
    client = _client(ctx)
    if output is None:
        fmt = fmt or "json"
        if fmt == "json":
            click.echo(format_result(client.jobs.result(job_id)))
            return
        if fmt not in TEXT_FORMATS:
            _fail(f"{fmt} is a binary format: write it to a file with -o FILE.{fmt}.")
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
    job = _client(ctx).jobs.cancel(job_id)
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
    client = _client(ctx)
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


cli.add_command(up)
cli.add_command(worker)
cli.add_command(api)
cli.add_command(admin)
cli.add_command(datasets)


def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="kscore")


if __name__ == "__main__":
    main()

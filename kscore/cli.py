"""The ``kscore`` command: store, deploy and score Keras models; run the server.

Its list, deploy and score outputs follow IBM's ``bx ml`` CLI for Keras models. Errors print
``Error: <message> (<code>)`` on stderr and exit 1.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

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

from kscore.client import DEFAULT_URL, Client, Record, __version__, job_payload
from kscore.errors import DeploymentFailedError, KscoreError
from kscore.up import (
    DEFAULT_QUEUES,
    SERVER_EXTRAS_HINT,
    UpError,
    UpOptions,
    api_command,
    missing_server_modules,
    run_up,
    worker_command,
)

__all__ = ["cli", "main", "rows_block", "wml_table"]

_COLUMN_GAP = "   "  # bx ml pads every column, the last one included, with three spaces


# -- output formats ------------------------------------------------------------------------


def wml_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A table as ``bx ml list`` prints it: every column padded, then three spaces."""
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in r] for r in rows]]
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


def _echo_list(headers: Sequence[str], rows: Sequence[Sequence[Any]], what: str) -> None:
    click.echo(wml_table(headers, rows))
    click.echo("")
    click.echo(f"{len(rows)} records found.")
    click.echo("OK")
    click.echo(f"List {what} successful")


def _ok(message: str) -> None:
    click.echo("OK")
    click.echo(message)


def _echo_json(data: Any, indent: int = 2) -> None:
    click.echo(json.dumps(data, indent=indent))


def format_result(result: Any) -> str:
    """A scoring result as the WML CLI showed it: one line for the fields, one per row."""
    if not isinstance(result, dict) or not isinstance(result.get("values"), list):
        return json.dumps(result, indent=4)
    lines = ["{", f'    "fields": {json.dumps(result.get("fields"))},', '    "values": [']
    rows = [f"        {json.dumps(row)}" for row in result["values"]]
    lines.append(",\n".join(rows))
    lines += ["    ]", "}"]
    return "\n".join(line for line in lines if line)


def _fail(message: str) -> NoReturn:
    raise click.ClickException(message)


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


def _progress_text(job: Record) -> str:
    progress = job.get("progress") or {}
    return f"{progress.get('rows_done', 0)}/{progress.get('rows_total', 0)} rows"


def _job_rows(job: Record) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = [
        ("JobId", job.get("id")),
        ("Deployment Id", job.get("deployment_id")),
        ("Model Id", job.get("model_id")),
        ("Kind", job.get("kind")),
        ("Status", job.get("status")),
        ("Progress", _progress_text(job)),
        ("Created at", job.get("created_at")),
        ("Started at", job.get("started_at") or "-"),
        ("Finished at", job.get("finished_at") or "-"),
        ("Expires at", job.get("expires_at") or "-"),
    ]
    error = job.get("error")
    if isinstance(error, dict):
        rows.append(("Error", f"{error.get('message')} ({error.get('code')})"))
    return rows


def _deployment_rows(deployment: Record) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = [
        ("DeploymentId", deployment.get("id")),
        ("Scoring endpoint", deployment.get("scoring_url")),
        ("Name", deployment.get("name")),
        ("Type", deployment.get("model_type")),
        ("Runtime", "None Provided"),
        ("Status", deployment.get("status")),
        ("Created at", deployment.get("created_at")),
    ]
    return rows


# -- input files ---------------------------------------------------------------------------


def _load_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        _fail(f"Cannot read {path}: {exc.strerror or exc}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        _fail(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        _fail(f"Cannot read {path}: {exc.strerror or exc}")


def _rows_from_file(path: Path, deployment_id: str) -> Record:
    """The rows payload in a JSON file: {"values"|"inputs": ...} or a WML scoring payload."""
    doc = _load_json(path)
    if isinstance(doc, dict) and "deploymentId" in doc:
        wml = parse_wml_payload(doc, path)
        if wml.deployment_id != deployment_id:
            _fail(
                f"deploymentId '{wml.deployment_id}' in {path} differs from DEPLOYMENT_ID "
                f"'{deployment_id}'."
            )
        return wml.payload
    return _check_rows_payload(doc, str(path))


def _check_rows_payload(payload: Any, where: str) -> Record:
    if not isinstance(payload, dict):
        _fail(f'{where} must be a JSON object such as {{"values": [...]}}.')
    if "values" in payload:
        if not isinstance(payload["values"], list):
            _fail(f'{where}: "values" must be a list of rows.')
    elif "inputs" in payload:
        if not isinstance(payload["inputs"], dict):
            _fail(f'{where}: "inputs" must be an object mapping input names to rows.')
    else:
        _fail(f'{where} is missing the key "values" (the rows to score).')
    return payload


@dataclass(frozen=True)
class WmlPayload:
    """WML's complete scoring payload: ``{"modelId"?, "deploymentId", "payload": {...}}``."""

    deployment_id: str
    model_id: str | None
    payload: Record


def parse_wml_payload(doc: Any, path: Path) -> WmlPayload:
    """Validate a WML scoring payload document, naming the first key that is missing or wrong."""
    expected = '{"modelId": ..., "deploymentId": ..., "payload": {"values": [...]}}'
    if not isinstance(doc, dict):
        _fail(f"{path} must hold a JSON object like {expected}.")
    deployment_id = doc.get("deploymentId")
    if deployment_id is None:
        _fail(f'{path} is missing the key "deploymentId" (the deployment to score).')
    if not isinstance(deployment_id, str) or not deployment_id:
        _fail(f'{path}: "deploymentId" must be a non-empty string.')
    if "payload" not in doc:
        _fail(f'{path} is missing the key "payload" (an object with the "values" to score).')
    model_id = doc.get("modelId")
    if model_id is not None and not isinstance(model_id, str):
        _fail(f'{path}: "modelId" must be a string.')
    payload = _check_rows_payload(doc["payload"], f'{path}: "payload"')
    return WmlPayload(deployment_id, model_id, payload)


# -- progress ------------------------------------------------------------------------------


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
    root = ctx.find_root()
    url = root.obj if isinstance(root.obj, str) else None
    return ctx.with_resource(Client(url))


@click.group(cls=_KscoreGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--url",
    envvar="KSCORE_URL",
    default=DEFAULT_URL,
    show_default=True,
    metavar="URL",
    help="The kscore server to talk to (env KSCORE_URL).",
)
@click.version_option(__version__, prog_name="kscore")
@click.pass_context
def cli(ctx: click.Context, url: str) -> None:
    """Store, deploy and score Keras models on a kscore server, and run that server.

    \b
    A typical session:
      kscore up                                  # in another terminal
      kscore models store mnist.h5 --name mnist
      kscore deploy MODEL_ID "mnist online"
      kscore score payload.json                  # online
      kscore jobs submit DEPLOYMENT_ID rows.json --wait   # batch
    """
    ctx.obj = url


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
    keras = f"{model.get('keras_version') or '?'} (backend {model.get('backend') or '?'})"
    click.echo(
        rows_block(
            [
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
        )
    )
    _ok("Store model successful")


@models.command("get")
@click.argument("model_id")
@click.pass_context
def models_get(ctx: click.Context, model_id: str) -> None:
    """Print a model's details as JSON."""
    _echo_json(_client(ctx).repository.get_details(model_id))


@models.command("delete")
@click.argument("model_id")
@click.pass_context
def models_delete(ctx: click.Context, model_id: str) -> None:
    """Delete a model (refused while a deployment uses it)."""
    _client(ctx).repository.delete(model_id)
    click.echo(f"Deleted model '{model_id}'.")
    _ok("Delete model successful")


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
    _ok("Download model successful")


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
    _echo_list(["SI No", "Model Id", "Model Type", "Model Name"], rows, "models")


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
    _echo_list(headers, rows, "deployments")


# deploy / deployments ---------------------------------------------------------------------


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
    if quiet:
        click.echo(
            client.deployments.create(model_id, name, description, wait=wait, timeout=timeout)["id"]
        )
        return
    click.echo(f"Deploying the model with MODEL-ID '{model_id}'...")
    try:
        deployment = client.deployments.create(
            model_id, name, description, wait=wait, timeout=timeout
        )
    except DeploymentFailedError as exc:
        click.echo(rows_block(_deployment_rows(exc.deployment)))
        raise
    click.echo(rows_block(_deployment_rows(deployment)))
    if wait:
        _ok("Deploy model successful")
    else:
        _ok(f"Deploy model started; check it with: kscore deployments get {deployment.get('id')}")


@cli.group()
def deployments() -> None:
    """Inspect and delete deployments."""


@deployments.command("get")
@click.argument("deployment_id")
@click.pass_context
def deployments_get(ctx: click.Context, deployment_id: str) -> None:
    """Print a deployment's details as JSON."""
    _echo_json(_client(ctx).deployments.get_details(deployment_id))


@deployments.command("delete")
@click.argument("deployment_id")
@click.pass_context
def deployments_delete(ctx: click.Context, deployment_id: str) -> None:
    """Delete a deployment."""
    _client(ctx).deployments.delete(deployment_id)
    click.echo(f"Deleted deployment '{deployment_id}'.")
    _ok("Delete deployment successful")


# score ------------------------------------------------------------------------------------


@cli.command()
@click.argument("payload_file", metavar="PAYLOAD.json", type=click.Path(path_type=Path))
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Seconds the server may take to answer inline before it turns the request into a job.",
)
@click.pass_context
def score(ctx: click.Context, payload_file: Path, timeout: float | None) -> None:
    """Score rows online from a WML payload file.

    PAYLOAD.json is WML's complete scoring payload: {"modelId": ..., "deploymentId": ...,
    "payload": {"values": [...]}}; modelId is optional and, if given, must be the deployment's
    model. Prints the result as JSON. If the server turns the request into a job, waits for it.
    """
    wml = parse_wml_payload(_load_json(payload_file), payload_file)
    client = _client(ctx)
    click.echo(f"Fetching scoring results for the deployment '{wml.deployment_id}' ...")
    details = client.deployments.get_details(wml.deployment_id)
    if wml.model_id is not None and wml.model_id != details.get("model_id"):
        _fail(
            f"modelId '{wml.model_id}' in {payload_file} does not match the model of deployment "
            f"'{wml.deployment_id}' ('{details.get('model_id')}')."
        )
    scoring_url = client.deployments.get_scoring_url(details)
    result = client.deployments.score(scoring_url, wml.payload, timeout=timeout)
    click.echo(format_result(result))
    _ok("Score request successful")


# jobs -------------------------------------------------------------------------------------


@cli.group()
def jobs() -> None:
    """Submit, follow, fetch and cancel batch scoring jobs."""


@jobs.command("submit")
@click.argument("deployment_id")
@click.argument("file", type=click.Path(path_type=Path))
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
    file: Path,
    retention_days: int | None,
    wait: bool,
    quiet: bool,
) -> None:
    """Queue a batch scoring job.

    FILE holds {"values": [...]} (or {"inputs": {...}}), or a WML scoring payload as for
    `kscore score`; or it is a .npy file of rows (one-input models) or a .npz with one array
    per input, named by input, sent as it is. Prints the job's id; --wait follows it to the end.
    """
    client = _client(ctx)
    suffix = file.suffix.lower()
    if suffix in {".npy", ".npz"}:
        params = {"retention_days": retention_days} if retention_days is not None else None
        content_type = "application/x-npy" if suffix == ".npy" else "application/x-npz"
        job = client.jobs.submit_file(deployment_id, _read_bytes(file), content_type, params)
    else:
        job = client.jobs.submit(
            deployment_id, job_payload(_rows_from_file(file, deployment_id)), retention_days
        )
    if quiet:
        click.echo(job["id"])
        if wait:
            final = client.jobs.wait(str(job["id"]))
            if final.get("status") != "completed":
                _fail(f"Job '{job['id']}' ended {final.get('status')}.")
        return
    click.echo(rows_block(_job_rows(job)))
    if not wait:
        _ok("Submit job successful")
        return
    job = _wait_with_progress(client, str(job["id"]), None)
    click.echo(f"Job '{job['id']}' completed: {_progress_text(job)}.")
    click.echo(f"Fetch the result with: kscore jobs result {job['id']}")
    _ok("Submit job successful")


@jobs.command("status")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the job record as JSON.")
@click.pass_context
def jobs_status(ctx: click.Context, job_id: str, as_json: bool) -> None:
    """Show a job's status, progress, timestamps and error."""
    job = _client(ctx).jobs.get(job_id)
    if as_json:
        _echo_json(job)
    else:
        click.echo(rows_block(_job_rows(job)))


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
    click.echo(f"Job '{job['id']}' completed: {_progress_text(job)}.")
    _ok("Wait job successful")


@jobs.command("result")
@click.argument("job_id")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Stream the result JSON into this file instead of printing it.",
)
@click.pass_context
def jobs_result(ctx: click.Context, job_id: str, output: Path | None) -> None:
    """Print a completed job's scoring result, or stream it to a file with -o."""
    client = _client(ctx)
    if output is None:
        click.echo(format_result(client.jobs.result(job_id)))
        return
    path = client.jobs.download_result(job_id, output)
    rows = (client.jobs.get(job_id).get("progress") or {}).get("rows_total", "?")
    click.echo(f"Wrote the result of job '{job_id}' ({rows} rows) to {path}.")


@jobs.command("cancel")
@click.argument("job_id")
@click.pass_context
def jobs_cancel(ctx: click.Context, job_id: str) -> None:
    """Cancel a queued or running job."""
    job = _client(ctx).jobs.cancel(job_id)
    click.echo(rows_block(_job_rows(job)))
    _ok("Cancel job successful")


@jobs.command("list")
@click.option("--deployment-id", default=None, help="Only this deployment's jobs.")
@click.option(
    "--status",
    type=click.Choice(["queued", "running", "completed", "failed", "canceled"]),
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
            _progress_text(j),
            j.get("created_at"),
        ]
        for i, j in enumerate(found, start=1)
    ]
    headers = ["SI No", "Job Id", "Deployment Id", "Kind", "Status", "Progress", "Created at"]
    _echo_list(headers, rows, "jobs")


# server processes -------------------------------------------------------------------------


def _exec(command: list[str], env: dict[str, str]) -> NoReturn:
    """Replace this process with ``command`` (so signals go straight to it)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], command, env)


def _require(*modules: str) -> None:
    missing = missing_server_modules(*modules)
    if missing:
        _fail(f"{', '.join(missing)} is not installed. {SERVER_EXTRAS_HINT}")


def _server_env(redis_url: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if redis_url:
        env["KSCORE_REDIS_URL"] = redis_url
    return env


_redis_option: Callable[[Callable[..., Any]], Callable[..., Any]] = click.option(
    "--redis-url",
    envvar="KSCORE_REDIS_URL",
    default=None,
    metavar="URL",
    help="Redis to use (env KSCORE_REDIS_URL).",
)


@cli.command()
@click.option(
    "--queues",
    default=DEFAULT_QUEUES,
    show_default=True,
    help="Comma-separated queues to consume, the first one first when several have work.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes (each keeps its own model cache).",
)
@_redis_option
def worker(queues: str, concurrency: int, redis_url: str | None) -> None:
    """Run a Celery worker (needs kscore[server]).

    The worker deploys models and scores rows for the API; start more of them, on this or other
    machines pointed at the same Redis, to scale out.
    """
    _require("celery")
    _exec(worker_command(queues, concurrency), _server_env(redis_url))


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=8080, show_default=True, help="Port to bind."
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="gunicorn worker processes.",
)
@_redis_option
def api(host: str, port: int, workers: int, redis_url: str | None) -> None:
    """Run the HTTP API under gunicorn (needs kscore[server])."""
    _require("gunicorn", "flask")
    _exec(api_command(host, port, workers), _server_env(redis_url))


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the API binds.")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=8080,
    show_default=True,
    help="Port the API binds.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Celery worker processes to start (with more than one, each gets an equal share of the CPU cores for TensorFlow unless KSCORE_TF_THREADS is set).",
)
@click.option(
    "--redis-url",
    envvar="KSCORE_REDIS_URL",
    default=None,
    metavar="URL",
    help="Use this Redis (env KSCORE_REDIS_URL) instead of starting a local one.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".kscore"),
    show_default=True,
    help="Where the local Redis files, logs and model cache live.",
)
@click.option(
    "--startup-timeout",
    type=click.FloatRange(min=1),
    default=120.0,
    show_default=True,
    help="Seconds to wait for the API to answer /healthz.",
)
def up(
    host: str,
    port: int,
    workers: int,
    redis_url: str | None,
    data_dir: Path,
    startup_timeout: float,
) -> None:
    """Run Redis, workers and the API together (development).

    Without --redis-url a local redis-server keeps its data (AOF) in DATA_DIR/redis. Output of
    the workers and the API goes to log files in DATA_DIR/logs. Ctrl-C stops the API, then the
    workers, then Redis.
    """
    options = UpOptions(host, port, workers, redis_url, data_dir, startup_timeout)
    try:
        code = run_up(options)
    except UpError as exc:
        _fail(str(exc))
    sys.exit(code)


def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="kscore")


if __name__ == "__main__":
    main()

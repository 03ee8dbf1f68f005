"""The ``kscore`` command: store, deploy and score Keras models; run the server.

Its list, deploy and score outputs follow IBM's ``bx ml`` CLI for Keras models
(:mod:`kscore.wml_output`). Errors print ``Error: <message> (<code>)`` on stderr and exit 1.
Every command talks to the server through one :class:`kscore.Client`, built by the root
command's :class:`CliContext`; ``kscore up``, ``worker`` and ``api`` live in :mod:`kscore.up`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from kscore.admin import admin
from kscore.cli_common import CliContext, client_of, fail, rows_file_payload
from kscore.cli_datasets import datasets
from kscore.cli_jobs import jobs
from kscore.client import DEFAULT_URL, Record, __version__
from kscore.errors import DeploymentFailedError, DeploymentMoveFailedError, KscoreError
from kscore.payloads import parse_wml_payload, read_json_file
from kscore.up import api, up, worker
from kscore.wml_output import (
    deployment_rows,
    echo_json,
    echo_list,
    echo_ok,
    format_result,
    model_rows,
    rows_block,
)

if TYPE_CHECKING:
    pass

__all__ = ["CliContext", "cli", "main"]


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
    client = client_of(ctx)
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
    echo_json(client_of(ctx).repository.get_details(model_id))


@models.command("delete")
@click.argument("model_id")
@click.pass_context
def models_delete(ctx: click.Context, model_id: str) -> None:
    """Delete a model (refused while a deployment uses it)."""
    client_of(ctx).repository.delete(model_id)
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
    path = client_of(ctx).repository.download(model_id, output)
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
    client = client_of(ctx)
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
    client = client_of(ctx)
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


def _batching_options(command: Callable[..., None]) -> Callable[..., None]:
    """--max-batch-size and --max-wait-ms: a deployment's dynamic batching of online rows."""
    command = click.option(
        "--max-wait-ms",
        type=click.FloatRange(min=0),
        default=None,
        help="Milliseconds a worker waits for more online requests to join a batch once "
        "requests arrive together; 0 never waits (default: the server's "
        "KSCORE_MAX_BATCH_WAIT_MS).",
    )(command)
    return click.option(
        "--max-batch-size",
        type=click.IntRange(min=1),
        default=None,
        help="At most this many rows of online requests in one model call (default: the "
        "server's KSCORE_MAX_BATCH_SIZE).",
    )(command)


def _wait_options(
    wait_help: str, timeout_help: str
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """--wait/--no-wait (default: wait) and --timeout SECONDS (default 600), helped by these."""

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        command = click.option(
            "--timeout",
            type=click.FloatRange(min=1),
            default=600.0,
            show_default=True,
            help=timeout_help,
        )(command)
        return click.option("--wait/--no-wait", default=True, show_default=True, help=wait_help)(
            command
        )

    return decorate


def _batching(max_batch_size: int | None, max_wait_ms: float | None) -> dict[str, Any] | None:
    """The ``batching`` object of a deployment's body; None when neither option is given."""
    batching: dict[str, Any] = {}
    if max_batch_size is not None:
        batching["max_batch_size"] = max_batch_size
    if max_wait_ms is not None:
        batching["max_wait_ms"] = max_wait_ms
    return batching or None


@cli.command()
@click.argument("model_id")
@click.argument("name")
@click.option("--description", default=None, help="Free-text description.")
@_wait_options(
    "Wait until the deployment is DEPLOY_SUCCESS or DEPLOY_FAILED.",
    "Seconds to wait for the deployment to settle.",
)
@_batching_options
@click.option("-q", "--quiet", is_flag=True, help="Print only the deployment's id.")
@click.pass_context
def deploy(
    ctx: click.Context,
    model_id: str,
    name: str,
    description: str | None,
    wait: bool,
    timeout: float,
    max_batch_size: int | None,
    max_wait_ms: float | None,
    quiet: bool,
) -> None:
    """Deploy a model for online scoring.

    Prints the deployment's id and scoring endpoint once it is DEPLOY_SUCCESS (or right away
    with --no-wait); exits 1 with the reason if it ends DEPLOY_FAILED.
    """
    client = client_of(ctx)
    on_waiting = _WarnOnce()
    options: dict[str, Any] = {
        "batching": _batching(max_batch_size, max_wait_ms),
        "wait": wait,
        "timeout": timeout,
        "on_waiting": on_waiting,
    }
    if quiet:
        click.echo(client.deployments.create(model_id, name, description, **options)["id"])
        return
    click.echo(f"Deploying the model with MODEL-ID '{model_id}'...")
    try:
        deployment = client.deployments.create(model_id, name, description, **options)
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
    """Inspect, change and delete deployments."""


@deployments.command("get")
@click.argument("deployment_id")
@click.pass_context
def deployments_get(ctx: click.Context, deployment_id: str) -> None:
    """Print a deployment's details as JSON."""
    echo_json(client_of(ctx).deployments.get_details(deployment_id))


@deployments.command("update")
@click.argument("deployment_id")
@click.option(
    "--model-id",
    default=None,
    help="Move the deployment to this model (same inputs) behind the same scoring URL.",
)
@click.option("--name", default=None, help="A new name.")
@click.option("--description", default=None, help="A new description.")
@_batching_options
@_wait_options(
    "Wait until a move has loaded the new model.", "Seconds to wait for a move to settle."
)
@click.pass_context
def deployments_update(
    ctx: click.Context,
    deployment_id: str,
    model_id: str | None,
    name: str | None,
    description: str | None,
    max_batch_size: int | None,
    max_wait_ms: float | None,
    wait: bool,
    timeout: float,
) -> None:
    """Move a deployment to another model, rename it, or change its batching.

    The current model answers until a worker has loaded the new one; exits 1 with the reason
    if the new model does not load (the current one still serves).
    """
    batching = _batching(max_batch_size, max_wait_ms)
    if model_id is None and name is None and description is None and batching is None:
        fail(
            "Nothing to change: give --model-id, --name, --description, --max-batch-size or --max-wait-ms."
        )
    try:
        deployment = client_of(ctx).deployments.update(
            deployment_id,
            model_id=model_id,
            name=name,
            description=description,
            batching=batching,
            wait=wait,
            timeout=timeout,
        )
    except DeploymentMoveFailedError as exc:
        click.echo(rows_block(_update_rows(exc.deployment)))
        raise
    click.echo(rows_block(_update_rows(deployment)))
    echo_ok("Update deployment successful")


def _update_rows(deployment: Record) -> list[tuple[str, Any]]:
    batching = deployment.get("batching") or {}
    return [
        *deployment_rows(deployment),
        ("Model", deployment.get("model_id")),
        ("Max batch size", batching.get("max_batch_size")),
        ("Max wait ms", batching.get("max_wait_ms")),
    ]


@deployments.command("delete")
@click.argument("deployment_id")
@click.pass_context
def deployments_delete(ctx: click.Context, deployment_id: str) -> None:
    """Delete a deployment."""
    client_of(ctx).deployments.delete(deployment_id)
    click.echo(f"Deleted deployment '{deployment_id}'.")
    echo_ok("Delete deployment successful")


# score ------------------------------------------------------------------------------------


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
        deployment_id, payload = first, rows_file_payload(first, rows_file)
    client = client_of(ctx)
    click.echo(f"Fetching scoring results for the deployment '{deployment_id}' ...")
    details = client.deployments.get_details(deployment_id)
    if model_id is not None and model_id != details.get("model_id"):
        fail(
            f"modelId '{model_id}' in {first} does not match the model of deployment "
            f"'{deployment_id}' ('{details.get('model_id')}')."
        )
    scoring_url = client.deployments.get_scoring_url(details)
    result = client.deployments.score(scoring_url, payload, timeout=timeout)
    click.echo(format_result(result))
    echo_ok("Score request successful")


cli.add_command(up)
cli.add_command(worker)
cli.add_command(api)
cli.add_command(admin)
cli.add_command(datasets)
cli.add_command(jobs)


def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="kscore")


if __name__ == "__main__":
    main()

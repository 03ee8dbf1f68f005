"""What every ``kscore`` command group shares: the root command's context, the one way to get
a client, and failing with a message."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from kscore.client import DEFAULT_URL, Client, Record
from kscore.payloads import is_wml_payload, job_payload, parse_wml_payload, read_json_file

if TYPE_CHECKING:
    import httpx

__all__ = ["CliContext", "client_of", "fail", "read_bytes", "rows_file_payload"]


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


def fail(message: str) -> NoReturn:
    """Stop the command: ``Error: <message>`` on stderr, exit status 1."""
    raise click.ClickException(message)


def read_bytes(path: Path) -> bytes:
    """The bytes of a local file; an unreadable one fails the command naming it."""
    try:
        return path.read_bytes()
    except OSError as exc:
        fail(f"Cannot read {path}: {exc.strerror or exc}")


def client_of(ctx: click.Context) -> Client:
    """The one place commands get their client; closed when the command ends."""
    return ctx.with_resource(ctx.ensure_object(CliContext).client())


def rows_file_payload(deployment_id: str, file: Path) -> Record:
    """The rows body of a JSON file for DEPLOYMENT_ID: rows, {"values"|"inputs"}, or WML's
    complete payload naming the same deployment."""
    doc = read_json_file(file)
    if is_wml_payload(doc):
        wml = parse_wml_payload(doc, str(file))
        if wml.deployment_id != deployment_id:
            fail(
                f"deploymentId '{wml.deployment_id}' in {file} differs from DEPLOYMENT_ID "
                f"'{deployment_id}'."
            )
    return job_payload(doc, str(file))

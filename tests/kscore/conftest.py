"""The client and the CLI wired to the test's in-process API (HTTP over WSGI)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from click.testing import CliRunner, Result
from flask import Flask

import kscore.cli
from kscore import Client
from shared.instance_store import NewInstance


class Cli:
    """The ``kscore`` command with its clients wired to the in-process API."""

    def __init__(self, app: Flask, api_key: str) -> None:
        self.context = kscore.cli.CliContext(
            transport=httpx.WSGITransport(app=app), api_key=api_key
        )

    def invoke(self, args: list[str]) -> Result:
        return CliRunner().invoke(kscore.cli.cli, args, obj=self.context)


@pytest.fixture
def api_client(app: Flask, instance: NewInstance) -> Iterator[Client]:
    with Client(
        "http://kscore.test",
        api_key=instance.key.api_key,
        transport=httpx.WSGITransport(app=app),
    ) as client:
        yield client


@pytest.fixture
def cli(app: Flask, instance: NewInstance) -> Cli:
    return Cli(app, instance.key.api_key)

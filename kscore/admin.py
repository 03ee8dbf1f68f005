"""``kscore admin``: instances and their credentials, straight in Redis (no HTTP).

Which Redis: ``--redis-url`` / ``KSCORE_REDIS_URL``, else the one a running ``kscore up``
uses for ``--data-dir`` (it says so in ``<data dir>/stack.json``). The store code lives in
``shared.instance_store`` and is imported inside the commands only, so ``import kscore.cli``
still loads nothing of the server (and needs only the client's dependencies).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from kscore.credentials import (
    CREDENTIALS_FILE,
    STACK_FILE,
    read_json_file,
    write_private_json,
)
from kscore.wml_output import echo_json, simple_table

if TYPE_CHECKING:
    from shared.instance_store import InstanceStore
    from shared.settings import Settings

__all__ = ["admin", "ensure_local_credentials"]

SERVER_HINT = "kscore admin needs the server's packages: pip install 'kscore[server]'."


def _fail(message: str) -> NoReturn:
    raise click.ClickException(message)


def _when(ts: float | None) -> str:
    if ts is None:
        return "never"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _settings() -> Settings:
    """The installation's settings from ``KSCORE_*`` (the key prefix, the default instance)."""
    try:
        from shared.errors import SettingsError
        from shared.settings import Settings
    except ImportError:
        _fail(SERVER_HINT)
    try:
        return Settings.from_env()
    except SettingsError as exc:
        _fail(str(exc))


def open_store(redis_url: str, key_prefix: str) -> InstanceStore:
    """The instance store at ``redis_url``; raises ClickException without the server extras."""
    try:
        from shared.instance_store import open_instance_store
        from shared.settings import check_redis_url
    except ImportError:
        _fail(SERVER_HINT)
    try:
        check_redis_url(redis_url)  # as the server reads it: redis://, unix://, sentinel://...
    except ValueError as exc:
        _fail(f"KSCORE_REDIS_URL (--redis-url): {exc}")
    return open_instance_store(redis_url, key_prefix)


@contextmanager
def _errors(redis_url: str) -> Iterator[None]:
    """Store errors and an unreachable Redis as one-line ``Error:`` messages."""
    import redis

    from shared.errors import DomainError

    try:
        yield
    except DomainError as exc:
        raise click.ClickException(f"{exc.message} ({exc.code})") from exc
    except redis.ConnectionError as exc:
        raise click.ClickException(f"Cannot reach Redis at {redis_url}: {exc}") from exc


class _Target:
    """Where an admin command works: the Redis, the key prefix and the API's URL."""

    def __init__(self, redis_url: str | None, data_dir: Path, cli_url: str | None) -> None:
        stack = read_json_file(data_dir / STACK_FILE) or {}
        url = redis_url or stack.get("redis_url")
        if not isinstance(url, str) or not url:
            _fail(
                f"No Redis to talk to: pass --redis-url (or set KSCORE_REDIS_URL), or start "
                f"`kscore up --data-dir {data_dir}` first."
            )
        self.redis_url = url
        self.api_url = str(
            os.environ.get("KSCORE_PUBLIC_URL") or stack.get("url") or cli_url or ""
        ).rstrip("/")
        self.store = open_store(url, _settings().key_prefix)


def _target_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path(".kscore"),
        show_default=True,
        help="Use the Redis of the `kscore up` running for this directory.",
    )(func)
    return click.option(
        "--redis-url",
        envvar="KSCORE_REDIS_URL",
        default=None,
        metavar="URL",
        help="Redis of the installation (env KSCORE_REDIS_URL).",
    )(func)


def _target(ctx: click.Context, redis_url: str | None, data_dir: Path) -> _Target:
    root = ctx.find_root().obj
    return _Target(redis_url, data_dir, getattr(root, "url", None))


@click.group()
def admin() -> None:
    """Manage instances and credentials (talks to Redis directly; needs kscore[server]).

    \b
      kscore admin create-instance --name team-a      # prints its secrets once
      kscore admin create-key INSTANCE_ID --name ci
      kscore admin revoke-key INSTANCE_ID KEY_ID
    """


@admin.command("create-instance")
@click.option("--name", required=True, help="A name for people (1-128 characters).")
@click.option(
    "--instance-id",
    default=None,
    metavar="ID",
    help="The id (default: a new UUID); e.g. `default` to give credentials to data stored "
    "before instances had any.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_target_options
@click.pass_context
def create_instance(
    ctx: click.Context,
    name: str,
    instance_id: str | None,
    as_json: bool,
    redis_url: str | None,
    data_dir: Path,
) -> None:
    """Create an instance with a WML username/password and an API key, printed once."""
    target = _target(ctx, redis_url, data_dir)
    with _errors(target.redis_url):
        new = target.store.create(name, instance_id)
    secrets = {
        "url": target.api_url,
        "instance_id": new.instance.id,
        "username": new.instance.username,
        "password": new.password,
        "api_key": new.key.api_key,
    }
    if as_json:
        echo_json(secrets)
        return
    click.echo(f"Instance {name!r} created. The password and API key are shown only now:")
    for field, value in secrets.items():
        click.echo(f"  {field + ':':13} {value}")


@admin.command("list-instances")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@_target_options
@click.pass_context
def list_instances(
    ctx: click.Context, as_json: bool, redis_url: str | None, data_dir: Path
) -> None:
    """List instances with their model and key counts."""
    target = _target(ctx, redis_url, data_dir)
    store = target.store
    with _errors(target.redis_url):
        rows = [
            {
                "instance_id": record.id,
                "name": record.name,
                "created_at": _when(record.created_at),
                "username": record.username,
                "models": store.model_count(record.id),
                "api_keys": len(store.keys_of(record.id)),
            }
            for record in store.all()
        ]
    if as_json:
        echo_json(rows)
        return
    headers = ["ID", "NAME", "CREATED", "MODELS", "API KEYS"]
    table = [
        [r["instance_id"], r["name"], r["created_at"], r["models"], r["api_keys"]] for r in rows
    ]
    click.echo(simple_table(headers, table))
    click.echo(f"{len(rows)} instance(s).")


@admin.command("create-key")
@click.argument("instance_id")
@click.option("--name", default="api key", show_default=True, help="What the key is for.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_target_options
@click.pass_context
def create_key(
    ctx: click.Context,
    instance_id: str,
    name: str,
    as_json: bool,
    redis_url: str | None,
    data_dir: Path,
) -> None:
    """Create an API key for INSTANCE_ID, printed once."""
    target = _target(ctx, redis_url, data_dir)
    with _errors(target.redis_url):
        issued = target.store.create_key(instance_id, name)
    out = {
        "instance_id": instance_id,
        "key_id": issued.record.id,
        "name": issued.record.name,
        "api_key": issued.api_key,
    }
    if as_json:
        echo_json(out)
        return
    click.echo(f"API key {issued.record.id} ({name}) for instance {instance_id}, shown only now:")
    click.echo(f"  {issued.api_key}")


@admin.command("webhook-secret")
@click.argument("instance_id")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_target_options
@click.pass_context
def webhook_secret(
    ctx: click.Context, instance_id: str, as_json: bool, redis_url: str | None, data_dir: Path
) -> None:
    """Print the secret that signs INSTANCE_ID's job callbacks (made on first use)."""
    target = _target(ctx, redis_url, data_dir)
    with _errors(target.redis_url):
        secret = target.store.webhook_secret(instance_id)
    if as_json:
        echo_json({"instance_id": instance_id, "webhook_secret": secret})
        return
    click.echo(secret)


@admin.command("list-keys")
@click.argument("instance_id")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@_target_options
@click.pass_context
def list_keys(
    ctx: click.Context, instance_id: str, as_json: bool, redis_url: str | None, data_dir: Path
) -> None:
    """List the API keys of INSTANCE_ID (ids, names and when last used; never the keys)."""
    target = _target(ctx, redis_url, data_dir)
    with _errors(target.redis_url):
        keys = target.store.keys_of(instance_id)
    rows = [
        {
            "key_id": k.id,
            "name": k.name,
            "created_at": _when(k.created_at),
            "last_used_at": _when(k.last_used_at),
        }
        for k in keys
    ]
    if as_json:
        echo_json(rows)
        return
    headers = ["ID", "NAME", "CREATED", "LAST USED"]
    click.echo(simple_table(headers, [list(r.values()) for r in rows]))


@admin.command("revoke-key")
@click.argument("instance_id")
@click.argument("key_id")
@_target_options
@click.pass_context
def revoke_key(
    ctx: click.Context, instance_id: str, key_id: str, redis_url: str | None, data_dir: Path
) -> None:
    """Revoke KEY_ID of INSTANCE_ID; requests with it are refused from now on."""
    target = _target(ctx, redis_url, data_dir)
    with _errors(target.redis_url):
        target.store.revoke_key(instance_id, key_id)
    click.echo(f"API key {key_id} revoked.")


@admin.command("delete-instance")
@click.argument("instance_id")
@click.option(
    "--force", is_flag=True, help="Also delete its models, deployments and jobs (refused without)."
)
@_target_options
@click.pass_context
def delete_instance(
    ctx: click.Context, instance_id: str, force: bool, redis_url: str | None, data_dir: Path
) -> None:
    """Delete INSTANCE_ID and its credentials (refused while it holds models, unless --force)."""
    target = _target(ctx, redis_url, data_dir)
    with _errors(target.redis_url):
        target.store.delete(instance_id, force=force)
    click.echo(f"Instance {instance_id} deleted.")


def ensure_local_credentials(redis_url: str, data_dir: Path, url: str) -> tuple[Path, bool]:
    """Make sure the development stack's instance exists and ``<data dir>/credentials.json``
    holds working credentials for it; ``(path, whether new secrets were written)``.

    A file whose key still works is kept (its ``url`` brought up to date). Otherwise: a new
    instance, or for an existing one whose secrets were lost, a new key and password.
    """
    settings = _settings()
    store = open_store(redis_url, settings.key_prefix)
    instance_id = settings.default_instance
    path = data_dir / CREDENTIALS_FILE
    saved = read_json_file(path) or {}
    saved_key = saved.get("api_key")
    if (
        isinstance(saved_key, str)
        and saved.get("instance_id") == instance_id
        and store.instance_for_api_key(saved_key) == instance_id
    ):
        if saved.get("url") != url:
            write_private_json(path, {**saved, "url": url})
        return path, False
    if store.exists(instance_id):
        record = store.get(instance_id)
        username, password = record.username, store.reset_password(instance_id)
        api_key = store.create_key(instance_id, "kscore up").api_key
    else:
        new = store.create("default", instance_id, key_name="kscore up")
        username, password, api_key = new.instance.username, new.password, new.key.api_key
    write_private_json(
        path,
        {
            "url": url,
            "instance_id": instance_id,
            "username": username,
            "password": password,
            "api_key": api_key,
        },
    )
    return path, True

"""The local credentials file that ``kscore up`` writes, and how the client picks its API key.

``<data dir>/credentials.json`` (mode 0600) holds ``url``, ``instance_id``, ``username``,
``password`` and ``api_key`` of the development stack's ``default`` instance. The client uses,
in order: an explicit key, ``KSCORE_API_KEY``, then that file when the URL is the local
server's (loopback, same port). Standard library only: importing the client loads no server code.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "CREDENTIALS_FILE",
    "STACK_FILE",
    "api_key_for",
    "default_data_dir",
    "is_loopback_host",
    "read_json_file",
    "same_local_server",
    "write_private_json",
]

CREDENTIALS_FILE = "credentials.json"
# Where a running `kscore up` says which Redis and URL it uses (for `kscore admin`).
STACK_FILE = "stack.json"


def default_data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``KSCORE_DATA_DIR``, else ``.kscore`` (as ``kscore up`` uses it)."""
    env = os.environ if environ is None else environ
    return Path(env.get("KSCORE_DATA_DIR") or ".kscore")


def write_private_json(path: Path, content: Mapping[str, Any]) -> None:
    """Write ``content`` as JSON to ``path``, readable by its owner only (mode 0600).

    The file is created 0600 beside the target and renamed over it, so the secret is never
    readable by others, not even for a moment, and a reader never sees half a file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask may have taken bits away, never added: make it exact
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(dict(content), out, indent=2)
            out.write("\n")
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def read_json_file(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None if it is missing or not a JSON object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (an address, or ``localhost``) is on this machine's loopback."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def same_local_server(url: str, other: str) -> bool:
    """Whether two URLs reach the same server on this machine (loopback, same scheme and port)."""
    a, b = urlsplit(url), urlsplit(other)
    if not (
        a.hostname and b.hostname and is_loopback_host(a.hostname) and is_loopback_host(b.hostname)
    ):
        return False
    return a.scheme == b.scheme and (a.port or 80) == (b.port or 80)


def api_key_for(
    url: str,
    api_key: str | None = None,
    environ: Mapping[str, str] | None = None,
    data_dir: Path | None = None,
) -> str | None:
    """The API key to send to ``url``: ``api_key``, else ``KSCORE_API_KEY``, else the local
    credentials file's when ``url`` is the server that wrote it; None when there is none."""
    env = os.environ if environ is None else environ
    if api_key:
        return api_key
    if env.get("KSCORE_API_KEY"):
        return env["KSCORE_API_KEY"]
    saved = read_json_file((data_dir or default_data_dir(env)) / CREDENTIALS_FILE)
    key, saved_url = (saved or {}).get("api_key"), (saved or {}).get("url")
    if isinstance(key, str) and isinstance(saved_url, str) and same_local_server(url, saved_url):
        return key
    return None

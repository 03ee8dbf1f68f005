"""Job callbacks: which URLs may be called, and how a delivery is signed.

Signatures follow Standard Webhooks (https://www.standardwebhooks.com): headers
``webhook-id``, ``webhook-timestamp`` and ``webhook-signature: v1,<base64 HMAC-SHA256 of
"id.timestamp.body">``, keyed by the instance's secret (``whsec_`` + base64 of 32 bytes).

The allow-list (KSCORE_WEBHOOK_ALLOW) holds host patterns (``hooks.example.com``,
``*.example.com``) and networks (``10.0.0.0/8``, ``127.0.0.1/32``). A URL is allowed when
its host matches a pattern, or when it is an address (or a name all of whose addresses are)
inside a network. Nothing is allowed by default, so kscore cannot be made to call internal
addresses unless the operator says so. It is checked at submission and again before each
delivery, since a name may resolve elsewhere by then.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import ipaddress
import secrets
import socket
from urllib.parse import urlsplit

from shared.errors import CallbackNotAllowed

SECRET_PREFIX = "whsec_"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_allow_list(text: str) -> tuple[str, ...]:
    """Comma-separated host patterns and CIDRs; raises ValueError for a bad network."""
    entries = tuple(part.strip().lower() for part in text.split(",") if part.strip())
    for entry in entries:
        if "/" in entry:
            ipaddress.ip_network(entry, strict=False)  # raises ValueError
    return entries


def new_secret() -> str:
    """A fresh signing secret in Standard Webhooks' form."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value of ``body``."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def _addresses(host: str) -> list[Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return []
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


def check_callback_url(url: str, allow: tuple[str, ...]) -> str:
    """Return ``url`` when a callback may be sent there; raises CallbackNotAllowed (422)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host or parts.username or parts.password:
        raise CallbackNotAllowed(
            "callback_url must be an http(s) URL with a host and no credentials.",
            details={"fields": {"callback_url": ["Not an http(s) URL."]}},
        )
    networks: list[Network] = [ipaddress.ip_network(e, strict=False) for e in allow if "/" in e]
    patterns = [e for e in allow if "/" not in e]
    if any(fnmatch.fnmatchcase(host, pattern) for pattern in patterns):
        return url
    addresses = _addresses(host) if networks else []
    if addresses and all(any(a in net for net in networks) for a in addresses):
        return url
    raise CallbackNotAllowed(
        f"Callbacks to {host} are not allowed here; the operator lists the hosts and networks "
        "kscore may call in KSCORE_WEBHOOK_ALLOW.",
        details={"fields": {"callback_url": ["Host not in KSCORE_WEBHOOK_ALLOW."]}},
    )

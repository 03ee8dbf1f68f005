"""Idempotency keys: one job per ``Idempotency-Key`` and instance, within a window.

A request claims its key atomically before it creates anything (``idempotency_claim.lua``);
the claim carries a fingerprint of the request (method, path, query, body) and a token. The
claimant then settles the key with the job it created, or releases it when it created nothing
(a refused request does not use the key up). Later requests with the key read the job, or
learn that the key came with another request.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass

import redis

from shared.keys import Keys
from shared.lua import source

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeldKey:
    """A key another request claimed: its fingerprint, and its job once created (else None)."""

    fingerprint: str
    job_id: str | None


@dataclass(frozen=True)
class Claim:
    """A key this request holds, until it settles or releases it."""

    instance: str
    key: str
    token: str


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class IdempotencyStore:
    """Claim, settle and release idempotency keys, per instance."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._keys = keys
        self._claim = client.register_script(source("idempotency_claim.lua"))
        self._settle = client.register_script(source("idempotency_settle.lua"))

    def _key(self, instance: str, key: str) -> str:
        return self._keys.idempotency(instance, hashlib.sha256(key.encode()).hexdigest())

    def claim(self, instance: str, key: str, fingerprint: str, lease_s: float) -> Claim | HeldKey:
        """Take ``key`` for a request with ``fingerprint``, for ``lease_s`` seconds at most
        before it is settled. Returns the Claim, or the HeldKey when another request has it."""
        token = uuid.uuid4().hex
        reply = self._claim(
            keys=[self._key(instance, key)], args=[fingerprint, token, int(lease_s * 1000)]
        )
        if _text(reply[0]) == "claimed":
            return Claim(instance, key, token)
        job_id = _text(reply[2])
        return HeldKey(fingerprint=_text(reply[1]), job_id=job_id or None)

    def settle(self, claim: Claim, job_id: str, ttl_s: float) -> bool:
        """Point the claimed key at ``job_id`` for ``ttl_s`` seconds. Returns False when the
        claim's lease ran out first (another request may have created a job too)."""
        settled = self._settle(
            keys=[self._key(claim.instance, claim.key)],
            args=[claim.token, job_id, max(1, int(ttl_s * 1000))],
        )
        if not settled:
            log.warning(
                "idempotency lease lost before settling instance=%s job_id=%s",
                claim.instance,
                job_id,
            )
        return bool(settled)

    def release(self, claim: Claim) -> None:
        """Give the key up: the request created nothing, so the key may be used again."""
        self._settle(keys=[self._key(claim.instance, claim.key)], args=[claim.token, "", 0])

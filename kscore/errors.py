"""The exceptions kscore's client raises.

Everything derives from :class:`KscoreError`. An HTTP error answer from the server becomes an
:class:`ApiError` (a subclass per status family), a request that never got an answer becomes a
:class:`TransportError`, and waiting for a job or a deployment that ends badly raises
:class:`JobFailedError` / :class:`DeploymentFailedError` / :class:`WaitTimeoutError`.
"""

from __future__ import annotations

from typing import Any

from shared.status import JobStatus


class KscoreError(Exception):
    """Base of every error the kscore client raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class TransportError(KscoreError):
    """The request got no HTTP answer: connection refused, DNS failure, timeout."""

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message)
        self.url = url


class ApiError(KscoreError):
    """The server answered with a 4xx/5xx and its error envelope."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.details: dict[str, Any] = details or {}

    def __str__(self) -> str:
        return f"{self.message} ({self.code})"

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(status={self.status}, code={self.code!r}, message={self.message!r})"


class UnauthorizedError(ApiError):
    """401: no API key, or one that is unknown or revoked (see ``Client(api_key=)``)."""


class NotFoundError(ApiError):
    """404: the model, deployment or job does not exist."""


class ConflictError(ApiError):
    """409: the resource is in a state that forbids the request (in use, not finished...)."""


class UnprocessableError(ApiError):
    """422: the payload failed validation; ``details`` names the fields."""


class PayloadTooLargeError(ApiError):
    """413: the upload or request body is larger than the server accepts."""


class ServerError(ApiError):
    """5xx: the server failed; the message says what it knows."""


class JobFailedError(KscoreError):
    """A job ended ``failed`` or ``canceled`` while being waited for."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        self.job_id = str(job.get("id", "?"))
        self.status = str(job.get("status", "?"))
        error = job.get("error") or {}
        self.code: str | None = error.get("code") if isinstance(error, dict) else None
        reason = error.get("message") if isinstance(error, dict) else None
        if self.status == JobStatus.CANCELED:
            message = f"Job '{self.job_id}' was canceled."
        else:
            message = f"Job '{self.job_id}' {self.status}: {reason or 'no reason given'}"
            if self.code:
                message += f" ({self.code})"
        super().__init__(message)


class DeploymentFailedError(KscoreError):
    """A deployment ended ``DEPLOY_FAILED``; the message carries the server's reason."""

    def __init__(self, deployment: dict[str, Any]) -> None:
        self.deployment = deployment
        self.deployment_id = str(deployment.get("id", "?"))
        error = deployment.get("error") or {}
        self.code: str | None = error.get("code") if isinstance(error, dict) else None
        reason = error.get("message") if isinstance(error, dict) else None
        message = f"Deployment '{self.deployment_id}' failed: {reason or 'no reason given'}"
        if self.code:
            message += f" ({self.code})"
        super().__init__(message)


class DeploymentMoveFailedError(KscoreError):
    """A deployment's move to another model failed: the new model did not load, and the
    current one still serves (``pending_error`` in its details says why)."""

    def __init__(self, deployment: dict[str, Any]) -> None:
        self.deployment = deployment
        self.deployment_id = str(deployment.get("id", "?"))
        error = deployment.get("pending_error") or {}
        self.code: str | None = error.get("code") if isinstance(error, dict) else None
        reason = error.get("message") if isinstance(error, dict) else None
        message = f"Deployment '{self.deployment_id}' did not move: {reason or 'no reason given'}"
        if self.code:
            message += f" ({self.code})"
        super().__init__(message + "; its current model still serves.")


class WaitTimeoutError(KscoreError):
    """A wait for a job or deployment gave up before it settled."""


def error_from_response(status: int, body: Any, *, reason: str = "") -> ApiError:
    """The :class:`ApiError` subclass for an HTTP status and (possibly non-envelope) body."""
    code = f"http_{status}"
    message = reason or f"HTTP {status}"
    details: dict[str, Any] = {}
    envelope = body.get("error") if isinstance(body, dict) else None
    if isinstance(envelope, dict):
        code = str(envelope.get("code") or code)
        message = str(envelope.get("message") or message)
        raw_details = envelope.get("details")
        if isinstance(raw_details, dict):
            details = raw_details
    elif isinstance(body, str) and body.strip():
        # Not our envelope (a proxy's HTML page, say): keep a short excerpt to act on.
        excerpt = " ".join(body.split())[:200]
        message = f"{message}: {excerpt}"
    cls: type[ApiError]
    if status == 401:
        cls = UnauthorizedError
        # The server speaks HTTP headers; a client's user sets keys through its options.
        message += (
            " From kscore: pass --api-key (Client(api_key=)), set KSCORE_API_KEY, or run where "
            "`kscore up` keeps its credentials.json (./.kscore, or KSCORE_DATA_DIR)."
        )
    elif status == 404:
        cls = NotFoundError
    elif status == 409:
        cls = ConflictError
    elif status == 413:
        cls = PayloadTooLargeError
    elif status == 422:
        cls = UnprocessableError
    elif status >= 500:
        cls = ServerError
    else:
        cls = ApiError
    return cls(status, code, message, details)

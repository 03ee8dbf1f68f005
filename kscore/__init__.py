"""kscore's client side: the HTTP client (:class:`Client`) and its exceptions.

It depends on HTTP only; the server (``api``, ``workers``, ``shared``) is never imported.
"""

from kscore.client import Client, __version__
from kscore.errors import (
    ApiError,
    ConflictError,
    DeploymentFailedError,
    DeploymentMoveFailedError,
    JobFailedError,
    KscoreError,
    NotFoundError,
    PayloadTooLargeError,
    ServerError,
    TransportError,
    UnauthorizedError,
    UnprocessableError,
    WaitTimeoutError,
)

__all__ = [
    "ApiError",
    "Client",
    "ConflictError",
    "DeploymentFailedError",
    "DeploymentMoveFailedError",
    "JobFailedError",
    "KscoreError",
    "NotFoundError",
    "PayloadTooLargeError",
    "ServerError",
    "TransportError",
    "UnauthorizedError",
    "UnprocessableError",
    "WaitTimeoutError",
    "__version__",
]

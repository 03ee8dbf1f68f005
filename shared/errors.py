"""Domain errors. Each carries its HTTP status and a stable snake_case code.

Views never build error JSON by hand: they raise one of these and the API's error handler
renders the one envelope ``{"error": {"code", "message", "details"}}``.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every error the service reports to a caller, rendered by the API as the one
    envelope. (The HTTP client's own base is ``kscore.errors.KscoreError``.)"""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers the response must carry besides the envelope (e.g. WWW-Authenticate)."""
        return {}


class Unauthorized(DomainError):
    """The request carries no credentials, or ones that are unknown, revoked or expired."""

    status = 401
    code = "unauthorized"

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="kscore"'}


class Forbidden(DomainError):
    status = 403
    code = "forbidden"


class MalformedRequest(DomainError):
    status = 400
    code = "bad_request"


class ValidationFailed(DomainError):
    """A payload failed schema validation; details are keyed by field."""

    status = 422
    code = "validation_failed"


class ResourceNotFound(DomainError):
    status = 404
    code = "not_found"


class ModelNotFound(ResourceNotFound):
    code = "model_not_found"

    def __init__(self, model_id: str) -> None:
        super().__init__(f"No model with id {model_id!r}.", details={"model_id": model_id})


class DeploymentNotFound(ResourceNotFound):
    code = "deployment_not_found"

    def __init__(self, deployment_id: str) -> None:
        super().__init__(
            f"No deployment with id {deployment_id!r}.", details={"deployment_id": deployment_id}
        )


class JobNotFound(ResourceNotFound):
    code = "job_not_found"

    def __init__(self, job_id: str) -> None:
        super().__init__(
            f"No job with id {job_id!r} (it may have expired after its retention period).",
            details={"job_id": job_id},
        )


class DatasetNotFound(ResourceNotFound):
    code = "dataset_not_found"

    def __init__(self, dataset_id: str) -> None:
        super().__init__(
            f"No dataset with id {dataset_id!r} (it may have expired after its retention period).",
            details={"dataset_id": dataset_id},
        )


class InstanceNotFound(ResourceNotFound):
    code = "instance_not_found"

    def __init__(self, instance_id: str) -> None:
        super().__init__(
            f"No instance with id {instance_id!r}.", details={"instance_id": instance_id}
        )


class ApiKeyNotFound(ResourceNotFound):
    code = "api_key_not_found"

    def __init__(self, key_id: str) -> None:
        super().__init__(f"No API key with id {key_id!r}.", details={"key_id": key_id})


class StateConflict(DomainError):
    status = 409
    code = "conflict"


class ModelInUse(StateConflict):
    code = "model_in_use"


class DatasetInUse(StateConflict):
    """A dataset that an unfinished job reads its rows from."""

    code = "dataset_in_use"


class InstanceNotEmpty(StateConflict):
    code = "instance_not_empty"


class InstanceExists(StateConflict):
    code = "instance_exists"


class JobNotFinished(StateConflict):
    code = "job_not_finished"


class ResultFormatNotAcceptable(DomainError):
    """A result format that does not exist, or that cannot hold this job's result (npy for a
    model with several outputs)."""

    status = 406
    code = "result_format_not_acceptable"


class JobAlreadyFinished(StateConflict):
    code = "job_already_finished"


class IdempotencyKeyInUse(StateConflict):
    """Another request with this Idempotency-Key is still creating its job."""

    code = "idempotency_key_in_use"


class DeploymentNotReady(StateConflict):
    code = "deployment_not_ready"


class DeploymentMovePending(StateConflict):
    """A deployment is already loading the model a previous PATCH asked for."""

    code = "deployment_move_pending"


class ModelInputsMismatch(DomainError):
    """A deployment cannot move to a model whose inputs differ: callers keep their rows."""

    status = 422
    code = "model_inputs_mismatch"


class ModelContentConflict(StateConflict):
    """A WML model asset's content is stored already, or is being stored."""

    code = "model_content_exists"


class ModelContentMissing(StateConflict):
    """A WML model asset has no file yet."""

    code = "model_content_missing"


class PayloadTooLarge(DomainError):
    status = 413
    code = "payload_too_large"


class UnsupportedModelFile(DomainError):
    """The upload is not a Keras model file kscore can store (wrong type, weights only...)."""

    status = 400
    code = "unsupported_model_file"


class UnsafeModel(DomainError):
    """The model's config names code that a loader would execute."""

    status = 422
    code = "unsafe_model"


class UnsafeModelFile(UnsafeModel):
    """The model file's structure is hostile: links out of the file, an archive member with an
    unsafe name or type, a decompression or shape bomb, a config nested or sized past the caps.

    ``details["reason"]`` names the rule (e.g. ``hdf5_external_link``, ``zip_bomb``).
    """

    code = "unsafe_model_file"


class ScoringInputInvalid(DomainError):
    """Rows do not match the deployment's input signature."""

    status = 422
    code = "invalid_scoring_input"


class DatasetInvalid(DomainError):
    """An uploaded dataset that cannot be read as its format, or a row or column in it that is
    not numbers of one shape; ``details`` name the row (0-based) and the column or input."""

    status = 422
    code = "invalid_dataset"


class DatasetFormatUnknown(MalformedRequest):
    """A dataset upload whose format neither ``?format=`` nor the Content-Type names."""

    code = "unsupported_dataset_format"


class DatasetMismatch(DomainError):
    """A dataset whose inputs (names, shapes, types) do not fit a deployment's inputs."""

    status = 422
    code = "dataset_mismatch"


class IdempotencyKeyReused(DomainError):
    """An Idempotency-Key sent again with another request body or target."""

    status = 422
    code = "idempotency_key_reused"


class CallbackNotAllowed(ValidationFailed):
    """A callback URL that is malformed or outside KSCORE_WEBHOOK_ALLOW."""

    code = "callback_not_allowed"


class ScoringFailed(DomainError):
    """An online request's job failed in the worker; the message says why."""

    status = 500
    code = "scoring_failed"


class BackendUnavailable(DomainError):
    status = 503
    code = "service_unavailable"


class NoWorker(BackendUnavailable):
    """No live worker consumes the queue this request needs: it would only time out."""

    code = "no_worker"


class TooManyRequests(DomainError):
    """A per-instance limit was reached; ``retry_after_s`` goes out as ``Retry-After``."""

    status = 429
    code = "too_many_requests"

    def __init__(
        self, message: str, *, retry_after_s: int, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message, details=details)
        self.retry_after_s = max(1, retry_after_s)

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class RateLimited(TooManyRequests):
    """The instance sent more requests than KSCORE_RATE_LIMIT allows."""

    code = "rate_limited"


class QueuedRowsLimit(TooManyRequests):
    """The instance's queued and running rows would pass KSCORE_MAX_QUEUED_ROWS."""

    code = "queued_rows_limit"


class QueuedJobsLimit(TooManyRequests):
    """The instance's queued and running jobs would pass KSCORE_MAX_QUEUED_JOBS."""

    code = "queued_jobs_limit"


class SettingsError(Exception):
    """A KSCORE_* environment variable has a bad value; raised at start-up."""

"""The status vocabulary of kscore's resources, as it travels on the wire and in Redis.

Standard library only: the HTTP client (``kscore/``) reads the same names without importing
anything else of the server.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """A scoring job's life: queued -> running -> completed | failed | canceled."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def finished(self) -> bool:
        """Whether the job reached a terminal state (nothing changes it any more)."""
        return self in FINISHED_JOB_STATUSES


FINISHED_JOB_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED})


class DeploymentStatus(StrEnum):
    """A deployment's life, named as WML v3 names it (``entity.status``)."""

    DEPLOY_IN_PROGRESS = "DEPLOY_IN_PROGRESS"
    DEPLOY_SUCCESS = "DEPLOY_SUCCESS"
    DEPLOY_FAILED = "DEPLOY_FAILED"


class ClaimOutcome(StrEnum):
    """What claiming a chunk of a job decided (``JobStore.claim_chunk``)."""

    RUN = "run"
    """The chunk is the caller's to score (the job is running now)."""
    DUPLICATE = "duplicate"
    """The chunk was already scored: a redelivered task, nothing to do."""
    MISSING = "missing"
    """The job is gone (deleted, or its retention passed)."""
    JOB_FINISHED = "job_finished"
    """The job already ended (completed, failed or canceled): skip the chunk."""
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"
    """The chunk was started too often; this claim failed the job (``worker_lost``)."""


class CompleteOutcome(StrEnum):
    """What storing a scored chunk decided (``JobStore.complete_chunk``)."""

    COUNTED = "counted"
    """The chunk's rows were stored and counted; other chunks remain."""
    JOB_COMPLETED = "job_completed"
    """The chunk was the job's last: the job is completed."""
    DUPLICATE = "duplicate"
    """Another delivery of the chunk was counted already; this one is dropped."""
    MISSING = "missing"
    """The job is gone (deleted, or its retention passed)."""
    NOT_RUNNING = "not_running"
    """The job is not running (canceled or failed meanwhile): the rows are dropped."""


class FinishOutcome(StrEnum):
    """What ending a job early decided (``JobStore.finish``)."""

    FINISHED = "finished"
    """The job was queued or running and now has the requested status."""
    ALREADY_FINISHED = "already_finished"
    """The job had ended before: nothing changed."""
    MISSING = "missing"
    """The job is gone (deleted, or its retention passed)."""


class AssetContent(StrEnum):
    """Where a WML model asset's file is: assets are created before their content arrives."""

    PENDING = "pending"
    """Created, no file yet (expires unless a file arrives)."""
    UPLOADING = "uploading"
    """A content upload is being inspected and stored."""
    STORED = "stored"
    """The file is stored: the asset is a model of the repository."""

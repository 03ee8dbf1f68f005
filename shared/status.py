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
